//! The HTTP side of GraphQL: `POST /graphql`, `GET /graphql` (queries, or GraphiQL for a
//! browser). Credentials are checked here, before the operation runs, so a bad password is
//! a 401 (and a burst of them a 429) whatever the query.

use std::net::SocketAddr;

use async_graphql::http::MultipartOptions;
use async_graphql_axum::GraphQLResponse;
use axum::body::{Body, Bytes};
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

/// Shared by every request of the router; one `Arc`, as axum clones the state per request.
#[derive(Clone)]
pub(crate) struct GraphqlState(std::sync::Arc<GraphqlParts>);

pub(crate) struct GraphqlParts {
    pub(crate) schema: BerthSchema,
    pub(crate) service: Service,
    pub(crate) metrics: crate::GraphqlMetrics,
    pub(crate) shared: crate::shared_streams::SharedStreams,
    pub(crate) sessions: crate::sessions::Sessions,
    pub(crate) sockets: crate::customer_sockets::CustomerSockets,
    pub(crate) shutdown: crate::connection_end::WebSocketShutdown,
    pub(crate) kept: crate::kept_answers::KeptAnswers,
}

/// What the operator sets for the GraphQL routes.
#[derive(Debug, Clone)]
pub struct GraphqlOptions {
    /// WebSockets one customer may hold open at once on this gateway.
    pub max_websockets_per_customer: usize,
    /// Closes the WebSockets when the gateway stops.
    pub shutdown: crate::connection_end::WebSocketShutdown,
    /// Bytes of query answers kept (`kept_answers.rs`); 0 keeps none.
    pub kept_answers_bytes: u64,
}

impl Default for GraphqlOptions {
    fn default() -> Self {
        GraphqlOptions {
            max_websockets_per_customer: crate::customer_sockets::DEFAULT_MAX_WEBSOCKETS_PER_CUSTOMER,
            shutdown: Default::default(),
            kept_answers_bytes: crate::kept_answers::DEFAULT_KEPT_ANSWERS_MIB * 1024 * 1024,
        }
    }
}

impl std::ops::Deref for GraphqlState {
    type Target = GraphqlParts;

    fn deref(&self) -> &GraphqlParts {
        &self.0
    }
}

/// Routes `/graphql`, `/graphql/ws` and GraphiQL's embedded assets for the given service.
pub fn router(service: Service, metrics: crate::GraphqlMetrics, options: GraphqlOptions) -> Router {
    let state = GraphqlState(std::sync::Arc::new(GraphqlParts {
        schema: crate::schema(service.clone()),
        service,
        shared: crate::shared_streams::SharedStreams::new(metrics.subscribers_cut_off()),
        metrics,
        sessions: Default::default(),
        sockets: crate::customer_sockets::CustomerSockets::new(options.max_websockets_per_customer),
        shutdown: options.shutdown,
        kept: crate::kept_answers::KeptAnswers::new(options.kept_answers_bytes),
    }));
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .route("/graphql/ws", get(crate::websocket::websocket))
        .merge(crate::graphiql::routes())
        .with_state(state)
}

