//! The host side of the jail backend on this machine, for real (root): directories, the
//! ext4 home image and its resizing, cgroups, config, and a whole lifecycle through the
//! helper. Each test uses its own temp root and cgroup parent and removes them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_backend::{distro, Backend, BackendError, ContainerSpec, DistroSpec, ExecRequest, LoopboxSpec, RunState};
use berth_jail::protocol::{JailConfig, Layout};
use berth_jail::{HelperCommand, JailBackend, JailOptions};

const MIB: u64 = 1024 * 1024;

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert_ne!(std::env::var("BERTH_REQUIRE_ALL").as_deref(), Ok("1"), "these tests need root");
        eprintln!("skipping: needs root");
    }
    root
}

struct Setup {
    dir: tempfile::TempDir,
    options: JailOptions,
    backend: JailBackend,
    distro: DistroSpec,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = tempfile::Builder::new().prefix("berth-host-").tempdir().unwrap();
        let rootfs = dir.path().join("busybox");
        distro::build_busybox(Path::new(distro::HOST_BUSYBOX), &rootfs).unwrap();
        let options = JailOptions {
            root: dir.path().join("jails"),
            cgroup_parent: format!("berth-t-host-{name}-{}", std::process::id()),
            helper: HelperCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_berth-jail-helper")), args: vec![] },
        };
        let backend = JailBackend::new(options.clone());
        Setup { dir, options, backend, distro: DistroSpec { name: "busybox".into(), path: rootfs } }
    }

    fn spec(&self, uid: u32) -> ContainerSpec {
        ContainerSpec {
            uid,
            generation: 1,
            hostname: format!("host-{uid}"),
            memory_mb: 48,
            storage_mb: 16,
            distro: self.distro.clone(),
            ssh_keys: vec![],
            loopboxes: vec![],
            ip: "10.0.0.9".parse().unwrap(),
            command: None,
        }
    }

    fn memory_cgroup(&self, uid: u32) -> PathBuf {
        Path::new("/sys/fs/cgroup/memory").join(&self.options.cgroup_parent).join(uid.to_string())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // A test that failed midway leaves its jail running (with its loop device): remove
        // every uid these tests use, from a runtime of our own (we may be unwinding out of
        // the test's runtime), by a backend of its own: removal works from what is on disk.
        let backend = JailBackend::new(self.options.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                for uid in 39900..39930 {
                    if let Err(e) = backend.remove(uid).await {
                        eprintln!("cleanup of {uid}: {e}");
                    }
                }
            });
        })
        .join()
        .unwrap();
        for c in ["memory", "cpuacct", "pids", "blkio", ""] {
            let parent = Path::new("/sys/fs/cgroup").join(c).join(&self.options.cgroup_parent);
            if let Ok(rd) = std::fs::read_dir(&parent) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
        let _ = self.dir.path();
    }
}

