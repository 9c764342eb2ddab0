//! Dropping root for good: the jail's init and every process it or `exec` starts runs as
//! the container's uid (== gid), with no supplementary groups, empty capability sets
//! (bounding included) and no_new_privs.

use caps::CapSet;
use nix::unistd::{Gid, Uid};

use super::{Context, InsideError, Result};

fn caps_err(what: &str, e: caps::errors::CapsError) -> InsideError {
    InsideError::Caps(format!("{what}: {e}"))
}

/// Highest capability number of the running kernel.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
        .min(63)
}

/// Drops everything; the caller keeps running as `uid:uid`.
pub fn drop_privileges(uid: u32) -> Result<()> {
    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("clear ambient", e))?;
    // The bounding set needs CAP_SETPCAP, so it goes before setuid. The caps crate only
    // knows the capabilities of its release: drop by number up to the kernel's last too.
    caps::clear(None, CapSet::Bounding).map_err(|e| caps_err("clear bounding", e))?;
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments.
        let res = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if res != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
            return Err(nix::errno::Errno::last()).ctx(|| format!("drop capability {cap} from the bounding set"));
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(|e| caps_err("clear inheritable", e))?;
    nix::unistd::setgroups(&[]).ctx(|| "setgroups []".into())?;
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(uid));
    nix::unistd::setresgid(g, g, g).ctx(|| format!("setresgid {uid}"))?;
    nix::unistd::setresuid(u, u, u).ctx(|| format!("setresuid {uid}"))?;
    // setuid away from 0 already emptied these; make sure.
    caps::clear(None, CapSet::Effective).map_err(|e| caps_err("clear effective", e))?;
    caps::clear(None, CapSet::Permitted).map_err(|e| caps_err("clear permitted", e))?;
    nix::sys::prctl::set_no_new_privs().ctx(|| "PR_SET_NO_NEW_PRIVS".into())?;
    verify(uid)
}

/// Refuses to go on unless the drop really happened.
fn verify(uid: u32) -> Result<()> {
    let ids_ok = nix::unistd::getuid().as_raw() == uid
        && nix::unistd::geteuid().as_raw() == uid
        && nix::unistd::getgid().as_raw() == uid
        && nix::unistd::getegid().as_raw() == uid
        && nix::unistd::getgroups().map(|g| g.is_empty()).unwrap_or(false);
    if !ids_ok {
        return Err(InsideError::Caps(format!("still not uid/gid {uid} only after setresuid")));
    }
    for set in [CapSet::Permitted, CapSet::Effective, CapSet::Inheritable, CapSet::Ambient, CapSet::Bounding] {
        let left = caps::read(None, set).map_err(|e| caps_err("read", e))?;
        if !left.is_empty() {
            return Err(InsideError::Caps(format!("{set:?} set still has {left:?}")));
        }
    }
    if !nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        return Err(InsideError::Caps("no_new_privs is not set".into()));
    }
    Ok(())
}
