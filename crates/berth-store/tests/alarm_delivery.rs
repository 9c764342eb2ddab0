//! The `alarm_freq` delivery slot: one conditional UPDATE, exactly one winner per interval.

mod common;

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

both_engines!(claims, one_delivery_per_interval);
both_engines!(webhooks, webhook_fields);
