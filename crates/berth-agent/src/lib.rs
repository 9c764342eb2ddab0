//! The agent: makes one server's desired containers real through a [`Backend`] and reports
//! what it observed (design §3).
//!
//! - **Reconcile.** Per container, [`plan::decide`] turns desired state (the container row,
//!   from the service) and the backend's observation into one [`plan::Action`]; the agent
//!   carries it out, reports the result (`Service::report_runtime`) and, on failure, records
//!   the error and retries with exponential backoff. Containers are reconciled concurrently,
//!   each by at most one task at a time (triggers arriving meanwhile are coalesced), so one
//!   container's failure or slow stop never holds up the others.
//! - **Triggers.** A full pass at start-up (adopting what survived a restart: a running
//!   container of the desired generation is left alone) and every `resync`; bus events of
//!   containers (created, updated, restart, deleted); backend events (exit: restart with
//!   backoff; OOM kill: a level-0 alarm).
//! - **Samples.** Every `sample_every`, resource use of each running container goes to the
//!   metric series and the runtime row; disk use over `quota_threshold` raises a quota
//!   alarm at most once per `alarm_freq` (gated in the store, so restarts do not repeat it).
//! - **Control.** [`BackendControl`] serves the service's exec and logs; [`Agent::run`]
//!   registers it for its server.
//!
//! **Architecture Invariant:** the agent never touches the kernel itself (only through the
//! [`Backend`]) and never holds a store transaction across a backend call: every service
//! call it makes is its own short transaction.

pub mod control;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_backend::{Backend, BackendEvent, ContainerSpec, Observed, RunState, Stats};
use berth_model::{ContainerMetric, Event};
use berth_service::runtime::{DesiredContainer, ObservedState, RuntimeReport};
use berth_service::Service;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use control::BackendControl;
use plan::Action;

/// The message of the OOM alarm.
pub const OOM_ALARM: &str = "oom: a process was killed for exceeding the memory limit";
/// Colour of the agent's alarms.
pub const ALARM_COLOR: &str = "ff0000";

/// How the agent paces itself.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Full pass interval: a lost event or a missed change is repaired within this.
    pub resync: Duration,
    /// Resource sampling interval.
    pub sample_every: Duration,
    /// How long `stop` waits before SIGKILL.
    pub stop_grace: Duration,
    /// First retry delay after a failure (doubling up to `backoff_max`).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            resync: Duration::from_secs(10),
            sample_every: Duration::from_secs(60),
            stop_grace: berth_backend::DEFAULT_STOP_GRACE,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// One server's agent. Build it with [`Agent::new`], then `tokio::spawn(agent.run(shutdown))`.
pub struct Agent {
    service: Service,
    backend: Arc<dyn Backend>,
    server: String,
    options: AgentOptions,
}

impl Agent {
    /// The agent of the server named `server` (as in `berth admin server add --name`).
    pub fn new(service: Service, backend: Arc<dyn Backend>, server: impl Into<String>, options: AgentOptions) -> Agent {
        Agent { service, backend, server: server.into(), options }
    }

    /// The exec/logs control over this agent's backend. [`Agent::run`] registers it on the
    /// service for its server; use this only to wire it somewhere else.
    pub fn control(&self) -> Arc<BackendControl> {
        Arc::new(BackendControl::new(self.backend.clone()))
    }

