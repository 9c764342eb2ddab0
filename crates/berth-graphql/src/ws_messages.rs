//! The wire format of GraphQL over WebSocket: what the server writes, in
//! `graphql-transport-ws` and in the legacy `graphql-ws`, and [`Payload`], a response
//! serialized once however many subscribers write it.
//!
//! Client messages are read with async-graphql's `ClientMessage`, which takes both
//! protocols' spellings (`subscribe`/`start`, `complete`/`stop`).

use async_graphql::Response;

/// Which of the two protocols a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsProtocol {
    /// `graphql-transport-ws` (the graphql-ws library): `next`, `error`, close codes 44xx.
    TransportWs,
    /// The legacy `graphql-ws` (subscriptions-transport-ws): `data`, `connection_error`.
    Legacy,
}

impl WsProtocol {
    /// The protocol an upgrade speaks: the first one offered that is known.
    pub(crate) fn offered(headers: &axum::http::HeaderMap) -> Option<WsProtocol> {
        let offered = headers.get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
        offered.split(',').find_map(|p| match p.trim() {
            p if p.eq_ignore_ascii_case("graphql-transport-ws") => Some(WsProtocol::TransportWs),
            p if p.eq_ignore_ascii_case("graphql-ws") => Some(WsProtocol::Legacy),
            _ => None,
        })
    }

    /// The `Sec-WebSocket-Protocol` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WsProtocol::TransportWs => "graphql-transport-ws",
            WsProtocol::Legacy => "graphql-ws",
        }
    }
}

pub(crate) const CONNECTION_ACK: &str = r#"{"type":"connection_ack"}"#;
pub(crate) const PONG: &str = r#"{"type":"pong"}"#;

/// The legacy protocol's refusal of a connection.
pub(crate) fn connection_error(message: &str) -> String {
    serde_json::json!({ "type": "connection_error", "payload": { "message": message } }).to_string()
}

/// The messages of one operation, with its id encoded once.
#[derive(Debug)]
pub(crate) struct OperationMessages {
    /// `{"type":"next","id":<id>,"payload":` (`data` in the legacy protocol): every result is
    /// this, its payload and `}`.
    result_prefix: String,
    /// The id as a JSON string.
    id: String,
}

