//! The `alarm_freq` delivery slot: one conditional UPDATE, exactly one winner per interval.
//! Pending deliveries: leased by exactly one gateway at a time, resumed once a lease runs
//! out, changed only by the lease's holder, gone with their container.

mod common;

use std::collections::HashSet;

use berth_store::alarm_delivery::PendingDelivery;
use berth_store::{accounts, alarm_delivery, containers, servers, Store};

async fn one_container(store: &Store) -> i64 {
    let mut tx = store.write().await.unwrap();
    let new = accounts::NewCustomer { username: "k", password_hash: "h", email: "", company: None, vat: None };
    let customer = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
    let server = servers::insert(
        &mut tx,
        &servers::NewServer { name: "s", address: "192.0.2.1", memory: 1000, storage: 1000, owner_id: None },
    )
    .await
    .unwrap();
    let c = containers::insert(
        &mut tx,
        &containers::NewContainer { customer_id: customer, server_id: server.id, name: "c", memory: 1, storage: 1 },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    c.id
}

async fn claim(store: &Store, id: i64, now: i64) -> bool {
    let mut tx = store.write().await.unwrap();
    let won = alarm_delivery::claim(&mut tx, id, now).await.unwrap();
    tx.commit().await.unwrap();
    won
}

async fn one_delivery_per_interval(store: Store) {
    let id = one_container(&store).await;
    let mut conn = store.read().await.unwrap();
    assert_eq!(alarm_delivery::last_delivery(&mut conn, id).await.unwrap(), Some(0));
    drop(conn);
    let t = 1_700_000_000;
    assert!(claim(&store, id, t).await, "never delivered: free");
    assert!(!claim(&store, id, t).await);
    assert!(!claim(&store, id, t + 59).await, "default alarm_freq is 60");
    assert!(claim(&store, id, t + 60).await);
    // alarm_freq below 60 counts as 60; above it, as set.
    sqlx::query("UPDATE containers SET alarm_freq = 5 WHERE id = $1").bind(id).execute(store.pool()).await.unwrap();
    assert!(!claim(&store, id, t + 65).await);
    assert!(claim(&store, id, t + 120).await);
    sqlx::query("UPDATE containers SET alarm_freq = 300 WHERE id = $1").bind(id).execute(store.pool()).await.unwrap();
    assert!(!claim(&store, id, t + 419).await);
    assert!(claim(&store, id, t + 420).await);
    let mut conn = store.read().await.unwrap();
    assert_eq!(alarm_delivery::last_delivery(&mut conn, id).await.unwrap(), Some(t + 420));
    assert_eq!(alarm_delivery::last_delivery(&mut conn, id + 1000).await.unwrap(), None);
    assert!(!alarm_delivery::claim(&mut conn, id + 1000, t).await.unwrap(), "no such container");
    drop(conn);

    // Many racers at the same instant (as gateways would be): exactly one wins.
    let later = t + 10_000;
    let mut racers = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        racers.push(tokio::spawn(async move { claim(&store, id, later).await }));
    }
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn webhook_fields(store: Store) {
    let id = one_container(&store).await;
    let mut conn = store.read().await.unwrap();
    assert_eq!(alarm_delivery::webhook(&mut conn, id).await.unwrap(), Some((None, None)));
    alarm_delivery::set_webhook_secret(&mut conn, id, "s3cret").await.unwrap();
    assert_eq!(alarm_delivery::webhook(&mut conn, id).await.unwrap(), Some((None, Some("s3cret".to_owned()))));
    assert_eq!(alarm_delivery::webhook(&mut conn, id + 1000).await.unwrap(), None);
}

async fn lease(store: &Store, now: i64, until: i64, token: i64, limit: i64) -> Vec<PendingDelivery> {
    let ids = alarm_delivery::due(&mut store.read().await.unwrap(), now, limit).await.unwrap();
    let mut tx = store.write().await.unwrap();
    let leased = alarm_delivery::lease(&mut tx, &ids, now, until, token).await.unwrap();
    tx.commit().await.unwrap();
    leased
}

async fn pending(store: &Store) -> i64 {
    let mut conn = store.read().await.unwrap();
    alarm_delivery::pending(&mut conn).await.unwrap()
}

async fn leases_are_exclusive_and_run_out(store: Store) {
    let id = one_container(&store).await;
    let t = 1_700_000_000_000;
    {
        let mut tx = store.write().await.unwrap();
        for (n, channel) in ["slack", "webhook", "xmpp", "pushover"].iter().enumerate() {
            alarm_delivery::schedule(&mut tx, id, 7, channel, &format!("{{\"n\":{n}}}"), t).await.unwrap();
        }
        // Not due yet.
        alarm_delivery::schedule(&mut tx, id, 7, "slack", "{}", t + 5_000).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(pending(&store).await, 5);

    // Oldest first, at most `limit`, each to one holder only.
    let first = lease(&store, t, t + 1_000, 1, 3).await;
    assert_eq!(first.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(), ["slack", "webhook", "xmpp"]);
    assert!(first.iter().all(|d| d.lease_token == 1 && d.attempts == 0 && d.customer_id == 7 && d.container_id == id));
    assert_eq!(first[1].alarm, "{\"n\":1}");
    let second = lease(&store, t, t + 1_000, 2, 10).await;
    assert_eq!(second.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(), ["pushover"]);
    assert!(lease(&store, t + 999, t + 2_000, 3, 10).await.is_empty(), "all leased or not due");

    // Only the holder renews or finishes.
    let mut conn = store.write().await.unwrap();
    assert!(!alarm_delivery::renew(&mut conn, first[0].id, 2, 1, t + 9_000).await.unwrap());
    assert!(!alarm_delivery::finish(&mut conn, first[0].id, 2).await.unwrap());
    assert!(alarm_delivery::renew(&mut conn, first[0].id, 1, 1, t + 9_000).await.unwrap());
    assert!(alarm_delivery::finish(&mut conn, second[0].id, 2).await.unwrap());
    conn.commit().await.unwrap();
    assert_eq!(pending(&store).await, 4);

    // Once a lease runs out, another holder resumes the row where it stood.
    let resumed = lease(&store, t + 1_000, t + 10_000, 4, 10).await;
    assert_eq!(
        resumed.iter().map(|d| (d.channel.as_str(), d.attempts)).collect::<Vec<_>>(),
        [("webhook", 0), ("xmpp", 0)]
    );
    let later = lease(&store, t + 9_000, t + 10_000, 5, 10).await;
    assert_eq!(
        later.iter().map(|d| (d.channel.as_str(), d.attempts)).collect::<Vec<_>>(),
        [("slack", 1), ("slack", 0)],
        "the renewed one (attempt 1 recorded), then the one due at t + 5 s"
    );
    let mut conn = store.write().await.unwrap();
    assert!(!alarm_delivery::finish(&mut conn, later[0].id, 1).await.unwrap(), "the old holder lost it");
    conn.commit().await.unwrap();

    // Many gateways leasing at once: every row goes to exactly one of them.
    {
        let mut tx = store.write().await.unwrap();
        for _ in 0..40 {
            alarm_delivery::schedule(&mut tx, id, 7, "slack", "{}", t).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut racers = Vec::new();
    for token in 100..108 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = lease(&store, t + 20_000, t + 90_000, token, 3).await;
                if got.is_empty() {
                    return mine;
                }
                assert!(got.iter().all(|d| d.lease_token == token));
                mine.extend(got.into_iter().map(|d| d.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for racer in racers {
        for id in racer.await.unwrap() {
            assert!(seen.insert(id), "delivery {id} leased twice");
        }
    }
    assert_eq!(seen.len(), 44, "the 40 new rows and the 4 left");

    // Deliveries go with their container.
    sqlx::query("DELETE FROM containers WHERE id = $1").bind(id).execute(store.pool()).await.unwrap();
    assert_eq!(pending(&store).await, 0);
}

/// The clock leases are set by: PostgreSQL's own on PostgreSQL (a server whose clock is
/// this machine's here, so the two must agree), in milliseconds, and moving forward.
async fn the_database_clock(store: Store) {
    let mut conn = store.read().await.unwrap();
    let before = berth_store::unix_millis();
    let first = berth_store::database_millis(&mut conn).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = berth_store::database_millis(&mut conn).await.unwrap();
    let after = berth_store::unix_millis();
    assert!(before - 1_000 <= first && second <= after + 1_000, "{before} ≤ {first} ≤ {second} ≤ {after}, ±1 s");
    assert!(second - first >= 15, "milliseconds that move: {first} then {second}");
}

both_engines!(claims, one_delivery_per_interval);
both_engines!(clock, the_database_clock);
both_engines!(pending_deliveries, leases_are_exclusive_and_run_out);
both_engines!(webhooks, webhook_fields);
