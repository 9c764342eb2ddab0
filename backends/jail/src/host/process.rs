//! Process identity and lifetime from the host: `/proc/<pid>/stat` parsing, pidfds, and
//! signals that only ever reach the process we identified (pid + start ticks).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use berth_backend::BackendError;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("opening a pidfd for pid {pid}: {source}")]
    PidFd { pid: u32, source: io::Error },
    #[error("signalling pid {pid}: {source}")]
    Signal { pid: u32, source: io::Error },
    #[error("pid {pid} did not exit within {secs} s of SIGKILL")]
    Unkillable { pid: u32, secs: u64 },
}

impl From<ProcessError> for BackendError {
    fn from(e: ProcessError) -> Self {
        BackendError::Failed(e.to_string())
    }
}

/// The fields of `/proc/<pid>/stat` Berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z, X, ...
    pub state: char,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`; the command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let close = text.rfind(')')?;
    let mut fields = text[close + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), field 22 is the 19th further field.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// `None` when no such process exists (or it vanished while we read).
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|t| parse_stat(&t))
}

/// True when `pid` is still the process that started at `start_ticks` and has not exited
/// (a zombie counts as exited: the init is not our child, we cannot reap it).
pub fn is_alive(pid: u32, start_ticks: u64) -> bool {
    match read_stat(pid) {
        Some(st) => st.start_ticks == start_ticks && !matches!(st.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

/// A handle on one identified process: a pidfd when the kernel has them (signals then
/// cannot reach a recycled pid), else the pid with its start ticks re-checked each time.
pub struct Target {
    pid: u32,
    start_ticks: u64,
    fd: Option<AsyncFd<OwnedFd>>,
}

impl Target {
    /// Opens the process `pid` if it is alive and started at `start_ticks`; `None` when it is
    /// gone. The identity is checked after the pidfd is open, so the pidfd is ours.
    pub fn open(pid: u32, start_ticks: u64) -> Result<Option<Target>, ProcessError> {
        if pid <= 1 {
            return Ok(None);
        }
        let fd = match pidfd_open(pid) {
            Ok(fd) => {
                // SAFETY: the AsyncFd owns the OwnedFd, which stays open for its whole life.
                let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(|e| ProcessError::PidFd { pid, source: e.into() })?;
                Some(fd)
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
            Err(source) => return Err(ProcessError::PidFd { pid, source }),
        };
        if !is_alive(pid, start_ticks) {
            return Ok(None);
        }
        Ok(Some(Target { pid, start_ticks, fd }))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to this process only. A process that already exited is not an error.
    pub fn signal(&self, signal: libc::c_int) -> Result<(), ProcessError> {
        let rc = match &self.fd {
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.get_ref().as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                )
            },
            None => {
                if !is_alive(self.pid, self.start_ticks) {
                    return Ok(());
                }
                // Narrow race without pidfds (kernels before 5.3): the pid was verified just now.
                unsafe { libc::kill(self.pid as libc::pid_t, signal) as libc::c_long }
            }
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(ProcessError::Signal { pid: self.pid, source: e });
        }
        Ok(())
    }

    /// True once the process has exited (zombie or reaped).
    pub fn exited(&self) -> bool {
        !is_alive(self.pid, self.start_ticks)
    }

    /// Waits until the process has exited.
    pub async fn wait(&self) {
        // A pidfd turns readable when the process exits.
        if let Some(fd) = &self.fd {
            if fd.readable().await.is_ok() {
                return;
            }
        }
        while !self.exited() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits at most `limit`; true when the process exited.
    pub async fn wait_for(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.wait()).await.is_ok() || self.exited()
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns (pidfds are O_CLOEXEC).
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

/// SIGTERM (unless `grace` is zero), wait up to `grace`, then SIGKILL and wait until gone.
/// Returns once the process has exited; signals reach only `target`.
pub async fn terminate(target: &Target, grace: Duration) -> Result<(), ProcessError> {
    if !grace.is_zero() {
        target.signal(libc::SIGTERM)?;
        if target.wait_for(grace).await {
            return Ok(());
        }
        tracing::info!(pid = target.pid(), "init still running after the grace period, sending SIGKILL");
    }
    target.signal(libc::SIGKILL)?;
    const KILL_WAIT: Duration = Duration::from_secs(30);
    if target.wait_for(KILL_WAIT).await {
        Ok(())
    } else {
        Err(ProcessError::Unkillable { pid: target.pid(), secs: KILL_WAIT.as_secs() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(line).unwrap();
        assert_eq!(st, ProcStat { state: 'S', start_ticks: 987654 });
        assert_eq!(parse_stat("1 (x) Z 0").map(|s| s.state), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_our_own_stat() {
        let me = std::process::id();
        let st = read_stat(me).unwrap();
        assert!(st.start_ticks > 0);
        assert!(is_alive(me, st.start_ticks));
        assert!(!is_alive(me, st.start_ticks + 1));
    }

    #[tokio::test]
    async fn terminates_only_the_identified_child() {
        let mut child = tokio::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id().unwrap();
        let ticks = read_stat(pid).unwrap().start_ticks;
        assert!(Target::open(pid, ticks + 1).unwrap().is_none());
        let target = Target::open(pid, ticks).unwrap().unwrap();
        let waiter = tokio::spawn(async move { child.wait().await });
        terminate(&target, Duration::from_secs(5)).await.unwrap();
        let status = waiter.await.unwrap().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(target.exited());
    }
}
