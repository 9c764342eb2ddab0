//! Loopboxes: image files of the home loop-mounted at a directory of the home. One routine,
//! [`mount_loopbox`], serves both `init` (before pivot_root) and the `loop-mount` verb
//! (after setns + chroot). Files are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` below the home, so a customer's symlink cannot reach other files.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MntFlags;
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};

use super::enter::{self, MOUNT_NAMESPACE};
use super::syscall::{open_beneath, open_path_dir, Real};
use super::{loopdev, Context, InsideError, Result};
use crate::protocol::{LoopboxArgs, LOOPBOX_MIN_BYTES};

/// Directories of the home that Berth manages; nothing may be mounted over them.
const MANAGED: [&str; 1] = [".ssh"];

/// Seed rules for a path relative to the home: not empty, no leading `/`, no `./` or `../`
/// sequences (nor a `.` or `..` component), no NUL.
pub fn validate_rel(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".into());
    }
    if path.len() > 4000 || path.contains('\0') || path.contains('\n') {
        return Err("path is too long or contains NUL or newline".into());
    }
    if path.starts_with('/') {
        return Err("path must be relative to the home".into());
    }
    if path.contains("./") || path.split('/').any(|c| c == "." || c == "..") {
        return Err("path must not contain ./ or ../".into());
    }
    Ok(())
}

/// [`validate_rel`] plus: not inside a directory Berth manages.
pub fn validate_mountpoint(path: &str) -> Result<(), String> {
    validate_rel(path)?;
    let first = path.split('/').next().unwrap_or("");
    if MANAGED.contains(&first) {
        return Err(format!("{first} is managed by berth"));
    }
    Ok(())
}

/// What a loopbox mount needs from outside the jail: `/dev/loop-control` and the host's
/// `/dev` (where loop nodes are).
pub struct LoopCtx {
    pub control: OwnedFd,
    pub dev_dir: OwnedFd,
}

impl LoopCtx {
    pub fn open() -> Result<Self> {
        let control = nix::fcntl::open("/dev/loop-control", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| "open /dev/loop-control".into())?;
        let dev_dir = open_path_dir(Path::new("/dev")).ctx(|| "open /dev".into())?;
        Ok(LoopCtx { control, dev_dir })
    }
}

