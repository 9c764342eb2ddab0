//! The observed-state paths of the service: what the agent reads and reports, the State
//! events it causes, the quota gate, and the customer's runtime/exec/logs with tenancy.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_model::{ContainerEventKind, Event};
use berth_service::runtime::{
    ContainerControl, ExecCommand, ExecResult, LogEntry, ObservedState, RuntimeReport, RuntimeState,
};
use berth_service::{Caller, Error, Result, Service, ServiceConfig};
use berth_store::{accounts, containers, distros, loopboxes, servers, Store};

struct NoDns;

#[async_trait]
impl berth_service::dns::DomainOwnership for NoDns {
    async fn txt_contains(&self, _name: &str, _needle: &str) -> Result<bool> {
        Ok(false)
    }
}

struct World {
    service: Service,
    me: Caller,
    other: Caller,
    server: i64,
    /// Mine, with a distro, a key and a loopbox.
    ready: berth_model::Container,
    /// Mine, bare.
    bare: berth_model::Container,
    /// Another customer's, same server.
    foreign: berth_model::Container,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
    let service =
        Service::new(store.clone(), ServiceConfig { domain_ownership: Arc::new(NoDns), auth: Default::default() });
    let mut tx = store.write().await.unwrap();
    let new = |u| accounts::NewCustomer { username: u, password_hash: "h", email: "", company: None, vat: None };
    let me = accounts::insert_customer(&mut tx, &new("me")).await.unwrap().id;
    let other = accounts::insert_customer(&mut tx, &new("other")).await.unwrap().id;
    let server = servers::insert(
        &mut tx,
        &servers::NewServer { name: "s1", address: "192.0.2.1", memory: 1000, storage: 1000, owner_id: Some(me) },
    )
    .await
    .unwrap()
    .id;
    let d = distros::insert(&mut tx, "busybox", "/srv/distros/busybox", None).await.unwrap();
    let mk =
        |customer_id, name| containers::NewContainer { customer_id, server_id: server, name, memory: 10, storage: 10 };
    let mut ready = containers::insert(&mut tx, &mk(me, "ready")).await.unwrap();
    ready.distro_id = Some(d.id);
    ready.ssh_keys_raw = Some("ssh-ed25519 AAAA me".into());
    containers::save(&mut tx, &ready).await.unwrap();
    let ready = containers::get(&mut tx, ready.id).await.unwrap().unwrap();
    loopboxes::insert(&mut tx, ready.id, "img/a", "mnt/a", false).await.unwrap();
    let bare = containers::insert(&mut tx, &mk(me, "bare")).await.unwrap();
    let foreign = containers::insert(&mut tx, &mk(other, "foreign")).await.unwrap();
    tx.commit().await.unwrap();
    World {
        service,
        me: Caller { customer_id: me },
        other: Caller { customer_id: other },
        server,
        ready,
        bare,
        foreign,
        store,
        _dir: dir,
    }
}

fn running(generation: i64) -> RuntimeReport {
    RuntimeReport {
        state: ObservedState::Running,
        pid: Some(77),
        started_at: Some(1000),
        observed_generation: generation,
        last_error: None,
    }
}

#[tokio::test]
async fn the_agent_reads_its_server() {
    let w = world().await;
    let s = w.service.server_by_name("s1").await.unwrap();
    assert_eq!(s.id, w.server);
    assert!(matches!(w.service.server_by_name("nope").await, Err(Error::NotFound("server"))));
    let all = w.service.desired_containers(w.server).await.unwrap();
    assert_eq!(all.iter().map(|d| d.container.id).collect::<Vec<_>>(), [w.ready.id, w.bare.id, w.foreign.id]);
    assert_eq!(all[0].distro, Some(("busybox".to_owned(), "/srv/distros/busybox".to_owned())));
    assert_eq!(all[0].ssh_keys, ["ssh-ed25519 AAAA me"]);
    assert_eq!(all[0].loopboxes.len(), 1);
    assert!(all[1].distro.is_none() && all[1].ssh_keys.is_empty());
    let one = w.service.desired_container(w.server, w.bare.id).await.unwrap().unwrap();
    assert_eq!(one.container.id, w.bare.id);
    assert_eq!(w.service.desired_container(w.server + 1, w.bare.id).await.unwrap(), None);
}