async fn post_graphql(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if cross_site_form(&headers) {
        let message = "a browser request must send Content-Type: application/json (cross-site form posts are refused)";
        return (StatusCode::FORBIDDEN, axum::Json(error_body(message, ErrorCode::Forbidden))).into_response();
    }
    let bytes = match read_body(&headers, body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match async_graphql::http::receive_body(content_type, &bytes[..], MultipartOptions::default()).await {
        Ok(request) => match crate::operation::nesting_problem(&request.query) {
            Some(problem) => bad_request(&problem),
            None => execute(&state, peer, &headers, request).await,
        },
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn get_graphql(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    if uri.query().is_none_or(|q| q.is_empty()) {
        if wants_html {
            return Html(crate::graphiql::page()).into_response();
        }
        return bad_request("a GET request needs a `query` parameter");
    }
    let mut request = match request_of_query_string(&uri) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    if let Some(problem) = crate::operation::nesting_problem(&request.query) {
        return bad_request(&problem);
    }
    if changes_state(&mut request) {
        return mutation_over_get();
    }
    execute(&state, peer, &headers, request).await
}

/// The parameters of a GET request, named as GraphQL over HTTP names them. async-graphql's
/// own parser reads `operation_name`, which no client sends; both spellings are taken.
#[derive(serde::Deserialize)]
struct GetParams {
    #[serde(default)]
    query: String,
    #[serde(rename = "operationName", alias = "operation_name")]
    operation_name: Option<String>,
    variables: Option<String>,
}

/// The request a GET's query string carries, or why it carries none.
fn request_of_query_string(uri: &axum::http::Uri) -> Result<async_graphql::Request, String> {
    let axum::extract::Query(params) = axum::extract::Query::<GetParams>::try_from_uri(uri)
        .map_err(|e| format!("invalid query string: {}", e.body_text()))?;
    // Parsed (or found parsed) now: the GET check below reads the document before it runs.
    let mut request = crate::parsed_queries::attach(async_graphql::Request::new(params.query));
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(text) = params.variables {
        let variables = serde_json::from_str(&text).map_err(|e| format!("invalid variables: {e}"))?;
        request = request.variables(async_graphql::Variables::from_json(variables));
    }
    Ok(request)
}

/// A POST a page on any site can make a browser send without asking (no CORS preflight):
/// it comes from a browser (browsers send `Origin` with every POST) and its content type is
/// one an HTML form can send. The body is read as JSON whatever its type, for curl users,
/// and the browser would attach the basic credentials it remembers, so such a request could
/// run a mutation as the customer. curl sends no `Origin`; GraphiQL and other browser
/// clients send `application/json`, which a foreign page cannot without a preflight that
/// Berth does not grant.
fn cross_site_form(headers: &HeaderMap) -> bool {
    if !headers.contains_key(header::ORIGIN) {
        return false;
    }
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match essence.as_deref() {
        None => true,
        Some(t) => matches!(t, "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"),
    }
}

/// Whether the operation the request selects is a mutation or subscription. GET must not
/// change anything (GraphQL over HTTP): a link or an `<img>` on another site would carry the
/// browser's remembered basic credentials. A document that does not parse, or names no
/// operation it holds, is left for the executor to answer.
fn changes_state(request: &mut async_graphql::Request) -> bool {
    crate::operation::selected_type(request).is_some_and(|ty| ty != async_graphql::parser::types::OperationType::Query)
}

fn mutation_over_get() -> Response {
    let body = error_body("mutations and subscriptions are not allowed over GET; use POST", ErrorCode::BadUserInput);
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")], axum::Json(body)).into_response()
}

async fn execute(
    state: &GraphqlState,
    peer: SocketAddr,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    let caller = match authenticate(&state.service, headers, peer).await {
        Ok(caller) => caller,
        Err(e) => return auth_failure(e),
    };
    let Some(caller) = caller else {
        // Anonymous: only public fields answer, and nothing is kept for nobody.
        let request = prepare_request(request, &state.service, None);
        let mut response = crate::telemetry::execute_observed(&state.schema, &state.metrics, request).await;
        crate::error::ensure_codes(&mut response);
        return GraphQLResponse::from(response).into_response();
    };
    let body = state.kept.answer(state, caller, request).await;
    // As async-graphql-axum answers (`GraphQLResponse`), for the same bytes either way.
    ([(header::CONTENT_TYPE, "application/graphql-response+json")], body).into_response()
}

/// No `Authorization` header: anonymous (only public fields answer). A header that is
/// malformed or wrong: refused before the operation runs.
async fn authenticate(service: &Service, headers: &HeaderMap, peer: SocketAddr) -> Result<Option<Caller>, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let presented = value.to_str().ok().and_then(Presented::from_authorization).ok_or(Error::Unauthenticated)?;
    service.authenticate(&presented, peer.ip()).await.map(Some)
}

pub(crate) fn error_body(message: &str, code: ErrorCode) -> serde_json::Value {
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

/// How much of an oversized body is read (and dropped) before answering 413: a client still
/// writing when the server closes gets a connection reset instead of the answer.
const DRAIN_LIMIT: usize = 8 * MAX_BODY;

/// The request body, at most [`MAX_BODY`] bytes; a longer one is answered 413 with a typed
/// error. A body whose declared length is over the limit is read (up to [`DRAIN_LIMIT`])
/// and dropped first, so the client sees the answer; one without a length is cut as it
/// streams, at the limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        let _ = axum::body::to_bytes(body, DRAIN_LIMIT).await;
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let over_limit = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large()
        } else {
            bad_request(&format!("could not read the request body: {e}"))
        }
    })
}

fn too_large() -> Response {
    let body = error_body(&format!("request body larger than {MAX_BODY} bytes"), ErrorCode::BadUserInput);
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}
