//! Cgroups of one container: v1 (a directory per controller: memory, cpuacct, pids, blkio)
//! or v2 (one directory). Only directories Berth created are ever written to; the root
//! cgroup's own files are read at most.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use berth_backend::BackendError;

use crate::protocol::CgroupMount;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers a container gets a directory in; memory is required.
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpuacct", "pids", "blkio"];
/// v2 controllers enabled for containers when available; memory is required.
const V2_CONTROLLERS: [&str; 4] = ["memory", "cpu", "io", "pids"];

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no cgroup v1 memory controller is mounted")]
    NoMemoryController,
    #[error("the cgroup v2 root does not delegate the memory controller (cgroup.subtree_control of {0})")]
    NoV2Memory(String),
    #[error("invalid cgroup parent {0:?}: must be a plain relative name")]
    BadParent(String),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: io::Error },
    #[error("cgroup {0} still has processes")]
    Busy(String),
}

impl From<CgroupError> for BackendError {
    fn from(e: CgroupError) -> Self {
        match e {
            CgroupError::BadParent(_) => BackendError::invalid("cgroup parent", e.to_string()),
            CgroupError::Io { action, path, source } => BackendError::io(format!("{action} {path}"), source),
            other => BackendError::Failed(other.to_string()),
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { action, path: path.display().to_string(), source }
}

/// The cgroup hierarchy of this host, found once.
#[derive(Debug, Clone)]
pub enum CgroupSystem {
    /// Mount point of each v1 controller Berth uses (memory always present).
    V1 {
        mounts: BTreeMap<String, PathBuf>,
    },
    V2 {
        root: PathBuf,
    },
}

impl CgroupSystem {
    pub fn detect() -> Result<CgroupSystem, CgroupError> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
        if let Ok(st) = statfs(CGROUP_ROOT) {
            if st.filesystem_type() == CGROUP2_SUPER_MAGIC {
                return Ok(CgroupSystem::V2 { root: PathBuf::from(CGROUP_ROOT) });
            }
        }
        let info =
            fs::read_to_string("/proc/self/mountinfo").map_err(io_err("reading", Path::new("/proc/self/mountinfo")))?;
        let mounts = parse_v1_mounts(&info);
        if !mounts.contains_key("memory") {
            return Err(CgroupError::NoMemoryController);
        }
        Ok(CgroupSystem::V1 { mounts })
    }

    /// The directories of container `uid` under `parent` (nothing is created here).
    pub fn for_container(&self, parent: &str, uid: u32) -> Result<Cgroups, CgroupError> {
        validate_parent(parent)?;
        let leaf = |mount: &Path| mount.join(parent).join(uid.to_string());
        Ok(match self {
            CgroupSystem::V1 { mounts } => Cgroups::V1 {
                memory: leaf(&mounts["memory"]),
                cpuacct: mounts.get("cpuacct").map(|m| leaf(m)),
                pids: mounts.get("pids").map(|m| leaf(m)),
                blkio: mounts.get("blkio").map(|m| leaf(m)),
            },
            CgroupSystem::V2 { root } => Cgroups::V2 { root: root.clone(), dir: leaf(root) },
        })
    }
}

fn validate_parent(parent: &str) -> Result<(), CgroupError> {
    let ok = !parent.is_empty()
        && parent.len() <= 200
        && parent.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && !parent.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(CgroupError::BadParent(parent.to_string()))
    }
}

/// From `/proc/self/mountinfo`: the mount point of each v1 controller Berth uses.
pub fn parse_v1_mounts(mountinfo: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let _source = r.next();
        let Some(super_opts) = r.next() else { continue };
        let Some(mount_point) = left.split_whitespace().nth(4) else { continue };
        for opt in super_opts.split(',') {
            if V1_CONTROLLERS.contains(&opt) && !out.contains_key(opt) {
                out.insert(opt.to_string(), PathBuf::from(unescape_mountinfo(mount_point)));
            }
        }
    }
    out
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // `\ooo` above 0o377 is not a byte: kept as it is (u8 arithmetic would overflow).
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = u32::from(b[i + 1] - b'0') * 64 + u32::from(b[i + 2] - b'0') * 8 + u32::from(b[i + 3] - b'0');
            match u8::try_from(v) {
                Ok(v) => {
                    out.push(v);
                    i += 4;
                }
                Err(_) => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup directories of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    V1 { memory: PathBuf, cpuacct: Option<PathBuf>, pids: Option<PathBuf>, blkio: Option<PathBuf> },
    V2 { root: PathBuf, dir: PathBuf },
}

