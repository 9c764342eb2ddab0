//! `/graphql/ws`: GraphQL over WebSocket, speaking `graphql-transport-ws` and the legacy
//! `graphql-ws`, from `connection_init` to the connection's end: credentials, the protocols'
//! close codes, the per-connection subscription limit, the per-customer socket limit
//! (`crate::customer_sockets`), and the end of a session whose credential was revoked
//! (`crate::sessions`).

use std::net::SocketAddr;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::GraphQLProtocol;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use berth_service::auth::Presented;
use berth_service::{Caller, Error, Service};

use crate::http::GraphqlState;
use crate::{prepare_request, BerthSchema};

/// Read buffer of each WebSocket. tungstenite zero-fills it before every read attempt, and
/// the protocol polls the socket each time the connection's task wakes (every delivery),
/// so it is kept small: 4 KiB → 1 KiB halved the memory per idle subscriber (5.8 → 2.8 KiB)
/// and trimmed fan-out time. Longer client messages arrive in several reads.
pub const WS_READ_BUFFER: usize = 1024;

/// Subscriptions one WebSocket may run at once. Each holds a stream the connection polls on
/// every wake-up, so without a bound one client could make its connection's every
/// delivery cost as much as it likes, and hold memory without end. A client needing more
/// opens another connection.
pub const MAX_SUBSCRIPTIONS_PER_SOCKET: usize = 100;

/// Queries and mutations one WebSocket may have running at once. async-graphql reads every
/// waiting client message before it answers one, so a client pipelining queries without
/// waiting for answers had thousands running at ~150 KiB each (2 GiB in 13 s).
pub const MAX_QUERIES_PER_SOCKET: usize = 64;

/// Longest operation id a client may use (it is kept while the operation runs and repeated
/// in every message of it); a longer one closes the connection with 4400.
pub const MAX_OPERATION_ID: usize = 128;

/// How long one write to a client may wait for the client to read. A client that reads
/// nothing for this long is gone or stuck: the connection ends (without this, its loop
/// never came back to the init deadline or the server's shutdown).
pub const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes of subscription messages one WebSocket may have waiting unread, over all its
/// subscriptions, beyond what the kernel buffers for it. A connection that stops reading
/// would otherwise pin up to 1024 messages of up to 64 KiB for each of its 100
/// subscriptions; past this, the subscription a message was for is cut off
/// (`SUBSCRIBER_LAGGED`) and what it held released. As much as Linux buffers for a TCP
/// socket at most (`tcp_wmem`), and enough that a burst of ~200-byte alarms to 20
/// subscriptions of one socket is cut off no sooner than by the 1024-message bound.
pub const MAX_UNREAD_BYTES_PER_SOCKET: usize = 4 * 1024 * 1024;

/// Longest message a client may send: as long as a `/graphql` POST body may be. A longer
/// one closes the connection with 1009 Message Too Big before it is read (tungstenite
/// would take 64 MiB, and a subscription keeps its document as long as it runs).
pub const MAX_MESSAGE: usize = crate::http::MAX_BODY;

/// Longest subscription document, its variables (as JSON) included. A subscription holds
/// them for as long as it runs, and a connection runs 100; real ones are a few hundred
/// bytes. Queries and mutations over the socket answer once and may be [`MAX_MESSAGE`].
pub const MAX_SUBSCRIPTION_DOCUMENT: usize = 16 * 1024;

/// How long a WebSocket may stay open without a successful `connection_init`.
pub const WS_INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Closes this gateway's WebSockets when it stops: each gets 1001 Going Away, so clients
/// reconnect at once (to another gateway, if there is one) instead of seeing the
/// connection drop.
#[derive(Debug, Clone, Default)]
pub struct WebSocketShutdown {
    stopping: tokio_util::sync::CancellationToken,
    open: tokio_util::task::TaskTracker,
}

impl WebSocketShutdown {
    /// Tells every open WebSocket to close; one opened from now on closes at once.
    pub fn begin(&self) {
        self.stopping.cancel();
        self.open.close();
    }

    /// Waits until every WebSocket has closed, at most `grace` (a client that does not read
    /// may never take its close frame); whether all did.
    pub async fn finished(&self, grace: std::time::Duration) -> bool {
        tokio::time::timeout(grace, self.open.wait()).await.is_ok()
    }
}

