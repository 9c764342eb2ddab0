//! The in-jail helper (see `protocol` for its verbs). Runs in a fresh, single-threaded
//! process: never call it from a process that has started threads (tokio).
//!
//! Where is what:
//! * `init` — the `init` verb: the helper half (unshare the pid namespace, fork, wait for
//!   the ready line) and the init half (namespaces, root, drop privileges, console, reaping).
//! * `mounts` — the jail's root as a plain [`mounts::Step`] list built from the config, and
//!   the code that applies it through [`syscall::Syscalls`].
//! * `loopbox` — path rules and the one routine that loop-mounts an image below a home
//!   (used by `init` and by `loop-mount`/`loop-umount`).
//! * `loopdev` — the loop-device ioctls and the new mount API (fsopen … move_mount).
//! * `exec` — the `exec` verb; `enter` — joining a running jail (cgroups, namespaces, root).
//! * `creds` — dropping root for good; `console` — the console log writer.
//!
//! **Architecture Invariant**: nothing here mounts in the caller's mount namespace: every
//! mount happens after `unshare(CLONE_NEWNS)` + `MS_REC|MS_PRIVATE` on `/`, or after
//! `setns` into the jail's mount namespace.

mod console;
mod creds;
mod enter;
mod exec;
mod init;
mod loopbox;
mod loopdev;
mod mounts;
mod syscall;

use std::path::{Component, Path, PathBuf};

use crate::protocol::{JailConfig, Layout};

/// First uid a container may have; the helper refuses anything below (root, system users).
pub const MIN_CONTAINER_UID: u32 = 30001;

/// Errors of the helper; each verb turns them into its own report (a line on stdout or
/// stderr, an `ExecStatus`).
#[derive(Debug, thiserror::Error)]
pub enum InsideError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("loopbox {name}: {reason}")]
    Loopbox { name: String, reason: String },
    #[error("capabilities: {0}")]
    Caps(String),
}

pub type Result<T, E = InsideError> = std::result::Result<T, E>;

/// Adds "what was being done" to a nix or io error.
pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| InsideError::Sys { what: what(), source })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| InsideError::Io { what: what(), source })
    }
}

/// Runs one helper verb; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let verb = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    match verb {
        "init" => init::main(rest),
        "exec" => exec::main(rest),
        "loop-mount" => loopbox::mount_main(rest),
        "loop-umount" => loopbox::umount_main(rest),
        _ => {
            eprintln!("berth jail-helper: unknown verb {verb:?} (init, exec, loop-mount, loop-umount)");
            2
        }
    }
}

/// Reads and checks `<dir>/config.json`.
pub(crate) fn load_config(dir: &Path) -> Result<JailConfig> {
    let layout = Layout { dir: dir.to_path_buf() };
    let path = layout.config();
    let text = std::fs::read(&path).ctx(|| format!("read {}", path.display()))?;
    let config: JailConfig =
        serde_json::from_slice(&text).map_err(|e| InsideError::Config(format!("{}: {e}", path.display())))?;
    validate_config(&config)?;
    Ok(config)
}

/// What `init` and the other verbs rely on: a container uid, a sane hostname, absolute
/// paths without the characters overlayfs options cannot carry.
pub(crate) fn validate_config(config: &JailConfig) -> Result<()> {
    let spec = &config.spec;
    if spec.uid < MIN_CONTAINER_UID {
        return Err(InsideError::Config(format!("uid {} is below {MIN_CONTAINER_UID}", spec.uid)));
    }
    validate_hostname(&spec.hostname)?;
    let distro = &spec.distro.path;
    let text = distro.to_str().ok_or_else(|| InsideError::Config("distro path is not UTF-8".into()))?;
    if !distro.is_absolute() || text.contains([',', ':', '\\', '\n', '\0']) {
        return Err(InsideError::Config(format!("distro path {text:?} must be absolute, without , : \\")));
    }
    if config.cgroups.is_empty() {
        return Err(InsideError::Config("no cgroup directories".into()));
    }
    for cgroup in &config.cgroups {
        // `Path::starts_with` compares components: `..` would still pass it.
        let plain = cgroup.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain || !cgroup.starts_with("/sys/fs/cgroup/") {
            return Err(InsideError::Config(format!("cgroup {} is not below /sys/fs/cgroup", cgroup.display())));
        }
        // The container's own leaf (`<controller>/<parent>/<uid>`), never a shared cgroup.
        if cgroup.file_name() != Some(spec.uid.to_string().as_ref()) {
            return Err(InsideError::Config(format!("cgroup {} is not the container's own", cgroup.display())));
        }
    }
    if let Some(argv) = &spec.command {
        if argv.is_empty() || argv.iter().any(|a| a.contains('\0')) {
            return Err(InsideError::Config("command must be a non-empty argv without NUL".into()));
        }
    }
    Ok(())
}

