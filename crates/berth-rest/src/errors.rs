//! Service errors as the reference answers them. The status for "not found" and for invalid
//! input differs per route in the reference, so each handler says which canned answer it
//! wants for those; the rest is the same everywhere.

use berth_service::Error;

use crate::auth::auth_failure;
use crate::wire::{self, Reply};

/// Route-specific answers for the errors the reference treats differently per route.
#[derive(Clone, Copy)]
pub struct Answers {
    pub not_found: fn() -> Reply,
    pub bad_input: fn() -> Reply,
    pub conflict: fn() -> Reply,
}

/// Most item routes: unknown or foreign → 403, invalid → 403, clash → 409.
pub const FORBIDDEN_STYLE: Answers =
    Answers { not_found: wire::forbidden, bad_input: wire::forbidden, conflict: wire::conflict };
/// Domains and tags: unknown → 404.
pub const NOT_FOUND_STYLE: Answers =
    Answers { not_found: wire::not_found, bad_input: wire::bad_request, conflict: wire::conflict };

pub fn reply(e: Error, answers: Answers) -> Reply {
    match e {
        Error::Unauthenticated | Error::RateLimited { .. } | Error::Internal(_) => auth_failure(e),
        Error::Forbidden(_) => wire::forbidden(),
        Error::NotFound(_) => (answers.not_found)(),
        Error::BadInput { .. } => (answers.bad_input)(),
        Error::Conflict(_) => (answers.conflict)(),
        Error::Unavailable(reason) => wire::json(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": "Service Unavailable", "reason": reason }),
        ),
    }
}