/// `/graphql/ws`, speaking `graphql-transport-ws` and the legacy `graphql-ws`. Credentials
/// arrive in the `connection_init` payload as `{"Authorization": "Basic …" | "Bearer …"}`
/// (key matched case-insensitively); a bad or missing one ends the connection with the
/// protocol's error before any operation runs: `connection_error` on `graphql-ws`, close
/// 4403 Forbidden on `graphql-transport-ws` (an operation before `connection_init`: 4401,
/// an invalid message: 4400). A customer already holding its limit of sockets on this
/// gateway is refused the same way, with 1013 Try Again Later on `graphql-transport-ws`.
/// A connection not acknowledged within [`WS_INIT_TIMEOUT`] is closed with 4408. Every
/// operation on the socket runs like one over HTTP: with the caller's per-request
/// DataLoaders, every error carrying `extensions.code`.
pub(crate) async fn websocket(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    // Rejects an upgrade offering neither protocol (400).
    _protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let transport_ws = speaks_transport_ws(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // Subscribers mostly listen: a small read buffer (default 128 KiB per socket) keeps
        // idle subscriptions cheap; larger client messages still arrive, in more reads.
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(MAX_MESSAGE)
        // A frame a little too long is read whole and refused with 1009; one refused at its
        // header would leave its bytes unread, and closing on unread bytes sends a reset
        // that can overtake the close frame.
        .max_frame_size(4 * MAX_MESSAGE)
        .on_upgrade(move |socket| {
            use tracing::Instrument as _;
            // The connection's span, for as long as it is open: its customer once known, and
            // the close code it ended with. Its subscriptions' spans are children of it.
            let span = tracing::info_span!(
                "graphql.websocket",
                otel.name = "graphql websocket",
                protocol = if transport_ws { "graphql-transport-ws" } else { "graphql-ws" },
                customer = tracing::field::Empty,
                close_code = tracing::field::Empty,
            );
            let open = state.shutdown.open.clone();
            open.track_future(serve_websocket(socket, state, peer, transport_ws).instrument(span))
        })
}

/// One WebSocket connection, from `connection_init` to its end. Written out (instead of
/// `GraphQLWebSocket::serve`) for the init timeout and the protocol's close codes.
async fn serve_websocket(
    socket: axum::extract::ws::WebSocket,
    state: GraphqlState,
    peer: SocketAddr,
    transport_ws: bool,
) {
    use std::sync::{Arc, OnceLock};

    use async_graphql::http::{WebSocketProtocols, WsMessage};
    use axum::extract::ws::{CloseFrame, Message};
    use futures::{SinkExt as _, StreamExt as _};

    let protocol =
        if transport_ws { WebSocketProtocols::GraphQLWS } else { WebSocketProtocols::SubscriptionsTransportWS };
    let service = state.service.clone();
    let executor = WsExecutor {
        schema: state.schema.clone(),
        service: state.service.clone(),
        metrics: state.metrics.clone(),
        shared: state.shared.clone(),
        caller: Default::default(),
        subscriptions: Default::default(),
        queries: Default::default(),
        unread: crate::lag_queue::LagBudget::new(MAX_UNREAD_BYTES_PER_SOCKET),
    };
    let authenticated = executor.caller.clone();
    let acknowledged = executor.caller.clone();
    let refused = Arc::new(OnceLock::<Refusal>::new());
    let refused_by_init = refused.clone();
    let session = Arc::new(OnceLock::<crate::sessions::Session>::new());
    let session_of_init = session.clone();
    let sessions = state.sessions.clone();
    // Held as long as the connection: this socket's place among its customer's.
    let place = Arc::new(OnceLock::<crate::customer_sockets::SocketPlace>::new());
    let place_of_init = place.clone();
    let customer_sockets = state.sockets.clone();

    let stopping = state.shutdown.stopping.clone();
    let running = Arc::new(crate::operation_ids::RunningIds::new(transport_ws));
    let admitting = running.clone();

    let too_long = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let too_long_seen = too_long.clone();

    let (mut sink, stream) = socket.split();
    // Text and binary frames are protocol messages; a read error ends the connection, and so
    // does an operation under an id too long, or running (graphql-transport-ws: before it
    // replaces the running one).
    let input = stream
        .take_while(move |frame| {
            if frame.as_ref().is_err_and(is_too_long) {
                too_long_seen.store(true, std::sync::atomic::Ordering::Release);
            }
            std::future::ready(frame.is_ok())
        })
        .filter_map(|frame| {
            std::future::ready(match frame {
                Ok(frame @ (Message::Text(_) | Message::Binary(_))) => Some(frame.into_data()),
                _ => None,
            })
        })
        .take_while(move |data| std::future::ready(admitting.admit(data)));
    let output =
        async_graphql::http::WebSocket::new(executor, input, protocol).on_connection_init(move |payload| async move {
            let caller = async {
                let presented =
                    authorization_in(&payload).and_then(Presented::from_authorization).ok_or(Error::Unauthenticated)?;
                // Registered before the check, so that no revocation slips in between.
                let registered = presented.credential().map(|credential| sessions.open(&service, credential));
                let caller = service.authenticate(&presented, peer.ip()).await?;
                if let Some(registered) = registered {
                    let _ = session_of_init.set(registered);
                }
                Ok(caller)
            };
            let caller = match caller.await {
                Ok(caller) => caller,
                Err(e) => {
                    let _ = refused_by_init.set(Refusal::Credentials);
                    return Err(crate::gql_error(e));
                }
            };
            let Some(taken) = customer_sockets.take(caller.customer_id) else {
                let _ = refused_by_init.set(Refusal::TooManySockets);
                return Err(too_many_sockets(customer_sockets.limit()));
            };
            let _ = place_of_init.set(taken);
            tracing::Span::current().record("customer", caller.customer_id);
            let _ = authenticated.set(caller);
            let mut data = async_graphql::Data::default();
            data.insert(caller);
            Ok(data)
        });
    futures::pin_mut!(output);
    // Legacy protocol: whether the connection was refused (`connection_error`), which its
    // close then says (1011).
    let mut connection_error_sent = false;
    let init_deadline = tokio::time::sleep(WS_INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    loop {
        let ended = std::future::poll_fn(|cx| match session.get() {
            Some(session) => session.poll_ended(cx),
            // Not authenticated yet: the acknowledgement wakes this loop again.
            None => std::task::Poll::Pending,
        });
        let message = tokio::select! {
            message = output.next() => match message {
                Some(message) => message,
                None => match running.refusal() {
                    // The input ended at an operation under a running or too long id.
                    Some((code, reason)) => WsMessage::Close(code, reason),
                    None if too_long.load(std::sync::atomic::Ordering::Acquire) => {
                        WsMessage::Close(1009, format!("Message Too Big: at most {MAX_MESSAGE} bytes"))
                    }
                    // async-graphql just ends the connection (after a legacy
                    // `connection_error`, or `connection_terminate`); the legacy protocol's
                    // reference server closed it, with 1011 after an error, so clients see
                    // a close, not an abnormal end.
                    None => WsMessage::Close(if connection_error_sent { 1011 } else { 1000 }, String::new()),
                },
            },
            _ = &mut init_deadline, if acknowledged.get().is_none() => {
                WsMessage::Close(4408, "Connection initialisation timeout".to_owned())
            }
            _ = stopping.cancelled() => WsMessage::Close(1001, "Going Away: the server is stopping".to_owned()),
            why = ended => {
                end_session(&mut sink, why, transport_ws).await;
                break;
            }
        };
        let frame = match message {
            WsMessage::Text(text) => {
                if transport_ws {
                    running.sent(&text);
                } else {
                    connection_error_sent |= text.starts_with(r#"{"type":"connection_error""#);
                }
                Message::Text(text.into())
            }
            WsMessage::Close(code, reason) => {
                let (code, reason) =
                    if transport_ws { transport_ws_close(code, reason, &refused) } else { (code, reason) };
                tracing::Span::current().record("close_code", code);
                let close = CloseFrame { code, reason: close_reason(reason).into() };
                let _ = sink.send(Message::Close(Some(close))).await;
                break;
            }
        };
        if !matches!(tokio::time::timeout(WRITE_STALL, sink.send(frame)).await, Ok(Ok(()))) {
            break;
        }
    }
}

/// Whether a read failed on a message or frame longer than [`MAX_MESSAGE`] (the connection
/// itself is fine: it can still carry the close frame saying so).
fn is_too_long(error: &axum::Error) -> bool {
    use std::error::Error as _;
    matches!(error.source().and_then(|e| e.downcast_ref()), Some(tungstenite::Error::Capacity(_)))
}

/// Closes a session whose credential was revoked (4403, as a refused `connection_init`), or
/// which may have missed a revocation (1012: reconnect and authenticate again). The legacy
/// protocol hears why in a `connection_error` first.
async fn end_session(
    sink: &mut futures::stream::SplitSink<axum::extract::ws::WebSocket, axum::extract::ws::Message>,
    why: crate::sessions::SessionEnd,
    transport_ws: bool,
) {
    use axum::extract::ws::{CloseFrame, Message};
    use futures::SinkExt as _;

    let (code, reason) = match why {
        crate::sessions::SessionEnd::Revoked => (4403, "Forbidden: credentials revoked"),
        crate::sessions::SessionEnd::Interrupted => (1012, "events may have been missed: reconnect"),
    };
    if !transport_ws {
        let error = serde_json::json!({ "type": "connection_error", "payload": { "message": reason } });
        let _ = sink.send(Message::Text(error.to_string().into())).await;
    }
    tracing::Span::current().record("close_code", code);
    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

/// Whether the upgrade speaks `graphql-transport-ws` (chosen as `GraphQLProtocol` chooses:
/// the first protocol offered that is known).
fn speaks_transport_ws(headers: &HeaderMap) -> bool {
    use async_graphql::http::WebSocketProtocols;
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| offered.split(',').find_map(|p| p.trim().parse::<WebSocketProtocols>().ok()))
        == Some(WebSocketProtocols::GraphQLWS)
}

/// Why `connection_init` was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Missing, malformed, wrong or revoked credentials.
    Credentials,
    /// The customer already holds its limit of sockets on this gateway.
    TooManySockets,
}

/// The refusal of a socket over its customer's limit; the client may retry once it closed
/// another. Only the message reaches the client (the close reason, or `connection_error`).
fn too_many_sockets(limit: usize) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "too many WebSockets: at most {limit} may be open at once per customer; close one, or try again later"
    ))
}

