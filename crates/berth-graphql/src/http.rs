//! The HTTP side of GraphQL: `POST /graphql`, `GET /graphql` (queries, or GraphiQL for a
//! browser). Credentials are checked here, before the operation runs, so a bad password is
//! a 401 (and a burst of them a 429) whatever the query.

use std::net::SocketAddr;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_service::auth::Presented;
use berth_service::{Caller, Error, Service};

use crate::error::ErrorCode;
use crate::{prepare_request, BerthSchema};

/// Largest GraphQL request body; a real query is a few KiB.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct GraphqlState {
    schema: BerthSchema,
    service: Service,
}

/// Routes `/graphql` (and GraphiQL's embedded assets) for the given service.
pub fn router(service: Service) -> Router {
    let state = GraphqlState { schema: crate::schema(service.clone()), service };
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .route("/graphql/ws", get(websocket))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        // Outermost, so it also sees the limit layer's own 413.
        .layer(axum::middleware::map_response(too_large_as_graphql))
        .merge(crate::graphiql::routes())
        .with_state(state)
}

async fn post_graphql(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> Response {
    let request = match request {
        Ok(r) => r.into_inner(),
        Err(rejection) => return bad_request(&rejection.0.to_string()),
    };
    execute(&state, peer, &headers, request).await
}

/// `/graphql/ws`, speaking `graphql-transport-ws` and the legacy `graphql-ws`. Credentials
/// arrive in the `connection_init` payload as `{"Authorization": "Basic …" | "Bearer …"}`
/// (key matched case-insensitively); a bad or missing one ends the connection with the
/// protocol's error before any operation runs.
async fn websocket(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let service = state.service.clone();
            GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let presented = authorization_in(&payload)
                        .and_then(Presented::from_authorization)
                        .ok_or_else(|| crate::gql_error(Error::Unauthenticated))?;
                    let caller = service.authenticate(&presented, peer.ip()).await.map_err(crate::gql_error)?;
                    let mut data = async_graphql::Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
}

fn authorization_in(payload: &serde_json::Value) -> Option<&str> {
    payload
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str())
}

async fn get_graphql(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if uri.query().is_none_or(|q| q.is_empty()) {
        if wants_html {
            return Html(crate::graphiql::page()).into_response();
        }
        return bad_request("a GET request needs a `query` parameter");
    }
    match async_graphql::http::parse_query_string(uri.query().unwrap_or_default()) {
        Ok(request) => execute(&state, peer, &headers, request).await,
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn execute(state: &GraphqlState, peer: SocketAddr, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let caller = match authenticate(&state.service, headers, peer).await {
        Ok(caller) => caller,
        Err(e) => return auth_failure(e),
    };
    let request = prepare_request(request, &state.service, caller);
    let mut response = state.schema.execute(request).await;
    crate::error::ensure_codes(&mut response);
    GraphQLResponse::from(response).into_response()
}

/// No `Authorization` header: anonymous (only public fields answer). A header that is
/// malformed or wrong: refused before the operation runs.
async fn authenticate(service: &Service, headers: &HeaderMap, peer: SocketAddr) -> Result<Option<Caller>, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(Presented::from_authorization)
        .ok_or(Error::Unauthenticated)?;
    service.authenticate(&presented, peer.ip()).await.map(Some)
}

fn error_body(message: &str, code: ErrorCode) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] })
}

fn auth_failure(e: Error) -> Response {
    let code = ErrorCode::of(&e);
    let body = axum::Json(error_body(&e.to_string(), code));
    match e {
        Error::RateLimited { retry_after_secs } => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after_secs.to_string())], body).into_response()
        }
        Error::Unauthenticated => {
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"berth\"".to_owned())], body)
                .into_response()
        }
        other => {
            let body = error_body(&crate::gql_error(other).message, code);
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
        }
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(error_body(message, ErrorCode::BadUserInput))).into_response()
}

/// The body limit answers 413 in plain text; GraphQL clients get a typed error instead.
async fn too_large_as_graphql(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let body = error_body(&format!("request body larger than {MAX_BODY} bytes"), ErrorCode::BadUserInput);
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}
