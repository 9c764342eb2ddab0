//! `/graphql/ws`: GraphQL over WebSocket, speaking `graphql-transport-ws` and the legacy
//! `graphql-ws`, from `connection_init` to the connection's end: credentials, the protocols'
//! messages and close codes, the per-customer socket limit (`crate::customer_sockets`), the
//! end of a session whose credential was revoked (`crate::sessions`), and the server's
//! shutdown. Operations are started and tracked by `crate::ws_operations`; what is written
//! is spelled by `crate::ws_messages`.

use std::net::SocketAddr;

use async_graphql::http::{ClientMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::GraphQLProtocol;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use berth_service::auth::Presented;
use berth_service::{Caller, Error};
use futures::future::BoxFuture;
use futures::FutureExt as _;

use crate::connection_end::{EndReason, OpenConnection};
use crate::http::GraphqlState;
use crate::ws_messages::{WsProtocol, CONNECTION_ACK, PONG};
use crate::ws_operations::{OperationRunner, Operations};

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

/// `/graphql/ws`, speaking `graphql-transport-ws` and the legacy `graphql-ws`. Credentials
/// arrive in the `connection_init` payload as `{"Authorization": "Basic …" | "Bearer …"}`
/// (key matched case-insensitively); a bad or missing one ends the connection with the
/// protocol's error before any operation runs: `connection_error` then close 1011 on
/// `graphql-ws`, close 4403 Forbidden on `graphql-transport-ws` (an operation before
/// `connection_init`: 4401, an invalid message: 4400, a second `connection_init`: 4429). A
/// customer already holding its limit of sockets on this gateway is refused the same way,
/// with 1013 Try Again Later on `graphql-transport-ws`. A connection not acknowledged within
/// [`WS_INIT_TIMEOUT`] is closed with 4408. Every operation on the socket runs like one over
/// HTTP: with the caller's per-request DataLoaders, every error carrying `extensions.code`.
pub(crate) async fn websocket(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    // Rejects an upgrade offering neither protocol (400).
    _protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = WsProtocol::offered(&headers).unwrap_or(WsProtocol::Legacy);
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
            // The connection's span, for as long as it is open: its customer once known, and
            // the close code it ended with. Its operations' spans are children of it. It is
            // not entered at each wake-up (each delivery), only where something is traced.
            let span = tracing::info_span!(
                "graphql.websocket",
                otel.name = "graphql websocket",
                protocol = protocol.name(),
                customer = tracing::field::Empty,
                close_code = tracing::field::Empty,
            );
            let shutdown = state.shutdown.clone();
            let open = shutdown.open();
            shutdown.track(Connection::new(state, peer, protocol, span, open).serve(socket))
        })
}

/// What the connection writes next.
enum Reply {
    Nothing,
    Text(String),
    /// Closes the connection with this code and reason.
    Close(u16, String),
    /// The legacy protocol's refusal: `connection_error`, then close 1011.
    Refuse(String),
    /// Told to end from outside: a revoked credential, missed revocations, the server stopping.
    Ended(EndReason),
    /// The socket failed: nothing more can be written.
    Gone,
}

/// What `connection_init` established.
struct Accepted {
    caller: Caller,
    /// Its credential's registration, which a revocation finds (left with the connection).
    _session: Option<crate::sessions::Session>,
    /// This socket's place among its customer's, held as long as the connection.
    _place: crate::customer_sockets::SocketPlace,
}

/// Why `connection_init` was refused, and what the client is told.
enum Refused {
    /// Missing, malformed, wrong or revoked credentials.
    Credentials(String),
    /// The customer already holds its limit of sockets on this gateway.
    TooManySockets(String),
}

/// One WebSocket connection, from `connection_init` to its end.
struct Connection {
    state: GraphqlState,
    peer: SocketAddr,
    protocol: WsProtocol,
    span: tracing::Span,
    /// Its place among the gateway's open connections, and how it is told to end.
    open: OpenConnection,
    /// Set once `connection_init` was received (a second one is refused).
    init_received: bool,
    accepted: Option<Accepted>,
    runner: Option<OperationRunner>,
}

impl Connection {
    fn new(
        state: GraphqlState,
        peer: SocketAddr,
        protocol: WsProtocol,
        span: tracing::Span,
        open: OpenConnection,
    ) -> Connection {
        Connection { state, peer, protocol, span, open, init_received: false, accepted: None, runner: None }
    }