/// The close codes `graphql-transport-ws` prescribes, where async-graphql uses generic ones:
/// refused credentials 4403 (it closes with 1002), an operation before the connection is
/// acknowledged 4401 (1011), an invalid message 4400 (1002). A customer over its socket
/// limit gets 1013 Try Again Later, which clients such as `graphql-ws` retry, not 4403,
/// which they take as final.
fn transport_ws_close(code: u16, reason: String, refused: &std::sync::OnceLock<Refusal>) -> (u16, String) {
    match code {
        1002 => match refused.get() {
            Some(Refusal::Credentials) => (4403, format!("Forbidden: {reason}")),
            Some(Refusal::TooManySockets) => (1013, reason),
            None => (4400, reason),
        },
        1011 => (4401, "Unauthorized".to_owned()),
        other => (other, reason),
    }
}

/// A close frame's reason is at most 123 bytes.
fn close_reason(mut reason: String) -> String {
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Runs the operations of one WebSocket connection as `execute` runs one over HTTP: the
/// authenticated caller and its own DataLoaders in every request, `extensions.code` on every
/// error.
#[derive(Clone)]
struct WsExecutor {
    schema: BerthSchema,
    service: Service,
    metrics: crate::GraphqlMetrics,
    shared: crate::shared_streams::SharedStreams,
    /// Set once `connection_init` authenticated; async-graphql runs no operation before.
    caller: std::sync::Arc<std::sync::OnceLock<Caller>>,
    /// Subscriptions of this connection whose streams are alive.
    subscriptions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Queries and mutations of this connection not answered yet.
    queries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// What this connection's subscriptions have not read yet.
    unread: std::sync::Arc<crate::lag_queue::LagBudget>,
}

/// One of a connection's [`MAX_SUBSCRIPTIONS_PER_SOCKET`] (or [`MAX_QUERIES_PER_SOCKET`])
/// places, held by an operation's stream and given back when the stream ends or is dropped
/// (its answer, client `complete`/`stop`, the connection's end).
struct OperationPlace(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl OperationPlace {
    fn take(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>, limit: usize) -> Option<OperationPlace> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| OperationPlace(count.clone()))
    }
}