fn v1() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[tokio::test]
async fn creates_resizes_and_removes_host_resources() {
    if !is_root() {
        return;
    }
    let s = Setup::new("create");
    let uid = 39901;
    let layout = Layout::new(&s.options.root, uid);
    let mut spec = s.spec(uid);
    s.backend.prepare_distro(&s.distro).await.unwrap();
    s.backend.create(&spec).await.unwrap();
    s.backend.create(&spec).await.unwrap();

    for d in [layout.upper(), layout.work(), layout.rootfs(), layout.log_dir()] {
        assert!(d.is_dir(), "{d:?}");
    }
    let log = std::fs::metadata(layout.log_dir()).unwrap();
    assert_eq!((log.uid(), log.gid(), log.mode() & 0o7777), (uid, uid, 0o750));
    assert_eq!(std::fs::metadata(&layout.dir).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::metadata(layout.home_image()).unwrap().len(), 16 * MIB);
    let config: JailConfig = serde_json::from_slice(&std::fs::read(layout.config()).unwrap()).unwrap();
    assert_eq!(config.spec, spec);
    assert!(config.cgroups.iter().all(|c| c.is_dir()), "{:?}", config.cgroups);
    if v1() {
        let limit = std::fs::read_to_string(s.memory_cgroup(uid).join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), (48 * MIB).to_string());
    }
    let observed = s.backend.state(uid).await.unwrap().unwrap();
    assert_eq!((observed.state, observed.generation, observed.pid), (RunState::Stopped, 1, None));
    let stats = s.backend.stats(uid).await.unwrap();
    assert_eq!(stats.memory_limit, 48 * MIB);
    assert_eq!(stats.disk_total_bytes, 16 * MIB);

    // Grow, raise the memory limit past the old swap limit, then shrink.
    spec.storage_mb = 40;
    spec.memory_mb = 200;
    spec.generation = 2;
    s.backend.create(&spec).await.unwrap();
    assert_eq!(std::fs::metadata(layout.home_image()).unwrap().len(), 40 * MIB);
    assert_eq!(s.backend.stats(uid).await.unwrap().memory_limit, 200 * MIB);
    assert_eq!(s.backend.state(uid).await.unwrap().unwrap().generation, 2);
    spec.storage_mb = 20;
    spec.memory_mb = 32;
    s.backend.create(&spec).await.unwrap();
    assert_eq!(std::fs::metadata(layout.home_image()).unwrap().len(), 20 * MIB);
    assert_eq!(s.backend.stats(uid).await.unwrap().memory_limit, 32 * MIB);
    let fsck = std::process::Command::new("/usr/sbin/e2fsck").arg("-fn").arg(layout.home_image()).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));

    // Bad input is refused before anything changes.
    let mut bad = spec.clone();
    bad.loopboxes = vec![LoopboxSpec { filename: "../x".into(), mountpoint: "m".into(), ro: false }];
    assert!(matches!(s.backend.create(&bad).await, Err(BackendError::Invalid { .. })));
    let mut bad = spec.clone();
    bad.distro.path = s.dir.path().join("missing");
    assert!(matches!(s.backend.create(&bad).await, Err(BackendError::Distro { .. })));
    assert!(matches!(
        s.backend.exec(uid, ExecRequest { argv: vec!["true".into()], ..Default::default() }).await,
        Err(BackendError::NotRunning(_))
    ));
    assert!(s.backend.logs(uid, None, None).await.unwrap().is_empty());

    s.backend.remove(uid).await.unwrap();
    s.backend.remove(uid).await.unwrap();
    assert!(!layout.dir.exists());
    assert!(!s.memory_cgroup(uid).exists());
    assert!(!s.memory_cgroup(uid).parent().unwrap().exists(), "the empty parent cgroup goes too");
    assert_eq!(s.backend.state(uid).await.unwrap(), None);
    assert!(s.backend.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn shrinking_below_the_data_is_refused() {
    if !is_root() {
        return;
    }
    let s = Setup::new("shrink");
    let uid = 39902;
    let layout = Layout::new(&s.options.root, uid);
    let mut spec = s.spec(uid);
    spec.storage_mb = 32;
    s.backend.create(&spec).await.unwrap();
    // Fill the image from the host side with debugfs (no mount on the host).
    let data = s.dir.path().join("data");
    std::fs::write(&data, vec![7u8; 20 * MIB as usize]).unwrap();
    let out = std::process::Command::new("/usr/sbin/debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} data", data.display()))
        .arg(layout.home_image())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    spec.storage_mb = 8;
    let err = s.backend.create(&spec).await.unwrap_err();
    assert!(err.to_string().contains("more data than 8 MB"), "{err}");
    assert_eq!(std::fs::metadata(layout.home_image()).unwrap().len(), 32 * MIB, "the image is unchanged");
    s.backend.remove(uid).await.unwrap();
    assert!(!layout.dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_jail_through_the_helper() {
    if !is_root() {
        return;
    }
    let s = Setup::new("run");
    let uid = 39903;
    let mut spec = s.spec(uid);
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), "echo hello from the console".into()]);
    s.backend.create(&spec).await.unwrap();
    let mut events = s.backend.events();
    let started = s.backend.start(uid).await.unwrap();
    assert_eq!(started.state, RunState::Running);
    let again = s.backend.start(uid).await.unwrap();
    assert_eq!(again.pid, started.pid);

    let out =
        s.backend.exec(uid, ExecRequest { argv: vec!["id".into(), "-u".into()], ..Default::default() }).await.unwrap();
    assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stdout).trim()), (0, uid.to_string().as_str()), "{out:?}");

    // Output past the cap is cut, and the command still runs to its end.
    let big = s
        .backend
        .exec(
            uid,
            ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), "head -c 3000000 /dev/zero; echo done >&2".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(big.stdout.len(), berth_backend::EXEC_OUTPUT_LIMIT);
    assert_eq!(String::from_utf8_lossy(&big.stderr).trim(), "done");

    let stats = s.backend.stats(uid).await.unwrap();
    assert!(stats.memory_bytes > 0 && stats.disk_total_bytes > 8 * MIB, "{stats:?}");
    assert_eq!((stats.net_rx_bytes, stats.net_tx_bytes), (0, 0));

    // The init's own "started" line may come before the command's output: wait for the
    // line itself, not for any line.
    let mut logs = vec![];
    for _ in 0..50 {
        logs = s.backend.logs(uid, None, None).await.unwrap();
        if logs.iter().any(|l| l.line == "hello from the console") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logs.iter().any(|l| l.line == "hello from the console"), "{logs:?}");

    // A create while running only refreshes the config: the running instance keeps
    // reporting the generation it started with until the next start.
    spec.generation = 2;
    spec.memory_mb = 64;
    s.backend.create(&spec).await.unwrap();
    assert_eq!(s.backend.state(uid).await.unwrap().unwrap().generation, 1);
    assert_eq!(s.backend.stats(uid).await.unwrap().memory_limit, 48 * MIB);

    s.backend.stop(uid, Duration::from_secs(5)).await.unwrap();
    let stopped = s.backend.state(uid).await.unwrap().unwrap();
    assert_eq!((stopped.state, stopped.generation), (RunState::Stopped, 2));
    let exited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(berth_backend::BackendEvent::Exited { uid: u }) = events.recv().await {
                if u == uid {
                    return;
                }
            }
        }
    })
    .await;
    assert!(exited.is_ok(), "no Exited event");
    let restarted = s.backend.start(uid).await.unwrap();
    assert_eq!(restarted.generation, 2);
    assert_eq!(s.backend.stats(uid).await.unwrap().memory_limit, 64 * MIB);
    s.backend.kill(uid).await.unwrap();
    s.backend.kill(uid).await.unwrap();
    assert_eq!(s.backend.state(uid).await.unwrap().unwrap().state, RunState::Stopped);
    s.backend.remove(uid).await.unwrap();
    assert!(!s.memory_cgroup(uid).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_loopboxes_through_the_helper() {
    if !is_root() {
        return;
    }
    let s = Setup::new("loop");
    let uid = 39904;
    s.backend.create(&s.spec(uid)).await.unwrap();
    let lb = |file: &str, mnt: &str, ro| LoopboxSpec { filename: file.into(), mountpoint: mnt.into(), ro };
    let err = s.backend.mount_loopbox(uid, &lb("box.img", "rw", false)).await.unwrap_err();
    assert!(matches!(err, BackendError::NotRunning(_)), "{err}");
    s.backend.start(uid).await.unwrap();

    // An image owned by the container's uid, made on the host and copied in through exec.
    let image = s.dir.path().join("box.img");
    std::fs::File::create(&image).unwrap().set_len(2 * MIB).unwrap();
    let mkfs = std::process::Command::new("/usr/sbin/mkfs.ext4")
        .args(["-q", "-F", "-E", &format!("root_owner={uid}:{uid}")])
        .arg(&image)
        .status()
        .unwrap();
    assert!(mkfs.success());
    let put = s
        .backend
        .exec(
            uid,
            ExecRequest {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "cat > box.img && mkdir -p rw && head -c 4096 /dev/zero > tiny.img".into(),
                ],
                stdin: std::fs::read(&image).unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(put.exit_code, 0, "{}", String::from_utf8_lossy(&put.stderr));
    s.backend.mount_loopbox(uid, &lb("box.img", "rw", false)).await.unwrap();
    let sh =
        |script: &str| ExecRequest { argv: vec!["/bin/sh".into(), "-c".into(), script.into()], ..Default::default() };
    let w = s.backend.exec(uid, sh("echo data > rw/f && cat rw/f")).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&w.stdout).trim(), "data", "{}", String::from_utf8_lossy(&w.stderr));
    s.backend.unmount_loopbox(uid, "rw").await.unwrap();
    s.backend.unmount_loopbox(uid, "rw").await.unwrap();
    let err = s.backend.mount_loopbox(uid, &lb("tiny.img", "rw", false)).await.unwrap_err();
    eprintln!("tiny image: {err}");
    assert!(matches!(err, BackendError::Invalid { .. }), "{err}");
    for bad in [lb("../box.img", "rw", false), lb("box.img", "/rw", false), lb("box.img", "a/./b", false)] {
        let err = s.backend.mount_loopbox(uid, &bad).await.unwrap_err();
        assert!(matches!(err, BackendError::Invalid { .. }), "{err}");
    }
    assert!(matches!(s.backend.unmount_loopbox(uid, "..").await, Err(BackendError::Invalid { .. })));
    // Mounted at removal: nothing may stay behind.
    s.backend.mount_loopbox(uid, &lb("box.img", "rw", true)).await.unwrap();
    s.backend.remove(uid).await.unwrap();
    let dir = s.options.root.join(uid.to_string()).display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir));
    let loops = std::process::Command::new("losetup").arg("-a").output().unwrap();
    assert!(!String::from_utf8_lossy(&loops.stdout).contains(&dir));
}

