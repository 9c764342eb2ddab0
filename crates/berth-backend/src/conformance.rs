//! The conformance suite: what every backend must do on a real host (design §4). Each check
//! is an async function taking the backend under test and a [`Fixture`]; a backend crate
//! runs every one of them with its own engine (see `backends/jail/tests/conformance.rs`).
//!
//! Checks use their own uid each (`Fixture::uid`), remove what they created on success, and
//! rely on the caller's guard to remove it on failure (`Fixture::cleanup`).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use crate::{Backend, BackendError, BackendEvent, ContainerSpec, DistroSpec, ExecRequest, LoopboxSpec, RunState};

/// What the suite needs from the backend crate running it.
pub struct Fixture {
    /// A distro built by [`crate::distro::build_busybox`].
    pub distro: DistroSpec,
    /// First uid the suite may use; it takes `base .. base + 100`.
    pub uid_base: u32,
    /// A second backend over the same host state, as after an agent restart.
    pub reopen: Box<dyn Fn() -> Arc<dyn Backend> + Send + Sync>,
    /// Host resources of `uid` that should be gone after `remove` (mounts, loop devices,
    /// cgroups, files), described one per line; empty when clean.
    pub leftovers: Box<dyn Fn(u32) -> Vec<String> + Send + Sync>,
}

impl Fixture {
    pub fn uid(&self, n: u32) -> u32 {
        assert!(n < 100);
        self.uid_base + n
    }

    /// A small container: 64 MiB of memory, 32 MiB of home, the init alone.
    pub fn spec(&self, uid: u32) -> ContainerSpec {
        ContainerSpec {
            uid,
            generation: 1,
            hostname: format!("conformance-{uid}"),
            memory_mb: 64,
            storage_mb: 32,
            distro: self.distro.clone(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConformance test@berth".into()],
            loopboxes: vec![],
            ip: Ipv4Addr::new(10, 0, 0, 3),
            command: None,
        }
    }
}

/// Upper bound for any single backend call in the suite, so a hang fails instead of stalling.
const STEP: Duration = Duration::from_secs(60);

async fn step<T>(what: &str, fut: impl Future<Output = crate::Result<T>>) -> T {
    match timeout(STEP, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

async fn sh(b: &dyn Backend, uid: u32, script: &str) -> crate::ExecOutput {
    step(
        &format!("exec {script:?}"),
        b.exec(
            uid,
            ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                timeout_secs: Some(30),
                ..ExecRequest::default()
            },
        ),
    )
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

async fn running(b: &dyn Backend, fx: &Fixture, spec: &ContainerSpec) {
    step("prepare_distro", b.prepare_distro(&fx.distro)).await;
    step("create", b.create(spec)).await;
    let observed = step("start", b.start(spec.uid)).await;
    assert_eq!(observed.state, RunState::Running);
    assert!(observed.pid.is_some(), "a running container reports its pid");
}

async fn removed(b: &dyn Backend, fx: &Fixture, uid: u32) {
    step("remove", b.remove(uid)).await;
    assert_eq!(step("state after remove", b.state(uid)).await, None);
    let left = (fx.leftovers)(uid);
    assert!(left.is_empty(), "remove left host resources behind: {left:#?}");
    let procs = processes_of_uid(uid);
    assert!(procs.is_empty(), "processes of uid {uid} outlived remove: {procs:?}");
}

/// Host pids whose real uid is `uid` (container processes run as the container's uid).
pub fn processes_of_uid(uid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                    == Some(uid)
                    && !s.lines().any(|l| l.starts_with("State:") && l.contains('Z'))
            })
        })
        .collect()
}

