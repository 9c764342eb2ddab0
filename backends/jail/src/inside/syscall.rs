//! The seam under the kernel: mounts, namespaces, pivot_root and cgroup writes go through
//! [`Syscalls`], so unit tests can record what a verb would do without root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

#[cfg(test)]
use super::InsideError;
use super::{Context, Result};

/// The kernel as the helper uses it. Paths below a jail root are given as `(root, rel)` so
/// the real implementation can refuse symlinks on the way.
pub trait Syscalls {
    fn unshare(&self, flags: CloneFlags) -> Result<()>;
    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> Result<()>;
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    /// Fails unless `root/rel` exists and no component below `root` is a symlink.
    fn check_beneath(&self, root: &Path, rel: &str) -> Result<()>;
    /// Creates `root/rel` (if missing) as a directory; fails if it is anything else.
    fn mkdir(&self, root: &Path, rel: &str, mode: u32) -> Result<()>;
    /// Creates `root/rel` (if missing) as an empty regular file (a bind-mount target).
    fn touch(&self, root: &Path, rel: &str) -> Result<()>;
    /// Creates the symlink `root/rel` → `target` unless something exists there.
    fn symlink(&self, target: &str, root: &Path, rel: &str) -> Result<()>;
    /// Makes `new_root` the root of the current mount namespace and detaches the old one.
    fn pivot_root(&self, new_root: &Path) -> Result<()>;
    /// Writes `data` to an existing file (cgroup.procs and the like).
    fn write_file(&self, path: &Path, data: &[u8]) -> Result<()>;
    fn sethostname(&self, name: &str) -> Result<()>;
    /// `fchdir(root)` + `chroot(".")`: after `setns` into a mount namespace, puts us at the
    /// root the jail's init sees (its pivoted root).
    fn enter_root(&self, root: BorrowedFd<'_>) -> Result<()>;
}

/// The real kernel.
pub struct Real;

/// Opens `rel` below `root` (an O_PATH fd), refusing symlinks and `..` escapes.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

/// Opens a directory as an O_PATH fd.
pub fn open_path_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

impl Real {
    fn beneath(&self, root: &Path, rel: &str, flags: OFlag) -> Result<OwnedFd> {
        let root_fd = open_path_dir(root).ctx(|| format!("open {}", root.display()))?;
        open_beneath(root_fd.as_fd(), rel, flags).ctx(|| format!("open {}/{rel} (no symlinks)", root.display()))
    }

    fn exists(&self, root: &Path, rel: &str) -> bool {
        nix::sys::stat::lstat(&root.join(rel)).is_ok()
    }
}

impl Syscalls for Real {
    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        nix::sched::unshare(flags).ctx(|| format!("unshare {flags:?}"))
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> Result<()> {
        nix::sched::setns(fd, nstype).ctx(|| format!("setns {nstype:?}"))
    }

    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
            .ctx(|| format!("mount {} on {} ({})", source.unwrap_or("-"), target.display(), fstype.unwrap_or("-")))
    }

    fn check_beneath(&self, root: &Path, rel: &str) -> Result<()> {
        self.beneath(root, rel, OFlag::O_PATH).map(drop)
    }

    fn mkdir(&self, root: &Path, rel: &str, mode: u32) -> Result<()> {
        let path = root.join(rel);
        if !self.exists(root, rel) {
            std::fs::DirBuilder::new().mode(mode).create(&path).ctx(|| format!("mkdir {}", path.display()))?;
        }
        self.beneath(root, rel, OFlag::O_PATH | OFlag::O_DIRECTORY).map(drop)
    }

    fn touch(&self, root: &Path, rel: &str) -> Result<()> {
        let path = root.join(rel);
        if !self.exists(root, rel) {
            nix::fcntl::open(
                &path,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .ctx(|| format!("create {}", path.display()))?;
        }
        self.beneath(root, rel, OFlag::O_PATH).map(drop)
    }

    fn symlink(&self, target: &str, root: &Path, rel: &str) -> Result<()> {
        if self.exists(root, rel) {
            return Ok(());
        }
        let path = root.join(rel);
        std::os::unix::fs::symlink(target, &path).ctx(|| format!("symlink {}", path.display()))
    }

    fn pivot_root(&self, new_root: &Path) -> Result<()> {
        // pivot_root(".", "."): the old root ends up mounted on top of the new one, so it
        // can be detached without a directory to park it in.
        nix::unistd::chdir(new_root).ctx(|| format!("chdir {}", new_root.display()))?;
        nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", new_root.display()))?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the old root".into())?;
        nix::unistd::chdir("/").ctx(|| "chdir /".into())
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().write(true).open(path).ctx(|| format!("open {}", path.display()))?;
        file.write_all(data).ctx(|| format!("write {}", path.display()))
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        nix::unistd::sethostname(name).ctx(|| format!("sethostname {name}"))
    }

