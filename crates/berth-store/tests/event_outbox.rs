//! SQLite's event outbox, how `berth admin` reaches a running gateway: what it announces
//! arrives on the gateway's bus once and in commit order with the gateway's own events, from
//! the moment the bus watches; an announcement rolled back with its change never arrives;
//! old rows are pruned.

mod common;

use std::time::Duration;

use berth_model::{ContainerEvent, ContainerEventKind, Event};
use berth_store::events::{self, EventBus, LocalBus, OUTBOX_POLL};
use berth_store::Store;
use common::TestDb;

fn deleted(container_id: i64) -> Event {
    Event::Container(ContainerEvent {
        customer_id: 1,
        container_id,
        kind: ContainerEventKind::Deleted,
        generation: 1,
        state: None,
    })
}

fn container_of(event: &Event) -> i64 {
    match event {
        Event::Container(e) => e.container_id,
        other => panic!("expected a container event, got {other:?}"),
    }
}

async fn announce(store: &Store, event: Event) {
    let mut tx = store.write().await.unwrap();
    events::announce(&mut tx, store.engine(), event).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_events_reach_a_watching_bus_once_in_order() {
    let db = TestDb::sqlite().await;
    let store = db.store.clone();
    announce(&store, deleted(1)).await;
    let bus = LocalBus::watching_outbox(store.clone()).await.unwrap();
    let mut rx = bus.subscribe();
    {
        // Rolled back with its change: never announced.
        let mut tx = store.write().await.unwrap();
        events::announce(&mut tx, store.engine(), deleted(2)).await.unwrap();
    }
    announce(&store, deleted(3)).await;
    announce(&store, deleted(4)).await;
    for expected in [3, 4] {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time").unwrap();
        assert_eq!(container_of(&event), expected, "announced before the bus watched (1) or rolled back (2)");
    }
    // Nothing more, however many polls go by: each row is read once.
    tokio::time::sleep(OUTBOX_POLL * 4).await;
    assert!(rx.try_recv().is_err(), "an event was delivered twice");
    // The gateway's own event, committed after an announcement, comes after it without
    // waiting for the next poll: commit order, whichever process committed.
    announce(&store, deleted(5)).await;
    bus.publish(deleted(6)).await;
    assert_eq!(container_of(&rx.try_recv().expect("announced event first")), 5);
    assert_eq!(container_of(&rx.try_recv().expect("then the gateway's own")), 6);
    db.finish().await;
}

#[tokio::test]
async fn an_announcement_prunes_rows_an_hour_old() {
    let db = TestDb::sqlite().await;
    let store = db.store.clone();
    sqlx::query("INSERT INTO event_outbox (payload, created_at) VALUES ('{}', $1)")
        .bind(berth_store::unix_now() - 2 * 3600)
        .execute(store.pool())
        .await
        .unwrap();
    announce(&store, deleted(5)).await;
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM event_outbox").fetch_all(store.pool()).await.unwrap();
    assert_eq!(rows.len(), 1, "the old row is gone, the new one kept");
    assert_eq!(container_of(&serde_json::from_str(&rows[0].0).unwrap()), 5);
    db.finish().await;
}
