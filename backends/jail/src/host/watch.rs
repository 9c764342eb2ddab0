//! One watcher task per running jail: emits `Exited` when its init ends and `OomKilled`
//! whenever the OOM-kill counter of its memory cgroup grows. v1 wakes on an eventfd
//! registered through `cgroup.event_control`; v2 polls `memory.events`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use berth_backend::BackendEvent;

use super::cgroup::Cgroups;
use super::process::Target;
use super::stats::oom_kills;

struct Entry {
    id: u64,
    pid: u32,
    start_ticks: u64,
    handle: JoinHandle<()>,
}

type Map = Arc<Mutex<HashMap<u32, Entry>>>;

pub struct Watchers {
    map: Map,
    next_id: AtomicU64,
    events: broadcast::Sender<BackendEvent>,
}

impl Watchers {
    pub fn new(events: broadcast::Sender<BackendEvent>) -> Self {
        Watchers { map: Arc::default(), next_id: AtomicU64::new(1), events }
    }

    /// Starts watching the init `pid` (started at `start_ticks`) of `uid`, unless it is
    /// watched already. Must run inside the tokio runtime.
    pub fn watch(&self, uid: u32, pid: u32, start_ticks: u64, cgroups: Cgroups) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(&uid) {
            if e.pid == pid && e.start_ticks == start_ticks && !e.handle.is_finished() {
                return;
            }
            // A previous instance's watcher: its init is gone, it ends on its own (and still
            // reports that exit); only the map entry moves on.
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // The baseline is taken now, not when the task first runs: a kill in between counts.
        let baseline = oom_kills(&cgroups);
        let task = Watch { uid, pid, start_ticks, cgroups, baseline, events: self.events.clone() };
        let map_for_task = self.map.clone();
        let handle = tokio::spawn(async move {
            task.run().await;
            let mut map = map_for_task.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&uid).is_some_and(|e| e.id == id) {
                map.remove(&uid);
            }
        });
        map.insert(uid, Entry { id, pid, start_ticks, handle });
    }

    /// Stops every watcher (the backend is going away).
    pub fn abort_all(&self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (_, e) in map.drain() {
            e.handle.abort();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.abort_all();
    }
}

struct Watch {
    uid: u32,
    pid: u32,
    start_ticks: u64,
    cgroups: Cgroups,
    /// OOM-kill counter when watching began.
    baseline: u64,
    events: broadcast::Sender<BackendEvent>,
}

impl Watch {
    async fn run(self) {
        let mut last = self.baseline;
        let target = match Target::open(self.pid, self.start_ticks) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(uid = self.uid, error = %e, "cannot watch the jail init, polling it");
                None
            }
        };
        let alive = target.is_some() || super::process::is_alive(self.pid, self.start_ticks);
        if alive {
            let mut notifier = match &self.cgroups {
                Cgroups::V1 { memory, .. } => match OomNotifier::register(memory) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(uid = self.uid, error = %e, "no OOM eventfd, polling the OOM counter");
                        None
                    }
                },
                Cgroups::V2 { .. } => None,
            };
            let mut fast_until: Option<Instant> = None;
            loop {
                let interval = match (&self.cgroups, &notifier) {
                    (Cgroups::V2 { .. }, _) => Duration::from_millis(500),
                    _ if fast_until.is_some_and(|t| Instant::now() < t) => Duration::from_millis(100),
                    (_, Some(_)) => Duration::from_secs(5),
                    (_, None) => Duration::from_secs(1),
                };
                tokio::select! {
                    _ = wait_exit(&target, self.pid, self.start_ticks) => break,
                    woke = wait_oom(&notifier) => match woke {
                        // The notification comes before the kill: re-check briefly.
                        Ok(()) => fast_until = Some(Instant::now() + Duration::from_secs(2)),
                        Err(e) => {
                            tracing::warn!(uid = self.uid, error = %e, "OOM eventfd failed, polling instead");
                            notifier = None;
                        }
                    },
                    _ = tokio::time::sleep(interval) => {}
                }
                self.check_oom(&mut last);
            }
        }
        self.check_oom(&mut last);
        let _ = self.events.send(BackendEvent::Exited { uid: self.uid });
    }

    fn check_oom(&self, last: &mut u64) {
        let now = oom_kills(&self.cgroups);
        if now > *last {
            tracing::info!(uid = self.uid, kills = now - *last, "OOM kill in container");
            let _ = self.events.send(BackendEvent::OomKilled { uid: self.uid });
        }
        *last = now.max(*last);
    }
}

async fn wait_exit(target: &Option<Target>, pid: u32, start_ticks: u64) {
    match target {
        Some(t) => t.wait().await,
        None => {
            while super::process::is_alive(pid, start_ticks) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn wait_oom(notifier: &Option<OomNotifier>) -> io::Result<()> {
    match notifier {
        Some(n) => n.wait().await,
        None => std::future::pending().await,
    }
}

/// A v1 memory-cgroup OOM notification: an eventfd registered on `memory.oom_control`.
struct OomNotifier {
    eventfd: AsyncFd<OwnedFd>,
    /// Kept open for the registration's lifetime.
    _oom_control: File,
}

impl OomNotifier {
    fn register(memory_dir: &std::path::Path) -> io::Result<OomNotifier> {
        let oom_control = File::open(memory_dir.join("memory.oom_control"))?;
        // SAFETY: eventfd returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nothing else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let line = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        fs::write(memory_dir.join("cgroup.event_control"), line)?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open for its whole life.
        let eventfd = unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }?;
        Ok(OomNotifier { eventfd, _oom_control: oom_control })
    }

    /// Waits for the next notification and consumes it.
    async fn wait(&self) -> io::Result<()> {
        loop {
            let mut guard = self.eventfd.readable().await?;
            let read = guard.try_io(|fd| {
                let mut buf = [0u8; 8];
                // SAFETY: reads 8 bytes into a buffer of 8.
                let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v2 cgroup in a temp dir: the watcher only reads `memory.events` there.
    #[tokio::test]
    async fn reports_oom_kills_and_exit_then_forgets_the_container() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("30001");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("memory.events"), "oom 0\noom_kill 0\n").unwrap();
        let cgroups = Cgroups::V2 { root: t.path().to_path_buf(), dir: dir.clone() };
        let (tx, mut rx) = broadcast::channel(16);
        let watchers = Watchers::new(tx);

        let mut child = tokio::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id().unwrap();
        let ticks = super::super::process::read_stat(pid).unwrap().start_ticks;
        watchers.watch(30001, pid, ticks, cgroups.clone());
        watchers.watch(30001, pid, ticks, cgroups);
        assert_eq!(watchers.len(), 1);

        fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(ev, BackendEvent::OomKilled { uid: 30001 });

        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(ev, BackendEvent::Exited { uid: 30001 });
        for _ in 0..100 {
            if watchers.len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(watchers.len(), 0, "the finished watcher leaves the map");
    }
}
