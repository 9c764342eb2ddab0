//! The contract between the host side of the jail backend (`JailBackend`, running in the
//! agent) and the in-jail helper (`inside`, a fresh single-threaded process: `berth
//! jail-helper …` or the `berth-jail-helper` binary). Both sides use only what is here.
//!
//! One directory per container, `<jail root>/<uid>/` ([`Layout`]):
//!
//! | path           | written by | what |
//! |----------------|------------|------|
//! | `config.json`  | host       | [`JailConfig`]: the spec plus host facts (cgroups) |
//! | `home.img`     | host       | ext4 image of `storage_mb`, root owned by uid:uid |
//! | `upper/`, `work/` | host creates, kernel fills | overlay upper and work dirs |
//! | `rootfs/`      | host creates | overlay mount point; mounted only inside the jail's mount namespace |
//! | `log/`         | host creates, owned by uid | `console.log` + `console.log.1` written by the init |
//! | `state.json`   | host       | [`RunRecord`] of the running instance |
//!
//! Helper verbs (argv after the helper program and its fixed prefix):
//!
//! * `init <dir>` — starts the jail from `<dir>/config.json`. Prints `pid <host pid of the
//!   init>` then `ok` (or `error <message>`) on stdout, one line each, and exits 0 once the
//!   init reported ready (1 on error, after making sure the half-started init is gone). The
//!   init keeps running, detached from the helper's stdio, in its own session.
//! * `exec <dir> <init pid> <request json>` — runs [`ExecRequest`] inside: joins the init's
//!   cgroups and namespaces, then forks the command as uid:uid with no capabilities and
//!   no_new_privs. stdin/stdout/stderr are the helper's own. The final [`ExecStatus`] is
//!   written as one JSON line to fd 3 (a pipe the host passes), then the helper exits.
//! * `loop-mount <dir> <init pid> <loopbox json>` — mounts one [`LoopboxSpec`] inside the
//!   running jail. Exit 0 on success; on failure a one-line reason on stderr and exit 1
//!   when the loopbox is refused (missing, too small, not a directory...; the reason may be
//!   shown to the customer), exit 2 when the helper itself failed.
//! * `loop-umount <dir> <init pid> <mountpoint>` — detaches the mount at `<home>/<mountpoint>`
//!   (its loop device goes with it: loop devices are attached with autoclear). Exit 0 also
//!   when nothing was mounted there.
//!
//! Console log format: one line per output line, `<unix seconds, 6 decimals> <text>\n`.
//! `console.log` is renamed to `console.log.1` (replacing it) when it would pass
//! [`LOG_ROTATE_BYTES`], so a container's log never exceeds twice that.
//!
//! Stopping: the host sends SIGTERM to the init pid it recorded. The init, after checking it
//! is pid 1 of its own pid namespace, forwards SIGTERM to every process of the jail
//! (`kill(-1)` inside the namespace), reaps until none is left, and exits 0. SIGKILL of the
//! init (host side, after the grace period) ends the whole pid namespace.

use std::path::{Path, PathBuf};

use berth_backend::{ContainerSpec, ExecRequest, LoopboxSpec};
use serde::{Deserialize, Serialize};

pub use berth_backend::LOOPBOX_MIN_BYTES;

/// `console.log` rotates before it grows past this.
pub const LOG_ROTATE_BYTES: u64 = 256 * 1024;

/// Exit code of `exec` when the helper itself failed (not the command).
pub const EXEC_HELPER_FAILED: i32 = 125;

/// Paths of one container's directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, uid: u32) -> Self {
        Layout { dir: root.join(uid.to_string()) }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn home_image(&self) -> PathBuf {
        self.dir.join("home.img")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }
    pub fn console_log(&self) -> PathBuf {
        self.log_dir().join("console.log")
    }
    pub fn console_log_old(&self) -> PathBuf {
        self.log_dir().join("console.log.1")
    }
    pub fn run_record(&self) -> PathBuf {
        self.dir.join("state.json")
    }
}

/// What `init` needs: the spec and the host facts the host side decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JailConfig {
    pub spec: ContainerSpec,
    /// Cgroup directories the init (and every exec) joins before unsharing its cgroup
    /// namespace: one per v1 controller (memory, cpuacct, pids, blkio), or the one v2 dir.
    pub cgroups: Vec<PathBuf>,
    /// What to mount read-only at `/run/cgroup` inside, so `memory.limit_in_bytes` (v1) or
    /// `memory.max` (v2) is readable there.
    pub cgroup_mount: CgroupMount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMount {
    /// `mount -t cgroup -o memory` (shows the jail's own memory cgroup as its root).
    V1Memory,
    /// `mount -t cgroup2`.
    V2,
}

/// Written by the host after `init` answered `ok`; how a later agent adopts the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: tells a reused pid from ours.
    pub start_ticks: u64,
    /// Unix seconds.
    pub started_at: i64,
    pub generation: i64,
}

/// Final word of `exec` on fd 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ExecStatus {
    /// The command ended: its exit code, or 128 + the signal that ended it.
    Exited { code: i32 },
    /// The timeout of the request passed; the command was killed.
    TimedOut,
    /// The helper could not run the command.
    Failed { message: String },
}

/// Re-exported so both sides name the request the same way.
pub type ExecArgs = ExecRequest;
pub type LoopboxArgs = LoopboxSpec;
