//! Exec and logs for the service, over the backend: container id → uid, backend errors →
//! service errors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_backend::{Backend, BackendError, ExecRequest};
use berth_service::runtime::{not_running, ContainerControl, ExecCommand, ExecResult, LogEntry};
use berth_service::{Error, Result};

/// How long past its own timeout an exec may take before the agent gives up on the backend.
const EXEC_SLACK: Duration = Duration::from_secs(30);

/// The [`ContainerControl`] of one agent: every call goes to its backend.
pub struct BackendControl {
    backend: Arc<dyn Backend>,
}

impl BackendControl {
    pub fn new(backend: Arc<dyn Backend>) -> BackendControl {
        BackendControl { backend }
    }
}

fn uid(container_id: i64) -> Result<u32> {
    u32::try_from(berth_model::uid_of(container_id)).map_err(|_| Error::NotFound("container"))
}

/// Backend errors as the customer sees them.
pub(crate) fn service_error(e: BackendError) -> Error {
    match e {
        BackendError::NotRunning(_) | BackendError::NotFound(_) => not_running(),
        BackendError::Invalid { what, reason } => Error::bad_input(what, reason),
        BackendError::Unsupported(what) => Error::unavailable(format!("{what} is not supported by this backend")),
        other => Error::internal(other),
    }
}

#[async_trait]
impl ContainerControl for BackendControl {
    async fn exec(&self, container_id: i64, cmd: ExecCommand) -> Result<ExecResult> {
        let uid = uid(container_id)?;
        let timeout = cmd.timeout_secs.and_then(|t| u64::try_from(t).ok());
        let request =
            ExecRequest { argv: cmd.argv, env: cmd.env.into_iter().collect(), stdin: cmd.stdin, timeout_secs: timeout };
        let limit = Duration::from_secs(timeout.unwrap_or(berth_backend::EXEC_DEFAULT_TIMEOUT_SECS)) + EXEC_SLACK;
        let out = tokio::time::timeout(limit, self.backend.exec(uid, request))
            .await
            .map_err(|_| Error::internal(format!("backend exec in {uid} did not return within {limit:?}")))?
            .map_err(service_error)?;
        Ok(ExecResult { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr, timed_out: out.timed_out })
    }

    async fn logs(&self, container_id: i64, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogEntry>> {
        match self.backend.logs(uid(container_id)?, since, until).await {
            Ok(lines) => Ok(lines.into_iter().map(|l| LogEntry { unix: l.unix, line: l.line }).collect()),
            // Never created on this host: nothing was ever written.
            Err(BackendError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(service_error(e)),
        }
    }
}