    /// Runs until `shutdown` completes: waits for the server to exist, registers the control,
    /// then reconciles and samples. Containers keep running when the agent stops (the next
    /// agent adopts them); actions in flight are finished first (bounded by `stop_grace`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let server_id = tokio::select! {
            _ = &mut shutdown => return,
            id = self.resolve_server() => id,
        };
        let span = tracing::info_span!("agent", server = %self.server, backend = self.backend.name());
        let inner = Arc::new(Inner {
            service: self.service.clone(),
            backend: self.backend.clone(),
            server_id,
            options: self.options.clone(),
            slots: Mutex::new(HashMap::new()),
            tracks: Mutex::new(HashMap::new()),
            prepared: tokio::sync::Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
            idle: tokio::sync::Notify::new(),
        });
        self.service.register_control(server_id, self.control());
        inner.clone().main_loop(&mut shutdown).instrument(span).await;
        self.service.unregister_control(server_id);
        inner.stopping.store(true, Ordering::SeqCst);
        let grace = self.options.stop_grace + Duration::from_secs(5);
        if tokio::time::timeout(grace, inner.wait_idle()).await.is_err() {
            tracing::warn!("agent stopped with reconciliations still in flight");
        }
    }

    /// The server's id, waiting (and saying so) until an operator adds it.
    async fn resolve_server(&self) -> i64 {
        loop {
            match self.service.server_by_name(&self.server).await {
                Ok(server) => return server.id,
                Err(berth_service::Error::NotFound(_)) => {
                    tracing::warn!(server = %self.server, "no such server yet; add it with `berth admin server add`")
                }
                Err(e) => tracing::warn!(server = %self.server, error = %e, "cannot look up the agent's server"),
            }
            tokio::time::sleep(self.options.resync).await;
        }
    }
}

/// Why a container is reconciled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trigger {
    /// Periodic pass: respects a pending backoff.
    Resync,
    /// A desired change or a scheduled retry: acts now.
    Change,
    /// The backend saw the container's init end.
    Exited,
}

/// A pass's view of one container, valid only if nothing acted on it since.
struct Snapshot {
    taken: Instant,
    desired: Option<DesiredContainer>,
    observed: Option<Observed>,
}

#[derive(Default)]
struct Slot {
    /// A reconciliation asked for while one was running (the strongest trigger wins).
    again: Option<Trigger>,
}

/// What the agent remembers of a container between reconciliations.
#[derive(Default)]
struct Track {
    /// Consecutive failed actions.
    failures: u32,
    /// Consecutive unexpected exits.
    crashes: u32,
    /// No action before this (backoff).
    not_before: Option<Instant>,
    last_error: Option<String>,
    /// When the agent last started it.
    started: Option<Instant>,
    /// When a reconciliation of it last ended (to discard older snapshots).
    last_run: Option<Instant>,
    /// The last report sent (unchanged reports are not rewritten).
    last_report: Option<RuntimeReport>,
    /// Loopboxes and ssh keys the running instance has (set at start; at adoption, assumed
    /// to be the desired ones): what live changes are computed from.
    applied: Option<Applied>,
}

#[derive(Clone)]
struct Applied {
    loopboxes: Vec<berth_backend::LoopboxSpec>,
    ssh_keys: Vec<String>,
}

