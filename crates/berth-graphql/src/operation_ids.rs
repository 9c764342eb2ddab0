//! The ids of a `graphql-transport-ws` connection's running operations.
//!
//! The protocol closes a connection that subscribes under an id still running with 4409
//! ("Subscriber for <id> already exists"). async-graphql would instead replace the running
//! subscription, and its client would wait for alarms that never come, told nothing.
//! On both protocols an id longer than [`crate::websocket::MAX_OPERATION_ID`] closes the
//! connection with 4400: the id is kept while its operation runs and repeated in each of its
//! messages (a 1 MB id made one alarm a 95 MB write per socket).
//! Only client messages (few) are parsed, as the executor parses them; of the server's, only
//! `complete` is, found by its prefix, so a delivery costs one failed prefix comparison.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use async_graphql::http::ClientMessage;

/// How async-graphql begins a `complete` message (`#[serde(tag = "type")]` writes the tag first).
const COMPLETE_PREFIX: &str = r#"{"type":"complete","#;

#[derive(Default)]
pub(crate) struct RunningIds {
    /// Whether a running id may not be used again (`graphql-transport-ws`; the legacy
    /// protocol replaces the running operation, as its reference server did).
    unique: bool,
    running: Mutex<HashSet<String>>,
    refused: OnceLock<(u16, String)>,
}

#[derive(serde::Deserialize)]
struct Completed<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

impl RunningIds {
    /// The ids of a `graphql-transport-ws` connection (`unique`) or a legacy one.
    pub(crate) fn new(unique: bool) -> RunningIds {
        RunningIds { unique, ..RunningIds::default() }
    }

    /// Reads a message from the client. `false` when it starts an operation under an id
    /// too long, or running (`unique`): it must not reach the executor, and the connection
    /// closes with [`RunningIds::refusal`].
    pub(crate) fn admit(&self, frame: &[u8]) -> bool {
        // Read as the executor reads it, so that every spelling it takes for a subscription
        // counts (`subscribe` or the legacy `start`, an object or serde's array form).
        let Ok(ClientMessage::Start { id, .. }) = ClientMessage::from_bytes(frame) else {
            return true;
        };
        let limit = crate::websocket::MAX_OPERATION_ID;
        if id.len() > limit {
            let _ = self.refused.set((4400, format!("operation id longer than {limit} bytes")));
            return false;
        }
        if !self.unique {
            return true;
        }
        let fresh = self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone());
        if !fresh {
            let _ = self.refused.set((4409, format!("Subscriber for {id} already exists")));
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

    /// The close code and reason for an operation refused by [`RunningIds::admit`].
    pub(crate) fn refusal(&self) -> Option<(u16, String)> {
        self.refused.get().cloned()
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
        let ids = RunningIds::new(true);
        assert!(ids.admit(&subscribe("1")));
        assert!(ids.admit(&subscribe("2")));
        assert!(ids.admit(br#"{"type":"complete","id":"1"}"#), "the client's complete passes");
        assert!(ids.refusal().is_none());
        assert!(!ids.admit(&subscribe("1")), "still running until the server says complete");
        assert_eq!(ids.refusal(), Some((4409, "Subscriber for 1 already exists".to_owned())));

        let ids = RunningIds::new(true);
        assert!(ids.admit(&subscribe("1")));
        assert!(!ids.admit(br#"{"type":"start","id":"1","payload":{"query":"subscription { alarms { id } }"}}"#));
        // serde also takes an internally tagged enum as an array, tag first.
        assert!(!ids.admit(br#"["subscribe","1",{"query":"subscription { alarms { id } }"}]"#));

        let ids = RunningIds::new(true);
        assert!(ids.admit(&subscribe("1")));
        ids.sent(r#"{"type":"next","id":"1","payload":{"data":{}}}"#);
        assert!(!ids.admit(&subscribe("1")), "a result does not end it");
        let ids = RunningIds::new(true);
        assert!(ids.admit(&subscribe("1")));
        ids.sent(r#"{"type":"complete","id":"1"}"#);
        assert!(ids.admit(&subscribe("1")), "after complete the id is free again");
        assert!(ids.refusal().is_none());
    }

    #[test]
    fn long_ids_are_refused_on_both_protocols() {
        for unique in [true, false] {
            let ids = RunningIds::new(unique);
            assert!(ids.admit(&subscribe(&"i".repeat(crate::websocket::MAX_OPERATION_ID))));
            assert!(!ids.admit(&subscribe(&"i".repeat(crate::websocket::MAX_OPERATION_ID + 1))));
            assert_eq!(ids.refusal().map(|(code, _)| code), Some(4400));
        }
        let legacy = RunningIds::new(false);
        assert!(legacy.admit(&subscribe("1")) && legacy.admit(&subscribe("1")), "the legacy protocol replaces");
    }

    #[test]
    fn other_messages_pass_untouched() {
        let ids = RunningIds::new(true);
        for frame in [&b"not json"[..], br#"{"type":"ping"}"#, br#"{"type":"subscribe"}"#, br#"[1]"#] {
            assert!(ids.admit(frame));
            assert!(ids.admit(frame));
        }
        assert!(ids.refusal().is_none());
    }
}
