//! Desired vs observed (design §3): what the agent reads to run a server's containers, what it
//! reports back, and the customer's view of it — observed state, exec, logs.
//!
//! The agent paths take no [`Caller`]: the agent is trusted and names containers by id, like
//! [`Service::record_container_sample`] and [`Service::raise_system_alarm`]. Exec and logs go
//! through a [`ContainerControl`] that the agent of the container's server registered on this
//! service; a gateway that runs no agent for that server answers `Unavailable`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use berth_model::{ContainerEvent, ContainerEventKind, ContainerMetric, Event, Loopbox, Server};
use berth_store::runtime::{self as store_runtime, Observation};
use berth_store::{alarm_delivery, containers, metrics, servers, unix_now};
use tokio::sync::broadcast;

use crate::containers::owned_container;
use crate::{Caller, Error, Result, Service};

pub use berth_store::runtime::ContainerRuntime;

/// The most arguments an exec takes.
pub const MAX_EXEC_ARGS: usize = 256;
/// The longest argument (and environment value) of an exec, bytes.
pub const MAX_EXEC_ARG_BYTES: usize = 4 * 1024;
/// The most environment variables an exec takes.
pub const MAX_EXEC_ENV: usize = 256;
/// The largest stdin of an exec, bytes.
pub const MAX_EXEC_STDIN: usize = 1024 * 1024;
/// Exec timeout when the caller names none, and the longest one accepted (seconds).
pub const DEFAULT_EXEC_TIMEOUT_SECS: i64 = 60;
pub const MAX_EXEC_TIMEOUT_SECS: i64 = 600;

/// What the agent needs to run one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredContainer {
    pub container: berth_model::Container,
    /// The platform distro: `(name, root filesystem path)`.
    pub distro: Option<(String, String)>,
    pub loopboxes: Vec<Loopbox>,
    /// Keys as the container reads them back (spec §6.4); may hold empty strings.
    pub ssh_keys: Vec<String>,
}

/// Lifecycle as the agent observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedState {
    Running,
    Stopped,
}

impl ObservedState {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedState::Running => "RUNNING",
            ObservedState::Stopped => "STOPPED",
        }
    }
}

/// One observation of a container, as the agent reports it after acting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeReport {
    pub state: ObservedState,
    pub pid: Option<i64>,
    pub started_at: Option<i64>,
    pub observed_generation: i64,
    /// Why the last action failed; `None` after a success.
    pub last_error: Option<String>,
}

/// The state a customer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeState {
    /// Never observed by an agent.
    #[default]
    Pending,
    Running,
    Stopped,
    /// Not running, and the agent's last action on it failed (see `last_error`).
    Failed,
}

impl RuntimeState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeState::Pending => "PENDING",
            RuntimeState::Running => "RUNNING",
            RuntimeState::Stopped => "STOPPED",
            RuntimeState::Failed => "FAILED",
        }
    }
}

/// A container's observed state as customers see it; `Default` is "never observed".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeStatus {
    pub state: RuntimeState,
    pub pid: Option<i64>,
    pub started_at: Option<i64>,
    pub observed_generation: i64,
    pub last_error: Option<String>,
    pub memory_bytes: i64,
    pub disk_bytes: i64,
}

impl From<ContainerRuntime> for RuntimeStatus {
    fn from(r: ContainerRuntime) -> Self {
        let running = r.state == ObservedState::Running.as_str();
        let state = match (running, r.last_error.is_some()) {
            (true, _) => RuntimeState::Running,
            (false, true) => RuntimeState::Failed,
            (false, false) => RuntimeState::Stopped,
        };
        RuntimeStatus {
            state,
            pid: r.pid,
            started_at: r.started_at,
            observed_generation: r.observed_generation,
            last_error: r.last_error,
            memory_bytes: r.memory_bytes,
            disk_bytes: r.disk_bytes,
        }
    }
}

