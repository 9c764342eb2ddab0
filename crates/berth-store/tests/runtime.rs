//! Observed state: upsert keeps usage and the quota gate, owner-filtered batches, the quota
//! slot once per `alarm_freq`, and the agent's view of a server in three statements.

mod common;

use berth_store::runtime::{self, Observation};
use berth_store::{containers, distros, loopboxes, servers, Store};

async fn runtime_rows(store: Store) {
    let a = common::fixture(&store, "a", "s1", true).await;
    let b = common::fixture(&store, "b", "s2", false).await;
    let mut conn = store.read().await.unwrap();
    assert_eq!(runtime::get(&mut conn, a.container).await.unwrap(), None);
    assert!(!runtime::set_usage(&mut conn, a.container, 1, 2, 10).await.unwrap(), "no row yet");

    let running = Observation {
        state: "RUNNING",
        pid: Some(4242),
        started_at: Some(100),
        observed_generation: 3,
        last_error: None,
    };
    runtime::upsert(&mut conn, a.container, &running, 10).await.unwrap();
    assert!(runtime::set_usage(&mut conn, a.container, 1 << 40, 5, 11).await.unwrap());
    let row = runtime::get(&mut conn, a.container).await.unwrap().unwrap();
    assert_eq!(row.state, "RUNNING");
    assert_eq!(row.pid, Some(4242));
    assert_eq!(row.started_at, Some(100));
    assert_eq!(row.observed_generation, 3);
    assert_eq!(row.memory_bytes, 1 << 40);
    assert_eq!(row.disk_bytes, 5);
    assert_eq!(row.updated_at, 11);

    // A new report replaces the lifecycle columns and keeps usage.
    let failed =
        Observation { state: "STOPPED", pid: None, started_at: None, observed_generation: 3, last_error: Some("boom") };
    runtime::upsert(&mut conn, a.container, &failed, 12).await.unwrap();
    let row = runtime::get(&mut conn, a.container).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.pid, row.last_error.as_deref()), ("STOPPED", None, Some("boom")));
    assert_eq!(row.memory_bytes, 1 << 40);

    runtime::upsert(&mut conn, b.container, &running, 10).await.unwrap();
    let mine = runtime::owned_many(&mut conn, a.customer, &[a.container, b.container, 999]).await.unwrap();
    assert_eq!(mine.iter().map(|r| r.container_id).collect::<Vec<_>>(), [a.container]);
    assert!(runtime::owned_many(&mut conn, a.customer, &[]).await.unwrap().is_empty());
}
both_engines!(runtime_rows_work, runtime_rows);

async fn quota_slot(store: Store) {
    let a = common::fixture(&store, "a", "s1", true).await;
    let mut conn = store.read().await.unwrap();
    assert!(!runtime::claim_quota_alarm(&mut conn, a.container, 1_000_000, 60).await.unwrap(), "no row");
    let obs = Observation { state: "RUNNING", pid: None, started_at: None, observed_generation: 1, last_error: None };
    runtime::upsert(&mut conn, a.container, &obs, 1).await.unwrap();
    let mut c = containers::get(&mut conn, a.container).await.unwrap().unwrap();
    c.alarm_freq = 300;
    containers::save(&mut conn, &c).await.unwrap();
    let t = 1_700_000_000;
    assert!(runtime::claim_quota_alarm(&mut conn, a.container, t, 60).await.unwrap());
    assert!(!runtime::claim_quota_alarm(&mut conn, a.container, t + 299, 60).await.unwrap());
    assert!(runtime::claim_quota_alarm(&mut conn, a.container, t + 300, 60).await.unwrap());
    assert_eq!(runtime::get(&mut conn, a.container).await.unwrap().unwrap().last_quota_alarm, t + 300);
    // The lifecycle upsert leaves the gate alone, so a restart cannot reopen it.
    runtime::upsert(&mut conn, a.container, &obs, 2).await.unwrap();
    assert!(!runtime::claim_quota_alarm(&mut conn, a.container, t + 301, 60).await.unwrap());
    // A frequency below the floor counts as the floor.
    c.alarm_freq = 1;
    containers::save(&mut conn, &c).await.unwrap();
    assert!(!runtime::claim_quota_alarm(&mut conn, a.container, t + 359, 60).await.unwrap());
    assert!(runtime::claim_quota_alarm(&mut conn, a.container, t + 360, 60).await.unwrap());
}
both_engines!(quota_slot_works, quota_slot);