impl Drop for OperationPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The one answer to a subscription over the connection's limit.
fn too_many_subscriptions() -> async_graphql::Response {
    let message = format!(
        "at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions may run at once on one connection: \
         complete one, or open another connection"
    );
    refused_operation(message, "TOO_MANY_SUBSCRIPTIONS")
}

/// The one answer to a query or mutation over the connection's limit.
fn too_many_queries() -> async_graphql::Response {
    let message = format!(
        "at most {MAX_QUERIES_PER_SOCKET} queries and mutations may run at once on one connection: \
         wait for their answers"
    );
    refused_operation(message, "TOO_MANY_OPERATIONS")
}

fn bad_user_input(message: String) -> async_graphql::Response {
    refused_operation(message, crate::ErrorCode::BadUserInput.as_str())
}

/// An operation's only answer, as its stream.
fn answer_once(response: async_graphql::Response) -> futures::stream::BoxStream<'static, async_graphql::Response> {
    use futures::StreamExt as _;
    futures::stream::once(async { response }).boxed()
}

/// The one answer to an operation refused before it runs, with its `extensions.code`.
fn refused_operation(message: String, code: &str) -> async_graphql::Response {
    let mut error = async_graphql::ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    async_graphql::Response::from_errors(vec![error])
}

impl WsExecutor {
    /// Runs a prepared query or mutation as `/graphql` runs one.
    async fn execute_prepared(&self, request: async_graphql::Request) -> async_graphql::Response {
        let mut response = crate::telemetry::execute_observed(&self.schema, &self.metrics, request).await;
        crate::error::ensure_codes(&mut response);
        response
    }
}