/// Create, start, stop and remove, each twice, with the states in between.
pub async fn lifecycle_is_idempotent(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(0);
    let spec = fx.spec(uid);
    assert_eq!(step("state of unknown", b.state(uid)).await, None);
    step("remove unknown", b.remove(uid)).await;
    step("create", b.create(&spec)).await;
    step("create again", b.create(&spec)).await;
    let stopped = step("state", b.state(uid)).await.expect("created container is known");
    assert_eq!((stopped.state, stopped.generation), (RunState::Stopped, 1));
    running(b, fx, &spec).await;
    let first = step("state", b.state(uid)).await.unwrap();
    let again = step("start again", b.start(uid)).await;
    assert_eq!(again.pid, first.pid, "starting a running container keeps it");
    assert!(step("list", b.list()).await.iter().any(|o| o.uid == uid && o.state == RunState::Running));
    step("stop", b.stop(uid, Duration::from_secs(5))).await;
    assert_eq!(step("state", b.state(uid)).await.unwrap().state, RunState::Stopped);
    step("stop again", b.stop(uid, Duration::from_secs(5))).await;
    let restarted = step("restart", b.start(uid)).await;
    assert_ne!(restarted.pid, first.pid);
    removed(b, fx, uid).await;
    step("remove again", b.remove(uid)).await;
    assert!(!step("list", b.list()).await.iter().any(|o| o.uid == uid));
}

