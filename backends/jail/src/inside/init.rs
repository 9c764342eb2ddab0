//! `init <dir>`: the helper half opens what it needs while host paths are visible, joins
//! the cgroups, unshares the pid namespace and forks; the child (pid 1 of that namespace)
//! builds the jail, drops root, reports `ok` and becomes the jail's init: console log,
//! reaping, SIGTERM forwarding.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fchown, fork, ForkResult, Gid, Pid, Uid};

use super::console::{ConsoleLog, LineSplitter};
use super::loopbox::{mount_loopbox, LoopCtx};
use super::syscall::{join_cgroups, open_beneath, open_path_dir, Real, Syscalls};
use super::{creds, exec, loopdev, mounts, Context, InsideError, Result};
use crate::protocol::{JailConfig, Layout};

/// How long the helper waits for the init's first line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the helper opens before forking; the init inherits it.
struct Opened {
    home_image: OwnedFd,
    log_dir: OwnedFd,
    loop_ctx: LoopCtx,
}

pub fn main(args: &[String]) -> i32 {
    let mut out = std::io::stdout();
    let report_error = |out: &mut std::io::Stdout, e: &dyn std::fmt::Display| {
        let line = e.to_string().replace('\n', " ");
        let _ = writeln!(out, "error {line}");
        let _ = out.flush();
        1
    };
    let prepared = (|| -> Result<(JailConfig, Layout, Opened)> {
        let dir = super::dir_arg(args, "init", 1)?;
        let config = super::load_config(&dir)?;
        let layout = Layout { dir };
        let opened = open_host_files(&config, &layout)?;
        Ok((config, layout, opened))
    })();
    let (config, layout, opened) = match prepared {
        Ok(p) => p,
        Err(e) => return report_error(&mut out, &e),
    };
    // New files default to 644/755 whatever umask the caller had.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    if let Err(e) = join_cgroups(&Real, &config.cgroups) {
        return report_error(&mut out, &e);
    }
    // Only the pid namespace here: the helper itself stays in the host's other namespaces;
    // the init unshares the rest as its first act.
    if let Err(e) = Real.unshare(CloneFlags::CLONE_NEWPID) {
        return report_error(&mut out, &e);
    }
    let (ready_read, ready_write) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return report_error(&mut out, &e),
    };
    let _ = out.flush();
    // SAFETY: the helper is single-threaded.
    match unsafe { fork() } {
        Err(e) => report_error(&mut out, &e),
        Ok(ForkResult::Child) => {
            drop(ready_read);
            std::process::exit(init(&Real, &config, &layout, opened, ready_write))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_write);
            drop(opened);
            let _ = writeln!(out, "pid {child}");
            let _ = out.flush();
            match wait_ready(ready_read, READY_TIMEOUT) {
                Ok(()) => {
                    let _ = writeln!(out, "ok");
                    let _ = out.flush();
                    0
                }
                Err(message) => {
                    // Ours: the pid we just forked, not yet reaped, so not reused.
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    report_error(&mut out, &message)
                }
            }
        }
    }
}

/// Opens home.img, the log dir and the loop control while host paths are visible.
fn open_host_files(config: &JailConfig, layout: &Layout) -> Result<Opened> {
    let uid = config.spec.uid;
    for dir in [layout.upper(), layout.work(), layout.rootfs(), config.spec.distro.path.clone()] {
        let meta = std::fs::symlink_metadata(&dir).ctx(|| format!("stat {}", dir.display()))?;
        if !meta.is_dir() {
            return Err(InsideError::Config(format!("{} is not a directory", dir.display())));
        }
    }
    let path = layout.home_image();
    let home_image = nix::fcntl::open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())
        .ctx(|| format!("open {}", path.display()))?;
    if SFlag::from_bits_truncate(fstat(home_image.as_fd()).ctx(|| "stat home.img".into())?.st_mode) & SFlag::S_IFMT
        != SFlag::S_IFREG
    {
        return Err(InsideError::Config(format!("{} is not a regular file", path.display())));
    }
    let path = layout.log_dir();
    let log_dir = nix::fcntl::open(
        &path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", path.display()))?;
    let owner = fstat(log_dir.as_fd()).ctx(|| format!("stat {}", path.display()))?.st_uid;
    if owner != uid {
        return Err(InsideError::Config(format!("{} is owned by {owner}, not {uid}", path.display())));
    }
    Ok(Opened { home_image, log_dir, loop_ctx: LoopCtx::open()? })
}