impl Cgroups {
    /// Every directory, memory first (what the helper joins).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroups::V1 { memory, cpuacct, pids, blkio } => {
                std::iter::once(memory.clone()).chain([cpuacct, pids, blkio].into_iter().flatten().cloned()).collect()
            }
            Cgroups::V2 { dir, .. } => vec![dir.clone()],
        }
    }

    pub fn mount_kind(&self) -> CgroupMount {
        match self {
            Cgroups::V1 { .. } => CgroupMount::V1Memory,
            Cgroups::V2 { .. } => CgroupMount::V2,
        }
    }

    /// Creates the directories (and their parent) and sets the memory limit. Idempotent.
    pub fn ensure(&self, memory_bytes: u64) -> Result<(), CgroupError> {
        match self {
            Cgroups::V1 { memory, .. } => {
                for dir in self.dirs() {
                    make_leaf(&dir)?;
                }
                set_v1_memory_limit(memory, memory_bytes)
            }
            Cgroups::V2 { root, dir } => {
                let root_subtree = read_trimmed(&root.join("cgroup.subtree_control")).unwrap_or_default();
                if !root_subtree.split_whitespace().any(|c| c == "memory") {
                    return Err(CgroupError::NoV2Memory(root.display().to_string()));
                }
                let parent = dir.parent().expect("leaf has a parent");
                make_dir(parent)?;
                enable_v2_controllers(parent)?;
                make_leaf(dir)?;
                write_file(&dir.join("memory.max"), &memory_bytes.to_string())?;
                // No swap beyond the limit (the v1 equivalent is memsw = limit).
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    let _ = write_file(&swap, "0");
                }
                Ok(())
            }
        }
    }

    /// Zeroes the counters that can be reset (cpu time, block io), so stats count from the
    /// start of the running instance. Best effort.
    pub fn reset_counters(&self) {
        if let Cgroups::V1 { cpuacct, blkio, .. } = self {
            if let Some(d) = cpuacct {
                let _ = write_file(&d.join("cpuacct.usage"), "0");
            }
            if let Some(d) = blkio {
                let _ = write_file(&d.join("blkio.reset_stats"), "1");
            }
        }
    }

    /// True when no process is left in any of the directories (missing ones count as empty).
    pub fn is_empty(&self) -> bool {
        self.dirs().iter().all(|d| match fs::read_to_string(d.join("cgroup.procs")) {
            Ok(s) => s.trim().is_empty(),
            Err(_) => true,
        })
    }

    /// Pids in any of the directories, each once.
    pub fn members(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .dirs()
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Waits up to `limit` until every directory is free of processes.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Removes the directories (retrying while their last tasks drain), then the parent when
    /// no other container uses it. Missing directories are fine.
    pub async fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs() {
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        return Err(CgroupError::Busy(dir.display().to_string()));
                    }
                    Err(source) => {
                        return Err(CgroupError::Io { action: "removing", path: dir.display().to_string(), source })
                    }
                }
            }
            if let Some(parent) = dir.parent() {
                // Shared with other containers: only goes once empty.
                let _ = fs::remove_dir(parent);
            }
        }
        Ok(())
    }
}

/// Creates `dir` and its parent; a parent removed concurrently (the last container of the
/// parent went away) is created again.
fn make_leaf(dir: &Path) -> Result<(), CgroupError> {
    let parent = dir.parent().expect("leaf has a parent");
    for _ in 0..5 {
        make_dir(parent)?;
        match fs::create_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Io { action: "creating", path: dir.display().to_string(), source }),
        }
    }
    Err(CgroupError::Io { action: "creating", path: dir.display().to_string(), source: io::ErrorKind::NotFound.into() })
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Io { action: "creating", path: dir.display().to_string(), source }),
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("writing", path))
}

pub fn read_trimmed(path: &Path) -> io::Result<String> {
    fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// v1: memory.limit_in_bytes, and memory.memsw.limit_in_bytes (memory + swap) to the same
/// value so the container cannot swap. The kernel wants memory <= memsw at every step.
fn set_v1_memory_limit(dir: &Path, bytes: u64) -> Result<(), CgroupError> {
    let mem = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let has_memsw = memsw.exists();
    let value = bytes.to_string();
    if let Err(e) = fs::write(&mem, &value) {
        if has_memsw && e.raw_os_error() == Some(libc::EINVAL) {
            // Raising above the current memsw limit: raise memsw first.
            write_file(&memsw, &value)?;
            write_file(&mem, &value)?;
        } else {
            return Err(CgroupError::Io { action: "writing", path: mem.display().to_string(), source: e });
        }
    }
    if has_memsw {
        write_file(&memsw, &value)?;
    }
    Ok(())
}

/// v2: turns on the wanted controllers for the children of `parent` (a directory Berth
/// created), as far as `parent` has them.
fn enable_v2_controllers(parent: &Path) -> Result<(), CgroupError> {
    let available = read_trimmed(&parent.join("cgroup.controllers")).unwrap_or_default();
    let enabled = read_trimmed(&parent.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if !available.split_whitespace().any(|a| a == "memory") {
        return Err(CgroupError::NoV2Memory(parent.display().to_string()));
    }
    if !missing.is_empty() {
        write_file(&parent.join("cgroup.subtree_control"), &missing.join(" "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blk\\040io rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_v1_controllers_in_mountinfo() {
        let m = parse_v1_mounts(MOUNTINFO);
        assert_eq!(m["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m["blkio"], PathBuf::from("/sys/fs/cgroup/blk io"));
        assert!(!m.contains_key("pids"));
        assert_eq!(unescape_mountinfo("a\\777b\\134"), "a\\777b\\");
        let sys = CgroupSystem::V1 { mounts: m };
        let cg = sys.for_container("berth", 30001).unwrap();
        assert_eq!(
            cg.dirs(),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/berth/30001"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/30001"),
                PathBuf::from("/sys/fs/cgroup/blk io/berth/30001"),
            ]
        );
        for bad in ["", "/", "../x", "a/../b", "a//b"] {
            assert!(sys.for_container(bad, 30001).is_err(), "{bad:?}");
        }
    }
}
