//! Loop devices left attached to files of a container directory (normally none: the helper
//! attaches with autoclear, so they go with the jail's mount namespace).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `LOOP_CLR_FD` from linux/loop.h.
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;

/// Loop devices (`/dev/loopN`) whose backing file lies under `dir`.
pub fn attached_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/block") else { return found };
    let prefix = format!("{}/", dir.display());
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else { continue };
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        if backing.starts_with(&prefix) {
            found.push(PathBuf::from("/dev").join(&name));
        }
    }
    found
}

/// Detaches one loop device. A device still in use is switched to autoclear by the kernel
/// and goes once its last user closes it.
pub fn detach(dev: &Path) -> io::Result<()> {
    let file = OpenOptions::new().read(true).open(dev)?;
    // SAFETY: LOOP_CLR_FD takes no argument; the fd is valid for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // ENXIO: already detached.
        if e.raw_os_error() != Some(libc::ENXIO) {
            return Err(e);
        }
    }
    Ok(())
}

/// Every mount point (in this process's mount namespace) at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let d = dir.display().to_string();
    let prefix = format!("{d}/");
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|mp| *mp == d || mp.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}
