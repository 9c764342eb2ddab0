//! GraphiQL for browsers, served from assets embedded in the binary (no CDN).
//! TODO(infra helper): embed the real GraphiQL bundle.

use axum::Router;

pub(crate) fn page() -> String {
    String::from("<!doctype html><title>Berth GraphQL</title>")
}

pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
}
