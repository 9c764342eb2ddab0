//! Spawning the in-jail helper (`protocol` verbs) from the agent's async process.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::{AbortHandle, JoinHandle};

use berth_backend::{BackendError, ExecOutput, ExecRequest, LoopboxSpec, EXEC_DEFAULT_TIMEOUT_SECS, EXEC_OUTPUT_LIMIT};

use crate::protocol::ExecStatus;
use crate::HelperCommand;

/// How long `init` may take to report `ok` (a distro's setup, loopbox mounts).
const INIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a loop-mount or loop-umount may take.
const LOOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The helper's own safety margin beyond an exec's timeout before the host kills it.
const EXEC_MARGIN: Duration = Duration::from_secs(10);
/// After the helper exits, how long its stdout/stderr may still be drained (a background
/// process of the command could hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// The kernel refuses a single argument longer than this (MAX_ARG_STRLEN).
const MAX_ARG: usize = 128 * 1024 - 1;
/// Longest line read from the helper (`init` dialogue, `exec` status).
const MAX_LINE: usize = 64 * 1024;
/// How much of a helper's or tool's stderr is kept for an error message.
pub(crate) const STDERR_TAIL: usize = 4096;

#[derive(Debug, Error)]
pub enum HelperError {
    #[error("cannot run the jail helper {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("talking to the jail helper: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Reported(String),
    #[error("jail helper {verb} {detail}")]
    Broken { verb: &'static str, detail: String },
    #[error("{what} is too large to pass to the jail helper")]
    TooLarge { what: &'static str },
    #[error("{0}")]
    Refused(String),
}

impl From<HelperError> for BackendError {
    fn from(e: HelperError) -> Self {
        match e {
            HelperError::TooLarge { what } => BackendError::invalid(what, "too large"),
            HelperError::Refused(reason) => BackendError::invalid("loopbox", reason),
            other => BackendError::Failed(other.to_string()),
        }
    }
}

/// The last word of `init` on its stdout.
enum Answer {
    Ok,
    Error(String),
    Bad(String),
    Eof,
}

/// A started jail: the host pid of its init, as the helper reported it.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub pid: u32,
}

pub struct Helper<'a> {
    cmd: &'a HelperCommand,
}

impl<'a> Helper<'a> {
    pub fn new(cmd: &'a HelperCommand) -> Self {
        Helper { cmd }
    }

    fn command(&self, verb: &str, args: &[OsString]) -> Command {
        let mut c = Command::new(&self.cmd.program);
        c.args(&self.cmd.args).arg(verb).args(args);
        c
    }

    fn spawn(&self, mut c: Command) -> Result<Child, HelperError> {
        c.spawn().map_err(|source| HelperError::Spawn { program: self.cmd.program.display().to_string(), source })
    }

    /// `init <dir>`: returns once the helper answered `ok` and exited. `on_pid` sees the init
    /// pid as soon as it is reported, so the caller can clean up if the start fails later.
    pub async fn init(&self, dir: &Path, on_pid: &mut (dyn FnMut(u32) + Send)) -> Result<Started, HelperError> {
        let mut c = self.command("init", &[dir.as_os_str().to_owned()]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.spawn(c)?;
        let stderr = tokio::spawn(read_tail(child.stderr.take().expect("piped"), STDERR_TAIL));
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));