/// A command to run inside a container as its uid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecCommand {
    pub argv: Vec<String>,
    /// Added to the container's base environment; names are unique.
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    /// Seconds, 1..=600; `None` is [`DEFAULT_EXEC_TIMEOUT_SECS`]. A control always receives
    /// `Some`.
    pub timeout_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// 128 + signal when a signal ended the command.
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The timeout ended the command.
    pub timed_out: bool,
}

/// One line of a container's console output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Unix seconds with fraction.
    pub unix: f64,
    pub line: String,
}

/// Reaches running containers of one server; the agent implements it over its backend.
/// Errors are service errors: a container that is not running is
/// `Conflict("container is not running")` ([`not_running`]).
#[async_trait]
pub trait ContainerControl: Send + Sync {
    async fn exec(&self, container_id: i64, cmd: ExecCommand) -> Result<ExecResult>;
    async fn logs(&self, container_id: i64, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogEntry>>;
}

/// The error for exec on a container that does not run now.
pub fn not_running() -> Error {
    Error::conflict("container is not running")
}

/// The controls registered in this process, by server id; shared by every clone of the
/// service, so an agent built after the front doors can still register.
#[derive(Clone, Default)]
pub(crate) struct Controls(Arc<RwLock<HashMap<i64, Arc<dyn ContainerControl>>>>);

impl Controls {
    fn get(&self, server_id: i64) -> Option<Arc<dyn ContainerControl>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&server_id).cloned()
    }

    fn set(&self, server_id: i64, control: Option<Arc<dyn ContainerControl>>) {
        let mut map = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match control {
            Some(c) => map.insert(server_id, c),
            None => map.remove(&server_id),
        };
    }
}

fn check_exec(cmd: &mut ExecCommand) -> Result<()> {
    if cmd.argv.is_empty() {
        return Err(Error::bad_input("argv", "must name a program"));
    }
    if cmd.argv.len() > MAX_EXEC_ARGS {
        return Err(Error::bad_input("argv", format!("at most {MAX_EXEC_ARGS} arguments")));
    }
    if cmd.argv[0].is_empty() {
        return Err(Error::bad_input("argv", "the program must not be empty"));
    }
    for arg in &cmd.argv {
        if arg.len() > MAX_EXEC_ARG_BYTES {
            return Err(Error::bad_input("argv", format!("each argument is at most {MAX_EXEC_ARG_BYTES} bytes")));
        }
        if arg.contains('\0') {
            return Err(Error::bad_input("argv", "arguments must not contain NUL"));
        }
    }
    if cmd.env.len() > MAX_EXEC_ENV {
        return Err(Error::bad_input("env", format!("at most {MAX_EXEC_ENV} variables")));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &cmd.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(Error::bad_input("env", "names must be non-empty, without '=' or NUL"));
        }
        if value.contains('\0') {
            return Err(Error::bad_input("env", "values must not contain NUL"));
        }
        if name.len() + value.len() > MAX_EXEC_ARG_BYTES {
            return Err(Error::bad_input("env", format!("each variable is at most {MAX_EXEC_ARG_BYTES} bytes")));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::bad_input("env", format!("{name} is given twice")));
        }
    }
    if cmd.stdin.len() > MAX_EXEC_STDIN {
        return Err(Error::bad_input("stdin", format!("at most {MAX_EXEC_STDIN} bytes")));
    }
    let timeout = cmd.timeout_secs.unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS);
    if !(1..=MAX_EXEC_TIMEOUT_SECS).contains(&timeout) {
        return Err(Error::bad_input("timeoutSecs", format!("must be between 1 and {MAX_EXEC_TIMEOUT_SECS}")));
    }
    cmd.timeout_secs = Some(timeout);
    Ok(())
}

fn check_window(since: Option<f64>, until: Option<f64>) -> Result<()> {
    for (field, v) in [("since", since), ("until", until)] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(Error::bad_input(field, "must be a non-negative Unix time"));
        }
    }
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(Error::bad_input("since", "must not be after until"));
        }
    }
    Ok(())
}

