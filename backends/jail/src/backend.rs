//! Host side of the jail backend: files, images and cgroups of each container, the helper
//! spawned for everything that must happen inside, and watchers for exits and OOM kills.
//! Never unshares, forks or mounts in the agent's process (see `inside` for that).

use std::collections::HashMap;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_backend::{
    Backend, BackendError, BackendEvent, ContainerSpec, DistroSpec, ExecOutput, ExecRequest, IoContext, LogLine,
    LoopboxSpec, Observed, Result, RunState, Stats,
};
use tokio::sync::{broadcast, OwnedMutexGuard};

use crate::host::cgroup::{CgroupSystem, Cgroups};
use crate::host::helper::Helper;
use crate::host::process::{self, Target};
use crate::host::watch::Watchers;
use crate::host::{distro, files, image, logs, loopdev, paths, stats};
use crate::protocol::{JailConfig, Layout, RunRecord};

const MIB: u64 = 1024 * 1024;
/// How long stop waits for the last processes of the cgroup after the init is gone.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// How to run the in-jail helper: a program and the arguments that precede the verb
/// (`berth` + `["jail-helper"]`, or `berth-jail-helper` + `[]`).
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct JailOptions {
    /// One directory per container below it (`protocol::Layout`).
    pub root: PathBuf,
    /// Cgroup directory name under each controller's hierarchy root (`berth` by default);
    /// tests use their own so what they leave behind is easy to check.
    pub cgroup_parent: String,
    pub helper: HelperCommand,
}

/// The jail backend.
pub struct JailBackend {
    inner: Arc<Inner>,
}

/// The backend's state, shared with the tasks that outlive a call (a start runs to its end
/// even when its caller gives up, so a started jail is always recorded).
struct Inner {
    options: JailOptions,
    events: broadcast::Sender<BackendEvent>,
    watchers: Watchers,
    /// Serializes lifecycle operations (create, start, stop, kill, remove) per container.
    locks: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    cgroup_system: OnceLock<std::result::Result<CgroupSystem, String>>,
}

/// What the container directory says about one container.
struct Seen {
    layout: Layout,
    config: Option<JailConfig>,
    /// The run record of a live init (a stale record is not kept here).
    running: Option<RunRecord>,
}

impl JailBackend {
    pub fn new(options: JailOptions) -> Self {
        let (events, _) = broadcast::channel(256);
        let inner = Inner {
            options,
            watchers: Watchers::new(events.clone()),
            events,
            locks: Mutex::default(),
            cgroup_system: OnceLock::new(),
        };
        JailBackend { inner: Arc::new(inner) }
    }
}

impl Inner {
    fn layout(&self, uid: u32) -> Layout {
        Layout::new(&self.options.root, uid)
    }

    fn cgroups(&self, uid: u32) -> Result<Cgroups> {
        let system = self
            .cgroup_system
            .get_or_init(|| CgroupSystem::detect().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| BackendError::Failed(e.clone()))?;
        Ok(system.for_container(&self.options.cgroup_parent, uid)?)
    }