    async fn serve(mut self, mut socket: WebSocket) {
        let init_deadline = tokio::time::sleep(WS_INIT_TIMEOUT);
        tokio::pin!(init_deadline);
        let end = self.open.end.clone();
        let mut operations = Operations::new(self.protocol);
        // While `connection_init` is checked, nothing else is read (as the protocols expect).
        let mut initialising: Option<BoxFuture<'static, Result<Accepted, Refused>>> = None;
        loop {
            let reply = tokio::select! {
                biased;
                why = std::future::poll_fn(|cx| end.poll(cx)) => Reply::Ended(why),
                outcome = async { initialising.as_mut().expect("guarded").await }, if initialising.is_some() => {
                    initialising = None;
                    self.initialised(outcome)
                }
                Some(message) = operations.next(), if !operations.is_empty() => Reply::Text(message),
                frame = socket.recv(), if initialising.is_none() => match frame {
                    Some(Ok(Message::Text(text))) => self.client_message(text.as_bytes(), &mut operations, &mut initialising),
                    Some(Ok(Message::Binary(data))) => self.client_message(&data, &mut operations, &mut initialising),
                    // Pings are answered by tungstenite; a close frame is answered, then the
                    // stream ends.
                    Some(Ok(_)) => Reply::Nothing,
                    Some(Err(e)) if is_too_long(&e) => {
                        Reply::Close(1009, format!("Message Too Big: at most {MAX_MESSAGE} bytes"))
                    }
                    Some(Err(_)) => Reply::Gone,
                    // The client ended the connection; it still gets a close frame of ours.
                    None => Reply::Close(1000, String::new()),
                },
                () = &mut init_deadline, if self.accepted.is_none() => {
                    Reply::Close(4408, "Connection initialisation timeout".to_owned())
                }
            };
            let text = match reply {
                Reply::Nothing => continue,
                Reply::Text(text) => text,
                Reply::Close(code, reason) => return self.close(&mut socket, code, reason).await,
                Reply::Refuse(message) => {
                    if self.send(&mut socket, crate::ws_messages::connection_error(&message)).await {
                        self.close(&mut socket, 1011, String::new()).await;
                    }
                    return;
                }
                Reply::Ended(why) => return self.end(&mut socket, why).await,
                Reply::Gone => return,
            };
            if !self.send(&mut socket, text).await {
                return;
            }
        }
    }

    /// Writes one message; `false` when the client is gone or has not read for
    /// [`WRITE_STALL`].
    async fn send(&self, socket: &mut WebSocket, text: String) -> bool {
        let mut send = std::pin::pin!(socket.send(Message::Text(text.into())));
        // Most writes complete at once: only one that waits is given a timer.
        if let Some(sent) = (&mut send).now_or_never() {
            return sent.is_ok();
        }
        matches!(tokio::time::timeout(WRITE_STALL, send).await, Ok(Ok(())))
    }

    async fn close(&self, socket: &mut WebSocket, code: u16, reason: String) {
        self.span.record("close_code", code);
        let close = CloseFrame { code, reason: close_reason(reason).into() };
        let _ = tokio::time::timeout(WRITE_STALL, socket.send(Message::Close(Some(close)))).await;
    }

    /// Closes a connection told to end: a session whose credential was revoked (4403, as a
    /// refused `connection_init`), or which may have missed a revocation (1012: reconnect and
    /// authenticate again), the legacy protocol hearing why in a `connection_error` first;
    /// or every connection of a stopping gateway (1001).
    async fn end(&self, socket: &mut WebSocket, why: EndReason) {
        let (code, reason) = match why {
            EndReason::Revoked => (4403, "Forbidden: credentials revoked"),
            EndReason::Interrupted => (1012, "events may have been missed: reconnect"),
            EndReason::ServerStopping => (1001, "Going Away: the server is stopping"),
        };
        if self.protocol == WsProtocol::Legacy
            && why != EndReason::ServerStopping
            && !self.send(socket, crate::ws_messages::connection_error(reason)).await
        {
            return;
        }
        self.close(socket, code, reason.to_owned()).await;
    }

