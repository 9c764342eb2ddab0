use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A distro: a root filesystem directory, used read-only below each container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistroSpec {
    pub name: String,
    pub path: PathBuf,
}

/// Everything a backend needs to run one container; the agent builds it from the desired
/// state. Changing any field takes a restart to apply (the agent bumps nothing itself: the
/// generation comes from the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// 30000 + id: the Unix uid and gid inside, the cgroup name, the home `/containers/<uid>`.
    pub uid: u32,
    /// The desired generation this spec was built from; reported back in [`Observed`].
    pub generation: i64,
    /// Spec §6.3 hostname.
    pub hostname: String,
    pub memory_mb: u64,
    /// Size of the ext4 home image.
    pub storage_mb: u64,
    pub distro: DistroSpec,
    /// Written to `~/.ssh/authorized_keys` at start.
    pub ssh_keys: Vec<String>,
    pub loopboxes: Vec<LoopboxSpec>,
    /// The container's 10.x address (spec §6.2); networking attaches it.
    pub ip: Ipv4Addr,
    /// What the container runs after its init is up (argv); `None`: the init alone, which
    /// keeps the container alive so exec and ssh can enter it.
    pub command: Option<Vec<String>>,
}

impl ContainerSpec {
    /// Home directory inside the container.
    pub fn home(&self) -> String {
        format!("/containers/{}", self.uid)
    }
}

/// A loopbox: an image file in the home, loop-mounted at a directory of the home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopboxSpec {
    /// Relative to the home.
    pub filename: String,
    /// Relative to the home; must exist as a directory.
    pub mountpoint: String,
    pub ro: bool,
}

/// Smallest image a loopbox mounts (seed: "image files lower than 1MB are not mounted").
pub const LOOPBOX_MIN_BYTES: u64 = 1024 * 1024;

/// Lifecycle as a backend sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Host resources exist, nothing runs.
    Stopped,
    Running,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Stopped => "STOPPED",
            RunState::Running => "RUNNING",
        }
    }
}

/// What a backend observed of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub uid: u32,
    pub state: RunState,
    /// Host pid of the container's init while it runs.
    pub pid: Option<u32>,
    /// Unix seconds the running instance started.
    pub started_at: Option<i64>,
    /// The spec generation the container was created or started with.
    pub generation: i64,
}

/// A command to run inside a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Added to the container's base environment (HOME, USER, PATH, ...).
    pub env: BTreeMap<String, String>,
    pub stdin: Vec<u8>,
    /// Killed after this long (default [`EXEC_DEFAULT_TIMEOUT_SECS`]).
    pub timeout_secs: Option<u64>,
}

pub const EXEC_DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Each of stdout and stderr is cut to this many bytes (the command still runs to its end).
pub const EXEC_OUTPUT_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// The command's exit code; 128 + signal when a signal ended it.
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// True when the timeout ended the command.
    pub timed_out: bool,
}

/// Resource use of one container. Counters are cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_nanos: u64,
    /// Memory charged to the container (rss + cache + kernel), bytes.
    pub memory_bytes: u64,
    pub memory_rss: u64,
    pub memory_cache: u64,
    pub memory_limit: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Used and total bytes of the home filesystem.
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    /// OOM kills since the container's cgroup was created.
    pub oom_kills: u64,
}

/// One line of console output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Unix seconds with fraction, when the line was written.
    pub unix: f64,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendEvent {
    /// The container's init ended (stopped, killed, or its last process exited).
    Exited { uid: u32 },
    /// The kernel killed a process of the container for exceeding its memory limit.
    OomKilled { uid: u32 },
}
