mod common;

use common::fixture;

use berth_store::alarms::{self, AlarmQuery, NewAlarm, Window};
use berth_store::Store;

fn alarm(container_id: i64, unix: i64, msg: &str) -> NewAlarm<'_> {
    NewAlarm {
        container_id,
        unix,
        level: 1,
        color: "#ffffff",
        msg,
        line: None,
        func: None,
        filename: None,
        class: None,
        vassal: None,
    }
}

fn msgs(list: &[berth_model::Alarm]) -> Vec<&str> {
    list.iter().map(|a| a.msg.as_str()).collect()
}

async fn windows_filters_and_scoping(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let b = fixture(&store, "bob", "s2", false).await;
    let mut conn = store.read().await.unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut new = alarm(a.container, 1000 + i as i64, name);
        if i % 2 == 0 {
            new.class = Some("even");
            new.level = 2;
            new.line = Some(i as i64);
        }
        alarms::insert(&mut conn, &new).await.unwrap();
    }
    let bobs = alarms::insert(&mut conn, &alarm(b.container, 5000, "bob")).await.unwrap();

    let q = AlarmQuery { customer_id: a.customer, ..Default::default() };
    assert_eq!(alarms::count(&mut conn, &q).await.unwrap(), 10);
    let newest = alarms::list(&mut conn, &q, Window::NewestFirst { offset: 0, limit: 3 }).await.unwrap();
    assert_eq!(msgs(&newest), ["a9", "a8", "a7"]);
    // The reference test-suite's windows: 3-6 newest-first, 6-3 the same window oldest-first.
    let w = alarms::list(&mut conn, &q, Window::NewestFirst { offset: 3, limit: 3 }).await.unwrap();
    assert_eq!(msgs(&w), ["a6", "a5", "a4"]);
    let w = alarms::list(&mut conn, &q, Window::OldestFirst { offset: 3, limit: 3 }).await.unwrap();
    assert_eq!(msgs(&w), ["a3", "a4", "a5"]);
    let after = alarms::list(&mut conn, &q, Window::NewestAfter { unix: newest[2].unix, id: newest[2].id, limit: 2 })
        .await
        .unwrap();
    assert_eq!(msgs(&after), ["a6", "a5"]);

    let even = AlarmQuery { class: Some("even".into()), level: Some(2), ..q.clone() };
    assert_eq!(alarms::count(&mut conn, &even).await.unwrap(), 5);
    let line4 = AlarmQuery { line: Some(4), ..q.clone() };
    let got = alarms::list(&mut conn, &line4, Window::NewestFirst { offset: 0, limit: 100 }).await.unwrap();
    assert_eq!(msgs(&got), ["a4"]);
    let other_container = AlarmQuery { container_id: Some(b.container), ..q.clone() };
    assert_eq!(alarms::count(&mut conn, &other_container).await.unwrap(), 0, "bob's container is not alice's");

    assert!(alarms::owned(&mut conn, a.customer, bobs.id).await.unwrap().is_none());
    assert_eq!(alarms::owned(&mut conn, b.customer, bobs.id).await.unwrap(), Some(bobs.clone()));
    assert!(alarms::delete(&mut conn, bobs.id).await.unwrap());
    assert!(alarms::owned(&mut conn, b.customer, bobs.id).await.unwrap().is_none());
}
both_engines!(alarm_windows_filters_and_scoping, windows_filters_and_scoping);

async fn pruning_keeps_the_newest(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let mut tx = store.write().await.unwrap();
    // Inserted out of time order: pruning goes by `unix`, not by insertion.
    for (unix, msg) in [(30, "c"), (10, "a"), (20, "b"), (40, "d")] {
        assert_eq!(alarms::prune_for_insert(&mut tx, a.container, 3).await.unwrap(), u64::from(msg == "d"));
        alarms::insert(&mut tx, &alarm(a.container, unix, msg)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let q = AlarmQuery { customer_id: a.customer, ..Default::default() };
    let left = alarms::list(&mut conn, &q, Window::OldestFirst { offset: 0, limit: 10 }).await.unwrap();
    assert_eq!(msgs(&left), ["b", "c", "d"]);
    // A lowered limit deletes as many as needed to make room for one.
    assert_eq!(alarms::prune_for_insert(&mut conn, a.container, 1).await.unwrap(), 3);
    assert_eq!(alarms::count(&mut conn, &q).await.unwrap(), 0);
}
both_engines!(alarm_pruning_keeps_the_newest, pruning_keeps_the_newest);

async fn alarm_keys(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let mut conn = store.read().await.unwrap();
    assert_eq!(alarms::alarm_key_of(&mut conn, a.container).await.unwrap(), Some((a.customer, None, true)));
    alarms::set_alarm_key(&mut conn, a.container, "k").await.unwrap();
    assert_eq!(alarms::alarm_key_of(&mut conn, a.container).await.unwrap(), Some((a.customer, Some("k".into()), true)));
    assert_eq!(alarms::alarm_key_of(&mut conn, a.container + 100).await.unwrap(), None);
}
both_engines!(alarm_keys_are_stored, alarm_keys);

async fn database_refuses_bad_rows(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let mut conn = store.read().await.unwrap();
    let mut bad = alarm(a.container, 1, "x");
    bad.line = Some(-1);
    assert!(alarms::insert(&mut conn, &bad).await.is_err());
    let mut bad = alarm(a.container, 1, "x");
    bad.level = -1;
    assert!(alarms::insert(&mut conn, &bad).await.is_err());
}
both_engines!(alarm_rows_are_checked, database_refuses_bad_rows);