async fn agent_view(store: Store) {
    let a = common::fixture(&store, "a", "s1", true).await;
    let other = common::fixture(&store, "b", "s2", true).await;
    let mut tx = store.write().await.unwrap();
    let d = distros::insert(&mut tx, "bookworm", "/srv/distros/bookworm", None).await.unwrap();
    let mut c1 = containers::get(&mut tx, a.container).await.unwrap().unwrap();
    c1.distro_id = Some(d.id);
    c1.ssh_keys_raw = Some("ssh-ed25519 AAAA k".into());
    containers::save(&mut tx, &c1).await.unwrap();
    let c2 = containers::insert(
        &mut tx,
        &containers::NewContainer { customer_id: a.customer, server_id: a.server, name: "c2", memory: 1, storage: 1 },
    )
    .await
    .unwrap();
    let b1 = loopboxes::insert(&mut tx, c1.id, "img/one", "mnt/one", true).await.unwrap();
    let b2 = loopboxes::insert(&mut tx, c1.id, "img/two", "mnt/two", false).await.unwrap();
    loopboxes::insert(&mut tx, other.container, "img/x", "mnt/x", false).await.unwrap();
    tx.commit().await.unwrap();

    let mut conn = store.read().await.unwrap();
    let all = runtime::of_server(&mut conn, a.server, None).await.unwrap();
    assert_eq!(all.iter().map(|x| x.container.id).collect::<Vec<_>>(), [c1.id, c2.id]);
    assert_eq!(all[0].distro.as_ref().map(|d| d.path.as_str()), Some("/srv/distros/bookworm"));
    assert_eq!(all[0].container.ssh_keys(), ["ssh-ed25519 AAAA k"]);
    assert_eq!(all[0].loopboxes, [b1.clone(), b2]);
    assert!(all[1].distro.is_none() && all[1].loopboxes.is_empty());

    let one = runtime::of_server(&mut conn, a.server, Some(c1.id)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].loopboxes.len(), 2);
    // Another server's container is not this server's business.
    assert!(runtime::of_server(&mut conn, a.server, Some(other.container)).await.unwrap().is_empty());
    let s3 = servers::insert(
        &mut conn,
        &servers::NewServer { name: "empty", address: "192.0.2.9", memory: 1, storage: 1, owner_id: None },
    )
    .await
    .unwrap();
    assert!(runtime::of_server(&mut conn, s3.id, None).await.unwrap().is_empty());
}
both_engines!(agent_view_works, agent_view);

async fn oom_count(store: Store) {
    let a = common::fixture(&store, "a", "s1", true).await;
    let mut conn = store.read().await.unwrap();
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 5).await.unwrap(), 0, "no row: nothing counted");
    let obs = Observation { state: "RUNNING", pid: None, started_at: None, observed_generation: 1, last_error: None };
    runtime::upsert(&mut conn, a.container, &obs, 1).await.unwrap();
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 2).await.unwrap(), 2);
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 2).await.unwrap(), 0, "counted once");
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 5).await.unwrap(), 3);
    // A new cgroup starts from 0: a lower counter is the new base, not new kills.
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 1).await.unwrap(), 0);
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 2).await.unwrap(), 1);
    runtime::set_oom_kills(&mut conn, a.container, 0).await.unwrap();
    // The lifecycle upsert keeps the count.
    runtime::upsert(&mut conn, a.container, &obs, 2).await.unwrap();
    assert_eq!(runtime::advance_oom_kills(&mut conn, a.container, 1).await.unwrap(), 1);
}
both_engines!(oom_counts_work, oom_count);
