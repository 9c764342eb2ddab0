//! The event bus: how a committed change reaches live subscribers.
//!
//! On SQLite the gateway is one process, so an in-process broadcast is the bus; changes
//! made by another process (`berth admin`) reach it through the `event_outbox` table, written
//! in the change's transaction and polled by the gateway ([`announce`]). On
//! PostgreSQL several gateways share the database, so events travel through
//! `LISTEN/NOTIFY`: publishing is a `NOTIFY`, and every gateway (the publisher included)
//! hears it on its listener and rebroadcasts it locally. NOTIFY payloads are capped at
//! 8000 bytes: an event that does not fit travels in parts, all sent in one transaction
//! (PostgreSQL queues a transaction's notifications together, in order) and put together by
//! each listener. Events always travel whole, never as a reference to a row: an alarm may be
//! pruned (`max_alarms`) before a gateway could load it, and its subscribers must still get it.
//!
//! Subscribers get a `broadcast::Receiver`: the queue is bounded, a slow subscriber never
//! delays the others, and one that falls behind sees `RecvError::Lagged` (the front door
//! tells it and closes it). A receiver that sees `RecvError::Closed` may have missed events
//! too (the PostgreSQL listener lost its connection, or the process is stopping).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_model::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{AnyConnection, Engine, Store, StoreError, StoreResult};

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
        Engine::Sqlite => Arc::new(LocalBus::watching_outbox(store.clone()).await?),
        Engine::Postgres => Arc::new(PgBus::start(store.clone(), url).await?),
    })
}

pub struct LocalBus {
    tx: broadcast::Sender<Arc<Event>>,
    /// What other processes announce (SQLite gateways only).
    outbox: Option<Arc<Outbox>>,
}

impl LocalBus {
    pub fn new() -> LocalBus {
        LocalBus { tx: broadcast::channel(SUBSCRIBER_QUEUE).0, outbox: None }
    }

    /// A bus that also rebroadcasts what other processes [`announce`] in `event_outbox`
    /// from now on: every [`OUTBOX_POLL`], and before each event of its own, so that
    /// subscribers get events in commit order whichever process committed them.
    pub async fn watching_outbox(store: Store) -> StoreResult<LocalBus> {
        let (last,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM event_outbox").fetch_one(store.pool()).await?;
        let outbox = Arc::new(Outbox { store, last: tokio::sync::Mutex::new(last) });
        let bus = LocalBus { tx: broadcast::channel(SUBSCRIBER_QUEUE).0, outbox: Some(outbox.clone()) };
        let tx = bus.tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(OUTBOX_POLL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // The gateway is stopping.
                if outbox.store.pool().is_closed() {
                    return;
                }
                outbox.drain(&tx).await;
            }
        });
        Ok(bus)
    }
}

/// The rows of `event_outbox` a gateway has not rebroadcast yet.
struct Outbox {
    store: Store,
    /// The id of the last row rebroadcast; held while draining, so rows go out once and in
    /// order.
    last: tokio::sync::Mutex<i64>,
}

impl Outbox {
    async fn drain(&self, tx: &broadcast::Sender<Arc<Event>>) {
        let mut last = self.last.lock().await;
        let rows: Vec<(i64, String)> =
            match sqlx::query_as("SELECT id, payload FROM event_outbox WHERE id > $1 ORDER BY id")
                .bind(*last)
                .fetch_all(self.store.pool())
                .await
            {
                Ok(rows) => rows,
                Err(e) => return tracing::warn!(error = %e, "cannot read the event outbox; retrying"),
            };
        for (id, payload) in rows {
            *last = id;
            match serde_json::from_str::<Event>(&payload) {
                Ok(event) => {
                    let _ = tx.send(Arc::new(event));
                }
                Err(e) => tracing::warn!(error = %e, id, "ignoring a malformed outbox event"),
            }
        }
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
        // What another process committed earlier goes out first.
        if let Some(outbox) = &self.outbox {
            outbox.drain(&self.tx).await;
        }
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
    Inline {
        event: Event,
    },
    /// Sent by earlier versions; still understood (a pruned alarm is then lost).
    AlarmRef {
        customer_id: i64,
        alarm_id: i64,
    },
    /// Part `index` of `count` of the text of an `Inline` too large for one payload.
    Part {
        id: u64,
        index: u32,
        count: u32,
        text: String,
    },
}

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7999;
/// Bytes of JSON text per part. The text is JSON already (no raw control characters), so
/// quoting it again at most doubles it: a part stays well under `MAX_PAYLOAD`.
const PART: usize = 3800;

/// The payloads that carry `event`: one, or its parts in order.
fn payloads(event: Event) -> serde_json::Result<Vec<String>> {
    let whole = serde_json::to_string(&Wire::Inline { event })?;
    if whole.len() <= MAX_PAYLOAD {
        return Ok(vec![whole]);
    }
    let mut chunks = Vec::new();
    let mut rest = whole.as_str();
    while !rest.is_empty() {
        let mut end = PART.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        chunks.push(&rest[..end]);
        rest = &rest[end..];
    }
    let id = rand_id();
    let count = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, text)| {
            serde_json::to_string(&Wire::Part { id, index: index as u32, count, text: text.to_owned() })
        })
        .collect()
}

