//! The event bus: how a committed change reaches live subscribers.
//!
//! On SQLite everything runs in one process, so an in-process broadcast is the bus. On
//! PostgreSQL several gateways share the database, so events travel through
//! `LISTEN/NOTIFY`: publishing is a `NOTIFY`, and every gateway (the publisher included)
//! hears it on its listener and rebroadcasts it locally. NOTIFY payloads are capped at
//! 8000 bytes, so an alarm travels as a reference and each gateway loads it from the
//! database.
//!
//! Subscribers get a `broadcast::Receiver`: the queue is bounded, a slow subscriber never
//! delays the others, and one that falls behind sees `RecvError::Lagged` (the front door
//! tells it and closes it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_model::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{Engine, Store, StoreResult};

/// Events a subscriber may fall behind by before it is dropped.
pub const SUBSCRIBER_QUEUE: usize = 1024;
const CHANNEL: &str = "berth_events";

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes an event of a committed change; never blocks on subscribers.
    async fn publish(&self, event: Event);
    /// A bounded stream of every event from now on (callers filter by customer).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
}

/// The bus for the store's engine: in-process on SQLite, LISTEN/NOTIFY on PostgreSQL.
pub async fn bus_for(store: &Store, url: &str) -> StoreResult<Arc<dyn EventBus>> {
    Ok(match store.engine() {
        Engine::Sqlite => Arc::new(LocalBus::new()),
        Engine::Postgres => Arc::new(PgBus::start(store.clone(), url).await?),
    })
}

pub struct LocalBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl LocalBus {
    pub fn new() -> LocalBus {
        LocalBus { tx: broadcast::channel(SUBSCRIBER_QUEUE).0 }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new()
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, event: Event) {
        // No receivers is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(event));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// What travels in a NOTIFY payload.
#[derive(Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
enum Wire {
    Inline { event: Event },
    AlarmRef { customer_id: i64, alarm_id: i64 },
}

pub struct PgBus {
    store: Store,
    local: LocalBus,
}

impl PgBus {
    /// Connects a listener (reconnecting on its own when the connection drops) and starts
    /// rebroadcasting what it hears.
    pub async fn start(store: Store, url: &str) -> StoreResult<PgBus> {
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let bus = PgBus { store: store.clone(), local: LocalBus::new() };
        let tx = bus.local.tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(note) => {
                        if let Some(event) = decode(&store, note.payload()).await {
                            let _ = tx.send(Arc::new(event));
                        }
                    }
                    Err(e) => {
                        // PgListener reconnects by itself on the next recv.
                        tracing::warn!(error = %e, "event listener lost its connection");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(bus)
    }
}

async fn decode(store: &Store, payload: &str) -> Option<Event> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(Wire::Inline { event }) => Some(event),
        Ok(Wire::AlarmRef { customer_id, alarm_id }) => {
            let mut conn = store.read().await.ok()?;
            // Gone already (pruned or deleted): nothing to announce.
            let alarm = crate::alarms::owned(&mut conn, customer_id, alarm_id).await.ok()??;
            Some(Event::Alarm { customer_id, alarm })
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed event notification");
            None
        }
    }
}

#[async_trait]
impl EventBus for PgBus {
    async fn publish(&self, event: Event) {
        let wire = match event {
            Event::Alarm { customer_id, alarm } => Wire::AlarmRef { customer_id, alarm_id: alarm.id },
            event => Wire::Inline { event },
        };
        let payload = match serde_json::to_string(&wire) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "cannot encode an event"),
        };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(self.store.pool())
            .await
        {
            tracing::error!(error = %e, "cannot publish an event");
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.local.subscribe()
    }
}