/// True when `dir` is the root of a mount.
fn is_mount_root(dir: BorrowedFd<'_>) -> nix::Result<bool> {
    let here = fstat(dir)?;
    let parent = fstatat(dir, "..", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(here.st_dev != parent.st_dev || here.st_ino == parent.st_ino)
}

/// Attaches `<home>/<filename>` to a loop device and mounts it (ext4, nosuid, nodev, ro
/// when asked) at `<home>/<mountpoint>`.
pub fn mount_loopbox(ctx: &LoopCtx, home: BorrowedFd<'_>, uid: u32, spec: &LoopboxArgs) -> Result<()> {
    let fail = |reason: String| InsideError::Loopbox { name: spec.filename.clone(), reason };
    validate_rel(&spec.filename).map_err(|r| fail(format!("filename: {r}")))?;
    validate_mountpoint(&spec.mountpoint).map_err(|r| fail(format!("mountpoint: {r}")))?;

    let mode = if spec.ro { OFlag::O_RDONLY } else { OFlag::O_RDWR };
    let image = open_beneath(home, &spec.filename, mode).map_err(|e| fail(format!("open image: {e}")))?;
    let stat = fstat(image.as_fd()).map_err(|e| fail(format!("stat image: {e}")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(fail("image is not a regular file".into()));
    }
    if (stat.st_size as u64) < LOOPBOX_MIN_BYTES {
        return Err(fail(format!("image is smaller than {LOOPBOX_MIN_BYTES} bytes")));
    }
    let target = open_beneath(home, &spec.mountpoint, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| fail(format!("mountpoint {}: {e}", spec.mountpoint)))?;
    if is_mount_root(target.as_fd()).map_err(|e| fail(format!("stat mountpoint: {e}")))? {
        return Err(fail(format!("something is already mounted at {}", spec.mountpoint)));
    }
    let name = format!("berth-{uid}:{}", spec.filename);
    let device = loopdev::attach(ctx.control.as_fd(), ctx.dev_dir.as_fd(), image.as_fd(), spec.ro, &name)
        .map_err(|e| fail(e.to_string()))?;
    loopdev::mount_ext4(ctx.dev_dir.as_fd(), device.number, target.as_fd(), spec.ro).map_err(|e| fail(e.to_string()))
    // `device.fd` closes here; the mount keeps the device, autoclear frees it at umount.
}

/// Joins the jail's mount namespace and root; returns the home as an O_PATH fd.
fn enter_home(dir: &Path, pid: i32) -> Result<(u32, OwnedFd)> {
    let config = super::load_config(dir)?;
    let uid = config.spec.uid;
    let fds = enter::open_jail(pid, uid, &MOUNT_NAMESPACE)?;
    enter::enter(&Real, fds)?;
    let root = open_path_dir(Path::new("/")).ctx(|| "open /".into())?;
    let home = open_beneath(root.as_fd(), &format!("containers/{uid}"), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| format!("open /containers/{uid}"))?;
    Ok((uid, home))
}

/// Exit code of a failed loopbox verb: 1 when the request itself is refused (its reason is
/// shown to the customer), 2 when the helper failed (config, /proc, namespaces: the reason
/// names host paths and is only logged).
fn exit_code(e: &InsideError) -> i32 {
    match e {
        InsideError::Loopbox { .. } | InsideError::Usage(_) => 1,
        _ => 2,
    }
}

/// `loop-mount <dir> <init pid> <loopbox json>`.
pub fn mount_main(args: &[String]) -> i32 {
    let run = || -> Result<()> {
        let dir = super::dir_arg(args, "loop-mount", 3)?;
        let pid = super::pid_arg(&args[1])?;
        let spec: LoopboxArgs =
            serde_json::from_str(&args[2]).map_err(|e| InsideError::Usage(format!("loopbox json: {e}")))?;
        validate_rel(&spec.filename).map_err(|r| InsideError::Usage(format!("filename: {r}")))?;
        validate_mountpoint(&spec.mountpoint).map_err(|r| InsideError::Usage(format!("mountpoint: {r}")))?;
        // Opened before setns: the jail's /dev has neither.
        let ctx = LoopCtx::open()?;
        let (uid, home) = enter_home(&dir, pid)?;
        mount_loopbox(&ctx, home.as_fd(), uid, &spec)
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("loop-mount: {e}");
            exit_code(&e)
        }
    }
}

/// `loop-umount <dir> <init pid> <mountpoint>`.
pub fn umount_main(args: &[String]) -> i32 {
    let run = || -> Result<()> {
        let dir = super::dir_arg(args, "loop-umount", 3)?;
        let pid = super::pid_arg(&args[1])?;
        let mountpoint = &args[2];
        validate_mountpoint(mountpoint).map_err(|r| InsideError::Usage(format!("mountpoint: {r}")))?;
        let (_, home) = enter_home(&dir, pid)?;
        let target = match open_beneath(home.as_fd(), mountpoint, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("open {mountpoint}")),
        };
        if !is_mount_root(target.as_fd()).ctx(|| format!("stat {mountpoint}"))? {
            return Ok(());
        }
        // Unmount through the fd (cwd), never by walking the customer's path again.
        nix::unistd::fchdir(target.as_fd()).ctx(|| format!("fchdir {mountpoint}"))?;
        let res = nix::mount::umount2(".", MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
        nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
        match res {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
            Err(e) => Err(e).ctx(|| format!("umount {mountpoint}")),
        }
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("loop-umount: {e}");
            exit_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        for ok in ["img", "boxes/a.img", "a.b/c", "a..b", ".hidden"] {
            assert_eq!(validate_rel(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "./a", "a/./b", "a/.", "a/..", "..", ".", "a\0b", "x./y"] {
            assert!(validate_rel(bad).is_err(), "{bad:?}");
        }
        assert!(validate_mountpoint(".ssh").is_err());
        assert!(validate_mountpoint(".ssh/keys").is_err());
        assert!(validate_mountpoint("mnt/.ssh").is_ok());
        assert!(validate_mountpoint("data").is_ok());
    }

    #[test]
    fn mount_root_detection() {
        let root = open_path_dir(Path::new("/")).unwrap();
        assert!(is_mount_root(root.as_fd()).unwrap());
        let dir = tempfile_dir();
        let fd = open_path_dir(&dir).unwrap();
        assert!(!is_mount_root(fd.as_fd()).unwrap());
        std::fs::remove_dir(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-inside-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::remove_dir(dir.join("sub")).unwrap();
        dir
    }
}
