//! The one mapping from service errors to GraphQL errors with `extensions.code`.

use async_graphql::ErrorExtensions;
use berth_service::Error;

/// The codes clients switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    BadUserInput,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn of(e: &Error) -> ErrorCode {
        match e {
            Error::Unauthenticated => ErrorCode::Unauthenticated,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::BadInput { .. } => ErrorCode::BadUserInput,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// A GraphQL error for a service error; internal details are logged here and never sent.
pub fn gql_error(e: Error) -> async_graphql::Error {
    let code = ErrorCode::of(&e);
    if let Error::Internal(detail) = &e {
        tracing::error!(%detail, "internal error in a GraphQL operation");
    }
    let field = match &e {
        Error::BadInput { field, .. } => Some(field.clone()),
        _ => None,
    };
    let retry = match &e {
        Error::RateLimited { retry_after_secs } => Some(*retry_after_secs),
        _ => None,
    };
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| {
        ext.set("code", code.as_str());
        if let Some(field) = &field {
            ext.set("field", field.as_str());
        }
        if let Some(secs) = retry {
            ext.set("retryAfter", secs);
        }
    })
}

/// `?`-friendly conversion for resolver bodies: `service.call().await.gql()?`.
pub(crate) trait GqlResult<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResult<T> for Result<T, Error> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(gql_error)
    }
}

/// Gives every error of a response an `extensions.code`. Errors our resolvers raise carry
/// one already; the rest come from async-graphql itself (syntax, unknown fields, argument
/// types, depth and complexity limits), which are all the client's to fix.
pub fn ensure_codes(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", ErrorCode::BadUserInput.as_str());
        }
    }
}
