//! The Backend conformance suite (crates/berth-backend, feature `conformance`) on the jail
//! backend, for real: root, namespaces, cgroups, loop devices. Each check runs on its own
//! backend root and cgroup parent; a guard removes everything on every exit path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_backend::conformance::{self, Fixture};
use berth_backend::{distro, Backend, DistroSpec};
use berth_jail::{HelperCommand, JailBackend, JailOptions};

/// Skips without root, unless BERTH_REQUIRE_ALL=1 (CI), where a missing capability fails.
fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root && std::env::var("BERTH_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("the jail conformance suite needs root (BERTH_REQUIRE_ALL=1)");
    }
    if !root {
        eprintln!("skipping: the jail backend needs root");
    }
    root
}

struct Harness {
    dir: tempfile::TempDir,
    options: JailOptions,
    backend: Arc<JailBackend>,
}

impl Harness {
    fn new(name: &str) -> Harness {
        let dir = tempfile::Builder::new().prefix("berth-conf-").tempdir().expect("temp dir");
        let rootfs = dir.path().join("busybox");
        distro::build_busybox(Path::new(distro::HOST_BUSYBOX), &rootfs).expect("building the busybox distro");
        let options = JailOptions {
            root: dir.path().join("jails"),
            cgroup_parent: format!("berth-t-{name}-{}", std::process::id()),
            helper: HelperCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_berth-jail-helper")), args: vec![] },
        };
        let backend = Arc::new(JailBackend::new(options.clone()));
        Harness { dir, options, backend }
    }

    fn fixture(&self) -> Fixture {
        let options = self.options.clone();
        let leftover_options = self.options.clone();
        Fixture {
            distro: DistroSpec { name: "busybox".into(), path: self.dir.path().join("busybox") },
            uid_base: 39000,
            reopen: Box::new(move || Arc::new(JailBackend::new(options.clone())) as Arc<dyn Backend>),
            leftovers: Box::new(move |uid| leftovers(&leftover_options, uid)),
        }
    }
}

/// Mounts, loop devices, cgroups and files of `uid` that are still on the host.
fn leftovers(options: &JailOptions, uid: u32) -> Vec<String> {
    let mut found = vec![];
    let root = options.root.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(mounts.lines().filter(|l| l.contains(&root)).map(|l| format!("mount: {l}")));
    if let Ok(dir) = std::fs::read_dir("/sys/block") {
        for dev in dir.flatten() {
            let backing = dev.path().join("loop/backing_file");
            if let Ok(file) = std::fs::read_to_string(&backing) {
                if file.contains(&root) {
                    found.push(format!("loop device {}: {}", dev.file_name().to_string_lossy(), file.trim()));
                }
            }
        }
    }
    for controller in ["memory", "cpuacct", "pids", "blkio", "unified", ""] {
        let cg = Path::new("/sys/fs/cgroup").join(controller).join(&options.cgroup_parent).join(uid.to_string());
        if cg.exists() {
            found.push(format!("cgroup {}", cg.display()));
        }
    }
    let dir = options.root.join(uid.to_string());
    if dir.exists() {
        found.push(format!("directory {}", dir.display()));
    }
    found
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Remove whatever a failed check left, from a runtime of our own (we may be
        // unwinding out of the test's runtime).
        let backend = self.backend.clone();
        let options = self.options.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                for uid in 39000..39100 {
                    if let Err(e) = backend.remove(uid).await {
                        eprintln!("cleanup of {uid}: {e}");
                    }
                }
            });
            for controller in ["memory", "cpuacct", "pids", "blkio", "unified", ""] {
                let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(controller).join(&options.cgroup_parent));
            }
        })
        .join()
        .unwrap();
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            if !can_run() {
                return;
            }
            let harness = Harness::new(stringify!($check));
            conformance::$check(&*harness.backend, &harness.fixture()).await;
        }
    )*};
}

conformance!(
    bad_distro_is_refused,
    lifecycle_is_idempotent,
    exec_needs_a_running_container,
    exec_runs_unprivileged,
    memory_limit_is_real,
    storage_limit_is_real,
    loopboxes_mount,
    loopboxes_of_the_spec_mount_at_start,
    stop_escalates_to_sigkill,
    logs_are_kept,
    stats_count,
    oom_kill_is_reported,
    adopts_after_restart,
    init_reaps_orphans,
);