        let dialogue = async {
            let mut pid = None;
            loop {
                let Some(line) = next_line(&mut lines, MAX_LINE).await? else {
                    return Ok::<_, io::Error>((pid, Answer::Eof));
                };
                let line = line.trim_end();
                if let Some(p) = line.strip_prefix("pid ") {
                    let Ok(p) = p.trim().parse::<u32>() else {
                        return Ok((pid, Answer::Bad(format!("sent a bad pid line {line:?}"))));
                    };
                    pid = Some(p);
                    on_pid(p);
                } else if line == "ok" {
                    return Ok((pid, Answer::Ok));
                } else if line == "error" || line.starts_with("error ") {
                    return Ok((pid, Answer::Error(line["error".len()..].trim().to_string())));
                } else {
                    tracing::debug!(line, "jail helper init said");
                }
            }
        };
        let (pid, answer) = match tokio::time::timeout(INIT_TIMEOUT, dialogue).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                kill_child(&mut child).await;
                return Err(HelperError::Io(e));
            }
            Err(_) => {
                kill_child(&mut child).await;
                let tail = stderr_text(stderr).await;
                return Err(HelperError::Broken {
                    verb: "init",
                    detail: format!("did not answer within {} s{tail}", INIT_TIMEOUT.as_secs()),
                });
            }
        };
        // The helper exits right after its last line (the init lives on, detached).
        let status = wait_bounded(&mut child, Duration::from_secs(10)).await;
        let tail = stderr_text(stderr).await;
        match (answer, pid) {
            (Answer::Ok, Some(pid)) => Ok(Started { pid }),
            (Answer::Ok, None) => Err(HelperError::Broken { verb: "init", detail: "answered ok without a pid".into() }),
            (Answer::Error(msg), _) => {
                let msg = if msg.is_empty() { "the jail did not start".to_string() } else { msg };
                Err(HelperError::Reported(format!("{msg}{tail}")))
            }
            (Answer::Bad(detail), _) => Err(HelperError::Broken { verb: "init", detail: format!("{detail}{tail}") }),
            (Answer::Eof, _) => Err(HelperError::Broken {
                verb: "init",
                detail: format!("ended ({}) before the jail was ready{tail}", describe(status)),
            }),
        }
    }

    /// `exec <dir> <pid> <request>`: runs the request, feeding its stdin, collecting stdout
    /// and stderr (each capped) and the final status from fd 3.
    pub async fn exec(&self, dir: &Path, pid: u32, mut req: ExecRequest) -> Result<ExecOutput, HelperError> {
        let stdin_data = std::mem::take(&mut req.stdin);
        let timeout = Duration::from_secs(req.timeout_secs.unwrap_or(EXEC_DEFAULT_TIMEOUT_SECS));
        req.timeout_secs = Some(timeout.as_secs());
        let json = serde_json::to_string(&req).expect("exec request serializes");
        if json.len() > MAX_ARG {
            return Err(HelperError::TooLarge { what: "exec request" });
        }

        let (status_rd, status_wr) = pipe()?;
        let wr_raw = status_wr.as_raw_fd();
        let mut c = self.command("exec", &[dir.as_os_str().to_owned(), pid.to_string().into(), json.into()]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if wr_raw == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(wr_raw, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = self.spawn(c);
        // Our copy of the write end must go, or the status pipe never reaches end of file.
        drop(status_wr);
        let mut child = spawned?;

        let mut stdin = child.stdin.take().expect("piped");
        let writer = tokio::spawn(async move {
            // A command that does not read its input closes the pipe: not an error. The pipe
            // closes when `stdin` drops at the end of the task.
            let _ = stdin.write_all(&stdin_data).await;
        });
        let stdout = tokio::spawn(read_capped(child.stdout.take().expect("piped"), EXEC_OUTPUT_LIMIT));
        let stderr = tokio::spawn(read_capped(child.stderr.take().expect("piped"), EXEC_OUTPUT_LIMIT));
        // If this call is dropped half-way (the caller gave up), the helper goes with
        // `kill_on_drop`; these tasks must go too: a background process of the command may
        // hold stdout/stderr open forever.
        let mut tasks = AbortOnDrop(vec![writer.abort_handle(), stdout.abort_handle(), stderr.abort_handle()]);
        let status_rx = tokio::net::unix::pipe::Receiver::from_owned_fd(status_rd)?;
        let status = tokio::spawn(async move { next_line(&mut BufReader::new(status_rx), MAX_LINE).await });
        tasks.0.push(status.abort_handle());

        let mut killed = false;
        let exit = match tokio::time::timeout(timeout + EXEC_MARGIN, child.wait()).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::warn!(pid, "jail helper exec outlived its timeout, killing it");
                killed = true;
                let _ = child.start_kill();
                child.wait().await?
            }
        };
        writer.abort();
        let stdout = join_bounded(stdout).await.unwrap_or_default();
        let stderr = join_bounded(stderr).await.unwrap_or_default();
        let line = join_bounded(status).await.and_then(|r| r.ok()).flatten();

        if killed {
            return Ok(ExecOutput { exit_code: 128 + libc::SIGKILL, stdout, stderr, timed_out: true });
        }
        let Some(line) = line.filter(|l| !l.trim().is_empty()) else {
            return Err(HelperError::Broken {
                verb: "exec",
                detail: format!("ended ({}) without a status{}", describe(Some(exit)), suffix(&tail_text(&stderr))),
            });
        };
        match serde_json::from_str::<ExecStatus>(line.trim()) {
            Ok(ExecStatus::Exited { code }) => Ok(ExecOutput { exit_code: code, stdout, stderr, timed_out: false }),
            Ok(ExecStatus::TimedOut) => {
                Ok(ExecOutput { exit_code: 128 + libc::SIGKILL, stdout, stderr, timed_out: true })
            }
            Ok(ExecStatus::Failed { message }) => Err(HelperError::Reported(message)),
            Err(e) => Err(HelperError::Broken { verb: "exec", detail: format!("sent a bad status {line:?}: {e}") }),
        }
    }

    /// `loop-mount <dir> <pid> <loopbox json>`.
    pub async fn loop_mount(&self, dir: &Path, pid: u32, spec: &LoopboxSpec) -> Result<(), HelperError> {
        let json = serde_json::to_string(spec).expect("loopbox serializes");
        if json.len() > MAX_ARG {
            return Err(HelperError::TooLarge { what: "loopbox" });
        }
        self.simple("loop-mount", &[dir.as_os_str().to_owned(), pid.to_string().into(), json.into()]).await
    }

    /// `loop-umount <dir> <pid> <mountpoint>`.
    pub async fn loop_umount(&self, dir: &Path, pid: u32, mountpoint: &str) -> Result<(), HelperError> {
        self.simple("loop-umount", &[dir.as_os_str().to_owned(), pid.to_string().into(), mountpoint.into()]).await
    }

    /// A verb that answers with its exit status and a one-line reason on stderr. Exit 1 is a
    /// refusal (bad loopbox: missing, too small, not a directory...); anything else a failure.
    async fn simple(&self, verb: &'static str, args: &[OsString]) -> Result<(), HelperError> {
        let mut c = self.command(verb, args);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = self.spawn(c)?;
        let stderr = tokio::spawn(read_tail(child.stderr.take().expect("piped"), STDERR_TAIL));
        let status = match tokio::time::timeout(LOOP_TIMEOUT, child.wait()).await {
            Ok(r) => r?,
            Err(_) => {
                kill_child(&mut child).await;
                return Err(HelperError::Broken {
                    verb,
                    detail: format!("did not finish within {} s", LOOP_TIMEOUT.as_secs()),
                });
            }
        };
        if status.success() {
            return Ok(());
        }
        let text = join_bounded(stderr).await.map(|b| tail_text(&b)).unwrap_or_default();
        let reason = if text.is_empty() { format!("{verb} failed ({})", describe(Some(status))) } else { text };
        if status.code() == Some(1) {
            Err(HelperError::Refused(reason))
        } else {
            Err(HelperError::Broken { verb, detail: reason })
        }
    }
}