/// Reads the init's first line: `ok`, or `error <message>`.
fn wait_ready(fd: OwnedFd, timeout: Duration) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("init not ready after {}s", timeout.as_secs()));
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX))
        {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) => {
                let text = String::from_utf8_lossy(&line).trim().to_string();
                return Err(text.strip_prefix("error ").map(str::to_owned).unwrap_or_else(|| {
                    format!(
                        "init exited before it was ready{}",
                        if text.is_empty() { String::new() } else { format!(": {text}") }
                    )
                }));
            }
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&line[..end]).to_string();
            return match text.as_str() {
                "ok" => Ok(()),
                _ => Err(text.strip_prefix("error ").unwrap_or(&text).to_string()),
            };
        }
    }
}

/// The init, pid 1 of the new pid namespace. Returns its exit code.
fn init(sys: &dyn Syscalls, config: &JailConfig, layout: &Layout, opened: Opened, ready: OwnedFd) -> i32 {
    // Blocked from the start: signals of the host (SIGTERM right after `ok`) queue until the
    // main loop reads them from the signalfd instead of being dropped (pid 1 ignores
    // signals it has no handler for).
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(sig);
    }
    let blocked = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    let Opened { home_image, log_dir, loop_ctx } = opened;
    let built = blocked
        .ctx(|| "block signals".into())
        .and_then(|()| build(sys, config, layout, home_image, loop_ctx))
        .and_then(|notes| {
            let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| "open /dev/null".into())?;
            creds::drop_privileges(config.spec.uid)?;
            // Not dumpable: processes of the uid cannot ptrace the init or reach its fds
            // (the log dir is a host directory).
            nix::sys::prctl::set_dumpable(false).ctx(|| "PR_SET_DUMPABLE".into())?;
            let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .ctx(|| "signalfd".into())?;
            Ok((notes, null, signals))
        });
    let mut ready = std::fs::File::from(ready);
    let (notes, null, signals) = match built {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(ready, "error {}", e.to_string().replace('\n', " "));
            return 1;
        }
    };
    let _ = writeln!(ready, "ok");
    drop(ready);
    // Let go of the helper's stdio: the agent may restart while the jail runs.
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard fds, which this process owns.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    drop(null);
    let _ = nix::unistd::setsid();

    let mut console = ConsoleLog::new(log_dir);
    for note in &notes {
        console.line(note.as_bytes());
    }
    console.line(format!("berth: container {} started", config.spec.uid).as_bytes());
    run(config, &mask, signals, console)
}

/// Everything done as root inside the new namespaces; returns lines for the console log.
fn build(
    sys: &dyn Syscalls,
    config: &JailConfig,
    layout: &Layout,
    home_image: OwnedFd,
    loop_ctx: LoopCtx,
) -> Result<Vec<String>> {
    let uid = config.spec.uid;
    let rootfs = layout.rootfs();
    sys.unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWCGROUP,
    )?;
    // Starts with MS_REC|MS_PRIVATE on "/": nothing below reaches the host.
    mounts::apply(sys, &rootfs, &mounts::root_plan(config, layout))?;

    let root_fd = open_path_dir(&rootfs).ctx(|| format!("open {}", rootfs.display()))?;
    let home_rel = format!("containers/{uid}");
    let target = open_beneath(root_fd.as_fd(), &home_rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| format!("open /{home_rel}"))?;
    let device = loopdev::attach(
        loop_ctx.control.as_fd(),
        loop_ctx.dev_dir.as_fd(),
        home_image.as_fd(),
        false,
        &format!("berth-{uid}:home"),
    )?;
    loopdev::mount_ext4(loop_ctx.dev_dir.as_fd(), device.number, target.as_fd(), false)?;
    drop((device, home_image, target));
    let home = open_beneath(root_fd.as_fd(), &home_rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| format!("open /{home_rel}"))?;

    write_etc(root_fd.as_fd(), config)?;
    sys.sethostname(&super::effective_hostname(config))?;

    let mut notes = Vec::new();
    if let Err(e) = write_ssh_keys(home.as_fd(), uid, &config.spec.ssh_keys) {
        notes.push(format!("berth: ssh keys not written: {e}"));
    }
    for loopbox in &config.spec.loopboxes {
        match mount_loopbox(&loop_ctx, home.as_fd(), uid, loopbox) {
            Ok(()) => notes.push(format!(
                "berth: loopbox {} mounted at {}{}",
                loopbox.filename,
                loopbox.mountpoint,
                if loopbox.ro { " (ro)" } else { "" }
            )),
            Err(e) => notes.push(format!("berth: {e}; not mounted")),
        }
    }
    drop((home, root_fd, loop_ctx));

    sys.pivot_root(&rootfs)?;
    mounts::mount_proc(sys)?;
    Ok(notes)
}

