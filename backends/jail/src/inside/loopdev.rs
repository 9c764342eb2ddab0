//! Loop devices (`LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE`, always autoclear) and ext4 mounts
//! of them through the new mount API, so the target is an fd, never a path walked again.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use super::{Context, Result};

pub const LO_FLAGS_READ_ONLY: u32 = 1;
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoopInfo64 {
    pub lo_device: u64,
    pub lo_inode: u64,
    pub lo_rdevice: u64,
    pub lo_offset: u64,
    pub lo_sizelimit: u64,
    pub lo_number: u32,
    pub lo_encrypt_type: u32,
    pub lo_encrypt_key_size: u32,
    pub lo_flags: u32,
    pub lo_file_name: [u8; LO_NAME_SIZE],
    pub lo_crypt_name: [u8; LO_NAME_SIZE],
    pub lo_encrypt_key: [u8; LO_KEY_SIZE],
    pub lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoopConfig {
    pub fd: u32,
    pub block_size: u32,
    pub info: LoopInfo64,
    pub reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);

/// The `loop_config` for a backing fd: autoclear always, read-only when asked.
pub fn loop_config(backing: BorrowedFd<'_>, read_only: bool, name: &str) -> LoopConfig {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 },
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    };
    let bytes = name.as_bytes();
    let n = bytes.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&bytes[..n]);
    LoopConfig { fd: backing.as_raw_fd() as u32, block_size: 0, info, reserved: [0; 8] }
}

/// An attached loop device; its fd keeps it attached until the mount holds it (autoclear
/// detaches it when the last user goes).
pub struct LoopDevice {
    pub number: u32,
    /// Held, not read: keeps the device attached until the mount holds it.
    #[allow(dead_code)]
    pub fd: OwnedFd,
}

/// Attaches `backing` to a free loop device. `dev_dir` is the host's `/dev` (the node is
/// opened there, so it works after chroot).
pub fn attach(
    control: BorrowedFd<'_>,
    dev_dir: BorrowedFd<'_>,
    backing: BorrowedFd<'_>,
    read_only: bool,
    name: &str,
) -> Result<LoopDevice> {
    let config = loop_config(backing, read_only, name);
    let mut last = Errno::EBUSY;
    for _ in 0..20 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let number = unsafe { loop_ctl_get_free(control.as_raw_fd()) }.ctx(|| "LOOP_CTL_GET_FREE".into())?;
        let node = format!("loop{number}");
        let fd = match openat(dev_dir, node.as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(e @ Errno::ENOENT) => {
                // devtmpfs has not shown the node yet.
                last = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(e).ctx(|| format!("open /dev/{node}")),
        };
        // SAFETY: `config` is a valid loop_config that outlives the call.
        match unsafe { loop_configure(fd.as_raw_fd(), &config) } {
            Ok(_) => return Ok(LoopDevice { number: number as u32, fd }),
            // Another process took the device between GET_FREE and CONFIGURE.
            Err(e @ Errno::EBUSY) => last = e,
            Err(e) => return Err(e).ctx(|| format!("LOOP_CONFIGURE /dev/{node}")),
        }
    }
    Err(last).ctx(|| "no free loop device".into())
}

// The new mount API (Linux 5.2+); libc has the syscall numbers, these are <linux/mount.h>.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

fn fsconfig(fs: BorrowedFd<'_>, cmd: libc::c_uint, key: Option<&str>, value: Option<&str>) -> nix::Result<()> {
    let key = key.map(|k| std::ffi::CString::new(k).map_err(|_| Errno::EINVAL)).transpose()?;
    let value = value.map(|v| std::ffi::CString::new(v).map_err(|_| Errno::EINVAL)).transpose()?;
    // SAFETY: pointers are NUL-terminated strings or null, valid for the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    Errno::result(res).map(drop)
}

/// Mounts the ext4 on `/dev/loop<number>` (nosuid, nodev; ro when asked) onto the directory
/// `target` (an O_PATH fd). The device path is resolved from `dev_dir` (the host's `/dev`),
/// so this works after chroot into a jail whose `/dev` has no loop nodes.
pub fn mount_ext4(dev_dir: BorrowedFd<'_>, number: u32, target: BorrowedFd<'_>, read_only: bool) -> Result<()> {
    let node = format!("loop{number}");
    let what = || format!("mount /dev/{node}");
    let cwd = nix::fcntl::open(".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| "open cwd".into())?;
    // The fs context resolves its source relative to the cwd, which may lie outside a chroot.
    nix::unistd::fchdir(dev_dir).ctx(|| "fchdir /dev".into())?;
    let created = (|| -> Result<OwnedFd> {
        let name = std::ffi::CString::new("ext4").expect("no NUL");
        // SAFETY: valid C string; returns a new fd or -1.
        let fs = Errno::result(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })
            .ctx(|| "fsopen ext4".into())?;
        // SAFETY: fsopen returned a fresh fd we now own.
        let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
        fsconfig(fs.as_fd(), FSCONFIG_SET_STRING, Some("source"), Some(&node)).ctx(what)?;
        if read_only {
            fsconfig(fs.as_fd(), FSCONFIG_SET_FLAG, Some("ro"), None).ctx(what)?;
        }
        fsconfig(fs.as_fd(), FSCONFIG_CMD_CREATE, None, None).ctx(what)?;
        Ok(fs)
    })();
    nix::unistd::fchdir(cwd.as_fd()).ctx(|| "fchdir back".into())?;
    let fs = created?;
    let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | if read_only { MOUNT_ATTR_RDONLY } else { 0 };
    // SAFETY: plain integer arguments; returns a new fd or -1.
    let mnt =
        Errno::result(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) }).ctx(what)?;
    // SAFETY: fsmount returned a fresh fd we now own.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let empty = c"";
    // SAFETY: both paths are the empty C string; the fds are valid.
    let res = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(res).map(drop).ctx(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sets_autoclear_and_read_only() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let rw = loop_config(file.as_fd(), false, "home");
        assert_eq!(rw.info.lo_flags, LO_FLAGS_AUTOCLEAR);
        assert_eq!(rw.fd as i32, file.as_raw_fd());
        assert_eq!(&rw.info.lo_file_name[..5], b"home\0");
        let ro = loop_config(file.as_fd(), true, &"x".repeat(100));
        assert_eq!(ro.info.lo_flags, LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY);
        assert_eq!(ro.info.lo_file_name[63], 0);
    }
}