    async fn lock(&self, uid: u32) -> OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(uid).or_default().clone()
        };
        m.lock_owned().await
    }

    fn try_lock(&self, uid: u32) -> Option<OwnedMutexGuard<()>> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(uid).or_default().clone()
        };
        m.try_lock_owned().ok()
    }

    /// Reads the container directory; `None` when there is none. A run record whose init is
    /// gone is removed when `clean` (the caller holds the container's lock).
    fn look(&self, uid: u32, clean: bool) -> Result<Option<Seen>> {
        let layout = self.layout(uid);
        match fs::metadata(&layout.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackendError::io(format!("inspecting container {uid}"), e)),
        }
        let config: Option<JailConfig> = files::read_json(&layout.config())?;
        let record: Option<RunRecord> = match files::read_json(&layout.run_record()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(uid, error = %e, "ignoring a damaged run record");
                None
            }
        };
        let running = match record {
            Some(r) if process::is_alive(r.pid, r.start_ticks) => Some(r),
            Some(_) => {
                if clean {
                    files::remove_if_exists(&layout.run_record())
                        .ctx(|| format!("removing the stale run record of {uid}"))?;
                }
                None
            }
            None => None,
        };
        Ok(Some(Seen { layout, config, running }))
    }

    fn observed(uid: u32, seen: &Seen) -> Observed {
        match &seen.running {
            // The generation the running instance was started with: a config refreshed while
            // it runs only applies at the next start.
            Some(r) => Observed {
                uid,
                state: RunState::Running,
                pid: Some(r.pid),
                started_at: Some(r.started_at),
                generation: r.generation,
            },
            None => Observed {
                uid,
                state: RunState::Stopped,
                pid: None,
                started_at: None,
                generation: seen.config.as_ref().map_or(0, |c| c.spec.generation),
            },
        }
    }

    /// Observes one container, adopting (watching) a running jail not yet watched.
    fn observe(&self, uid: u32) -> Result<Option<Observed>> {
        let guard = self.try_lock(uid);
        let Some(seen) = self.look(uid, guard.is_some())? else { return Ok(None) };
        if let Some(r) = &seen.running {
            self.watchers.watch(uid, r.pid, r.start_ticks, self.cgroups(uid)?);
        }
        Ok(Some(Self::observed(uid, &seen)))
    }

    /// The running instance of `uid`, or NotFound / NotRunning.
    fn running(&self, uid: u32) -> Result<(Layout, RunRecord)> {
        let seen = self.look(uid, false)?.ok_or(BackendError::NotFound(uid))?;
        match seen.running {
            Some(r) => Ok((seen.layout, r)),
            None => Err(BackendError::NotRunning(uid)),
        }
    }

    /// Stops the running instance (lock held): SIGTERM and `grace`, then SIGKILL; a zero
    /// grace kills at once. Waits until the init and its cgroup are empty.
    async fn halt(&self, uid: u32, grace: Duration) -> Result<()> {
        let layout = self.layout(uid);
        let record: Option<RunRecord> = match files::read_json(&layout.run_record()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(uid, error = %e, "ignoring a damaged run record");
                None
            }
        };
        let Some(record) = record else { return Ok(()) };
        // Signals go only to the recorded init, and only once its identity is confirmed.
        if let Some(target) = Target::open(record.pid, record.start_ticks)? {
            process::terminate(&target, grace).await?;
        }
        if let Ok(cg) = self.cgroups(uid) {
            if !cg.wait_empty(DRAIN_WAIT).await {
                tracing::warn!(uid, "processes remain in the container's cgroup after its init ended");
            }
        }
        files::remove_if_exists(&layout.run_record()).ctx(|| format!("removing the run record of {uid}"))?;
        Ok(())
    }

    /// Processes left in the container's own cgroups with no run record naming them (the
    /// agent died between the init's `ok` and writing the record): only Berth puts processes
    /// there, so they are ours. Each is pinned by a pidfd and checked to still be a member
    /// before its SIGKILL, so a recycled pid is never hit.
    async fn kill_unrecorded(&self, uid: u32, cg: &Cgroups) {
        for pid in cg.members() {
            let Some(stat) = process::read_stat(pid) else { continue };
            match Target::open(pid, stat.start_ticks) {
                Ok(Some(target)) if cg.members().contains(&pid) => {
                    tracing::warn!(uid, pid, "killing a process left in the container's cgroup");
                    if let Err(e) = target.signal(libc::SIGKILL) {
                        tracing::warn!(uid, pid, error = %e, "cannot kill a leftover process");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(uid, pid, error = %e, "cannot open a leftover process"),
            }
        }
        if !cg.wait_empty(DRAIN_WAIT).await {
            tracing::warn!(uid, "processes remain in the container's cgroup");
        }
    }

    fn make_dirs(&self, layout: &Layout, uid: u32) -> Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.options.root)
            .ctx(|| format!("creating the jail root {}", self.options.root.display()))?;
        let dir = |path: &Path, mode: u32| -> Result<()> {
            match DirBuilder::new().mode(mode).create(path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(BackendError::io(format!("creating {}", path.display()), e))
                }
                _ => {}
            }
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .ctx(|| format!("setting the mode of {}", path.display()))
        };
        dir(&layout.dir, 0o700)?;
        // The overlay's root directory takes the upper dir's owner and mode: a usual `/`.
        dir(&layout.upper(), 0o755)?;
        dir(&layout.work(), 0o700)?;
        dir(&layout.rootfs(), 0o755)?;
        dir(&layout.log_dir(), 0o750)?;
        std::os::unix::fs::chown(layout.log_dir(), Some(uid), Some(uid))
            .ctx(|| format!("giving the log directory to {uid}"))?;
        Ok(())
    }

    fn write_config(&self, layout: &Layout, spec: &ContainerSpec, cg: &Cgroups) -> Result<()> {
        let config = JailConfig { spec: spec.clone(), cgroups: cg.dirs(), cgroup_mount: cg.mount_kind() };
        Ok(files::write_json(&layout.config(), &config)?)
    }

    /// After a failed start: make sure the init the helper reported is gone.
    async fn reap_failed_start(&self, uid: u32, pid: u32, start_ticks: Option<u64>) {
        let Some(ticks) = start_ticks else { return };
        match Target::open(pid, ticks) {
            Ok(Some(target)) => {
                tracing::warn!(uid, pid, "the jail helper failed but its init still runs, killing it");
                if let Err(e) = process::terminate(&target, Duration::ZERO).await {
                    tracing::error!(uid, pid, error = %e, "cannot kill the init of a failed start");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(uid, pid, error = %e, "cannot check the init of a failed start"),
        }
    }
}

fn validate_spec(spec: &ContainerSpec) -> Result<()> {
    if spec.uid == 0 {
        return Err(BackendError::invalid("uid", "0 is root, not a container"));
    }
    if spec.memory_mb == 0 || spec.memory_mb.checked_mul(MIB).is_none() {
        return Err(BackendError::invalid("memory", format!("{} MB", spec.memory_mb)));
    }
    if spec.storage_mb == 0 || spec.storage_mb.checked_mul(MIB).is_none() {
        return Err(BackendError::invalid("storage", format!("{} MB", spec.storage_mb)));
    }
    // The helper's rule (`inside::validate_hostname`), so a created container also starts.
    let h = &spec.hostname;
    if h.is_empty() || h.len() > 64 || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(BackendError::invalid("hostname", format!("{h:?}")));
    }
    for lb in &spec.loopboxes {
        paths::validate_relative("loopbox filename", &lb.filename)?;
        paths::validate_relative("loopbox mountpoint", &lb.mountpoint)?;
    }
    if spec.command.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(BackendError::invalid("command", "empty argv"));
    }
    Ok(())
}

