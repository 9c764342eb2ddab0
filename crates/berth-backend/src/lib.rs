//! The contract between the agent and a host engine (design §4).
//!
//! A backend turns a [`ContainerSpec`] into something running on this host and reports what
//! it sees. It knows nothing about customers, the database or the APIs: the agent decides
//! *what* should run, a backend only knows *how*. Every operation is idempotent — create,
//! start, stop and remove twice is harmless — and remove leaves nothing behind on the host.
//!
//! **Architecture Invariant:** only backends touch the kernel (namespaces, mounts, cgroups,
//! loop devices); the agent talks to them through [`Backend`] alone.

pub mod distro;
mod error;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{BackendError, IoContext, Result};
pub use types::*;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

/// One host engine: native jails, systemd-nspawn or Docker.
///
/// Containers are named by their uid (30000 + id), which is also their Unix uid, cgroup name
/// and home directory name (spec §6.1).
#[async_trait]
pub trait Backend: Send + Sync {
    /// Short engine name (`jail`, `nspawn`, `docker`), for logs and metrics.
    fn name(&self) -> &'static str;

    /// Makes a distro usable (checks the rootfs; Docker imports it as an image once).
    async fn prepare_distro(&self, distro: &DistroSpec) -> Result<()>;

    /// Creates (or updates, when stopped) the container's host resources: its home image of
    /// `storage_mb`, cgroups and bookkeeping. Does not start it. Idempotent.
    async fn create(&self, spec: &ContainerSpec) -> Result<()>;

    /// Starts a created container and returns once it runs (setup errors are returned here,
    /// not discovered later). Starting a running container returns its current observation.
    async fn start(&self, uid: u32) -> Result<Observed>;

    /// SIGTERM to everything inside, then SIGKILL after `grace`. Stopping a stopped container
    /// is a no-op.
    async fn stop(&self, uid: u32, grace: Duration) -> Result<()>;

    /// SIGKILL to everything inside, at once.
    async fn kill(&self, uid: u32) -> Result<()>;

    /// Stops the container if needed and removes every host resource it had: processes,
    /// mounts, loop devices, cgroups, files. Removing an unknown container is a no-op.
    async fn remove(&self, uid: u32) -> Result<()>;

    /// What runs for this uid now; `None` when the backend has no such container.
    async fn state(&self, uid: u32) -> Result<Option<Observed>>;

    /// Every container this backend manages on this host, running or not: how the agent
    /// adopts what survived its own restart.
    async fn list(&self) -> Result<Vec<Observed>>;

    /// Runs a command inside a running container as the container's uid.
    async fn exec(&self, uid: u32, request: ExecRequest) -> Result<ExecOutput>;

    /// Resource use now (counters are cumulative since the container started).
    async fn stats(&self, uid: u32) -> Result<Stats>;

    /// Console output with timestamps in `[since, until]` (Unix seconds, inclusive), oldest
    /// first. The log is bounded: old lines are dropped first.
    async fn logs(&self, uid: u32, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogLine>>;

    /// Exits and OOM kills, as they happen, for every container of this backend.
    fn events(&self) -> broadcast::Receiver<BackendEvent>;

    /// Mounts one loopbox into a running container (also done at start for every loopbox of
    /// the spec). Refuses images under 1 MiB and paths outside the home.
    async fn mount_loopbox(&self, uid: u32, loopbox: &LoopboxSpec) -> Result<()>;

    /// Unmounts a loopbox from a running container; the image file stays. Unmounting what is
    /// not mounted is a no-op.
    async fn unmount_loopbox(&self, uid: u32, mountpoint: &str) -> Result<()>;
}

/// How long `stop` waits by default before SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