/// Opens `rel` with `/` meaning the jail's root: symlinks are followed but stay inside.
fn open_in_root(root: BorrowedFd<'_>, rel: &str, flags: OFlag, mode: u32) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

fn read_in_root(root: BorrowedFd<'_>, rel: &str) -> Result<String> {
    match open_in_root(root, rel, OFlag::O_RDONLY, 0) {
        Ok(fd) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).ctx(|| format!("read /{rel}"))?;
            Ok(text)
        }
        Err(Errno::ENOENT) => Ok(String::new()),
        Err(e) => Err(e).ctx(|| format!("open /{rel}")),
    }
}

/// The line to add to a passwd/group file, or None when the uid is already there.
pub fn account_line(existing: &str, uid: u32, line: &str) -> Option<String> {
    let name = uid.to_string();
    let present = existing.lines().any(|l| {
        let mut fields = l.split(':');
        fields.next() == Some(name.as_str()) || fields.nth(1) == Some(name.as_str())
    });
    if present {
        return None;
    }
    let sep = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    Some(format!("{sep}{line}\n"))
}

/// The uid's passwd and group lines, /etc/hostname.
fn write_etc(root: BorrowedFd<'_>, config: &JailConfig) -> Result<()> {
    let uid = config.spec.uid;
    let entries = [
        ("etc/passwd", format!("{uid}:x:{uid}:{uid}::/containers/{uid}:/bin/sh")),
        ("etc/group", format!("{uid}:x:{uid}:")),
    ];
    for (rel, line) in entries {
        if let Some(add) = account_line(&read_in_root(root, rel)?, uid, &line) {
            let fd = open_in_root(root, rel, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT, 0o644)
                .ctx(|| format!("open /{rel}"))?;
            std::fs::File::from(fd).write_all(add.as_bytes()).ctx(|| format!("write /{rel}"))?;
        }
    }
    let fd = open_in_root(root, "etc/hostname", OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CREAT, 0o644)
        .ctx(|| "open /etc/hostname".into())?;
    std::fs::File::from(fd)
        .write_all(format!("{}\n", super::effective_hostname(config)).as_bytes())
        .ctx(|| "write /etc/hostname".into())
}

/// `~/.ssh` (700) and `~/.ssh/authorized_keys` (600), owned by the uid, replaced (never
/// written through a link the customer placed).
fn write_ssh_keys(home: BorrowedFd<'_>, uid: u32, keys: &[String]) -> Result<()> {
    let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid)));
    match nix::sys::stat::mkdirat(home, ".ssh", Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).ctx(|| "mkdir ~/.ssh".into()),
    }
    let dir = open_beneath(home, ".ssh", OFlag::O_RDONLY | OFlag::O_DIRECTORY).ctx(|| "open ~/.ssh".into())?;
    fchown(dir.as_fd(), owner.0, owner.1).ctx(|| "chown ~/.ssh".into())?;
    fchmod(dir.as_fd(), Mode::from_bits_truncate(0o700)).ctx(|| "chmod ~/.ssh".into())?;
    match nix::unistd::unlinkat(dir.as_fd(), "authorized_keys", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).ctx(|| "remove ~/.ssh/authorized_keys".into()),
    }
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        "authorized_keys",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .ctx(|| "create ~/.ssh/authorized_keys".into())?;
    fchown(fd.as_fd(), owner.0, owner.1).ctx(|| "chown ~/.ssh/authorized_keys".into())?;
    let mut text = String::new();
    for key in keys {
        text.push_str(key.trim_end_matches('\n'));
        text.push('\n');
    }
    std::fs::File::from(fd).write_all(text.as_bytes()).ctx(|| "write ~/.ssh/authorized_keys".into())
}