    /// Reads one client message.
    fn client_message(
        &mut self,
        data: &[u8],
        operations: &mut Operations,
        initialising: &mut Option<BoxFuture<'static, Result<Accepted, Refused>>>,
    ) -> Reply {
        let transport_ws = self.protocol == WsProtocol::TransportWs;
        let message = match ClientMessage::from_bytes(data) {
            Ok(message) => message,
            Err(e) => return Reply::Close(if transport_ws { 4400 } else { 1002 }, e.to_string()),
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if std::mem::replace(&mut self.init_received, true) {
                    return match self.protocol {
                        WsProtocol::TransportWs => Reply::Close(4429, "Too many initialisation requests".to_owned()),
                        WsProtocol::Legacy => Reply::Refuse("Too many initialisation requests.".to_owned()),
                    };
                }
                *initialising = Some(self.initialise(payload.unwrap_or_default()));
                Reply::Nothing
            }
            ClientMessage::Start { id, payload } => {
                // The id is kept while the operation runs and repeated in each of its
                // messages (a 1 MB id made one alarm a 95 MB write per socket).
                if id.len() > MAX_OPERATION_ID {
                    return Reply::Close(4400, format!("operation id longer than {MAX_OPERATION_ID} bytes"));
                }
                let Some(runner) = &self.runner else {
                    return match self.protocol {
                        WsProtocol::TransportWs => Reply::Close(4401, "Unauthorized".to_owned()),
                        WsProtocol::Legacy => Reply::Close(1011, "The handshake is not completed.".to_owned()),
                    };
                };
                // graphql-transport-ws refuses a running id (its client would otherwise wait
                // for results that never come); the legacy protocol replaces the operation, as
                // its reference server did.
                if transport_ws && operations.is_running(&id) {
                    return Reply::Close(4409, format!("Subscriber for {id} already exists"));
                }
                operations.start(&id, runner.start(payload));
                Reply::Nothing
            }
            ClientMessage::Stop { id } => operations.stop(&id).map_or(Reply::Nothing, Reply::Text),
            ClientMessage::ConnectionTerminate => Reply::Close(1000, String::new()),
            ClientMessage::Ping { .. } => Reply::Text(PONG.to_owned()),
            ClientMessage::Pong { .. } => Reply::Nothing,
        }
    }

    /// Checks `connection_init`'s credentials and takes the socket's place among its
    /// customer's.
    fn initialise(&self, payload: serde_json::Value) -> BoxFuture<'static, Result<Accepted, Refused>> {
        use tracing::Instrument as _;
        let (state, peer, end) = (self.state.clone(), self.peer, self.open.end.clone());
        async move {
            let checked = async {
                let presented =
                    authorization_in(&payload).and_then(Presented::from_authorization).ok_or(Error::Unauthenticated)?;
                // Registered before the check, so that no revocation slips in between.
                let session =
                    presented.credential().map(|credential| state.sessions.open(&state.service, credential, end));
                let caller = state.service.authenticate(&presented, peer.ip()).await?;
                Ok::<_, Error>((caller, session))
            };
            let (caller, session) = checked.await.map_err(|e| Refused::Credentials(crate::gql_error(e).message))?;
            let place = state.sockets.take(caller.customer_id).ok_or_else(|| {
                let limit = state.sockets.limit();
                Refused::TooManySockets(format!(
                    "too many WebSockets: at most {limit} may be open at once per customer; close one, or try again later"
                ))
            })?;
            Ok(Accepted { caller, _session: session, _place: place })
        }
        .instrument(self.span.clone())
        .boxed()
    }

    /// The answer to `connection_init`, once checked.
    fn initialised(&mut self, outcome: Result<Accepted, Refused>) -> Reply {
        match outcome {
            Ok(accepted) => {
                self.span.record("customer", accepted.caller.customer_id);
                self.runner = Some(OperationRunner {
                    schema: self.state.schema.clone(),
                    service: self.state.service.clone(),
                    metrics: self.state.metrics.clone(),
                    shared: self.state.shared.clone(),
                    caller: accepted.caller,
                    span: self.span.clone(),
                    subscriptions: Default::default(),
                    queries: Default::default(),
                    unread: crate::lag_queue::LagBudget::new(MAX_UNREAD_BYTES_PER_SOCKET),
                });
                self.accepted = Some(accepted);
                Reply::Text(CONNECTION_ACK.to_owned())
            }
            // graphql-transport-ws: 4403 for credentials; 1013 Try Again Later for a customer
            // over its socket limit, which clients such as `graphql-ws` retry (4403 they take
            // as final).
            Err(Refused::Credentials(message)) => match self.protocol {
                WsProtocol::TransportWs => Reply::Close(4403, format!("Forbidden: {message}")),
                WsProtocol::Legacy => Reply::Refuse(message),
            },
            Err(Refused::TooManySockets(message)) => match self.protocol {
                WsProtocol::TransportWs => Reply::Close(1013, message),
                WsProtocol::Legacy => Reply::Refuse(message),
            },
        }
    }
}

/// Whether a read failed on a message or frame longer than [`MAX_MESSAGE`] (the connection
/// itself is fine: it can still carry the close frame saying so).
fn is_too_long(error: &axum::Error) -> bool {
    use std::error::Error as _;
    matches!(error.source().and_then(|e| e.downcast_ref()), Some(tungstenite::Error::Capacity(_)))
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

fn authorization_in(payload: &serde_json::Value) -> Option<&str> {
    payload
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str())
}
