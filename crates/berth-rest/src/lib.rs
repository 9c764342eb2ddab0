//! The REST shim: the uwsgi.it customer API (../shared/spec/uwsgi-rest-compat.md) on top of
//! `berth-service`, for curl users and existing clients such as uwsgiit-py.
//!
//! **Architecture Invariant:** handlers translate and nothing more: they read the request
//! the way the reference does, call one service method, and write the answer the way the
//! reference does (`wire.rs`). Every rule lives in `berth-service`.
//!
//! Each module owns its routes (`router()`); `router()` here merges them, accepts every route
//! with and without a trailing slash, answers CORS pre-flights and adds the CORS header.

// Parse steps return the finished answer as their error so handlers can `return` it; a
// response is 128 bytes and is built once per request, boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod alarms;
mod auth;
mod body;
mod containers;
mod distros;
mod domains;
mod errors;
mod loopboxes;
mod me;
mod metrics;
mod news;
mod pages;
mod portmaps;
mod tags;
mod values;
mod wire;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use axum::Router;
use berth_service::Service;

pub use wire::to_python_json;

#[derive(Clone)]
pub struct AppState {
    pub service: Service,
}

/// The shim's routes, to be nested under the configured prefix (default `/api`).
pub fn router(service: Service) -> Router {
    let protected = Router::new()
        .merge(me::router())
        .merge(containers::router())
        .merge(distros::router())
        .merge(domains::router())
        .merge(tags::router())
        .merge(loopboxes::router())
        .merge(alarms::router())
        .merge(portmaps::router())
        .merge(metrics::router())
        .layer(axum::middleware::from_fn(cors));
    Router::new()
        .merge(protected)
        .merge(news::router())
        .fallback(|| async { wire::not_found() })
        .with_state(AppState { service })
}

/// Registers `path` and `path/`: the reference is inconsistent about trailing slashes and
/// clients use both, so the shim accepts both everywhere (spec §9.4).
pub(crate) fn route(router: Router<AppState>, path: &str, handler: MethodRouter<AppState>) -> Router<AppState> {
    router.route(path, handler.clone()).route(&format!("{path}/"), handler)
}

/// Pre-flight `OPTIONS` is answered without authentication; every other answer of a
/// protected route (401 included) carries `Access-Control-Allow-Origin: *`.
async fn cors(request: Request, next: Next) -> axum::response::Response {
    if request.method() == Method::OPTIONS {
        return (
            StatusCode::OK,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET,POST,DELETE,OPTIONS"),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "X-uwsgi-it-username,X-uwsgi-it-password"),
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            ],
        )
            .into_response();
    }
    let mut response =
        if sent_for_a_foreign_page(request.headers()) { wire::forbidden() } else { next.run(request).await };
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// Whether a browser sent the request for a page of another origin with the basic
/// credentials it remembers. The shim reads JSON whatever the Content-Type and some GETs
/// change state (`alarm_key`), so a form post, an `<img>`, a link or a credentialed
/// `fetch` from any site could act as the customer. Browser clients of this API cannot send
/// `Authorization` across origins (the pre-flight allows only the `X-uwsgi-it-*` headers),
/// so refusing it there costs them nothing; scripts send neither `Sec-Fetch-Site` nor
/// `Origin`. Another origin is told by Fetch Metadata (`Sec-Fetch-Site`: cross-site, or
/// same-site, a customer's site under the provider's domain) or, where a browser sends none
/// (plain HTTP to a remote host, older browsers), by an `Origin` that is not this host.
fn sent_for_a_foreign_page(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) && from_another_origin(headers)
}

fn from_another_origin(headers: &axum::http::HeaderMap) -> bool {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value(header::HeaderName::from_static("sec-fetch-site")) {
        return site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site");
    }
    match value(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, rest)| rest);
            authority.is_none_or(|authority| Some(authority) != value(header::HOST))
        }
    }
}