/// Exec runs as the container's uid, without capabilities, with stdin, env, exit codes,
/// stderr and a timeout.
pub async fn exec_runs_unprivileged(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(1);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    let id = sh(b, uid, "id -u; id -g").await;
    assert_eq!(id.exit_code, 0, "{}", text(&id.stderr));
    assert_eq!(text(&id.stdout), format!("{uid}\n{uid}"));
    let status = sh(b, uid, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status").await;
    let status = text(&status.stdout);
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert_eq!(text(&sh(b, uid, "hostname").await.stdout), spec.hostname);
    assert_eq!(text(&sh(b, uid, "echo $HOME; pwd").await.stdout), format!("{0}\n{0}", spec.home()));
    assert_eq!(sh(b, uid, "echo oops >&2; exit 7").await.exit_code, 7);
    assert_eq!(text(&sh(b, uid, "echo oops >&2; exit 7").await.stderr), "oops");
    let cat = step(
        "exec cat",
        b.exec(
            uid,
            ExecRequest {
                argv: vec!["cat".into()],
                env: BTreeMap::new(),
                stdin: b"from stdin".to_vec(),
                timeout_secs: Some(10),
            },
        ),
    )
    .await;
    assert_eq!(cat.stdout, b"from stdin");
    let env = step(
        "exec env",
        b.exec(
            uid,
            ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), "echo $GREETING".into()],
                env: BTreeMap::from([("GREETING".into(), "hello".into())]),
                ..ExecRequest::default()
            },
        ),
    )
    .await;
    assert_eq!(text(&env.stdout), "hello");
    let slow = step(
        "exec with timeout",
        b.exec(
            uid,
            ExecRequest { argv: vec!["sleep".into(), "30".into()], timeout_secs: Some(1), ..Default::default() },
        ),
    )
    .await;
    assert!(slow.timed_out, "a command past its timeout is killed and reported");
    let missing =
        step("exec missing", b.exec(uid, ExecRequest { argv: vec!["no-such-cmd".into()], ..Default::default() })).await;
    assert_eq!(missing.exit_code, 127);
    // The container's processes see only their own pid namespace and network.
    let ps = text(&sh(b, uid, "ls /proc | grep -c '^[0-9]'").await.stdout);
    assert!(ps.parse::<u32>().unwrap() < 10, "the jail sees host processes: {ps}");
    let ifaces = text(&sh(b, uid, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").await.stdout);
    assert_eq!(ifaces, "lo", "until networking lands a container has only loopback");
    assert!(sh(b, uid, "touch /etc/passwd").await.exit_code != 0, "the root filesystem is not the uid's");
    removed(b, fx, uid).await;
}

/// Exec in a stopped or unknown container is refused with NotRunning / NotFound.
pub async fn exec_needs_a_running_container(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(2);
    let err = b.exec(uid, ExecRequest { argv: vec!["true".into()], ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, BackendError::NotRunning(_) | BackendError::NotFound(_)), "{err}");
    step("create", b.create(&fx.spec(uid))).await;
    let err = b.exec(uid, ExecRequest { argv: vec!["true".into()], ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, BackendError::NotRunning(_)), "{err}");
    removed(b, fx, uid).await;
}

/// The memory limit is the spec's, visible inside at /run/cgroup, and in stats.
pub async fn memory_limit_is_real(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(3);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    let limit = text(
        &sh(b, uid, "cat /run/cgroup/memory.limit_in_bytes 2>/dev/null || cat /run/cgroup/memory.max").await.stdout,
    );
    assert_eq!(limit, (spec.memory_mb * 1024 * 1024).to_string());
    let stats = step("stats", b.stats(uid)).await;
    assert_eq!(stats.memory_limit, spec.memory_mb * 1024 * 1024);
    assert!(stats.memory_bytes > 0, "{stats:?}");
    removed(b, fx, uid).await;
}

/// The home is `storage_mb` big: writing past it fails with ENOSPC; stats see the use.
pub async fn storage_limit_is_real(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(4);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    let before = step("stats", b.stats(uid)).await;
    let total = before.disk_total_bytes;
    assert!(total > 20 * 1024 * 1024 && total <= 32 * 1024 * 1024, "home size {total}");
    let fill = sh(b, uid, "dd if=/dev/zero of=$HOME/fill bs=1M count=64").await;
    assert_ne!(fill.exit_code, 0);
    assert!(text(&fill.stderr).contains("No space left on device"), "{}", text(&fill.stderr));
    let after = step("stats", b.stats(uid)).await;
    assert!(after.disk_used_bytes > before.disk_used_bytes + 16 * 1024 * 1024, "{before:?} → {after:?}");
    let owner = text(&sh(b, uid, "stat -c %u $HOME").await.stdout);
    assert_eq!(owner, uid.to_string(), "the home belongs to the container's uid");
    removed(b, fx, uid).await;
}

/// Loopboxes: image files in the home, mounted ro or rw at their mountpoint; small images
/// and escaping paths refused; unmount leaves the image.
pub async fn loopboxes_mount(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(5);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    put_image(b, uid, "cat > box.img && mkdir -p ro rw && head -c 4096 /dev/zero > tiny.img").await;
    let lb = |file: &str, mnt: &str, ro| LoopboxSpec { filename: file.into(), mountpoint: mnt.into(), ro };
    step("mount rw", b.mount_loopbox(uid, &lb("box.img", "rw", false))).await;
    let write = sh(b, uid, "echo data > rw/file && cat rw/file && grep -c \" $HOME/rw \" /proc/mounts").await;
    assert_eq!(text(&write.stdout), "data\n1", "{}", text(&write.stderr));
    step("unmount", b.unmount_loopbox(uid, "rw")).await;
    step("unmount again", b.unmount_loopbox(uid, "rw")).await;
    assert_eq!(text(&sh(b, uid, "ls rw | wc -l; ls -l box.img | wc -l").await.stdout), "0\n1");
    step("mount ro", b.mount_loopbox(uid, &lb("box.img", "ro", true))).await;
    let ro = sh(b, uid, "cat ro/file && touch ro/other").await;
    assert_eq!(text(&ro.stdout), "data", "the rw write is on the image");
    assert!(text(&ro.stderr).contains("Read-only file system"), "{}", text(&ro.stderr));
    step("unmount ro", b.unmount_loopbox(uid, "ro")).await;
    for bad in [
        lb("tiny.img", "rw", false),
        lb("../box.img", "rw", false),
        lb("/etc/passwd", "rw", false),
        lb("box.img", "../x", false),
    ] {
        let err = b.mount_loopbox(uid, &bad).await.expect_err(&format!("{bad:?} must be refused"));
        assert!(!matches!(err, BackendError::NotRunning(_)), "{err}");
    }
    // A symlink to a host path is not followed out of the container.
    sh(b, uid, "ln -s /etc/hostname link.img").await;
    assert!(b.mount_loopbox(uid, &lb("link.img", "rw", false)).await.is_err());
    removed(b, fx, uid).await;
}

/// Loopboxes of the spec are mounted at start.
pub async fn loopboxes_of_the_spec_mount_at_start(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(6);
    let mut spec = fx.spec(uid);
    running(b, fx, &spec).await;
    put_image(b, uid, "cat > box.img && mkdir data").await;
    step("stop", b.stop(uid, Duration::from_secs(5))).await;
    spec.generation = 2;
    spec.loopboxes = vec![LoopboxSpec { filename: "box.img".into(), mountpoint: "data".into(), ro: true }];
    step("create with loopbox", b.create(&spec)).await;
    let observed = step("start", b.start(uid)).await;
    assert_eq!(observed.generation, 2);
    let mounted = sh(b, uid, "grep -c \" $HOME/data \" /proc/mounts; touch data/x").await;
    assert_eq!(text(&mounted.stdout), "1");
    assert!(text(&mounted.stderr).contains("Read-only file system"));
    removed(b, fx, uid).await;
}

/// Stop sends SIGTERM, waits the grace period, then SIGKILLs what ignored it.
pub async fn stop_escalates_to_sigkill(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(7);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    let spawn = sh(b, uid, "trap '' TERM; setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo started").await;
    assert_eq!(text(&spawn.stdout), "started");
    let mut events = b.events();
    step("stop", b.stop(uid, Duration::from_millis(500))).await;
    assert_eq!(step("state", b.state(uid)).await.unwrap().state, RunState::Stopped);
    assert!(processes_of_uid(uid).is_empty(), "a process ignoring SIGTERM outlived stop");
    wait_event(&mut events, BackendEvent::Exited { uid }).await;
    removed(b, fx, uid).await;
}

/// Console output of the container's command is kept with timestamps and filtered by time.
pub async fn logs_are_kept(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(8);
    let mut spec = fx.spec(uid);
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), "echo hello-conformance; echo second line >&2".into()]);
    let before = now();
    running(b, fx, &spec).await;
    let mut lines = vec![];
    for _ in 0..100 {
        lines = step("logs", b.logs(uid, None, None)).await;
        if lines.iter().any(|l| l.line.contains("second line")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hello = lines.iter().find(|l| l.line == "hello-conformance").unwrap_or_else(|| panic!("{lines:?}"));
    assert!(hello.unix >= before - 1.0 && hello.unix <= now() + 1.0, "{hello:?}");
    assert!(lines.windows(2).all(|w| w[0].unix <= w[1].unix), "oldest first");
    assert!(step("logs in the future", b.logs(uid, Some(now() + 3600.0), None)).await.is_empty());
    assert!(step("logs before", b.logs(uid, None, Some(before - 3600.0))).await.is_empty());
    assert_eq!(step("container still runs", b.state(uid)).await.unwrap().state, RunState::Running);
    removed(b, fx, uid).await;
}

/// Stats count cpu, memory, io and disk of the container alone.
pub async fn stats_count(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(9);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    sh(b, uid, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; dd if=/dev/urandom of=$HOME/f bs=1M count=4 conv=fsync 2>/dev/null").await;
    let stats = step("stats", b.stats(uid)).await;
    assert!(stats.cpu_nanos > 10_000_000, "{stats:?}");
    assert!(stats.memory_rss + stats.memory_cache > 0, "{stats:?}");
    assert!(stats.disk_used_bytes >= 4 * 1024 * 1024, "{stats:?}");
    assert_eq!(stats.oom_kills, 0);
    removed(b, fx, uid).await;
}

/// A process past the memory limit is OOM-killed, and the backend says so.
pub async fn oom_kill_is_reported(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(10);
    let mut spec = fx.spec(uid);
    spec.memory_mb = 32;
    running(b, fx, &spec).await;
    // Host safety: the hog runs only once the limit is read back from the cgroup.
    let limit = step("stats", b.stats(uid)).await.memory_limit;
    assert_eq!(limit, 32 * 1024 * 1024, "refusing to run a memory hog without its limit in place");
    let mut events = b.events();
    let hog = step(
        "exec hog",
        b.exec(
            uid,
            ExecRequest {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "ulimit -v 262144; dd if=/dev/zero of=/dev/null bs=100M count=1".into(),
                ],
                timeout_secs: Some(20),
                ..Default::default()
            },
        ),
    )
    .await;
    assert_ne!(hog.exit_code, 0, "the hog must not fit in 32 MiB");
    wait_event(&mut events, BackendEvent::OomKilled { uid }).await;
    assert!(step("stats", b.stats(uid)).await.oom_kills >= 1);
    removed(b, fx, uid).await;
}

/// A second backend over the same host state (an agent restart) adopts the running
/// container: same pid, still controllable.
pub async fn adopts_after_restart(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(11);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    let pid = step("state", b.state(uid)).await.unwrap().pid;
    let again = (fx.reopen)();
    let adopted = step("list after reopen", again.list()).await;
    let mine = adopted.iter().find(|o| o.uid == uid).expect("the reopened backend lists the container");
    assert_eq!((mine.state, mine.pid, mine.generation), (RunState::Running, pid, 1));
    assert_eq!(text(&sh(&*again, uid, "id -u").await.stdout), uid.to_string());
    let mut events = again.events();
    step("kill through the new backend", again.kill(uid)).await;
    wait_event(&mut events, BackendEvent::Exited { uid }).await;
    assert_eq!(step("state", b.state(uid)).await.unwrap().state, RunState::Stopped);
    removed(&*again, fx, uid).await;
}

/// Orphans inside the container are reaped by its init: no zombie stays behind.
pub async fn init_reaps_orphans(b: &dyn Backend, fx: &Fixture) {
    let uid = fx.uid(12);
    let spec = fx.spec(uid);
    running(b, fx, &spec).await;
    // The subshell exits at once: its `sleep` children become the init's, and die soon after.
    let spawn = sh(b, uid, "for i in 1 2 3 4 5; do (sleep 0.2 &) ; done; echo spawned").await;
    assert_eq!(text(&spawn.stdout), "spawned");
    let count_zombies = "n=0; for s in /proc/[0-9]*/stat; do case \"$(cut -d' ' -f3 $s 2>/dev/null)\" in Z) n=$((n+1));; esac; done; echo $n";
    let mut zombies = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sleeping = text(&sh(b, uid, "grep -l '^sleep' /proc/[0-9]*/comm 2>/dev/null | wc -l").await.stdout);
        zombies = text(&sh(b, uid, count_zombies).await.stdout);
        if sleeping == "0" && zombies == "0" {
            break;
        }
    }
    assert_eq!(zombies, "0", "orphans left zombies: the init does not reap");
    removed(b, fx, uid).await;
}

