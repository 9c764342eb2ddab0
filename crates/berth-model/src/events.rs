//! What happened, as subscribers see it. Every event names its customer, so the bus can be
//! shared by all tenants and each subscriber keeps only its own.

use serde::{Deserialize, Serialize};

use crate::entities::Alarm;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Alarm {
        customer_id: i64,
        alarm: Alarm,
    },
    Container(ContainerEvent),
    /// A credential of the customer stopped being valid: every gateway forgets what it
    /// remembered of it and ends the live sessions it opened.
    Revoked {
        customer_id: i64,
        credential: Credential,
    },
}

/// What a session was opened with, as far as revoking it goes; known from what the client
/// presented, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// A customer's password (basic authentication): revoked when it changes.
    Password { username: String },
    /// The bearer API token with this id: revoked when the token is.
    Token { id: i64 },
}

impl Event {
    pub fn customer_id(&self) -> i64 {
        match self {
            Event::Alarm { customer_id, .. } => *customer_id,
            Event::Container(e) => e.customer_id,
            Event::Revoked { customer_id, .. } => *customer_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEvent {
    pub customer_id: i64,
    pub container_id: i64,
    pub kind: ContainerEventKind,
    /// The desired generation after the change.
    pub generation: i64,
    /// The observed state, when the agent reports one.
    pub state: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerEventKind {
    Created,
    /// Desired state changed without a restart (note, tags, ssh keys).
    Updated,
    /// Desired state changed and the container must restart (generation bumped).
    Restart,
    /// The agent observed a new state.
    State,
    Deleted,
}
