//! The agent against a recording fake `Backend` and a real service on SQLite: adoption,
//! start, generation bump, deletion, missing keys, failure + retry, exits, OOM and quota
//! alarms, and the exec/logs control. The real backends are tested end to end elsewhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_agent::{Agent, AgentOptions};
use berth_backend::{
    Backend, BackendError, BackendEvent, ContainerSpec, DistroSpec, ExecOutput, ExecRequest, LogLine, LoopboxSpec,
    Observed, RunState, Stats,
};
use berth_service::alarms::AlarmFilter;
use berth_service::runtime::{ExecCommand, RuntimeState, RuntimeStatus};
use berth_service::{Caller, Service, ServiceConfig};
use berth_store::{accounts, containers, distros, servers, Store};
use tokio::sync::{broadcast, oneshot};

/// A backend that keeps containers in a map and records every call that changes something.
struct Fake {
    containers: Mutex<HashMap<u32, Observed>>,
    calls: Mutex<Vec<String>>,
    /// Upcoming `create` calls that fail.
    failing_creates: AtomicU32,
    stats: Mutex<HashMap<u32, Stats>>,
    events: broadcast::Sender<BackendEvent>,
    next_pid: AtomicU32,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            containers: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            failing_creates: AtomicU32::new(0),
            stats: Mutex::new(HashMap::new()),
            events: broadcast::channel(64).0,
            next_pid: AtomicU32::new(1000),
        })
    }

    fn put(&self, uid: u32, state: RunState, generation: i64, pid: Option<u32>) {
        let o = Observed { uid, state, pid, started_at: pid.map(|_| 1_700_000_000), generation };
        self.containers.lock().unwrap().insert(uid, o);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
}

#[async_trait]
impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn prepare_distro(&self, distro: &DistroSpec) -> berth_backend::Result<()> {
        self.call(format!("prepare {}", distro.name));
        Ok(())
    }
    async fn create(&self, spec: &ContainerSpec) -> berth_backend::Result<()> {
        self.call(format!(
            "create {} g{} keys={} cmd={:?}",
            spec.uid,
            spec.generation,
            spec.ssh_keys.len(),
            spec.command
        ));
        if self.failing_creates.load(Ordering::SeqCst) > 0 {
            self.failing_creates.fetch_sub(1, Ordering::SeqCst);
            return Err(BackendError::Failed("disk full".into()));
        }
        let mut map = self.containers.lock().unwrap();
        let o = map.entry(spec.uid).or_insert(Observed {
            uid: spec.uid,
            state: RunState::Stopped,
            pid: None,
            started_at: None,
            generation: spec.generation,
        });
        if o.state == RunState::Stopped {
            o.generation = spec.generation;
        }
        Ok(())
    }
    async fn start(&self, uid: u32) -> berth_backend::Result<Observed> {
        self.call(format!("start {uid}"));
        let mut map = self.containers.lock().unwrap();
        let o = map.get_mut(&uid).ok_or(BackendError::NotFound(uid))?;
        if o.state == RunState::Stopped {
            o.state = RunState::Running;
            o.pid = Some(self.next_pid.fetch_add(1, Ordering::SeqCst));
            o.started_at = Some(1_700_000_100);
        }
        Ok(o.clone())
    }
    async fn stop(&self, uid: u32, _grace: Duration) -> berth_backend::Result<()> {
        self.call(format!("stop {uid}"));
        if let Some(o) = self.containers.lock().unwrap().get_mut(&uid) {
            o.state = RunState::Stopped;
            o.pid = None;
            o.started_at = None;
        }
        let _ = self.events.send(BackendEvent::Exited { uid });
        Ok(())
    }
    async fn kill(&self, uid: u32) -> berth_backend::Result<()> {
        self.stop(uid, Duration::ZERO).await
    }
    async fn remove(&self, uid: u32) -> berth_backend::Result<()> {
        self.call(format!("remove {uid}"));
        self.containers.lock().unwrap().remove(&uid);
        Ok(())
    }
    async fn state(&self, uid: u32) -> berth_backend::Result<Option<Observed>> {
        Ok(self.containers.lock().unwrap().get(&uid).cloned())
    }
    async fn list(&self) -> berth_backend::Result<Vec<Observed>> {
        Ok(self.containers.lock().unwrap().values().cloned().collect())
    }
    async fn exec(&self, uid: u32, request: ExecRequest) -> berth_backend::Result<ExecOutput> {
        match self.containers.lock().unwrap().get(&uid) {
            Some(o) if o.state == RunState::Running => {}
            Some(_) => return Err(BackendError::NotRunning(uid)),
            None => return Err(BackendError::NotFound(uid)),
        }
        let env: Vec<String> = request.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(ExecOutput {
            exit_code: 0,
            stdout: format!("{uid} {} {}", request.argv.join(" "), env.join(",")).into_bytes(),
            stderr: request.stdin,
            timed_out: false,
        })
    }
    async fn stats(&self, uid: u32) -> berth_backend::Result<Stats> {
        Ok(self.stats.lock().unwrap().get(&uid).cloned().unwrap_or_default())
    }
    async fn logs(&self, uid: u32, _since: Option<f64>, _until: Option<f64>) -> berth_backend::Result<Vec<LogLine>> {
        if !self.containers.lock().unwrap().contains_key(&uid) {
            return Err(BackendError::NotFound(uid));
        }
        Ok(vec![LogLine { unix: 1.0, line: format!("hello from {uid}") }])
    }
    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.events.subscribe()
    }
    async fn mount_loopbox(&self, _uid: u32, _loopbox: &LoopboxSpec) -> berth_backend::Result<()> {
        Ok(())
    }
    async fn unmount_loopbox(&self, _uid: u32, _mountpoint: &str) -> berth_backend::Result<()> {
        Ok(())
    }
}