fn check_distro(distro: &DistroSpec) -> Result<()> {
    distro::check_rootfs(&distro.path).map_err(|e| {
        tracing::warn!(distro = %distro.name, path = %distro.path.display(), error = %e, "distro not usable");
        BackendError::Distro { name: distro.name.clone(), reason: e.to_string() }
    })
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn exec_error(e: crate::host::helper::HelperError) -> BackendError {
    e.into()
}

/// The operations behind [`Backend`]; see the trait for their contracts.
impl Inner {
    async fn prepare_distro(&self, distro: &DistroSpec) -> Result<()> {
        check_distro(distro)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<()> {
        validate_spec(spec)?;
        check_distro(&spec.distro)?;
        let uid = spec.uid;
        let _guard = self.lock(uid).await;
        let layout = self.layout(uid);
        let cg = self.cgroups(uid)?;
        let running = self.look(uid, true)?.is_some_and(|s| s.running.is_some());
        self.make_dirs(&layout, uid)?;
        if !running {
            image::ensure(&layout.home_image(), uid, spec.storage_mb, true).await?;
            cg.ensure(spec.memory_mb * MIB)?;
        }
        // While it runs, only the config changes; it applies at the next start.
        self.write_config(&layout, spec, &cg)
    }

    async fn start(&self, uid: u32) -> Result<Observed> {
        let _guard = self.lock(uid).await;
        let seen = self.look(uid, true)?.ok_or(BackendError::NotFound(uid))?;
        let cg = self.cgroups(uid)?;
        if let Some(r) = &seen.running {
            self.watchers.watch(uid, r.pid, r.start_ticks, cg);
            return Ok(Self::observed(uid, &seen));
        }
        let config =
            seen.config.ok_or_else(|| BackendError::Failed(format!("container {uid} was not created completely")))?;
        let layout = seen.layout;
        // Re-applied at every start: a host reboot empties /sys/fs/cgroup, and a config
        // refreshed while running brings new limits.
        image::ensure(&layout.home_image(), uid, config.spec.storage_mb, true).await?;
        cg.ensure(config.spec.memory_mb * MIB)?;
        cg.reset_counters();
        if config.cgroups != cg.dirs() || config.cgroup_mount != cg.mount_kind() {
            self.write_config(&layout, &config.spec, &cg)?;
        }
        files::remove_if_exists(&layout.run_record()).ctx(|| format!("removing the old run record of {uid}"))?;

        let mut reported: Option<(u32, Option<u64>)> = None;
        let started = Helper::new(&self.options.helper)
            .init(&layout.dir, &mut |pid| reported = Some((pid, process::read_stat(pid).map(|s| s.start_ticks))))
            .await;
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                if let Some((pid, ticks)) = reported {
                    self.reap_failed_start(uid, pid, ticks).await;
                }
                return Err(e.into());
            }
        };
        let pid = started.pid;
        let start_ticks = match reported {
            Some((p, Some(t))) if p == pid => t,
            _ => process::read_stat(pid).map(|s| s.start_ticks).unwrap_or(0),
        };
        if !process::is_alive(pid, start_ticks) {
            let last = logs::read(&layout.console_log_old(), &layout.console_log(), None, None);
            let tail: Vec<String> = last.iter().rev().take(5).rev().map(|l| l.line.clone()).collect();
            return Err(BackendError::Failed(format!(
                "the container's init exited right after starting{}",
                if tail.is_empty() { String::new() } else { format!(": {}", tail.join("; ")) }
            )));
        }
        let record = RunRecord { pid, start_ticks, started_at: now_secs(), generation: config.spec.generation };
        if let Err(e) = files::write_json(&layout.run_record(), &record) {
            self.reap_failed_start(uid, pid, Some(start_ticks)).await;
            return Err(e.into());
        }
        self.watchers.watch(uid, pid, start_ticks, cg);
        tracing::info!(uid, pid, generation = record.generation, "jail started");
        Ok(Observed {
            uid,
            state: RunState::Running,
            pid: Some(pid),
            started_at: Some(record.started_at),
            generation: record.generation,
        })
    }

    async fn stop(&self, uid: u32, grace: Duration) -> Result<()> {
        let _guard = self.lock(uid).await;
        // A zero grace would be a kill; stop always gives SIGTERM a moment.
        self.halt(uid, grace.max(Duration::from_millis(1))).await
    }

    async fn kill(&self, uid: u32) -> Result<()> {
        let _guard = self.lock(uid).await;
        self.halt(uid, Duration::ZERO).await
    }

    async fn remove(&self, uid: u32) -> Result<()> {
        let guard = self.lock(uid).await;
        let layout = self.layout(uid);
        let exists = fs::symlink_metadata(&layout.dir).is_ok();
        if exists {
            self.halt(uid, Duration::ZERO).await?;
        }
        let cg = self.cgroups(uid)?;
        if !cg.is_empty() {
            self.kill_unrecorded(uid, &cg).await;
        }
        cg.remove().await?;
        if exists {
            for dev in loopdev::attached_under(&layout.dir) {
                tracing::info!(uid, dev = %dev.display(), "detaching a leftover loop device");
                if let Err(e) = loopdev::detach(&dev) {
                    tracing::warn!(uid, dev = %dev.display(), error = %e, "cannot detach loop device");
                }
            }
            for _ in 0..150 {
                if loopdev::attached_under(&layout.dir).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The host never mounts in a container directory; if something is mounted there
            // anyway, deleting through it would destroy what it shows.
            let mounts = loopdev::mounts_under(&layout.dir);
            if !mounts.is_empty() {
                return Err(BackendError::Failed(format!(
                    "container {uid}: its directory still has mounts ({}); not removing it",
                    mounts.join(", ")
                )));
            }
            let dir = layout.dir.clone();
            tokio::task::spawn_blocking(move || match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await
            .map_err(|e| BackendError::Failed(format!("removing container {uid}: {e}")))?
            .ctx(|| format!("removing the files of container {uid}"))?;
            tracing::info!(uid, "jail removed");
        }
        drop(guard);
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(&uid).is_some_and(|m| Arc::strong_count(m) == 1) {
            locks.remove(&uid);
        }
        Ok(())
    }

    async fn state(&self, uid: u32) -> Result<Option<Observed>> {
        self.observe(uid)
    }

    async fn list(&self) -> Result<Vec<Observed>> {
        let entries = match fs::read_dir(&self.options.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BackendError::io("listing the jail root", e)),
        };
        let mut uids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok().filter(|u| u.to_string() == n)))
            .collect();
        uids.sort_unstable();
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            // One damaged container must not hide (and so block the adoption of) the others;
            // `state(uid)` still reports its error to whoever reconciles it.
            match self.observe(uid) {
                Ok(Some(o)) => out.push(o),
                Ok(None) => {}
                Err(e) => tracing::warn!(uid, error = %e, "cannot observe a container; left out of the list"),
            }
        }
        Ok(out)
    }

    async fn exec(&self, uid: u32, request: ExecRequest) -> Result<ExecOutput> {
        if request.argv.is_empty() {
            return Err(BackendError::invalid("command", "empty argv"));
        }
        let (layout, record) = self.running(uid)?;
        Helper::new(&self.options.helper).exec(&layout.dir, record.pid, request).await.map_err(exec_error)
    }

    async fn stats(&self, uid: u32) -> Result<Stats> {
        let seen = self.look(uid, false)?.ok_or(BackendError::NotFound(uid))?;
        let cg = self.cgroups(uid)?;
        let mut s = stats::cgroup_stats(&cg);
        match &seen.running {
            Some(r) => {
                (s.net_rx_bytes, s.net_tx_bytes) = stats::net_stats(r.pid);
                if let Some((used, total)) = stats::home_disk_stats(r.pid, r.start_ticks, uid) {
                    (s.disk_used_bytes, s.disk_total_bytes) = (used, total);
                }
            }
            None => {
                s.disk_total_bytes = fs::metadata(seen.layout.home_image()).map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(s)
    }

    async fn logs(&self, uid: u32, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogLine>> {
        let layout = self.layout(uid);
        if !layout.dir.is_dir() {
            return Err(BackendError::NotFound(uid));
        }
        Ok(logs::read(&layout.console_log_old(), &layout.console_log(), since, until))
    }

    async fn mount_loopbox(&self, uid: u32, loopbox: &LoopboxSpec) -> Result<()> {
        paths::validate_relative("loopbox filename", &loopbox.filename)?;
        paths::validate_relative("loopbox mountpoint", &loopbox.mountpoint)?;
        let (layout, record) = self.running(uid)?;
        Ok(Helper::new(&self.options.helper).loop_mount(&layout.dir, record.pid, loopbox).await?)
    }

    async fn unmount_loopbox(&self, uid: u32, mountpoint: &str) -> Result<()> {
        paths::validate_relative("loopbox mountpoint", mountpoint)?;
        let (layout, record) = self.running(uid)?;
        Ok(Helper::new(&self.options.helper).loop_umount(&layout.dir, record.pid, mountpoint).await?)
    }
}

#[async_trait]
impl Backend for JailBackend {
    fn name(&self) -> &'static str {
        "jail"
    }

    async fn prepare_distro(&self, distro: &DistroSpec) -> Result<()> {
        self.inner.prepare_distro(distro).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<()> {
        self.inner.create(spec).await
    }

    async fn start(&self, uid: u32) -> Result<Observed> {
        // In a task of its own: a caller that times out must not cut a start in half (an
        // init running without a run record would be invisible to the next start).
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.start(uid).await })
            .await
            .map_err(|e| BackendError::Failed(format!("starting container {uid}: {e}")))?
    }

    async fn stop(&self, uid: u32, grace: Duration) -> Result<()> {
        self.inner.stop(uid, grace).await
    }

    async fn kill(&self, uid: u32) -> Result<()> {
        self.inner.kill(uid).await
    }

    async fn remove(&self, uid: u32) -> Result<()> {
        self.inner.remove(uid).await
    }

    async fn state(&self, uid: u32) -> Result<Option<Observed>> {
        self.inner.state(uid).await
    }

    async fn list(&self) -> Result<Vec<Observed>> {
        self.inner.list().await
    }

    async fn exec(&self, uid: u32, request: ExecRequest) -> Result<ExecOutput> {
        self.inner.exec(uid, request).await
    }

    async fn stats(&self, uid: u32) -> Result<Stats> {
        self.inner.stats(uid).await
    }

    async fn logs(&self, uid: u32, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogLine>> {
        self.inner.logs(uid, since, until).await
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.inner.events.subscribe()
    }

    async fn mount_loopbox(&self, uid: u32, loopbox: &LoopboxSpec) -> Result<()> {
        self.inner.mount_loopbox(uid, loopbox).await
    }

    async fn unmount_loopbox(&self, uid: u32, mountpoint: &str) -> Result<()> {
        self.inner.unmount_loopbox(uid, mountpoint).await
    }
}

impl Drop for JailBackend {
    fn drop(&mut self) {
        // Watchers hold no reference to the backend; they end with it.
        self.inner.watchers.abort_all();
    }
}
