//! A small GraphQL-over-WebSocket client for the black-box tests, speaking either
//! `graphql-transport-ws` (the graphql-ws library's protocol) or the legacy `graphql-ws`
//! (subscriptions-transport-ws). Not a module of `common` (that would make every test target
//! compile it); include it with `#[path = "common/ws.rs"] mod ws;`.
//!
//! ```ignore
//! let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &customer.auth()).await; // init + ack
//! let id = ws.subscribe("subscription { alarms { id } }", json!({})).await;
//! let data = ws.next_data(&id).await;           // `next` / `data` for `id`, its `payload.data`
//! ```
//!
//! Every wait is bounded by [`WAIT`] (a failure bound, not a timing assumption): a frame that
//! does not come panics with what was expected.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The longest any single frame may take to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`: `subscribe` / `next` / `error` / `complete`; closes with 44xx.
    TransportWs,
    /// Legacy `graphql-ws`: `start` / `data` / `stop` / `complete`; `connection_error`.
    LegacyWs,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::TransportWs, Protocol::LegacyWs];

    /// The `Sec-WebSocket-Protocol` value.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }

    pub fn subscribe_type(self) -> &'static str {
        match self {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        }
    }

    /// The type of a message carrying a result.
    pub fn data_type(self) -> &'static str {
        match self {
            Protocol::TransportWs => "next",
            Protocol::LegacyWs => "data",
        }
    }
}

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame, parsed as JSON.
    Json(Value),
    /// A close frame: code and reason (`None` when the frame carried no code).
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame (EOF or reset).
    Ended(String),
}

pub struct Ws {
    socket: WebSocketStream<TcpStream>,
    pub protocol: Protocol,
    next_id: u64,
}

impl Ws {
    /// Connects to `/graphql/ws` (no `connection_init` sent yet).
    pub async fn connect(addr: SocketAddr, protocol: Protocol) -> Ws {
        Ws::connect_with(addr, protocol, None).await
    }

    /// Like [`Ws::connect`]; `recv_buffer` sets `SO_RCVBUF` before connecting, so a client
    /// that stops reading fills its window (and stalls the server's writes) quickly.
    pub async fn connect_with(addr: SocketAddr, protocol: Protocol, recv_buffer: Option<u32>) -> Ws {
        let socket = TcpSocket::new_v4().expect("tcp socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect to berth");
        let mut request = format!("ws://{addr}/graphql/ws").into_client_request().expect("websocket request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol.name()));
        let (socket, response) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("websocket handshake timed out")
            .expect("websocket handshake");
        let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        assert_eq!(chosen, Some(protocol.name()), "the server must pick the protocol asked for");
        Ws { socket, protocol, next_id: 0 }
    }

    /// Connects, sends `connection_init` with `{"Authorization": <header>}` and asserts
    /// `connection_ack`.
    pub async fn open(addr: SocketAddr, protocol: Protocol, authorization: &str) -> Ws {
        let mut ws = Ws::connect(addr, protocol).await;
        ws.init_ok(json!({ "Authorization": authorization })).await;
        ws
    }

    /// Sends one JSON text frame.
    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.expect("send a websocket frame");
    }

    /// Sends `connection_init` with `payload` (or without any payload for `Value::Null`).
    pub async fn send_init(&mut self, payload: Value) {
        let message = if payload.is_null() {
            json!({ "type": "connection_init" })
        } else {
            json!({ "type": "connection_init", "payload": payload })
        };
        self.send(message).await;
    }

    /// Sends `connection_init` and asserts the answer is `connection_ack`.
    pub async fn init_ok(&mut self, payload: Value) {
        self.send_init(payload).await;
        match self.frame().await {
            Frame::Json(m) if m["type"] == "connection_ack" => {}
            other => panic!("expected connection_ack ({}), got {other:?}", self.protocol.name()),
        }
    }

    /// The next frame the server sends, skipping keep-alives (`ka`, websocket ping/pong) and
    /// answering a protocol `ping` with `pong`; panics when nothing comes within [`WAIT`].
    pub async fn frame(&mut self) -> Frame {
        match self.frame_within(WAIT).await {
            Some(frame) => frame,
            None => panic!("no frame from the server within {WAIT:?} ({})", self.protocol.name()),
        }
    }

    /// Like [`Ws::frame`], `None` when nothing came within `wait`.
    pub async fn frame_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            let message = match next {
                None => return Some(Frame::Ended("stream ended".into())),
                Some(Err(e)) => return Some(Frame::Ended(e.to_string())),
                Some(Ok(m)) => m,
            };
            match message {
                Message::Text(text) => {
                    let value: Value =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON text frame {text:?}: {e}"));
                    match value["type"].as_str() {
                        Some("ka") => continue,
                        Some("ping") if self.protocol == Protocol::TransportWs => {
                            self.send(json!({ "type": "pong" })).await;
                            continue;
                        }
                        _ => return Some(Frame::Json(value)),
                    }
                }
                Message::Close(frame) => {
                    return Some(Frame::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string()))));
                }
                Message::Binary(b) => panic!("unexpected binary frame of {} bytes", b.len()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// Starts an operation (`subscribe` / `start`) and returns its id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let message = json!({
            "type": self.protocol.subscribe_type(),
            "id": id,
            "payload": { "query": query, "variables": variables },
        });
        self.send(message).await;
        id
    }

    /// Ends operation `id` from the client's side (`complete` / `stop`).
    pub async fn stop(&mut self, id: &str) {
        let kind = match self.protocol {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        };
        self.send(json!({ "type": kind, "id": id })).await;
    }

    /// The next frame for operation `id` (a `next`/`data`, `error` or `complete` message);
    /// panics on anything else, a close included.
    pub async fn message_for(&mut self, id: &str) -> Value {
        match self.frame().await {
            Frame::Json(m) if m["id"] == id => m,
            other => panic!("expected a message for operation {id}, got {other:?}"),
        }
    }

    /// `payload.data` of the next result of operation `id`; panics on errors or completion.
    pub async fn next_data(&mut self, id: &str) -> Value {
        let m = self.message_for(id).await;
        assert_eq!(m["type"], self.protocol.data_type(), "expected a result, got {m}");
        assert!(m["payload"].get("errors").is_none(), "the result carries errors: {m}");
        m["payload"]["data"].clone()
    }

    /// Asserts that operation `id` failed without any data: either an `error` message
    /// (graphql-transport-ws) or one result carrying only errors, then `complete`. Returns
    /// the errors.
    pub async fn expect_error(&mut self, id: &str) -> Value {
        let m = self.message_for(id).await;
        let errors = match m["type"].as_str() {
            Some("error") => m["payload"].clone(),
            Some(t) if t == self.protocol.data_type() => {
                let data = &m["payload"]["data"];
                assert!(
                    data.is_null() || data.as_object().is_some_and(|o| o.values().all(Value::is_null)),
                    "a failed operation must carry no data: {m}"
                );
                let done = self.message_for(id).await;
                assert_eq!(done["type"], "complete", "a failed operation must complete: {done}");
                m["payload"]["errors"].clone()
            }
            _ => panic!("expected an error for operation {id}, got {m}"),
        };
        assert!(errors.as_array().is_some_and(|e| !e.is_empty()), "no errors in {m}");
        errors
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
