//! Who is calling (spec §2): the `Authorization` header alone decides when present; else the
//! hex-encoded `X-uwsgi-it-username`/`-password` pair (for browser clients); else nobody.
//! Malformed credentials are "nobody" (Q1 fixed: never a 500), and passwords may contain
//! `:` because basic credentials split on the first one.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use berth_service::auth::Presented;
use berth_service::{Caller, Error};

use crate::wire::{self, Reply};
use crate::AppState;

/// Credentials in the request, if any usable ones.
pub fn presented(headers: &HeaderMap) -> Option<Presented> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return value.to_str().ok().and_then(Presented::from_authorization);
    }
    let hex_header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(unhex);
    match (hex_header("x-uwsgi-it-username"), hex_header("x-uwsgi-it-password")) {
        (Some(username), Some(password)) => Some(Presented::Basic { username, password }),
        _ => None,
    }
}

/// Whether the request carries credentials of any kind (usable or not); the alarm-key
/// fallback applies only when it carries none.
pub fn carries_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
        || (headers.contains_key("x-uwsgi-it-username") && headers.contains_key("x-uwsgi-it-password"))
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

pub fn peer(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The authenticated customer of a protected route; anything else is answered 401 (429
/// when the login rate limit refuses to even check).
pub struct Customer(pub Caller);

impl FromRequestParts<AppState> for Customer {
    type Rejection = Reply;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Reply> {
        let presented = presented(&parts.headers).ok_or_else(wire::unauthorized)?;
        state.service.authenticate(&presented, peer(parts)).await.map(Customer).map_err(auth_failure)
    }
}

/// The answer to failed authentication.
pub fn auth_failure(e: Error) -> Reply {
    match e {
        Error::RateLimited { retry_after_secs } => {
            let mut r =
                wire::json(StatusCode::TOO_MANY_REQUESTS, &serde_json::json!({ "error": "Too many failed logins" }));
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "authentication failed internally");
            wire::internal()
        }
        _ => wire::unauthorized(),
    }
}

/// Credentials on a public route (`news`): wrong or bogus ones mean anonymous.
pub struct MaybeCustomer(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCustomer {
    type Rejection = Reply;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Reply> {
        let Some(presented) = presented(&parts.headers) else {
            return Ok(MaybeCustomer(None));
        };
        Ok(MaybeCustomer(state.service.authenticate(&presented, peer(parts)).await.ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-uwsgi-it-username", HeaderValue::from_static("6b7261746f73"));
        h.insert("x-uwsgi-it-password", HeaderValue::from_static("6465696d6f73"));
        assert_eq!(presented(&h), Some(Presented::Basic { username: "kratos".into(), password: "deimos".into() }));
        h.insert("x-uwsgi-it-password", HeaderValue::from_static("zz"));
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn authorization_header_alone_decides() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        h.insert("x-uwsgi-it-username", HeaderValue::from_static("6b7261746f73"));
        h.insert("x-uwsgi-it-password", HeaderValue::from_static("6465696d6f73"));
        assert_eq!(presented(&h), None);
        assert!(carries_credentials(&h));
    }
}
