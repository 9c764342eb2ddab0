//! `exec <dir> <init pid> <request json>`: join a running jail and run one command in it as
//! the container's uid; report an `ExecStatus` line on fd 3.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::enter::{self, ALL_NAMESPACES};
use super::syscall::{join_cgroups, Real};
use super::{creds, Context, InsideError, Result};
use crate::protocol::{ExecArgs, ExecStatus, EXEC_HELPER_FAILED};
use berth_backend::EXEC_DEFAULT_TIMEOUT_SECS;

/// Exit code (and status) of a process: its code, or 128 + the signal that ended it.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// In a forked child: become the command. Sets the environment, cwd `home` (or `/`), and
/// execs `argv` through PATH; never returns (exit 127 when exec fails).
pub fn exec_command(argv: &[String], env: &[(String, String)], home: &str) -> ! {
    if nix::unistd::chdir(home).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let keys: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    for key in keys {
        std::env::remove_var(key);
    }
    for (key, value) in env {
        std::env::set_var(key, value);
    }
    let args: Vec<CString> = argv.iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let err = match args.first() {
        Some(file) if args.len() == argv.len() => nix::unistd::execvp(file, &args).unwrap_err(),
        _ => Errno::EINVAL,
    };
    let argv0 = argv.first().map(String::as_str).unwrap_or("");
    let _ = writeln!(std::io::stderr(), "berth: {argv0}: {}", err.desc());
    // SAFETY: _exit is always safe; nothing of the parent's must run in this child.
    unsafe { libc::_exit(127) }
}

/// Takes fd 3 if the host passed one (a pipe or file), before anything else can get that
/// number.
fn take_status_fd() -> Option<OwnedFd> {
    // SAFETY: only probes whether fd 3 is open.
    fcntl(unsafe { BorrowedFd::borrow_raw(3) }, FcntlArg::F_GETFD).ok()?;
    // SAFETY: fd 3 is open and nobody else in this process owns it (checked first thing).
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    let kind = SFlag::from_bits_truncate(fstat(fd.as_fd()).ok()?.st_mode) & SFlag::S_IFMT;
    if ![SFlag::S_IFIFO, SFlag::S_IFREG, SFlag::S_IFSOCK].contains(&kind) {
        std::mem::forget(fd);
        return None;
    }
    let _ = fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Some(fd)
}

pub fn main(args: &[String]) -> i32 {
    let status_fd = take_status_fd();
    let (status, code) = match run(args) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("berth jail-helper exec: {e}");
            (ExecStatus::Failed { message: e.to_string() }, EXEC_HELPER_FAILED)
        }
    };
    if let Some(fd) = status_fd {
        let mut line = serde_json::to_vec(&status).unwrap_or_default();
        line.push(b'\n');
        let _ = std::fs::File::from(fd).write_all(&line);
    }
    code
}

fn parse(args: &[String]) -> Result<(std::path::PathBuf, i32, ExecArgs)> {
    let dir = super::dir_arg(args, "exec", 3)?;
    let pid = super::pid_arg(&args[1])?;
    let request: ExecArgs =
        serde_json::from_str(&args[2]).map_err(|e| InsideError::Usage(format!("request json: {e}")))?;
    if request.argv.is_empty() || request.argv.iter().any(|a| a.contains('\0')) {
        return Err(InsideError::Usage("argv must be non-empty, without NUL".into()));
    }
    for (key, value) in &request.env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(InsideError::Usage(format!("bad environment variable {key:?}")));
        }
    }
    Ok((dir, pid, request))
}

fn run(args: &[String]) -> Result<(ExecStatus, i32)> {
    let (dir, pid, request) = parse(args)?;
    let config = super::load_config(&dir)?;
    let uid = config.spec.uid;
    enter::verify_init(pid, uid)?;
    join_cgroups(&Real, &config.cgroups)?;
    let fds = enter::open_jail(pid, uid, &ALL_NAMESPACES)?;
    enter::enter(&Real, fds)?;

    let mut env = super::base_env(&config);
    for (key, value) in &request.env {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    let home = config.spec.home();
    // Reports a failure of the child before exec; closes silently (CLOEXEC) on exec.
    let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the helper is single-threaded.
    let child = match unsafe { fork() }.ctx(|| "fork into the jail".into())? {
        ForkResult::Child => {
            drop(err_read);
            let prepared = creds::drop_privileges(uid).and_then(|()| {
                // Dies with the helper (the host may give up on it); set after setuid,
                // which clears it.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).ctx(|| "PR_SET_PDEATHSIG".into())?;
                // The helper lives outside the jail's pid namespace (ppid 0); once it is
                // gone we are the init's child (ppid 1).
                if nix::unistd::getppid().as_raw() != 0 {
                    return Err(InsideError::Usage("helper went away".into()));
                }
                Ok(())
            });
            if let Err(e) = prepared {
                let _ = std::fs::File::from(err_write).write_all(e.to_string().as_bytes());
                // SAFETY: leave the forked child without running the parent's cleanup.
                unsafe { libc::_exit(EXEC_HELPER_FAILED) }
            }
            exec_command(&request.argv, &env, &home)
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_write);
    let timeout = Duration::from_secs(request.timeout_secs.unwrap_or(EXEC_DEFAULT_TIMEOUT_SECS));
    let status = wait_with_timeout(child, timeout)?;
    let mut message = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(err_read), &mut message);
    Ok(match status {
        None => (ExecStatus::TimedOut, 128 + Signal::SIGKILL as i32),
        Some(_) if !message.is_empty() => (ExecStatus::Failed { message }, EXEC_HELPER_FAILED),
        Some(code) => (ExecStatus::Exited { code }, code),
    })
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: integer arguments; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: a non-negative return is a fresh fd we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for our child; after `timeout` kills it (only it) and returns None.
fn wait_with_timeout(child: Pid, timeout: Duration) -> Result<Option<i32>> {
    let deadline = Instant::now() + timeout;
    let pidfd = pidfd_open(child);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(Some(code));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).ctx(|| format!("wait for {child}")),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Ok(None);
        }
        match &pidfd {
            Some(fd) => {
                let ms = left.as_millis().min(60_000) as i32 + 1;
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX));
            }
            None => std::thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let args = |req: &str| vec!["/j/30123".to_string(), "42".into(), req.into()];
        let (_, pid, req) =
            parse(&args(r#"{"argv":["id","-u"],"env":{"A":"1"},"stdin":[],"timeout_secs":5}"#)).unwrap();
        assert_eq!((pid, req.argv.len(), req.timeout_secs), (42, 2, Some(5)));
        assert!(parse(&args(r#"{"argv":[],"env":{},"stdin":[],"timeout_secs":null}"#)).is_err());
        assert!(parse(&args(r#"{"argv":["x"],"env":{"A=B":"1"},"stdin":[],"timeout_secs":null}"#)).is_err());
        assert!(parse(&["/j".into(), "1".into(), "{}".into()]).is_err());
        assert!(parse(&["/j".into()]).is_err());
    }

    #[test]
    fn codes_follow_the_shell() {
        let pid = Pid::from_raw(7);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)), Some(137));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn times_out_and_kills_only_its_child() {
        // SAFETY: the child only sleeps and exits.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                std::thread::sleep(Duration::from_secs(10));
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => child,
        };
        let started = Instant::now();
        assert_eq!(wait_with_timeout(child, Duration::from_millis(200)).unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(kill(child, None), Err(Errno::ESRCH));
    }
}