/// An id for the parts of one event: unique enough among events in flight at once.
fn rand_id() -> u64 {
    let uuid = uuid::Uuid::new_v4();
    let (high, _) = uuid.as_u64_pair();
    high
}

/// Puts events sent in parts back together. A transaction's notifications arrive together
/// and in order, so only one event is ever in progress; anything out of place is dropped.
#[derive(Default)]
struct Reassembly {
    current: Option<(u64, u32, String)>,
}

impl Reassembly {
    /// The whole `Inline` text once its last part arrived.
    fn add(&mut self, id: u64, index: u32, count: u32, text: &str) -> Option<String> {
        if index == 0 {
            if self.current.is_some() {
                tracing::warn!("dropping an incomplete event notification");
            }
            self.current = Some((id, 0, String::new()));
        }
        match &mut self.current {
            Some((current, next, buffer)) if *current == id && *next == index => {
                buffer.push_str(text);
                *next += 1;
            }
            _ => {
                tracing::warn!("dropping an event notification part out of order");
                self.current = None;
                return None;
            }
        }
        if index + 1 == count {
            return self.current.take().map(|(_, _, whole)| whole);
        }
        None
    }
}

pub struct PgBus {
    store: Store,
    /// Where what the listener hears is rebroadcast. Replaced when the listener loses its
    /// connection: the old one closes, so every subscriber of it learns that events may
    /// have been missed (NOTIFYs sent while nobody listened are gone) instead of silently
    /// waiting for what will never come.
    local: Arc<std::sync::Mutex<broadcast::Sender<Arc<Event>>>>,
}