#[tokio::test]
async fn reports_publish_state_changes_only() {
    let w = world().await;
    let mut bus = w.service.subscribe_all();
    let mut mine = w.service.subscribe(&w.me, None, None).await.unwrap();
    assert_eq!(w.service.runtime(&w.me, w.ready.uid()).await.unwrap().state, RuntimeState::Pending);

    w.service.report_runtime(w.ready.id, running(1)).await.unwrap();
    let event = mine.next_container_event().await.unwrap();
    assert_eq!((event.container_id, event.kind, event.generation), (w.ready.id, ContainerEventKind::State, 1));
    assert_eq!(event.state.as_deref(), Some("RUNNING"));
    assert!(matches!(&*bus.recv().await.unwrap(), Event::Container(e) if e.kind == ContainerEventKind::State));

    // The same observation again: stored, not announced.
    w.service.report_runtime(w.ready.id, running(1)).await.unwrap();
    w.service.report_usage(w.ready.id, 5 << 20, 7 << 20).await.unwrap();
    let status = w.service.runtime(&w.me, w.ready.uid()).await.unwrap();
    assert_eq!(status.state, RuntimeState::Running);
    assert_eq!((status.pid, status.started_at, status.observed_generation), (Some(77), Some(1000), 1));
    assert_eq!((status.memory_bytes, status.disk_bytes), (5 << 20, 7 << 20));

    // A failure while stopped shows FAILED.
    let failed = RuntimeReport {
        state: ObservedState::Stopped,
        pid: None,
        started_at: None,
        observed_generation: 1,
        last_error: Some("distro busybox is not usable: gone".into()),
    };
    w.service.report_runtime(w.ready.id, failed).await.unwrap();
    let event = mine.next_container_event().await.unwrap();
    assert_eq!(event.state.as_deref(), Some("STOPPED"));
    let status = w.service.runtime(&w.me, w.ready.uid()).await.unwrap();
    assert_eq!(status.state, RuntimeState::Failed);
    assert_eq!(status.last_error.as_deref(), Some("distro busybox is not usable: gone"));
    // Nothing else was published in between (the repeated report stayed quiet).
    let mut kinds = Vec::new();
    while let Ok(e) = bus.try_recv() {
        kinds.push(e);
    }
    assert_eq!(kinds.len(), 1, "{kinds:?}");

    // A deleted container's report is ignored.
    w.service.report_runtime(999_999, running(1)).await.unwrap();
}

#[tokio::test]
async fn runtime_is_the_owners_only() {
    let w = world().await;
    w.service.report_runtime(w.foreign.id, running(1)).await.unwrap();
    w.service.report_runtime(w.ready.id, running(1)).await.unwrap();
    assert!(matches!(w.service.runtime(&w.me, w.foreign.uid()).await, Err(Error::NotFound("container"))));
    assert!(matches!(w.service.runtime(&w.me, 30000).await, Err(Error::NotFound("container"))));
    let batch = w.service.runtimes_of_containers(&w.me, &[w.ready.id, w.bare.id, w.foreign.id]).await.unwrap();
    assert_eq!(batch.keys().copied().collect::<Vec<_>>(), [w.ready.id]);
    assert_eq!(w.service.runtime(&w.other, w.foreign.uid()).await.unwrap().state, RuntimeState::Running);
}

