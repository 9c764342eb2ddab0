//! The one error enum of Berth's operations. Every front door maps it once: REST to the
//! spec's status and body, GraphQL to `extensions.code`.

/// What went wrong, in terms a client can act on. Messages are lowercase, without a
/// trailing period, and never carry another tenant's data or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Missing or wrong credentials.
    #[error("authentication required")]
    Unauthenticated,
    /// Too many failed logins for this user or peer; try again later.
    #[error("too many failed logins, retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    /// Authenticated, but this action is not allowed to the caller.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The object does not exist *for this caller* (foreign objects look the same).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request clashes with existing state (duplicates, capacity, links).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value the caller sent is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    BadInput { field: String, reason: String },
    /// The operation cannot be served here now, though nothing is wrong with the request:
    /// e.g. no agent in this gateway manages the container's server (exec, logs). Retrying
    /// later, or through the gateway that runs that server's agent, may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something broke on our side; details are logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn bad_input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadInput { field: field.into(), reason: reason.into() }
    }

    pub fn conflict(reason: impl Into<String>) -> Self {
        Error::Conflict(reason.into())
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Error::Forbidden(reason.into())
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Error::Unavailable(reason.into())
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