impl Service {
    // ---- agent paths -------------------------------------------------------------------

    /// The server an agent manages, by its unique name.
    pub async fn server_by_name(&self, name: &str) -> Result<Server> {
        let mut conn = self.store.read().await?;
        servers::by_name(&mut conn, name).await?.ok_or(Error::NotFound("server"))
    }

    /// Every container of a server with what running it takes (three statements).
    pub async fn desired_containers(&self, server_id: i64) -> Result<Vec<DesiredContainer>> {
        let mut conn = self.store.read().await?;
        Ok(store_runtime::of_server(&mut conn, server_id, None).await?.into_iter().map(desired).collect())
    }

    /// One container, if it is on this server.
    pub async fn desired_container(&self, server_id: i64, container_id: i64) -> Result<Option<DesiredContainer>> {
        let mut conn = self.store.read().await?;
        Ok(store_runtime::of_server(&mut conn, server_id, Some(container_id)).await?.into_iter().map(desired).next())
    }

    /// Records what the agent observed. When the state or the observed generation changed, a
    /// `State` event is published (its `generation` is the observed one), so `containerEvents`
    /// subscribers see `RUNNING`, `STOPPED`, ... A container deleted meanwhile is ignored.
    pub async fn report_runtime(&self, container_id: i64, report: RuntimeReport) -> Result<()> {
        let mut tx = self.store.write().await?;
        let Some(container) = containers::get(&mut tx, container_id).await? else {
            return Ok(());
        };
        let old = store_runtime::get(&mut tx, container_id).await?;
        let obs = Observation {
            state: report.state.as_str(),
            pid: report.pid,
            started_at: report.started_at,
            observed_generation: report.observed_generation,
            last_error: report.last_error.as_deref(),
        };
        store_runtime::upsert(&mut tx, container_id, &obs, unix_now()).await?;
        tx.commit().await?;
        let changed = old.is_none_or(|o| o.state != obs.state || o.observed_generation != obs.observed_generation);
        if changed {
            self.publish(Event::Container(ContainerEvent {
                customer_id: container.customer_id,
                container_id,
                kind: ContainerEventKind::State,
                generation: report.observed_generation,
                state: Some(report.state.as_str().to_owned()),
            }))
            .await;
        }
        Ok(())
    }