struct NoDns;

#[async_trait]
impl berth_service::dns::DomainOwnership for NoDns {
    async fn txt_contains(&self, _name: &str, _needle: &str) -> berth_service::Result<bool> {
        Ok(false)
    }
}

struct World {
    service: Service,
    store: Store,
    caller: Caller,
    server: i64,
    distro: i64,
    fake: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
    let service =
        Service::new(store.clone(), ServiceConfig { domain_ownership: Arc::new(NoDns), auth: Default::default() });
    let rootfs = dir.path().join("busybox");
    std::fs::create_dir_all(rootfs.join("etc/berth")).unwrap();
    std::fs::write(rootfs.join("etc/berth/start"), "#!/bin/sh\n").unwrap();
    let mut tx = store.write().await.unwrap();
    let new = accounts::NewCustomer { username: "me", password_hash: "h", email: "", company: None, vat: None };
    let me = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
    let server = servers::insert(
        &mut tx,
        &servers::NewServer { name: "s1", address: "192.0.2.1", memory: 10_000, storage: 10_000, owner_id: Some(me) },
    )
    .await
    .unwrap()
    .id;
    let distro = distros::insert(&mut tx, "busybox", &rootfs.display().to_string(), None).await.unwrap().id;
    tx.commit().await.unwrap();
    World {
        service,
        store,
        caller: Caller { customer_id: me },
        server,
        distro,
        fake: Fake::new(),
        stop: None,
        agent: None,
        _dir: dir,
    }
}

