//! Joining a running jail from outside (`exec`, `loop-mount`, `loop-umount`): check that the
//! pid is the jail's init, open its namespaces and root, then setns + chroot.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use super::syscall::Syscalls;
use super::{Context, InsideError, Result};

/// Every namespace of a jail, in the order `exec` joins them (mount last: after it, host
/// paths are gone).
pub const ALL_NAMESPACES: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Only the mount namespace (loopbox verbs).
pub const MOUNT_NAMESPACE: [(&str, CloneFlags); 1] = [("mnt", CloneFlags::CLONE_NEWNS)];

/// What `/proc/<pid>/status` says about a process.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcStatus {
    pub ns_pids: Vec<i32>,
    pub real_uid: u32,
}

pub fn parse_status(text: &str) -> Option<ProcStatus> {
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let ns_pids = field("NSpid:")?.split_whitespace().map(|p| p.parse().ok()).collect::<Option<Vec<i32>>>()?;
    let real_uid = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
    Some(ProcStatus { ns_pids, real_uid })
}

/// Refuses unless `pid` is pid 1 of a pid namespace below ours, runs as `uid`, and lives in
/// another mount namespace than ours: entering the wrong process would run a command on
/// the host.
pub fn verify_init(pid: i32, uid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).ctx(|| format!("init {pid} is not running ({path})"))?;
    let status = parse_status(&text).ok_or_else(|| InsideError::Config(format!("cannot parse {path}")))?;
    if status.ns_pids.len() < 2 || status.ns_pids.last() != Some(&1) {
        return Err(InsideError::Config(format!("process {pid} is not the init of a jail")));
    }
    if status.real_uid != uid {
        return Err(InsideError::Config(format!("process {pid} runs as uid {}, not {uid}", status.real_uid)));
    }
    let ns_id = |p: String| nix::sys::stat::stat(p.as_str()).map(|s| (s.st_dev, s.st_ino));
    let ours = ns_id("/proc/self/ns/mnt".into()).ctx(|| "stat /proc/self/ns/mnt".into())?;
    let theirs = ns_id(format!("/proc/{pid}/ns/mnt")).ctx(|| format!("stat /proc/{pid}/ns/mnt"))?;
    if ours == theirs {
        return Err(InsideError::Config(format!("process {pid} shares our mount namespace")));
    }
    Ok(())
}

/// Open handles on a running jail, taken while host paths are visible.
pub struct JailFds {
    namespaces: Vec<(CloneFlags, OwnedFd)>,
    root: OwnedFd,
}

/// Opens the namespaces and root of the init `pid` of container `uid`. The pid is checked
/// ([`verify_init`]) before and again after opening, and the mount namespace opened must
/// not be ours: if the init died and its pid went to a host process in between, we would
/// otherwise enter the host.
pub fn open_jail(pid: i32, uid: u32, namespaces: &[(&str, CloneFlags)]) -> Result<JailFds> {
    verify_init(pid, uid)?;
    let open =
        |p: String, flags: OFlag| nix::fcntl::open(p.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty()).ctx(|| p);
    let mut fds = Vec::with_capacity(namespaces.len());
    for (name, flag) in namespaces {
        fds.push((*flag, open(format!("/proc/{pid}/ns/{name}"), OFlag::O_RDONLY)?));
    }
    let root = open(format!("/proc/{pid}/root"), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    verify_init(pid, uid)?;
    let ours = nix::sys::stat::stat("/proc/self/ns/mnt").ctx(|| "stat /proc/self/ns/mnt".into())?;
    for (flag, fd) in &fds {
        if *flag == CloneFlags::CLONE_NEWNS {
            let theirs = nix::sys::stat::fstat(fd.as_fd()).ctx(|| format!("stat the mount namespace of {pid}"))?;
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) {
                return Err(InsideError::Config(format!("process {pid} shares our mount namespace")));
            }
        }
    }
    Ok(JailFds { namespaces: fds, root })
}

/// setns into each namespace in order, then put our root and cwd at the jail's root.
pub fn enter(sys: &dyn Syscalls, fds: JailFds) -> Result<()> {
    for (flag, fd) in &fds.namespaces {
        sys.setns(fd.as_fd(), *flag)?;
    }
    sys.enter_root(fds.root.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\tsh\nUid:\t30123\t30123\t30123\t30123\nGid:\t1\nNSpid:\t4242\t1\n";
        assert_eq!(parse_status(text), Some(ProcStatus { ns_pids: vec![4242, 1], real_uid: 30123 }));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn refuses_a_host_process() {
        // Ourselves: a pid of the host's pid namespace, not a jail's init.
        let me = std::process::id() as i32;
        assert!(verify_init(me, nix::unistd::getuid().as_raw()).is_err());
    }
}