    /// Records memory and disk use (bytes) sampled by the agent; nothing for a container
    /// never observed.
    pub async fn report_usage(&self, container_id: i64, memory_bytes: u64, disk_bytes: u64) -> Result<()> {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut tx = self.store.write().await?;
        store_runtime::set_usage(&mut tx, container_id, clamp(memory_bytes), clamp(disk_bytes), unix_now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One sample of every series of a container plus its usage columns, in one
    /// transaction (the agent's collector: one commit per container per sample, not ten).
    pub async fn record_container_stats(
        &self,
        container_id: i64,
        unix: i64,
        samples: &[(ContainerMetric, i64)],
        memory_bytes: i64,
        disk_bytes: i64,
    ) -> Result<()> {
        let day = crate::metrics::day_of_unix(unix);
        let mut tx = self.store.write().await?;
        if containers::get(&mut tx, container_id).await?.is_none() {
            return Ok(());
        }
        for (kind, value) in samples {
            metrics::append_container_sample(&mut tx, container_id, *kind, day, unix, *value).await?;
        }
        store_runtime::set_usage(&mut tx, container_id, memory_bytes, disk_bytes, unix_now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a quota alarm may be raised for the container now; if so the slot is taken
    /// (one conditional `UPDATE`), so at most one quota alarm per `alarm_freq` (never less
    /// than 60 s), across agents and restarts. Now is the database's clock, as for the
    /// delivery slot: agents that take over a server need not agree on the time.
    pub async fn quota_alarm_due(&self, container_id: i64) -> Result<bool> {
        let mut tx = self.store.write().await?;
        let now = berth_store::database_millis(&mut tx).await? / 1000;
        let due = store_runtime::claim_quota_alarm(&mut tx, container_id, now, alarm_delivery::MIN_ALARM_FREQ).await?;
        tx.commit().await?;
        Ok(due)
    }

    /// OOM kills of the container since the agent last counted them (agent path): the
    /// counter lives in the store, so kills while no agent watched are still counted once.
    pub async fn count_oom_kills(&self, container_id: i64, counter: u64) -> Result<u64> {
        let mut tx = self.store.write().await?;
        let new = store_runtime::advance_oom_kills(&mut tx, container_id, clamp_i64(counter)).await?;
        tx.commit().await?;
        Ok(new.max(0) as u64)
    }

    /// Makes `counter` the base OOM kill count (agent path, right after it started the
    /// container: a new instance may have a new cgroup).
    pub async fn reset_oom_kills(&self, container_id: i64, counter: u64) -> Result<()> {
        let mut tx = self.store.write().await?;
        store_runtime::set_oom_kills(&mut tx, container_id, clamp_i64(counter)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every event of every customer (the agent's trigger). Never hand this to a customer:
    /// customer subscriptions go through [`Service::subscribe`], which filters by tenant.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus.subscribe()
    }

    /// Registers the control of the agent that runs `server_id` in this process; exec and
    /// logs of that server's containers go through it. Replaces an earlier one.
    pub fn register_control(&self, server_id: i64, control: Arc<dyn ContainerControl>) {
        self.controls.set(server_id, Some(control));
    }

    /// Forgets the control of `server_id` (its agent stopped).
    pub fn unregister_control(&self, server_id: i64) {
        self.controls.set(server_id, None);
    }

    // ---- customer paths ----------------------------------------------------------------

    /// Observed state of one of the caller's containers (`Pending` when never observed).
    pub async fn runtime(&self, caller: &Caller, uid: i64) -> Result<RuntimeStatus> {
        let mut conn = self.store.read().await?;
        let c = owned_container(&mut conn, caller, uid).await?;
        Ok(store_runtime::get(&mut conn, c.id).await?.map(Into::into).unwrap_or_default())
    }

    /// Observed state of the caller's containers among `container_ids` (one statement);
    /// containers never observed are absent (their state is `RuntimeStatus::default()`).
    pub async fn runtimes_of_containers(
        &self,
        caller: &Caller,
        container_ids: &[i64],
    ) -> Result<HashMap<i64, RuntimeStatus>> {
        let mut conn = self.store.read().await?;
        Ok(store_runtime::owned_many(&mut conn, caller.customer_id, container_ids)
            .await?
            .into_iter()
            .map(|r| (r.container_id, r.into()))
            .collect())
    }

    /// Id and server of one of the caller's containers.
    async fn owned_placement(&self, caller: &Caller, uid: i64) -> Result<(i64, i64)> {
        let mut conn = self.store.read().await?;
        let c = owned_container(&mut conn, caller, uid).await?;
        Ok((c.id, c.server_id))
    }

    /// The control of the agent running `server_id` in this process.
    fn control_of(&self, server_id: i64) -> Result<Arc<dyn ContainerControl>> {
        self.controls
            .get(server_id)
            .ok_or_else(|| Error::unavailable("no agent for this container's server runs in this gateway"))
    }

    /// Runs a command in one of the caller's running containers, as the container's uid.
    /// Ownership first (another tenant's uid is `NotFound`), then the rules, then the agent.
    pub async fn exec(&self, caller: &Caller, uid: i64, mut cmd: ExecCommand) -> Result<ExecResult> {
        let (id, server_id) = self.owned_placement(caller, uid).await?;
        check_exec(&mut cmd)?;
        self.control_of(server_id)?.exec(id, cmd).await
    }

    /// Console output of one of the caller's containers in `[since, until]`, oldest first.
    pub async fn logs(
        &self,
        caller: &Caller,
        uid: i64,
        since: Option<f64>,
        until: Option<f64>,
    ) -> Result<Vec<LogEntry>> {
        let (id, server_id) = self.owned_placement(caller, uid).await?;
        check_window(since, until)?;
        self.control_of(server_id)?.logs(id, since, until).await
    }
}

fn desired(a: store_runtime::AgentContainer) -> DesiredContainer {
    DesiredContainer {
        ssh_keys: a.container.ssh_keys(),
        distro: a.distro.map(|d| (d.name, d.path)),
        loopboxes: a.loopboxes,
        container: a.container,
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str]) -> ExecCommand {
        ExecCommand { argv: argv.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn exec_rules() {
        let mut ok = cmd(&["/bin/true"]);
        check_exec(&mut ok).unwrap();
        assert_eq!(ok.timeout_secs, Some(DEFAULT_EXEC_TIMEOUT_SECS));
        let field = |mut c: ExecCommand| match check_exec(&mut c) {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(cmd(&[])), "argv");
        assert_eq!(field(cmd(&[""])), "argv");
        assert_eq!(field(cmd(&["a\0b"])), "argv");
        assert_eq!(field(ExecCommand { argv: vec!["x".into(); MAX_EXEC_ARGS + 1], ..cmd(&[]) }), "argv");
        assert_eq!(field(ExecCommand { argv: vec!["x".repeat(MAX_EXEC_ARG_BYTES + 1)], ..cmd(&[]) }), "argv");
        let mut max = ExecCommand { argv: vec!["x".repeat(MAX_EXEC_ARG_BYTES); MAX_EXEC_ARGS], ..cmd(&[]) };
        check_exec(&mut max).unwrap();
        assert_eq!(field(ExecCommand { stdin: vec![0; MAX_EXEC_STDIN + 1], ..cmd(&["x"]) }), "stdin");
        for bad in [0, 601, -1] {
            assert_eq!(field(ExecCommand { timeout_secs: Some(bad), ..cmd(&["x"]) }), "timeoutSecs");
        }
        let env = |pairs: &[(&str, &str)]| ExecCommand {
            env: pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..cmd(&["x"])
        };
        assert_eq!(field(env(&[("", "v")])), "env");
        assert_eq!(field(env(&[("A=B", "v")])), "env");
        assert_eq!(field(env(&[("A", "v"), ("A", "w")])), "env");
        check_exec(&mut env(&[("A", "v"), ("B", "")])).unwrap();
    }

    #[test]
    fn windows() {
        check_window(None, None).unwrap();
        check_window(Some(1.5), Some(1.5)).unwrap();
        assert!(matches!(check_window(Some(2.0), Some(1.0)), Err(Error::BadInput { .. })));
        assert!(matches!(check_window(Some(f64::NAN), None), Err(Error::BadInput { .. })));
    }

    #[test]
    fn public_state() {
        let row = |state: &str, err: Option<&str>| ContainerRuntime {
            container_id: 1,
            state: state.into(),
            pid: None,
            started_at: None,
            observed_generation: 1,
            last_error: err.map(Into::into),
            memory_bytes: 0,
            disk_bytes: 0,
            last_quota_alarm: 0,
            updated_at: 0,
        };
        assert_eq!(RuntimeStatus::default().state, RuntimeState::Pending);
        assert_eq!(RuntimeStatus::from(row("RUNNING", None)).state, RuntimeState::Running);
        assert_eq!(RuntimeStatus::from(row("RUNNING", Some("x"))).state, RuntimeState::Running);
        assert_eq!(RuntimeStatus::from(row("STOPPED", None)).state, RuntimeState::Stopped);
        assert_eq!(RuntimeStatus::from(row("STOPPED", Some("x"))).state, RuntimeState::Failed);
    }
}