fn options() -> AgentOptions {
    AgentOptions {
        resync: Duration::from_millis(100),
        sample_every: Duration::from_millis(100),
        stop_grace: Duration::from_secs(1),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

impl World {
    /// A container of this customer on s1; `ready`: with the distro and a key.
    async fn container(&self, name: &str, ready: bool) -> berth_model::Container {
        let mut tx = self.store.write().await.unwrap();
        let mut c = containers::insert(
            &mut tx,
            &containers::NewContainer {
                customer_id: self.caller.customer_id,
                server_id: self.server,
                name,
                memory: 64,
                storage: 100,
            },
        )
        .await
        .unwrap();
        if ready {
            c.distro_id = Some(self.distro);
            c.ssh_keys_raw = Some("ssh-ed25519 AAAA me".into());
            containers::save(&mut tx, &c).await.unwrap();
        }
        let c = containers::get(&mut tx, c.id).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        c
    }

    fn start_agent(&mut self) {
        let (tx, rx) = oneshot::channel();
        let agent = Agent::new(self.service.clone(), self.fake.clone(), "s1", options());
        self.agent = Some(tokio::spawn(agent.run(async {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
    }

    async fn stop_agent(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(agent) = self.agent.take() {
            tokio::time::timeout(Duration::from_secs(10), agent).await.expect("agent stops").unwrap();
        }
    }

    async fn runtime(&self, c: &berth_model::Container) -> RuntimeStatus {
        self.service.runtime(&self.caller, c.uid()).await.unwrap()
    }

    /// Waits until the container's runtime satisfies `ok`.
    async fn wait(&self, c: &berth_model::Container, what: &str, ok: impl Fn(&RuntimeStatus) -> bool) -> RuntimeStatus {
        for _ in 0..200 {
            let r = self.runtime(c).await;
            if ok(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: runtime is {:?}; calls {:?}", self.runtime(c).await, self.fake.calls());
    }

    async fn wait_calls(&self, what: &str, ok: impl Fn(&[String]) -> bool) {
        for _ in 0..200 {
            if ok(&self.fake.calls()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: calls {:?}", self.fake.calls());
    }

    async fn alarms(&self) -> Vec<(i64, String)> {
        let page = self.service.alarms(&self.caller, &AlarmFilter::default(), None).await.unwrap();
        page.alarms.into_iter().map(|a| (a.level, a.msg)).collect()
    }
}

fn uid(c: &berth_model::Container) -> u32 {
    c.uid() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_healthy_container_without_touching_it() {
    let mut w = world().await;
    let c = w.container("app", true).await;
    w.fake.put(uid(&c), RunState::Running, c.generation, Some(77));
    w.start_agent();
    let r = w.wait(&c, "adopted", |r| r.state == RuntimeState::Running).await;
    assert_eq!((r.pid, r.observed_generation), (Some(77), c.generation));
    tokio::time::sleep(Duration::from_millis(400)).await; // several resyncs
    w.stop_agent().await;
    assert!(w.fake.calls().is_empty(), "adoption made calls: {:?}", w.fake.calls());
    assert_eq!(w.fake.containers.lock().unwrap()[&uid(&c)].pid, Some(77), "kept its pid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_then_restarts_on_a_generation_bump() {
    let mut w = world().await;
    let c = w.container("app", true).await;
    let mut events = w.service.subscribe(&w.caller, Some(c.uid()), None).await.unwrap();
    w.start_agent();
    let r = w.wait(&c, "started", |r| r.state == RuntimeState::Running).await;
    assert_eq!(r.observed_generation, 1);
    let u = uid(&c);
    assert_eq!(
        w.fake.calls(),
        [
            "prepare busybox".to_owned(),
            format!("create {u} g1 keys=1 cmd=Some([\"/bin/sh\", \"/etc/berth/start\"])"),
            format!("start {u}")
        ]
    );
    let e = events.next_container_event().await.unwrap();
    assert_eq!(
        (e.kind, e.state.as_deref(), e.generation),
        (berth_model::ContainerEventKind::State, Some("RUNNING"), 1)
    );

    w.service.reboot_container(&w.caller, c.uid()).await.unwrap();
    w.wait(&c, "restarted", |r| r.state == RuntimeState::Running && r.observed_generation == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop_agent().await;
    let calls = w.fake.calls();
    assert_eq!(
        calls[3..],
        [
            format!("stop {u}"),
            format!("create {u} g2 keys=1 cmd=Some([\"/bin/sh\", \"/etc/berth/start\"])"),
            format!("start {u}")
        ],
        "the distro is prepared once; the stop's exit event does not restart it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_what_is_no_longer_desired_and_stops_what_lost_its_keys() {
    let mut w = world().await;
    let keyless = w.container("keyless", false).await;
    let mut with_distro = keyless.clone();
    with_distro.distro_id = Some(w.distro);
    {
        let mut tx = w.store.write().await.unwrap();
        containers::save(&mut tx, &with_distro).await.unwrap();
        tx.commit().await.unwrap();
    }
    w.fake.put(uid(&keyless), RunState::Running, keyless.generation, Some(5));
    w.fake.put(39_999, RunState::Running, 1, Some(6)); // deleted long ago
    w.start_agent();
    w.wait_calls("stop + remove", |c| {
        c.contains(&format!("stop {}", uid(&keyless))) && c.contains(&"remove 39999".into())
    })
    .await;
    let r = w.wait(&keyless, "stopped", |r| r.state == RuntimeState::Stopped).await;
    assert_eq!(r.last_error, None, "not configured is not an error");
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop_agent().await;
    assert_eq!(w.fake.calls().len(), 2, "nothing else: {:?}", w.fake.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_reported_and_retried_with_backoff() {
    let mut w = world().await;
    let broken = w.container("broken", true).await;
    w.fake.failing_creates.store(2, Ordering::SeqCst);
    w.start_agent();
    let r = w.wait(&broken, "failed", |r| r.state == RuntimeState::Failed).await;
    assert_eq!(r.last_error.as_deref(), Some("disk full"));
    let r = w.wait(&broken, "recovered", |r| r.state == RuntimeState::Running).await;
    assert_eq!(r.last_error, None);
    w.stop_agent().await;
    let creates = w.fake.calls().iter().filter(|c| c.starts_with("create")).count();
    assert_eq!(creates, 3, "{:?}", w.fake.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_restart_and_oom_and_quota_alarm() {
    let mut w = world().await;
    let c = w.container("app", true).await;
    let u = uid(&c);
    w.start_agent();
    w.wait(&c, "started", |r| r.state == RuntimeState::Running).await;

    // The init died on its own: reported, then started again.
    {
        let mut map = w.fake.containers.lock().unwrap();
        let o = map.get_mut(&u).unwrap();
        o.state = RunState::Stopped;
        o.pid = None;
    }
    w.fake.events.send(BackendEvent::Exited { uid: u }).unwrap();
    w.wait_calls("restarted", |c| c.iter().filter(|c| c.starts_with("start")).count() == 2).await;
    w.wait(&c, "running again", |r| r.state == RuntimeState::Running).await;

    // An OOM kill raises one level-0 alarm; the stats counter catching up does not repeat it.
    tokio::time::sleep(Duration::from_millis(250)).await; // a sample initialises the counter
    w.fake.events.send(BackendEvent::OomKilled { uid: u }).unwrap();
    w.fake.stats.lock().unwrap().insert(u, Stats { oom_kills: 1, ..Default::default() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A kill the events missed still alarms, from the counter.
    w.fake.stats.lock().unwrap().insert(u, Stats { oom_kills: 2, ..Default::default() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let oom = w.alarms().await.into_iter().filter(|(_, m)| m.starts_with("oom:")).count();
    assert_eq!(oom, 2);

    // Disk over the threshold: one quota alarm per alarm_freq (60 s) however many samples.
    let used = 95 * 1024 * 1024;
    let stats =
        Stats { oom_kills: 2, disk_used_bytes: used, memory_bytes: 12345, cpu_nanos: 5_000, ..Default::default() };
    w.fake.stats.lock().unwrap().insert(u, stats);
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop_agent().await;
    let alarms = w.alarms().await;
    let quota: Vec<_> = alarms.iter().filter(|(_, m)| m.starts_with("quota:")).collect();
    assert_eq!(quota, [&(0, "quota: home is 95% full (threshold 90%)".to_owned())]);
    assert!(alarms.iter().all(|(level, _)| *level == 0));
    let r = w.runtime(&c).await;
    assert_eq!((r.memory_bytes, r.disk_bytes), (12345, used as i64));
    let day = berth_service::metrics::today_utc();
    let cpu = w.service.container_metric(&w.caller, c.uid(), "cpu", day).await.unwrap().unwrap();
    assert!(cpu.contains(", 5000]"), "{cpu}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_logs_through_the_registered_control() {
    let mut w = world().await;
    let c = w.container("app", true).await;
    let idle = w.container("idle", false).await;
    let cmd = ExecCommand {
        argv: vec!["echo".into(), "hi".into()],
        env: vec![("A".into(), "1".into())],
        stdin: b"in".to_vec(),
        timeout_secs: None,
    };
    assert!(matches!(w.service.exec(&w.caller, c.uid(), cmd.clone()).await, Err(berth_service::Error::Unavailable(_))));
    w.start_agent();
    w.wait(&c, "started", |r| r.state == RuntimeState::Running).await;
    let out = w.service.exec(&w.caller, c.uid(), cmd.clone()).await.unwrap();
    assert_eq!(out.stdout, format!("{} echo hi A=1", uid(&c)).into_bytes());
    assert_eq!(out.stderr, b"in");
    let logs = w.service.logs(&w.caller, c.uid(), None, None).await.unwrap();
    assert_eq!(logs[0].line, format!("hello from {}", uid(&c)));
    match w.service.exec(&w.caller, idle.uid(), cmd).await {
        Err(berth_service::Error::Conflict(reason)) => assert_eq!(reason, "container is not running"),
        other => panic!("{other:?}"),
    }
    assert!(w.service.logs(&w.caller, idle.uid(), None, None).await.unwrap().is_empty());
    w.stop_agent().await;
    // The control goes away with the agent.
    assert!(matches!(w.service.logs(&w.caller, c.uid(), None, None).await, Err(berth_service::Error::Unavailable(_))));
}

/// OOM kills that happened while no agent watched (the agent was down or restarting) still
/// raise one alarm when the next agent adopts the container: the count lives in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kills_while_no_agent_watched_still_alarm_once() {
    let mut w = world().await;
    let c = w.container("app", true).await;
    let u = uid(&c);
    w.start_agent();
    w.wait(&c, "started", |r| r.state == RuntimeState::Running).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    w.stop_agent().await;
    w.fake.stats.lock().unwrap().insert(u, Stats { oom_kills: 3, ..Default::default() });
    w.start_agent();
    tokio::time::sleep(Duration::from_millis(600)).await;
    w.stop_agent().await;
    let oom = w.alarms().await.into_iter().filter(|(_, m)| m.starts_with("oom:")).count();
    assert_eq!(oom, 1, "three kills while away: one alarm, not zero and not one per sample");
    assert_eq!(w.fake.calls().iter().filter(|c| c.starts_with("start")).count(), 1, "adopted, not restarted");
}