    fn enter_root(&self, root: BorrowedFd<'_>) -> Result<()> {
        nix::unistd::fchdir(root).ctx(|| "fchdir to the jail's root".into())?;
        nix::unistd::chroot(".").ctx(|| "chroot to the jail's root".into())?;
        nix::unistd::chdir("/").ctx(|| "chdir /".into())
    }
}

/// One recorded call of [`Recorder`].
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Unshare(CloneFlags),
    Setns(CloneFlags),
    Mount { source: Option<String>, target: PathBuf, fstype: Option<String>, flags: MsFlags, data: Option<String> },
    Check(PathBuf),
    Mkdir(PathBuf, u32),
    Touch(PathBuf),
    Symlink(String, PathBuf),
    PivotRoot(PathBuf),
    Write(PathBuf, Vec<u8>),
    Hostname(String),
    EnterRoot,
}

/// Records calls; fails the call whose index is `fail_at`.
#[cfg(test)]
#[derive(Default)]
pub struct Recorder {
    pub calls: std::cell::RefCell<Vec<Call>>,
    pub fail_at: Option<usize>,
}

#[cfg(test)]
impl Recorder {
    fn record(&self, call: Call) -> Result<()> {
        let mut calls = self.calls.borrow_mut();
        calls.push(call);
        if self.fail_at == Some(calls.len() - 1) {
            return Err(InsideError::Sys { what: "injected".into(), source: nix::Error::EPERM });
        }
        Ok(())
    }
}

#[cfg(test)]
impl Syscalls for Recorder {
    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        self.record(Call::Unshare(flags))
    }
    fn setns(&self, _fd: BorrowedFd<'_>, nstype: CloneFlags) -> Result<()> {
        self.record(Call::Setns(nstype))
    }
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        self.record(Call::Mount {
            source: source.map(str::to_owned),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_owned),
            flags,
            data: data.map(str::to_owned),
        })
    }
    fn check_beneath(&self, root: &Path, rel: &str) -> Result<()> {
        self.record(Call::Check(root.join(rel)))
    }
    fn mkdir(&self, root: &Path, rel: &str, mode: u32) -> Result<()> {
        self.record(Call::Mkdir(root.join(rel), mode))
    }
    fn touch(&self, root: &Path, rel: &str) -> Result<()> {
        self.record(Call::Touch(root.join(rel)))
    }
    fn symlink(&self, target: &str, root: &Path, rel: &str) -> Result<()> {
        self.record(Call::Symlink(target.into(), root.join(rel)))
    }
    fn pivot_root(&self, new_root: &Path) -> Result<()> {
        self.record(Call::PivotRoot(new_root.to_path_buf()))
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> Result<()> {
        self.record(Call::Write(path.to_path_buf(), data.to_vec()))
    }
    fn sethostname(&self, name: &str) -> Result<()> {
        self.record(Call::Hostname(name.into()))
    }
    fn enter_root(&self, _root: BorrowedFd<'_>) -> Result<()> {
        self.record(Call::EnterRoot)
    }
}

/// Joins each cgroup with this (single-threaded) process.
///
/// On cgroup v1, `0` written to `tasks` moves the calling thread alone, which the kernel
/// does without its global threadgroup lock; writing a pid to `cgroup.procs` takes that
/// lock for writing and waits for an RCU grace period (measured: up to ~15 ms of every
/// start on this machine, half of the time). The helper is single-threaded, so moving its
/// one thread is moving the process. On v2 (no `tasks` file) the pid goes to `cgroup.procs`.
pub fn join_cgroups(sys: &dyn Syscalls, cgroups: &[PathBuf]) -> Result<()> {
    let pid = std::process::id().to_string();
    for dir in cgroups {
        let tasks = dir.join("tasks");
        if tasks.exists() {
            sys.write_file(&tasks, b"0")?;
        } else {
            sys.write_file(&dir.join("cgroup.procs"), pid.as_bytes())?;
        }
    }
    Ok(())
}