/// Aborts the tasks when dropped (aborting a finished task does nothing).
struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The next line (without its `\n`, at most `max` bytes: a longer line comes in pieces),
/// or `None` at end of file. A last unterminated line is returned too.
async fn next_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.take(max as u64).read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Reads to end of file, keeping the first `cap` bytes and draining (discarding) the rest,
/// so the writer never blocks on a full pipe. A read error ends it with what was read.
async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if (&mut reader).take(cap as u64).read_to_end(&mut out).await.is_ok() {
        let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
    }
    out
}

/// Reads to end of file, keeping the last `cap` bytes (for error messages).
pub(crate) async fn read_tail<R: AsyncRead + Unpin>(mut reader: R, cap: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = reader.read(&mut buf).await {
        out.extend_from_slice(&buf[..n]);
        if out.len() > cap {
            out.drain(..out.len() - cap);
        }
    }
    out
}

/// Bytes as text for an error message: lossy UTF-8, trimmed, the last 1000 bytes at most,
/// newlines shown as `; `.
pub(crate) fn tail_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut start = text.len().saturating_sub(1000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].replace('\n', "; ")
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// SIGKILL to our own helper child (never anything else) and reap it.
async fn kill_child(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

async fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            tracing::warn!("jail helper did not exit after answering, killing it");
            kill_child(child).await;
            None
        }
    }
}

async fn join_bounded<T>(task: JoinHandle<T>) -> Option<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_GRACE, task).await {
        Ok(r) => r.ok(),
        Err(_) => {
            abort.abort();
            None
        }
    }
}

async fn stderr_text(task: JoinHandle<Vec<u8>>) -> String {
    suffix(&join_bounded(task).await.map(|b| tail_text(&b)).unwrap_or_default())
}

fn suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" (helper stderr: {text})")
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(sig)) => format!("signal {sig}"),
            _ => "unknown status".into(),
        },
        None => "still running".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_caps_drains_and_tails() {
        let mut r = BufReader::new(&b"pid 42\nok\nabcdef\nlast"[..]);
        assert_eq!(next_line(&mut r, 64).await.unwrap().as_deref(), Some("pid 42"));
        assert_eq!(next_line(&mut r, 64).await.unwrap().as_deref(), Some("ok"));
        assert_eq!(next_line(&mut r, 4).await.unwrap().as_deref(), Some("abcd"));
        assert_eq!(next_line(&mut r, 4).await.unwrap().as_deref(), Some("ef"));
        assert_eq!(next_line(&mut r, 64).await.unwrap().as_deref(), Some("last"));
        assert_eq!(next_line(&mut r, 64).await.unwrap(), None);

        // The writer must get rid of all it writes although only 10 bytes are kept.
        let (mut tx, rx) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move { tx.write_all(&vec![7u8; 1 << 20]).await });
        let kept = tokio::time::timeout(Duration::from_secs(10), read_capped(rx, 10)).await.unwrap();
        assert_eq!(kept, vec![7u8; 10]);
        writer.await.unwrap().unwrap();

        assert_eq!(read_tail(&b"0123456789"[..], 4).await, b"6789");
        assert_eq!(tail_text(b"  first\nsecond \n"), "first; second");
        assert_eq!(tail_text(&[b'x'; 1500]).len(), 1000);
    }
}