/// Starts the spec's command with stdout/stderr on a pipe; returns its pid and the read end.
fn spawn_command(config: &JailConfig, argv: &[String], mask: &SigSet) -> Result<(Pid, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "console pipe".into())?;
    let env = super::base_env(config);
    let home = config.spec.home();
    // SAFETY: the init is single-threaded.
    match unsafe { fork() }.ctx(|| "fork the command".into())? {
        ForkResult::Child => {
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(mask), None);
            // SAFETY: dup2 onto our own standard fds (dup2 clears CLOEXEC on the copy).
            unsafe {
                libc::dup2(write.as_raw_fd(), 1);
                libc::dup2(write.as_raw_fd(), 2);
            }
            exec::exec_command(argv, &env, &home)
        }
        ForkResult::Parent { child } => {
            drop(write);
            let flags = OFlag::from_bits_truncate(
                nix::fcntl::fcntl(read.as_fd(), nix::fcntl::FcntlArg::F_GETFL).ctx(|| "fcntl".into())?,
            );
            nix::fcntl::fcntl(read.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))
                .ctx(|| "fcntl".into())?;
            Ok((child, read))
        }
    }
}

/// Reads what is there on the console pipe; false at EOF.
fn read_console(fd: BorrowedFd<'_>, splitter: &mut LineSplitter, console: &mut ConsoleLog) -> bool {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => {
                splitter.finish(&mut |l| console.line(l));
                return false;
            }
            Ok(n) => splitter.feed(&buf[..n], &mut |l| console.line(l)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
}

/// The init's main loop: console, reaping, SIGTERM forwarding. Returns the exit code.
fn run(config: &JailConfig, mask: &SigSet, signals: SignalFd, mut console: ConsoleLog) -> i32 {
    let mut command = None;
    let mut pipe: Option<OwnedFd> = None;
    if let Some(argv) = &config.spec.command {
        match spawn_command(config, argv, mask) {
            Ok((pid, read)) => {
                command = Some((pid, argv[0].clone()));
                pipe = Some(read);
            }
            Err(e) => console.line(format!("berth: {}: {e}", argv[0]).as_bytes()),
        }
    }
    let mut splitter = LineSplitter::default();
    let mut stopping = false;
    loop {
        let (sig_ready, pipe_ready) = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(p) = &pipe {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if pipe_ready {
            if let Some(p) = &pipe {
                if !read_console(p.as_fd(), &mut splitter, &mut console) {
                    pipe = None;
                }
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                if (sig == Signal::SIGTERM as i32 || sig == Signal::SIGINT as i32) && !stopping {
                    stopping = true;
                    console.line(b"berth: stopping");
                    // Only as pid 1 of our own pid namespace does -1 mean "the jail".
                    if nix::unistd::getpid() == Pid::from_raw(1) {
                        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
                    }
                }
            }
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if let (Some((pid, argv0)), Some(child)) = (&command, status.pid()) {
                        if *pid == child {
                            if let Some(code) = exec::exit_code(status) {
                                console.line(format!("berth: {argv0} exited with {code}").as_bytes());
                            }
                            command = None;
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    if stopping {
                        if let Some(p) = &pipe {
                            read_console(p.as_fd(), &mut splitter, &mut console);
                        }
                        splitter.finish(&mut |l| console.line(l));
                        console.line(b"berth: container stopped");
                        return 0;
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_lines_are_added_once() {
        let line = "30123:x:30123:30123::/containers/30123:/bin/sh";
        assert_eq!(account_line("", 30123, line), Some(format!("{line}\n")));
        assert_eq!(account_line("root:x:0:0::/root:/bin/sh", 30123, line), Some(format!("\n{line}\n")));
        assert_eq!(account_line(&format!("root:x:0:0::/:/bin/sh\n{line}\n"), 30123, line), None);
        assert_eq!(account_line("web:x:30123:30123::/:/bin/sh\n", 30123, line), None);
    }

    #[test]
    fn ready_line() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        std::fs::File::from(w).write_all(b"ok\n").unwrap();
        assert_eq!(wait_ready(r, Duration::from_secs(1)), Ok(()));
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        std::fs::File::from(w).write_all(b"error mount: EPERM\n").unwrap();
        assert_eq!(wait_ready(r, Duration::from_secs(1)), Err("mount: EPERM".into()));
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        drop(w);
        assert!(wait_ready(r, Duration::from_secs(1)).unwrap_err().contains("exited"));
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        assert!(wait_ready(r, Duration::from_millis(50)).unwrap_err().contains("not ready"));
    }
}