#[tokio::test]
async fn quota_alarms_once_per_alarm_freq() {
    let w = world().await;
    assert!(!w.service.quota_alarm_due(w.ready.id).await.unwrap(), "never observed: no usage, no alarm");
    w.service.report_runtime(w.ready.id, running(1)).await.unwrap();
    let before = berth_store::unix_millis() / 1000;
    assert!(w.service.quota_alarm_due(w.ready.id).await.unwrap());
    let after = berth_store::unix_millis() / 1000;
    // The slot is taken at the database's now (on SQLite, this machine's clock).
    let claimed_at = |w: &World| {
        let store = w.store.clone();
        let id = w.ready.id;
        async move {
            let mut conn = store.read().await.unwrap();
            berth_store::runtime::get(&mut conn, id).await.unwrap().unwrap().last_quota_alarm
        }
    };
    let claimed = claimed_at(&w).await;
    assert!((before..=after).contains(&claimed), "slot taken at {claimed}, not within [{before}, {after}]");
    assert!(!w.service.quota_alarm_due(w.ready.id).await.unwrap(), "the slot is taken for alarm_freq");
    // As if 59, then 60 seconds had passed since the slot was taken.
    let age_slot = |seconds: i64| {
        let store = w.store.clone();
        let id = w.ready.id;
        async move {
            let mut tx = store.write().await.unwrap();
            sqlx::query("UPDATE container_runtime SET last_quota_alarm = $2 WHERE container_id = $1")
                .bind(id)
                .bind(berth_store::unix_millis() / 1000 - seconds)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    age_slot(58).await;
    assert!(!w.service.quota_alarm_due(w.ready.id).await.unwrap(), "58 s is within the minimum of 60 s");
    age_slot(61).await;
    assert!(w.service.quota_alarm_due(w.ready.id).await.unwrap(), "the slot is free again after 60 s");
}

/// Records what reached it; answers like an agent whose containers all run, except `down`.
#[derive(Default)]
struct FakeControl {
    calls: Mutex<Vec<(i64, String)>>,
    down: Option<i64>,
}

#[async_trait]
impl ContainerControl for FakeControl {
    async fn exec(&self, container_id: i64, cmd: ExecCommand) -> Result<ExecResult> {
        if Some(container_id) == self.down {
            return Err(berth_service::runtime::not_running());
        }
        self.calls.lock().unwrap().push((container_id, format!("exec {:?} {:?}", cmd.argv, cmd.timeout_secs)));
        Ok(ExecResult { exit_code: 3, stdout: cmd.stdin, stderr: b"err".to_vec(), timed_out: false })
    }

    async fn logs(&self, container_id: i64, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogEntry>> {
        self.calls.lock().unwrap().push((container_id, format!("logs {since:?} {until:?}")));
        Ok(vec![LogEntry { unix: 1.5, line: "hello".into() }])
    }
}

#[tokio::test]
async fn exec_and_logs_go_through_the_servers_control() {
    let w = world().await;
    let cmd = |argv: &[&str]| ExecCommand {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: b"in".to_vec(),
        ..Default::default()
    };
    // No agent here yet: unavailable, but only after ownership.
    assert!(matches!(w.service.exec(&w.me, w.ready.uid(), cmd(&["id"])).await, Err(Error::Unavailable(_))));
    assert!(matches!(w.service.logs(&w.me, w.ready.uid(), None, None).await, Err(Error::Unavailable(_))));
    assert!(matches!(w.service.exec(&w.me, w.foreign.uid(), cmd(&["id"])).await, Err(Error::NotFound(_))));

    let control = Arc::new(FakeControl { down: Some(w.bare.id), ..Default::default() });
    w.service.register_control(w.server, control.clone());
    let out = w.service.exec(&w.me, w.ready.uid(), cmd(&["id", "-u"])).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice(), out.timed_out), (3, &b"in"[..], false));
    let lines = w.service.logs(&w.me, w.ready.uid(), Some(1.0), Some(2.0)).await.unwrap();
    assert_eq!(lines, [LogEntry { unix: 1.5, line: "hello".into() }]);
    assert!(matches!(w.service.exec(&w.me, w.bare.uid(), cmd(&["id"])).await, Err(Error::Conflict(_))));

    // Tenancy before everything: another customer's container is NOT_FOUND, even with bad
    // input; bad input on one's own container never reaches the agent.
    assert!(matches!(w.service.exec(&w.me, w.foreign.uid(), cmd(&[])).await, Err(Error::NotFound(_))));
    assert!(matches!(w.service.logs(&w.me, w.foreign.uid(), None, None).await, Err(Error::NotFound(_))));
    assert!(matches!(w.service.exec(&w.me, w.ready.uid(), cmd(&[])).await, Err(Error::BadInput { .. })));
    assert!(matches!(w.service.logs(&w.me, w.ready.uid(), Some(3.0), Some(2.0)).await, Err(Error::BadInput { .. })));
    assert_eq!(
        *control.calls.lock().unwrap(),
        [
            (w.ready.id, "exec [\"id\", \"-u\"] Some(60)".to_owned()),
            (w.ready.id, "logs Some(1.0) Some(2.0)".to_owned())
        ]
    );

    // Clones share the registry; unregistering makes it unavailable again.
    let clone = w.service.clone();
    clone.unregister_control(w.server);
    assert!(matches!(w.service.exec(&w.me, w.ready.uid(), cmd(&["id"])).await, Err(Error::Unavailable(_))));
}