impl PgBus {
    fn sender(local: &std::sync::Mutex<broadcast::Sender<Arc<Event>>>) -> broadcast::Sender<Arc<Event>> {
        local.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl PgBus {
    /// Connects a listener (reconnecting on its own when the connection drops) and starts
    /// rebroadcasting what it hears.
    pub async fn start(store: Store, url: &str) -> StoreResult<PgBus> {
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let bus = PgBus {
            store: store.clone(),
            local: Arc::new(std::sync::Mutex::new(broadcast::channel(SUBSCRIBER_QUEUE).0)),
        };
        let local = bus.local.clone();
        tokio::spawn(async move {
            let mut parts = Reassembly::default();
            loop {
                // `try_recv`, not `recv`: `recv` reconnects silently, hiding the gap.
                match listener.try_recv().await {
                    Ok(Some(note)) => {
                        if let Some(event) = decode(&store, &mut parts, note.payload()).await {
                            let _ = PgBus::sender(&local).send(Arc::new(event));
                        }
                    }
                    lost => {
                        // The connection was lost (and, on `Ok(None)`, already re-established):
                        // what was sent meanwhile is gone, so the current subscribers are
                        // ended (a fresh channel replaces theirs) and resubscribe.
                        parts = Reassembly::default();
                        *local.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            broadcast::channel(SUBSCRIBER_QUEUE).0;
                        match lost {
                            Err(e) => {
                                tracing::warn!(error = %e, "event listener lost its connection; retrying");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            _ => tracing::warn!(
                                "event listener lost its connection and reconnected; events sent meanwhile are lost"
                            ),
                        }
                    }
                }
            }
        });
        Ok(bus)
    }
}

async fn decode(store: &Store, parts: &mut Reassembly, payload: &str) -> Option<Event> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(Wire::Inline { event }) => Some(event),
        Ok(Wire::Part { id, index, count, text }) => {
            let whole = parts.add(id, index, count, &text)?;
            match serde_json::from_str::<Wire>(&whole) {
                Ok(Wire::Inline { event }) => Some(event),
                _ => {
                    tracing::warn!("ignoring a malformed event sent in parts");
                    None
                }
            }
        }
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

/// Sends the payloads of one event; parts in one transaction, so PostgreSQL queues them
/// together and in order.
async fn notify(store: &Store, payloads: Vec<String>) -> Result<(), sqlx::Error> {
    if let [payload] = payloads.as_slice() {
        sqlx::query(NOTIFY).bind(CHANNEL).bind(payload.as_str()).execute(store.pool()).await?;
        return Ok(());
    }
    let mut tx = store.pool().begin().await?;
    notify_in(&mut tx, &payloads).await?;
    tx.commit().await
}

const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// The NOTIFYs of one event on `conn`; inside a transaction PostgreSQL sends them at commit.
async fn notify_in(conn: &mut AnyConnection, payloads: &[String]) -> Result<(), sqlx::Error> {
    for payload in payloads {
        sqlx::query(NOTIFY).bind(CHANNEL).bind(payload.as_str()).execute(&mut *conn).await?;
    }
    Ok(())
}

/// How often `berth serve` on SQLite looks for events other processes announced.
pub const OUTBOX_POLL: Duration = Duration::from_millis(250);
/// Announced events older than this are pruned (by the next announcement): a gateway that
/// was down meanwhile does not replay them anyway.
const OUTBOX_KEEP_SECS: i64 = 3600;

/// Announces the event of a change made by a process that runs no bus (the `berth admin`
/// commands), inside the change's transaction `conn`, so it goes out if and only if the
/// change commits. On PostgreSQL it is NOTIFYs, which every gateway's listener hears at
/// commit; on SQLite a row of `event_outbox`, which `berth serve` polls
/// ([`LocalBus::watching_outbox`]).
pub async fn announce(conn: &mut AnyConnection, engine: Engine, event: Event) -> StoreResult<()> {
    match engine {
        Engine::Postgres => {
            let payloads = payloads(event).map_err(|e| StoreError::Corrupt(format!("cannot encode an event: {e}")))?;
            notify_in(conn, &payloads).await?;
        }
        Engine::Sqlite => {
            let now = crate::unix_now();
            let payload = serde_json::to_string(&event)
                .map_err(|e| StoreError::Corrupt(format!("cannot encode an event: {e}")))?;
            sqlx::query("DELETE FROM event_outbox WHERE created_at < $1")
                .bind(now - OUTBOX_KEEP_SECS)
                .execute(&mut *conn)
                .await?;
            sqlx::query("INSERT INTO event_outbox (payload, created_at) VALUES ($1, $2)")
                .bind(payload)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl EventBus for PgBus {
    async fn publish(&self, event: Event) {
        let payloads = match payloads(event) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "cannot encode an event"),
        };
        if let Err(e) = notify(&self.store, payloads).await {
            tracing::error!(error = %e, "cannot publish an event");
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        PgBus::sender(&self.local).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use berth_model::Alarm;

    use super::*;

    fn alarm(msg: String) -> Event {
        Event::Alarm {
            customer_id: 7,
            alarm: Alarm {
                id: 42,
                container_id: 3,
                unix: 1_700_000_000,
                level: 2,
                color: "#ff0000".into(),
                msg,
                line: Some(10),
                func: None,
                filename: Some("app.py".into()),
                class: None,
                vassal: None,
            },
        }
    }

    /// What a listener makes of the payloads, in order.
    fn hear(payloads: &[String]) -> Vec<Event> {
        let mut parts = Reassembly::default();
        let mut events = Vec::new();
        for payload in payloads {
            match serde_json::from_str::<Wire>(payload).expect("a wire message") {
                Wire::Inline { event } => events.push(event),
                Wire::Part { id, index, count, text } => {
                    if let Some(whole) = parts.add(id, index, count, &text) {
                        match serde_json::from_str::<Wire>(&whole).expect("whole") {
                            Wire::Inline { event } => events.push(event),
                            _ => panic!("parts must make an inline event"),
                        }
                    }
                }
                Wire::AlarmRef { .. } => panic!("alarms travel whole"),
            }
        }
        events
    }

    #[test]
    fn every_event_travels_whole_in_payloads_postgres_accepts() {
        let worst = [
            String::new(),
            "x".repeat(100),
            "x".repeat(MAX_PAYLOAD),
            "\"\\".repeat(32 * 1024),
            "\u{0}\u{1f}\n\t".repeat(16 * 1024),
            "é€😀".repeat(7000),
        ];
        for msg in worst {
            let event = alarm(msg.clone());
            let payloads = payloads(event.clone()).expect("encode");
            for p in &payloads {
                assert!(p.len() <= MAX_PAYLOAD, "a payload of {} bytes", p.len());
            }
            if msg.len() < 1000 {
                assert_eq!(payloads.len(), 1, "a small event is one notification");
            }
            assert_eq!(hear(&payloads), vec![event], "message of {} bytes", msg.len());
        }
    }

    #[test]
    fn parts_out_of_place_are_dropped_not_mixed() {
        let a = payloads(alarm("a".repeat(20_000))).unwrap();
        let b = payloads(alarm("b".repeat(20_000))).unwrap();
        assert!(a.len() > 2);
        // A listener that lost the tail of `a` (reconnect) then hears all of `b`.
        let mut heard: Vec<String> = a[..2].to_vec();
        heard.extend(b.iter().cloned());
        assert_eq!(hear(&heard), vec![alarm("b".repeat(20_000))]);
        // A part missing in the middle: nothing, and the next event still comes through.
        let mut heard: Vec<String> = a.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, p)| p.clone()).collect();
        heard.extend(b.iter().cloned());
        assert_eq!(hear(&heard), vec![alarm("b".repeat(20_000))]);
    }
}