struct Inner {
    service: Service,
    backend: Arc<dyn Backend>,
    server_id: i64,
    options: AgentOptions,
    slots: Mutex<HashMap<i64, Slot>>,
    tracks: Mutex<HashMap<i64, Track>>,
    /// Distro paths prepared since start; preparing holds the lock, so once per path.
    prepared: tokio::sync::Mutex<HashSet<String>>,
    stopping: AtomicBool,
    idle: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn uid_of(container_id: i64) -> u32 {
    u32::try_from(berth_model::uid_of(container_id)).unwrap_or(u32::MAX)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Inner {
    async fn main_loop(self: Arc<Self>, shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) {
        let mut bus = self.service.subscribe_all();
        let mut backend_events = Some(self.backend.events());
        let mut resync = tokio::time::interval(self.options.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sample =
            tokio::time::interval_at(Instant::now() + self.options.sample_every, self.options.sample_every);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!("agent started");
        loop {
            tokio::select! {
                _ = shutdown.as_mut() => break,
                _ = resync.tick() => self.clone().full_pass().await,
                _ = sample.tick() => self.clone().sample_all().await,
                event = bus.recv() => match event {
                    Ok(event) => self.on_bus_event(&event),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "fell behind the event bus; full pass");
                        self.clone().full_pass().await;
                    }
                    Err(RecvError::Closed) => {
                        tracing::warn!("event bus interrupted; resubscribing and doing a full pass");
                        bus = self.service.subscribe_all();
                        self.clone().full_pass().await;
                    }
                },
                event = recv_backend(&mut backend_events) => match event {
                    Ok(event) => self.clone().on_backend_event(event),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "fell behind the backend's events; full pass");
                        self.clone().full_pass().await;
                    }
                    Err(RecvError::Closed) => {
                        tracing::warn!("the backend's event stream ended; relying on resync");
                        backend_events = None;
                    }
                },
            }
        }
        tracing::info!("agent stopping");
    }

    fn on_bus_event(self: &Arc<Self>, event: &Event) {
        use berth_model::ContainerEventKind as K;
        if let Event::Container(e) = event {
            match e.kind {
                K::Created | K::Updated | K::Restart | K::Deleted => self.kick(e.container_id, Trigger::Change, None),
                // Our own reports.
                K::State => {}
            }
        }
    }

    fn on_backend_event(self: Arc<Self>, event: BackendEvent) {
        match event {
            BackendEvent::Exited { uid } => {
                if let Some(id) = plan::container_id_of(uid) {
                    self.kick(id, Trigger::Exited, None);
                }
            }
            BackendEvent::OomKilled { uid } => {
                if let Some(id) = plan::container_id_of(uid) {
                    tokio::spawn(async move {
                        // Counted through the store, so the next sample does not repeat it.
                        match self.backend.stats(uid).await {
                            Ok(s) => self.count_oom_kills(id, s.oom_kills).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "no stats after an OOM kill; alarming anyway");
                                self.oom_alarm(id).await;
                            }
                        }
                    });
                }
            }
        }
    }

    /// Raises one OOM alarm if the cgroup's counter shows kills not counted before.
    async fn count_oom_kills(&self, container_id: i64, counter: u64) {
        match self.service.count_oom_kills(container_id, counter).await {
            Ok(0) => {}
            Ok(kills) => {
                tracing::info!(container = container_id, kills, "OOM kills");
                self.oom_alarm(container_id).await;
            }
            Err(e) => tracing::warn!(container = container_id, error = %e, "cannot count OOM kills"),
        }
    }

    async fn oom_alarm(&self, container_id: i64) {
        if let Err(e) = self.service.raise_system_alarm(container_id, OOM_ALARM, Some(ALARM_COLOR)).await {
            tracing::warn!(container = container_id, error = %e, "cannot raise the OOM alarm");
        }
    }

    /// Every container desired here or present on the host, each reconciled on its own.
    async fn full_pass(self: Arc<Self>) {
        let taken = Instant::now();
        let desired = match self.service.desired_containers(self.server_id).await {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, "cannot read desired containers; will retry"),
        };
        let observed = match self.backend.list().await {
            Ok(o) => o,
            Err(e) => return tracing::warn!(error = %e, "cannot list the backend's containers; will retry"),
        };
        let mut observed: HashMap<i64, Observed> =
            observed.into_iter().filter_map(|o| plan::container_id_of(o.uid).map(|id| (id, o))).collect();
        for d in desired {
            let id = d.container.id;
            let o = observed.remove(&id);
            self.kick(id, Trigger::Resync, Some(Snapshot { taken, desired: Some(d), observed: o }));
        }
        for (id, o) in observed {
            self.kick(id, Trigger::Resync, Some(Snapshot { taken, desired: None, observed: Some(o) }));
        }
    }

    /// Reconciles `id` now, or once the reconciliation in progress ends.
    fn kick(self: &Arc<Self>, id: i64, trigger: Trigger, snapshot: Option<Snapshot>) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut slots = lock(&self.slots);
            if let Some(slot) = slots.get_mut(&id) {
                slot.again = Some(slot.again.map_or(trigger, |t| t.max(trigger)));
                return;
            }
            slots.insert(id, Slot::default());
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let mut trigger = trigger;
            let mut snapshot = snapshot;
            loop {
                let span = tracing::info_span!("reconcile", container = id, uid = uid_of(id), ?trigger);
                inner.reconcile(id, trigger, snapshot.take()).instrument(span).await;
                if let Some(t) = lock(&inner.tracks).get_mut(&id) {
                    t.last_run = Some(Instant::now());
                }
                let mut slots = lock(&inner.slots);
                match slots.get_mut(&id).and_then(|s| s.again.take()) {
                    Some(next) if !inner.stopping.load(Ordering::SeqCst) => trigger = next,
                    _ => {
                        slots.remove(&id);
                        if slots.is_empty() {
                            inner.idle.notify_waiters();
                        }
                        break;
                    }
                }
            }
        });
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if lock(&self.slots).is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// One container, end to end: look, decide, act, report.
    async fn reconcile(self: &Arc<Self>, id: i64, trigger: Trigger, snapshot: Option<Snapshot>) {
        let uid = uid_of(id);
        let fresh =
            snapshot.filter(|s| lock(&self.tracks).get(&id).and_then(|t| t.last_run).is_none_or(|r| r < s.taken));
        let (desired, observed) = match fresh {
            Some(s) => (s.desired, s.observed),
            None => {
                let desired = match self.service.desired_container(self.server_id, id).await {
                    Ok(d) => d,
                    Err(e) => return tracing::warn!(error = %e, "cannot read the desired state"),
                };
                match self.backend.state(uid).await {
                    Ok(o) => (desired, o),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot observe the container");
                        return self.failed(id, None, e.to_string()).await;
                    }
                }
            }
        };
        let action = plan::decide(desired.as_ref(), observed.as_ref());
        let Some(d) = desired else {
            if action == Action::Remove {
                tracing::info!("removing: no longer desired on this server");
                if let Err(e) = self.backend.remove(uid).await {
                    tracing::warn!(error = %e, "remove failed; will retry");
                    let delay = self.note_failure(id, e.to_string());
                    self.retry_after(id, delay);
                    return;
                }
            }
            lock(&self.tracks).remove(&id);
            return;
        };

        let now = Instant::now();
        if action != Action::Nothing {
            let waiting = lock(&self.tracks).get(&id).and_then(|t| t.not_before).filter(|nb| *nb > now);
            let unexpected_exit = trigger == Trigger::Exited && action == Action::Start;
            if unexpected_exit {
                let delay = self.note_crash(id);
                tracing::info!(?delay, "container exited; restarting after backoff");
                self.report(id, stopped(observed.as_ref(), None)).await;
                self.retry_after(id, delay);
                return;
            }
            if let (Some(until), Trigger::Resync) = (waiting, trigger) {
                tracing::debug!(wait = ?(until - now), "backing off");
                return;
            }
        }

        match action {
            // `Remove` only when nothing is desired, handled above.
            Action::Nothing | Action::Remove => {
                let error = plan::blocker(&d).and_then(|b| b.error()).map(str::to_owned);
                let report = match &observed {
                    Some(o) if o.state == RunState::Running => running(o),
                    _ => stopped(observed.as_ref(), error),
                };
                let is_running = observed.as_ref().is_some_and(|o| o.state == RunState::Running);
                self.report(id, report).await;
                if is_running {
                    self.apply_live(id, &d).await;
                }
            }
            Action::Stop => {
                tracing::info!("stopping: no distro or no ssh key");
                match self.backend.stop(uid, self.options.stop_grace).await {
                    Ok(()) => {
                        self.succeeded(id);
                        let error = plan::blocker(&d).and_then(|b| b.error()).map(str::to_owned);
                        self.report(id, stopped(observed.as_ref(), error)).await;
                    }
                    Err(e) => self.failed(id, observed.as_ref(), e.to_string()).await,
                }
            }
            Action::Start | Action::Restart => {
                let (mut spec_loopboxes, mut spec_keys) = (vec![], vec![]);
                let result = async {
                    let spec = self.spec(&d).await?;
                    spec_loopboxes.clone_from(&spec.loopboxes);
                    spec_keys.clone_from(&spec.ssh_keys);
                    if action == Action::Restart {
                        tracing::info!(
                            from = observed.as_ref().map(|o| o.generation),
                            to = d.container.generation,
                            "restarting for a new generation"
                        );
                        self.backend.stop(uid, self.options.stop_grace).await?;
                    } else {
                        tracing::info!(generation = d.container.generation, "starting");
                    }
                    self.prepare(&spec).await?;
                    self.backend.create(&spec).await?;
                    self.backend.start(uid).await
                }
                .await;
                match result {
                    Ok(o) => {
                        self.succeeded(id);
                        {
                            let mut tracks = lock(&self.tracks);
                            let t = tracks.entry(id).or_default();
                            t.started = Some(Instant::now());
                            t.applied = Some(Applied { loopboxes: spec_loopboxes, ssh_keys: spec_keys });
                        }
                        let report = if o.state == RunState::Running { running(&o) } else { stopped(Some(&o), None) };
                        self.report(id, report).await;
                        // A new instance may have a new cgroup: its counter is the new base.
                        if let Ok(s) = self.backend.stats(uid).await {
                            if let Err(e) = self.service.reset_oom_kills(id, s.oom_kills).await {
                                tracing::warn!(error = %e, "cannot reset the OOM kill count");
                            }
                        }
                    }
                    Err(e) => {
                        let observed_now = self.backend.state(uid).await.ok().flatten();
                        self.failed(id, observed_now.as_ref().or(observed.as_ref()), e.to_string()).await
                    }
                }
            }
        }
    }

    /// Applies what changes without a restart (uwsgi.it: loopboxes mount and unmount live,
    /// key changes rewrite `authorized_keys`). A failure is logged and retried at the next
    /// pass; it never stops the container.
    async fn apply_live(&self, id: i64, d: &DesiredContainer) {
        let Ok(spec) = self.spec(d).await else { return };
        let applied = {
            let mut tracks = lock(&self.tracks);
            let t = tracks.entry(id).or_default();
            t.applied
                .get_or_insert_with(|| Applied { loopboxes: spec.loopboxes.clone(), ssh_keys: spec.ssh_keys.clone() })
                .clone()
        };
        let uid = spec.uid;
        let mut now = applied.clone();
        let (unmount, mount) = plan::loopbox_changes(&applied.loopboxes, &spec.loopboxes);
        for mountpoint in unmount {
            match self.backend.unmount_loopbox(uid, &mountpoint).await {
                Ok(()) => now.loopboxes.retain(|l| l.mountpoint != mountpoint),
                Err(e) => tracing::warn!(%mountpoint, error = %e, "cannot unmount loopbox; will retry"),
            }
        }
        for loopbox in mount {
            match self.backend.mount_loopbox(uid, &loopbox).await {
                Ok(()) => {
                    tracing::info!(mountpoint = %loopbox.mountpoint, "loopbox mounted");
                    now.loopboxes.push(loopbox);
                }
                Err(e) => {
                    tracing::warn!(mountpoint = %loopbox.mountpoint, error = %e, "loopbox not mounted; will retry")
                }
            }
        }
        if applied.ssh_keys != spec.ssh_keys {
            match self.write_keys(uid, &spec.ssh_keys).await {
                Ok(()) => now.ssh_keys = spec.ssh_keys.clone(),
                Err(e) => tracing::warn!(error = %e, "cannot update authorized_keys; will retry"),
            }
        }
        if let Some(t) = lock(&self.tracks).get_mut(&id) {
            t.applied = Some(now);
        }
    }

    /// Rewrites `~/.ssh/authorized_keys` inside the running container, as its uid.
    async fn write_keys(&self, uid: u32, keys: &[String]) -> berth_backend::Result<()> {
        let script = "umask 077 && mkdir -p \"$HOME/.ssh\" && cat > \"$HOME/.ssh/authorized_keys.new\" && \
                      mv \"$HOME/.ssh/authorized_keys.new\" \"$HOME/.ssh/authorized_keys\"";
        let mut stdin = keys.join("\n").into_bytes();
        stdin.push(b'\n');
        let out = self
            .backend
            .exec(
                uid,
                berth_backend::ExecRequest {
                    argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                    stdin,
                    timeout_secs: Some(30),
                    ..Default::default()
                },
            )
            .await?;
        if out.exit_code != 0 {
            return Err(berth_backend::BackendError::Failed(format!(
                "writing authorized_keys exited with {}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// The spec of a container allowed to run.
    async fn spec(&self, d: &DesiredContainer) -> berth_backend::Result<ContainerSpec> {
        let has_start = match &d.distro {
            Some((_, path)) => {
                tokio::fs::try_exists(Path::new(path).join(berth_backend::distro::START_SCRIPT)).await.unwrap_or(false)
            }
            None => false,
        };
        plan::spec(d, has_start).ok_or_else(|| berth_backend::BackendError::invalid("container", "out of range values"))
    }

    /// Prepares the spec's distro once per path (until a failure, which is retried).
    async fn prepare(&self, spec: &ContainerSpec) -> berth_backend::Result<()> {
        let key = spec.distro.path.to_string_lossy().into_owned();
        let mut prepared = self.prepared.lock().await;
        if !prepared.contains(&key) {
            tracing::info!(distro = %spec.distro.name, "preparing distro");
            self.backend.prepare_distro(&spec.distro).await?;
            prepared.insert(key);
        }
        Ok(())
    }

    fn succeeded(&self, id: i64) {
        let mut tracks = lock(&self.tracks);
        let t = tracks.entry(id).or_default();
        t.failures = 0;
        t.not_before = None;
        t.last_error = None;
    }

    /// Counts a failure; returns the delay before the retry.
    fn note_failure(&self, id: i64, error: String) -> Duration {
        let mut tracks = lock(&self.tracks);
        let t = tracks.entry(id).or_default();
        t.failures = t.failures.saturating_add(1);
        let delay = plan::backoff(self.options.backoff_min, self.options.backoff_max, t.failures);
        t.not_before = Some(Instant::now() + delay);
        t.last_error = Some(error);
        delay
    }

    /// Counts an unexpected exit; an instance that ran at least `backoff_max` starts the
    /// count afresh. Returns the delay before the restart.
    fn note_crash(&self, id: i64) -> Duration {
        let mut tracks = lock(&self.tracks);
        let t = tracks.entry(id).or_default();
        if t.started.is_none_or(|s| s.elapsed() >= self.options.backoff_max) {
            t.crashes = 0;
        }
        t.crashes = t.crashes.saturating_add(1);
        let delay = plan::backoff(self.options.backoff_min, self.options.backoff_max, t.crashes);
        t.not_before = Some(Instant::now() + delay);
        delay
    }

    /// Records a failed action (the error becomes the container's `lastError`) and schedules
    /// the retry.
    async fn failed(self: &Arc<Self>, id: i64, observed: Option<&Observed>, error: String) {
        tracing::warn!(%error, "reconciliation failed; will retry");
        let delay = self.note_failure(id, error.clone());
        let report = match observed {
            Some(o) if o.state == RunState::Running => RuntimeReport { last_error: Some(error), ..running(o) },
            _ => stopped(observed, Some(error)),
        };
        self.report(id, report).await;
        self.retry_after(id, delay);
    }

    fn retry_after(self: &Arc<Self>, id: i64, delay: Duration) {
        let inner = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            inner.kick(id, Trigger::Change, None);
        });
    }

    /// Sends a report unless it equals the last one sent.
    async fn report(&self, id: i64, report: RuntimeReport) {
        if lock(&self.tracks).get(&id).and_then(|t| t.last_report.as_ref()) == Some(&report) {
            return;
        }
        match self.service.report_runtime(id, report.clone()).await {
            Ok(()) => lock(&self.tracks).entry(id).or_default().last_report = Some(report),
            Err(e) => tracing::warn!(error = %e, "cannot record the observed state"),
        }
    }

    /// Samples every running container of this server.
    async fn sample_all(self: Arc<Self>) {
        let desired = match self.service.desired_containers(self.server_id).await {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, "cannot read desired containers for sampling"),
        };
        let observed = match self.backend.list().await {
            Ok(o) => o,
            Err(e) => return tracing::warn!(error = %e, "cannot list the backend's containers for sampling"),
        };
        let running: HashSet<u32> = observed.iter().filter(|o| o.state == RunState::Running).map(|o| o.uid).collect();
        for d in desired {
            let uid = uid_of(d.container.id);
            if !running.contains(&uid) {
                continue;
            }
            let span = tracing::debug_span!("sample", container = d.container.id, uid);
            match self.backend.stats(uid).instrument(span.clone()).await {
                Ok(stats) => self.record(&d, &stats).instrument(span).await,
                Err(e) => tracing::debug!(parent: &span, error = %e, "no stats"),
            }
        }
    }

    async fn record(&self, d: &DesiredContainer, s: &Stats) {
        let id = d.container.id;
        let now = unix_now();
        let samples = [
            (ContainerMetric::Cpu, clamp(s.cpu_nanos)),
            (ContainerMetric::Mem, clamp(s.memory_bytes)),
            (ContainerMetric::MemRss, clamp(s.memory_rss)),
            (ContainerMetric::MemCache, clamp(s.memory_cache)),
            (ContainerMetric::IoRead, clamp(s.io_read_bytes)),
            (ContainerMetric::IoWrite, clamp(s.io_write_bytes)),
            (ContainerMetric::NetRx, clamp(s.net_rx_bytes)),
            (ContainerMetric::NetTx, clamp(s.net_tx_bytes)),
            (ContainerMetric::Quota, clamp(s.disk_used_bytes)),
        ];
        if let Err(e) = self
            .service
            .record_container_stats(id, now, &samples, clamp(s.memory_bytes), clamp(s.disk_used_bytes))
            .await
        {
            tracing::warn!(error = %e, "cannot record samples");
        }

        // OOM kills the events did not report (missed while lagging, busy or not running).
        self.count_oom_kills(id, s.oom_kills).await;

        if let Some(percent) = plan::quota_over(s.disk_used_bytes, d.container.storage, d.container.quota_threshold) {
            match self.service.quota_alarm_due(id).await {
                Ok(true) => {
                    let msg = format!("quota: home is {percent}% full (threshold {}%)", d.container.quota_threshold);
                    if let Err(e) = self.service.raise_system_alarm(id, &msg, Some(ALARM_COLOR)).await {
                        tracing::warn!(error = %e, "cannot raise the quota alarm");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the quota alarm gate"),
            }
        }
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn recv_backend(
    rx: &mut Option<tokio::sync::broadcast::Receiver<BackendEvent>>,
) -> Result<BackendEvent, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn running(o: &Observed) -> RuntimeReport {
    RuntimeReport {
        state: ObservedState::Running,
        pid: o.pid.map(i64::from),
        started_at: o.started_at,
        observed_generation: o.generation,
        last_error: None,
    }
}

fn stopped(o: Option<&Observed>, last_error: Option<String>) -> RuntimeReport {
    RuntimeReport {
        state: ObservedState::Stopped,
        pid: None,
        started_at: None,
        observed_generation: o.map_or(0, |o| o.generation),
        last_error,
    }
}