impl async_graphql::Executor for WsExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        if let Some(problem) = crate::operation::nesting_problem(&request.query) {
            return bad_user_input(problem);
        }
        let request = prepare_request(request, &self.service, self.caller.get().copied());
        self.execute_prepared(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<std::sync::Arc<async_graphql::Data>>,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        use futures::StreamExt as _;
        let caller = self.caller.get().copied();
        if let Some(problem) = crate::operation::nesting_problem(&request.query) {
            return answer_once(bad_user_input(problem));
        }
        let mut request = prepare_request(request, &self.service, caller);
        let document = request.query.len() + crate::shared_streams::json_len(&request.variables);
        if document > MAX_SUBSCRIPTION_DOCUMENT && crate::shared_streams::is_subscription(&mut request) {
            return answer_once(bad_user_input(format!(
                "a subscription's document and variables may be at most {MAX_SUBSCRIPTION_DOCUMENT} bytes; \
                 this one is {document}"
            )));
        }
        if let Some(problem) = crate::operation::subscription_root_problem(&mut request) {
            return answer_once(bad_user_input(problem));
        }
        let Some(c) = caller.filter(|_| crate::shared_streams::is_subscription(&mut request)) else {
            // Queries and mutations (both protocols send them as subscriptions) answer once,
            // with the span, latency and error count they get over HTTP.
            let Some(place) = OperationPlace::take(&self.queries, MAX_QUERIES_PER_SOCKET) else {
                return answer_once(too_many_queries());
            };
            let this = self.clone();
            return futures::stream::once(async move {
                let _held = place;
                this.execute_prepared(request).await
            })
            .boxed();
        };
        let Some(place) = OperationPlace::take(&self.subscriptions, MAX_SUBSCRIPTIONS_PER_SOCKET) else {
            return answer_once(too_many_subscriptions());
        };
        let open = self.metrics.open_subscription();
        let span = crate::telemetry::subscription_span(&self.metrics, &mut request);
        let run = {
            let schema = self.schema.clone();
            move |request: async_graphql::Request| {
                schema
                    .execute_stream_with_session_data(request, session_data.unwrap_or_default())
                    .map(|mut response| {
                        crate::error::ensure_codes(&mut response);
                        response
                    })
                    .boxed()
            }
        };
        // Identical subscriptions of one customer share one execution.
        self.shared
            .subscribe(c.customer_id, request, &self.unread, run)
            .map(move |response| {
                let _held = (&open, &place);
                crate::telemetry::record_subscription_error(&span, &response);
                response
            })
            .boxed()
    }
}

fn authorization_in(payload: &serde_json::Value) -> Option<&str> {
    payload
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str())
}
