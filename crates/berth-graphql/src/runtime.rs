//! Observed state of containers: `Container.runtime` (through a per-request DataLoader),
//! `Container.logs`, and the `exec` mutation. Rules (ownership, limits, which agent answers)
//! live in `berth_service::runtime`; this module only translates.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use berth_service::runtime::{ExecCommand, LogEntry, RuntimeStatus};

use crate::error::GqlResult;
use crate::loaders::{batch_loader, load};
use crate::{caller, service};

batch_loader!(
    /// Container id → what its agent last observed (absent: never observed).
    RuntimeLoader, RuntimeStatus, runtimes_of_containers
);

/// `Container.runtime`: the loaded status, or "never observed".
pub(crate) async fn runtime_of(ctx: &Context<'_>, container_id: i64) -> async_graphql::Result<ContainerRuntime> {
    Ok(ContainerRuntime(load::<RuntimeLoader>(ctx, container_id).await?.unwrap_or_default()))
}

/// `Container.logs`.
pub(crate) async fn logs_of(
    ctx: &Context<'_>,
    uid: i64,
    since: Option<f64>,
    until: Option<f64>,
) -> async_graphql::Result<Vec<LogLine>> {
    let caller = caller(ctx)?;
    let lines = service(ctx).logs(&caller, uid, since, until).await.gql()?;
    Ok(lines.into_iter().map(LogLine::from).collect())
}

/// What the agent of the container's server last observed.
pub struct ContainerRuntime(RuntimeStatus);

#[Object]
impl ContainerRuntime {
    /// `RUNNING`, `STOPPED`, `PENDING` (never observed) or `FAILED` (not running, and the
    /// agent's last action failed: see `lastError`).
    async fn state(&self) -> &'static str {
        self.0.state.as_str()
    }
    /// Host pid of the container's init while it runs.
    async fn pid(&self) -> Option<i64> {
        self.0.pid
    }
    /// When the running instance started, Unix seconds.
    async fn started_at(&self) -> Option<i64> {
        self.0.started_at
    }
    /// The container generation the observed instance was built from; equal to
    /// `Container.generation` once a change has been applied.
    async fn observed_generation(&self) -> i64 {
        self.0.observed_generation
    }
    /// Why the agent's last action on this container failed.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// Memory in use at the last sample, bytes.
    async fn memory_used(&self) -> i64 {
        self.0.memory_bytes
    }
    /// Disk in use in the home at the last sample, bytes.
    async fn disk_used(&self) -> i64 {
        self.0.disk_bytes
    }
}

/// One line of console output.
#[derive(SimpleObject)]
pub struct LogLine {
    /// Unix seconds with fraction.
    pub unix: f64,
    pub line: String,
}

impl From<LogEntry> for LogLine {
    fn from(e: LogEntry) -> Self {
        LogLine { unix: e.unix, line: e.line }
    }
}

/// An environment variable for `exec`.
#[derive(InputObject)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// How a command run by `exec` ended.
#[derive(SimpleObject)]
pub struct ExecResult {
    /// The exit code; 128 + signal when a signal ended the command.
    pub exit_code: i32,
    /// Output as UTF-8 (invalid sequences replaced), each stream cut at 1 MiB.
    pub stdout: String,
    pub stderr: String,
    /// True when the timeout ended the command.
    pub timed_out: bool,
}

#[derive(Default)]
pub struct RuntimeMutation;

#[Object]
impl RuntimeMutation {
    /// Runs a command in one of your running containers, as the container's user. `argv`:
    /// 1..=256 arguments of at most 4 KiB; `stdin` at most 1 MiB; `timeoutSecs` 1..=600
    /// (default 60). A stopped container is CONFLICT; a gateway that does not run the agent
    /// of the container's server answers UNAVAILABLE.
    async fn exec(
        &self,
        ctx: &Context<'_>,
        uid: i64,
        argv: Vec<String>,
        stdin: Option<String>,
        env: Option<Vec<EnvVar>>,
        timeout_secs: Option<i64>,
    ) -> async_graphql::Result<ExecResult> {
        let caller = caller(ctx)?;
        let cmd = ExecCommand {
            argv,
            env: env.unwrap_or_default().into_iter().map(|v| (v.name, v.value)).collect(),
            stdin: stdin.map(String::into_bytes).unwrap_or_default(),
            timeout_secs,
        };
        let out = service(ctx).exec(&caller, uid, cmd).await.gql()?;
        Ok(ExecResult {
            exit_code: out.exit_code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            timed_out: out.timed_out,
        })
    }
}