impl OperationMessages {
    pub(crate) fn new(protocol: WsProtocol, id: &str) -> OperationMessages {
        let id = serde_json::Value::from(id).to_string();
        let kind = match protocol {
            WsProtocol::TransportWs => "next",
            WsProtocol::Legacy => "data",
        };
        OperationMessages { result_prefix: format!(r#"{{"type":"{kind}","id":{id},"payload":"#), id }
    }

    /// A result (`next` / `data`).
    pub(crate) fn result(&self, payload: &Payload) -> String {
        let mut message = String::with_capacity(self.result_prefix.len() + payload.json.len() + 1);
        message.push_str(&self.result_prefix);
        message.push_str(&payload.json);
        message.push('}');
        message
    }

    /// `graphql-transport-ws`'s end of an operation refused before it ran; no `complete`
    /// follows.
    pub(crate) fn error(&self, errors: &str) -> String {
        format!(r#"{{"type":"error","id":{},"payload":{errors}}}"#, self.id)
    }

    pub(crate) fn complete(&self) -> String {
        format!(r#"{{"type":"complete","id":{}}}"#, self.id)
    }
}

/// A response as connections write it, serialized once: ten thousand subscribers of one
/// shared subscription write the same bytes, instead of each copying the response and
/// serializing its copy.
#[derive(Debug)]
pub(crate) struct Payload {
    /// The response as JSON.
    json: String,
    /// The errors alone as JSON, when the response is a request error: errors only, none
    /// at a field's path, so nothing ran (GraphQL's "request error": a document that does
    /// not parse or validate, or one Berth refused). `graphql-transport-ws` sends it as an
    /// `error` message when it is an operation's first answer.
    request_errors: Option<String>,
    /// Whether it carries errors.
    is_error: bool,
    /// `extensions.code` of its first error.
    error_code: Option<String>,
}

impl Payload {
    pub(crate) fn new(response: &Response) -> Payload {
        let json = serde_json::to_string(response).unwrap_or_else(|e| {
            let message = serde_json::Value::from(format!("the result could not be written: {e}"));
            format!(r#"{{"data":null,"errors":[{{"message":{message},"extensions":{{"code":"INTERNAL"}}}}]}}"#)
        });
        let is_request_error = response.data == async_graphql::Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|e| e.path.is_empty());
        let request_errors = is_request_error.then(|| serde_json::to_string(&response.errors).ok()).flatten();
        let error_code = response.errors.first().and_then(|e| match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        });
        Payload { json, request_errors, is_error: !response.errors.is_empty(), error_code }
    }

    /// Bytes a connection writes for it (its message adds the id and the type).
    pub(crate) fn len(&self) -> usize {
        self.json.len()
    }

    pub(crate) fn is_error(&self) -> bool {
        self.is_error
    }

    pub(crate) fn request_errors(&self) -> Option<&str> {
        self.request_errors.as_deref()
    }

    pub(crate) fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: bool) -> async_graphql::ServerError {
        let mut error = async_graphql::ServerError::new("nope", None);
        if path {
            error.path = vec![async_graphql::PathSegment::Field("alarms".into())];
        }
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", "BAD_USER_INPUT");
        error.extensions = Some(extensions);
        error
    }

    #[test]
    fn results_carry_the_payload_as_serialized_once() {
        let data = async_graphql::Value::from_json(serde_json::json!({ "alarms": { "id": 7 } })).unwrap();
        let payload = Payload::new(&Response::new(data));
        for (protocol, kind) in [(WsProtocol::TransportWs, "next"), (WsProtocol::Legacy, "data")] {
            let messages = OperationMessages::new(protocol, "a\"b");
            let sent: serde_json::Value = serde_json::from_str(&messages.result(&payload)).unwrap();
            assert_eq!(
                sent,
                serde_json::json!({ "type": kind, "id": "a\"b", "payload": { "data": { "alarms": { "id": 7 } } } })
            );
            let done: serde_json::Value = serde_json::from_str(&messages.complete()).unwrap();
            assert_eq!(done, serde_json::json!({ "type": "complete", "id": "a\"b" }));
        }
        assert!(!payload.is_error() && payload.request_errors().is_none() && payload.error_code().is_none());
    }

    #[test]
    fn only_errors_at_no_path_are_request_errors() {
        let refused = Payload::new(&Response::from_errors(vec![error(false)]));
        let errors = refused.request_errors().expect("a request error");
        let sent: serde_json::Value =
            serde_json::from_str(&OperationMessages::new(WsProtocol::TransportWs, "1").error(errors)).unwrap();
        assert_eq!(sent["type"], "error");
        assert_eq!(sent["payload"][0]["message"], "nope");
        assert_eq!(sent["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
        // A field error (it has a path) ran: it is a result carrying errors.
        assert!(Payload::new(&Response::from_errors(vec![error(true)])).request_errors().is_none());
        let mut partial = Response::new(async_graphql::Value::from_json(serde_json::json!({ "a": 1 })).unwrap());
        partial.errors.push(error(false));
        assert!(Payload::new(&partial).request_errors().is_none(), "data came with it");
    }

    #[test]
    fn the_offered_protocol_is_the_first_known() {
        let offer = |v: &'static str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(axum::http::header::SEC_WEBSOCKET_PROTOCOL, axum::http::HeaderValue::from_static(v));
            WsProtocol::offered(&headers)
        };
        assert_eq!(offer("graphql-transport-ws"), Some(WsProtocol::TransportWs));
        assert_eq!(offer("chat, graphql-ws, graphql-transport-ws"), Some(WsProtocol::Legacy));
        assert_eq!(offer("chat"), None);
    }
}