/// A distro that is not a rootfs is refused before anything is created.
pub async fn bad_distro_is_refused(b: &dyn Backend, _fx: &Fixture) {
    let err = b
        .prepare_distro(&DistroSpec { name: "nothing".into(), path: PathBuf::from("/nonexistent/berth-distro") })
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Distro { .. }), "{err}");
}

/// Every check, in an order that starts with the simplest.
pub async fn run_all(b: &dyn Backend, fx: &Fixture) {
    bad_distro_is_refused(b, fx).await;
    lifecycle_is_idempotent(b, fx).await;
    exec_needs_a_running_container(b, fx).await;
    exec_runs_unprivileged(b, fx).await;
    memory_limit_is_real(b, fx).await;
    storage_limit_is_real(b, fx).await;
    loopboxes_mount(b, fx).await;
    loopboxes_of_the_spec_mount_at_start(b, fx).await;
    stop_escalates_to_sigkill(b, fx).await;
    logs_are_kept(b, fx).await;
    stats_count(b, fx).await;
    oom_kill_is_reported(b, fx).await;
    adopts_after_restart(b, fx).await;
    init_reaps_orphans(b, fx).await;
}

async fn wait_event(events: &mut tokio::sync::broadcast::Receiver<BackendEvent>, want: BackendEvent) {
    let found = timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(e) if e == want => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no {want:?} within 20 s");
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Copies a fresh 2 MiB ext4 image (root owned by the container's uid) into the container
/// as the stdin of `script`, which must succeed. The host copy is gone before the exec, so
/// a failing check leaves no file behind.
async fn put_image(b: &dyn Backend, uid: u32, script: &str) {
    let path = ext4_image(2, uid);
    let image = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    let put = step(
        "copy image in",
        b.exec(
            uid,
            ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                stdin: image.expect("reading the image"),
                ..Default::default()
            },
        ),
    )
    .await;
    assert_eq!(put.exit_code, 0, "{}", text(&put.stderr));
}

/// A fresh ext4 image of `mb` MiB whose root belongs to `owner`, in the host's temp dir.
fn ext4_image(mb: u64, owner: u32) -> PathBuf {
    let path = std::env::temp_dir().join(format!("berth-conformance-{}-{}.img", std::process::id(), rand_suffix()));
    std::fs::File::create(&path).and_then(|f| f.set_len(mb * 1024 * 1024)).expect("creating an image file");
    let ok = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", &format!("root_owner={owner}:{owner}")])
        .arg(&path)
        .status();
    if !ok.as_ref().is_ok_and(|s| s.success()) {
        let _ = std::fs::remove_file(&path);
        panic!("mkfs.ext4 failed: {ok:?}");
    }
    path
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
}
