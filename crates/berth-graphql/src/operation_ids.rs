//! The ids of a `graphql-transport-ws` connection's running operations.
//!
//! The protocol closes a connection that subscribes under an id still running with 4409
//! ("Subscriber for <id> already exists"). async-graphql would instead replace the running
//! subscription, and its client would wait for alarms that never come, told nothing.
//! Only client messages (few) are parsed, as the executor parses them; of the server's, only
//! `complete` is, found by its prefix, so a delivery costs one failed prefix comparison.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use async_graphql::http::ClientMessage;

/// How async-graphql begins a `complete` message (`#[serde(tag = "type")]` writes the tag first).
const COMPLETE_PREFIX: &str = r#"{"type":"complete","#;

#[derive(Default)]
pub(crate) struct RunningIds {
    running: Mutex<HashSet<String>>,
    reused: OnceLock<String>,
}

#[derive(serde::Deserialize)]
struct Completed<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

impl RunningIds {
    /// Reads a message from the client. `false` when it subscribes under a running id: it
    /// must not reach the executor, and the connection closes with [`RunningIds::reused`].
    pub(crate) fn admit(&self, frame: &[u8]) -> bool {
        // Read as the executor reads it, so that every spelling it takes for a subscription
        // counts (`subscribe` or the legacy `start`, an object or serde's array form).
        let Ok(ClientMessage::Start { id, .. }) = ClientMessage::from_bytes(frame) else {
            return true;
        };
        let fresh = self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone());
        if !fresh {
            let _ = self.reused.set(id);
        }
        fresh
    }

    /// Reads a message sent to the client: a `complete` frees its id (the operation ended,
    /// by itself or at the client's `complete`).
    pub(crate) fn sent(&self, text: &str) {
        if !text.starts_with(COMPLETE_PREFIX) {
            return;
        }
        if let Ok(Completed { id }) = serde_json::from_str::<Completed>(text) {
            self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(id.as_ref());
        }
    }

    /// The close code and reason for a subscription under a running id, once one came.
    pub(crate) fn reused(&self) -> Option<(u16, String)> {
        self.reused.get().map(|id| (4409, format!("Subscriber for {id} already exists")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(id: &str) -> Vec<u8> {
        serde_json::json!({ "type": "subscribe", "id": id, "payload": { "query": "subscription { alarms { id } }" } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn an_id_is_running_from_subscribe_to_complete() {
        let ids = RunningIds::default();
        assert!(ids.admit(&subscribe("1")));
        assert!(ids.admit(&subscribe("2")));
        assert!(ids.admit(br#"{"type":"complete","id":"1"}"#), "the client's complete passes");
        assert!(ids.reused().is_none());
        assert!(!ids.admit(&subscribe("1")), "still running until the server says complete");
        assert_eq!(ids.reused(), Some((4409, "Subscriber for 1 already exists".to_owned())));

        let ids = RunningIds::default();
        assert!(ids.admit(&subscribe("1")));
        assert!(!ids.admit(br#"{"type":"start","id":"1","payload":{"query":"subscription { alarms { id } }"}}"#));
        // serde also takes an internally tagged enum as an array, tag first.
        assert!(!ids.admit(br#"["subscribe","1",{"query":"subscription { alarms { id } }"}]"#));

        let ids = RunningIds::default();
        assert!(ids.admit(&subscribe("1")));
        ids.sent(r#"{"type":"next","id":"1","payload":{"data":{}}}"#);
        assert!(!ids.admit(&subscribe("1")), "a result does not end it");
        let ids = RunningIds::default();
        assert!(ids.admit(&subscribe("1")));
        ids.sent(r#"{"type":"complete","id":"1"}"#);
        assert!(ids.admit(&subscribe("1")), "after complete the id is free again");
        assert!(ids.reused().is_none());
    }

    #[test]
    fn other_messages_pass_untouched() {
        let ids = RunningIds::default();
        for frame in [&b"not json"[..], br#"{"type":"ping"}"#, br#"{"type":"subscribe"}"#, br#"[1]"#] {
            assert!(ids.admit(frame));
            assert!(ids.admit(frame));
        }
        assert!(ids.reused().is_none());
    }
}
