use thiserror::Error;

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Everything a backend can fail with. Messages are shown to customers as the container's
/// `lastError`, so they say what failed without host paths where that can be avoided.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("no container {0} on this host")]
    NotFound(u32),
    #[error("container {0} is not running")]
    NotRunning(u32),
    #[error("distro {name} is not usable: {reason}")]
    Distro { name: String, reason: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),
    /// The message already ends with the OS error (customers see only the message), so it
    /// is not also a `source`: chains printed whole (`{:#}`) would say it twice.
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    #[error("{0}")]
    Failed(String),
}

impl BackendError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackendError::Io { context: context.into(), error: source }
    }

    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        BackendError::Invalid { what, reason: reason.into() }
    }
}

/// Adds context to an I/O result: `fs::read(p).ctx(|| format!("reading {p:?}"))`.
pub trait IoContext<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| BackendError::io(context(), e))
    }
}