/// Hostname: empty (the uid is used) or up to 64 of `[A-Za-z0-9.-]`.
pub(crate) fn validate_hostname(name: &str) -> Result<()> {
    let ok = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(InsideError::Config(format!("hostname {name:?} must be up to 64 of [A-Za-z0-9.-]")))
    }
}

/// The hostname the jail gets: the spec's, or the uid when it is empty.
pub(crate) fn effective_hostname(config: &JailConfig) -> String {
    if config.spec.hostname.is_empty() {
        config.spec.uid.to_string()
    } else {
        config.spec.hostname.clone()
    }
}

/// The environment every process inside starts from (exec adds the request's on top).
pub(crate) fn base_env(config: &JailConfig) -> Vec<(String, String)> {
    let uid = config.spec.uid.to_string();
    vec![
        ("HOME".into(), config.spec.home()),
        ("USER".into(), uid.clone()),
        ("LOGNAME".into(), uid),
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()),
        ("HOSTNAME".into(), effective_hostname(config)),
        ("TERM".into(), "dumb".into()),
    ]
}

/// Parses `<dir>` of a verb's arguments.
pub(crate) fn dir_arg(args: &[String], verb: &str, n: usize) -> Result<PathBuf> {
    if args.len() != n {
        return Err(InsideError::Usage(format!("{verb} expects {n} arguments, got {}", args.len())));
    }
    Ok(PathBuf::from(&args[0]))
}

/// Parses `<init pid>` of a verb's arguments.
pub(crate) fn pid_arg(arg: &str) -> Result<i32> {
    match arg.parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => Err(InsideError::Usage(format!("bad init pid {arg:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_backend::{ContainerSpec, DistroSpec};

    pub(crate) fn config() -> JailConfig {
        JailConfig {
            spec: ContainerSpec {
                uid: 30123,
                generation: 1,
                hostname: "box.example".into(),
                memory_mb: 64,
                storage_mb: 64,
                distro: DistroSpec { name: "busybox".into(), path: "/var/lib/berth/distros/busybox".into() },
                ssh_keys: vec![],
                loopboxes: vec![],
                ip: "10.0.0.2".parse().unwrap(),
                command: None,
            },
            cgroups: vec!["/sys/fs/cgroup/memory/berth/30123".into()],
            cgroup_mount: crate::protocol::CgroupMount::V1Memory,
        }
    }

    #[test]
    fn validates_config() {
        assert!(validate_config(&config()).is_ok());
        let mut c = config();
        c.spec.uid = 0;
        assert!(validate_config(&c).is_err());
        let mut c = config();
        c.spec.uid = 1000;
        assert!(validate_config(&c).is_err());
        let mut c = config();
        c.spec.hostname = "a b".into();
        assert!(validate_config(&c).is_err());
        let mut c = config();
        c.spec.distro.path = "/x,upperdir=/etc".into();
        assert!(validate_config(&c).is_err());
        let mut c = config();
        c.cgroups = vec!["/etc".into()];
        assert!(validate_config(&c).is_err());
        c.cgroups = vec!["/sys/fs/cgroup/memory/../../../etc".into()];
        assert!(validate_config(&c).is_err());
        c.cgroups = vec!["/sys/fs/cgroup/memory".into()];
        assert!(validate_config(&c).is_err());
        let mut c = config();
        c.spec.command = Some(vec![]);
        assert!(validate_config(&c).is_err());
    }

    #[test]
    fn hostname_falls_back_to_uid() {
        let mut c = config();
        assert_eq!(effective_hostname(&c), "box.example");
        c.spec.hostname.clear();
        assert_eq!(effective_hostname(&c), "30123");
    }

    #[test]
    fn dispatch_rejects_unknown_verbs() {
        assert_eq!(main(&["nope".into()]), 2);
        assert_eq!(main(&[]), 2);
    }
}