/// A container whose config is damaged is left out of `list` (with a warning) instead of
/// failing it, so the others can still be adopted; `state` still reports the damage.
#[tokio::test]
async fn a_damaged_container_does_not_hide_the_others() {
    if !is_root() {
        return;
    }
    let s = Setup::new("damaged");
    s.backend.prepare_distro(&s.distro).await.unwrap();
    for uid in [39911, 39912] {
        s.backend.create(&s.spec(uid)).await.unwrap();
    }
    std::fs::write(Layout::new(&s.options.root, 39911).config(), b"{ not json").unwrap();
    let listed: Vec<u32> = s.backend.list().await.unwrap().iter().map(|o| o.uid).collect();
    assert_eq!(listed, [39912]);
    assert!(s.backend.state(39911).await.is_err(), "state names the damage");
    for uid in [39911, 39912] {
        s.backend.remove(uid).await.unwrap();
    }
}

/// An init without a run record (the agent died between the init's `ok` and writing the
/// record) is still removed: processes in the container's own cgroup are Berth's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_kills_an_unrecorded_init() {
    if !is_root() {
        return;
    }
    let s = Setup::new("unrecorded");
    let uid = 39921;
    s.backend.prepare_distro(&s.distro).await.unwrap();
    s.backend.create(&s.spec(uid)).await.unwrap();
    let pid = s.backend.start(uid).await.unwrap().pid.unwrap();
    std::fs::remove_file(Layout::new(&s.options.root, uid).run_record()).unwrap();
    s.backend.remove(uid).await.unwrap();
    assert!(!s.memory_cgroup(uid).exists());
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|st| !st.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'));
    assert!(!alive, "the unrecorded init {pid} outlived remove");
    assert!(berth_backend::conformance::processes_of_uid(uid).is_empty());
}
