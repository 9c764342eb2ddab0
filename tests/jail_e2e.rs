//! Containers really run: `berth serve --server` with the jail backend, driven through
//! GraphQL as a customer would. Needs root (namespaces, cgroups, loop devices); skips
//! without it unless BERTH_REQUIRE_ALL=1, where it fails instead.
//!
//! Host safety: the jails live under the test's temp dir with a cgroup parent of the
//! test's own (`berth-t-e2e-…`); the memory hog runs only after its limit was read back;
//! signals go only to the `berth` child this harness spawned. A guard removes every jail
//! (through the jail backend itself) on success and on failure.

mod common;
#[path = "common/ws.rs"]
mod ws;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_backend::Backend as _;
use berth_jail::{HelperCommand, JailBackend, JailOptions};
use common::{Auth, Berth, Customer, Opts};
use serde_json::{json, Value};
use ws::{Frame, Protocol, Ws};

fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root && std::env::var("BERTH_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("jail end-to-end tests need root (BERTH_REQUIRE_ALL=1)");
    }
    if !root {
        eprintln!("skipping: jail end-to-end tests need root");
    }
    root
}

/// Where the test's jails live: its own cgroup parent and the jail root of its `berth`.
struct Jails {
    cgroup_parent: String,
    root: PathBuf,
}

impl Jails {
    fn options(&self) -> JailOptions {
        JailOptions {
            root: self.root.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            helper: HelperCommand {
                program: PathBuf::from(env!("CARGO_BIN_EXE_berth")),
                args: vec!["jail-helper".into()],
            },
        }
    }

    /// What of `uid` is still on the host: mounts, loop devices, cgroups, processes, files.
    fn leftovers(&self, uid: u32) -> Vec<String> {
        let root = self.root.to_string_lossy().into_owned();
        let mut found = vec![];
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        found.extend(mounts.lines().filter(|l| l.contains(&root)).map(|l| format!("mount {l}")));
        let losetup = std::process::Command::new("losetup").arg("-a").output().expect("losetup -a");
        found.extend(
            String::from_utf8_lossy(&losetup.stdout).lines().filter(|l| l.contains(&root)).map(|l| format!("loop {l}")),
        );
        for controller in CONTROLLERS {
            let cg = Path::new("/sys/fs/cgroup").join(controller).join(&self.cgroup_parent).join(uid.to_string());
            if cg.exists() {
                found.push(format!("cgroup {}", cg.display()));
            }
        }
        // Processes of this test's jails: the uid's processes whose command line names the
        // jail root (an init) or whose cgroup is under the test's parent (anything inside).
        for pid in berth_backend::conformance::processes_of_uid(uid) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&root) || cgroup.contains(&self.cgroup_parent) {
                found.push(format!("process {pid}"));
            }
        }
        if self.root.join(uid.to_string()).exists() {
            found.push(format!("directory {}", self.root.join(uid.to_string()).display()));
        }
        found
    }

    /// Removes every jail through the jail backend itself, then the cgroup parent.
    fn remove_all(&self) {
        let options = self.options();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            // Every container directory, not `list()`: a container the backend cannot read
            // (damaged config) must go too.
            let uids: Vec<u32> = std::fs::read_dir(&options.root)
                .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
                .unwrap_or_default();
            rt.block_on(async {
                let backend = JailBackend::new(options.clone());
                for uid in uids {
                    if let Err(e) = backend.remove(uid).await {
                        eprintln!("cleanup of jail {uid}: {e}");
                    }
                }
            });
            for controller in CONTROLLERS {
                let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(controller).join(&options.cgroup_parent));
            }
        })
        .join()
        .unwrap();
    }
}

const CONTROLLERS: [&str; 5] = ["memory", "cpuacct", "pids", "blkio", ""];

struct Host {
    berth: Berth,
    jails: Jails,
    owner: Customer,
    distro: i64,
}

/// On every exit path, success or panic: stop `berth` first (so its agent starts nothing
/// more), remove the jails while their directory still exists, and only then let `Berth`
/// remove its temp dir.
impl Drop for Host {
    fn drop(&mut self) {
        self.berth.kill9_now();
        self.jails.remove_all();
    }
}

const SERVER: &str = "jailhost";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthE2E test@berth";

async fn host() -> Host {
    let cgroup_parent = format!("berth-t-e2e-{}-{:06x}", std::process::id(), rand::random::<u32>() & 0xffffff);
    let berth = Berth::start_with(Opts {
        args: [
            "--server",
            SERVER,
            "--backend",
            "jail",
            "--agent-resync",
            "1",
            "--agent-sample",
            "1",
            "--stop-grace",
            "2",
            "--jail-cgroup-parent",
            &cgroup_parent,
        ]
        .map(String::from)
        .to_vec(),
        ..Opts::default()
    })
    .await;
    let jails = Jails { cgroup_parent, root: berth.state_dir.join("jail") };
    let rootfs = berth.scratch().join("busybox");
    let built = common::berth_command()
        .args(["distro", "build", "busybox", "--into"])
        .arg(&rootfs)
        .output()
        .await
        .expect("berth distro build");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let owner = berth.fixture_customer("jailowner").await;
    berth
        .admin(&[
            "server",
            "add",
            "--name",
            SERVER,
            "--address",
            "192.0.2.77",
            "--memory",
            "4096",
            "--storage",
            "4096",
            "--owner",
            "jailowner",
        ])
        .await;
    let distro = berth.admin(&["distro", "add", "--name", "busybox", "--path", rootfs.to_str().unwrap()]).await;
    Host { berth, jails, owner, distro: distro["id"].as_i64().unwrap() }
}

impl Host {
    async fn create(&self, name: &str, memory: i64, storage: i64) -> i64 {
        let made = self
            .berth
            .gql_ok(
                self.owner.auth(),
                "mutation($n: String!, $m: Int!, $s: Int!) { createContainer(input: { server: \"jailhost\", name: $n, memory: $m, storage: $s }) { uid } }",
                json!({ "n": name, "m": memory, "s": storage }),
            )
            .await;
        made["createContainer"]["uid"].as_i64().unwrap()
    }

    /// Gives the container a distro and a key (what makes it start); returns the generation.
    async fn provision(&self, uid: i64) -> i64 {
        let updated = self
            .berth
            .gql_ok(
                self.owner.auth(),
                "mutation($u: Int!, $d: Int!, $k: [String!]) { updateContainer(uid: $u, input: { distro: $d, sshKeys: $k }) { generation } }",
                json!({ "u": uid, "d": self.distro, "k": [KEY] }),
            )
            .await;
        updated["updateContainer"]["generation"].as_i64().unwrap()
    }

    async fn runtime(&self, auth: Auth, uid: i64) -> Value {
        self.berth
            .gql(
                auth,
                "query($u: Int!) { container(uid: $u) { runtime { state pid startedAt observedGeneration lastError memoryUsed diskUsed } } }",
                json!({ "u": uid }),
            )
            .await
    }

    /// Polls until the runtime satisfies `done` (30 s at most); returns it.
    async fn wait_runtime(&self, uid: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self.runtime(self.owner.auth(), uid).await["data"]["container"]["runtime"].clone();
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("container {uid} never got {what}; last runtime: {last}; log:\n{}", self.log());
    }

    async fn running(&self, uid: i64, generation: i64) -> Value {
        self.wait_runtime(uid, "RUNNING", |r| {
            r["state"] == "RUNNING" && r["observedGeneration"].as_i64() >= Some(generation)
        })
        .await
    }

    async fn exec_as(&self, auth: Auth, uid: i64, script: &str) -> Value {
        self.berth
            .gql(
                auth,
                "mutation($u: Int!, $a: [String!]!) { exec(uid: $u, argv: $a, timeoutSecs: 30) { exitCode stdout stderr timedOut } }",
                json!({ "u": uid, "a": ["/bin/sh", "-c", script] }),
            )
            .await
    }

    async fn exec(&self, uid: i64, script: &str) -> Value {
        let answer = self.exec_as(self.owner.auth(), uid, script).await;
        assert!(answer["errors"].is_null(), "exec {script:?}: {answer}");
        answer["data"]["exec"].clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.berth.log).unwrap_or_default()
    }
}

fn out(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().trim().to_owned()
}

/// A container starts once it has a distro and a key, runs as its uid with its limits, and
/// is removed without a trace; another customer can neither see nor enter it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_for_real_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let h = host().await;
    let uid = h.create("web", 64, 32).await;
    // No distro and no key yet: it must not start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = h.runtime(h.owner.auth(), uid).await;
    assert_ne!(pending["data"]["container"]["runtime"]["state"], "RUNNING", "{pending}");

    let mut events_ws = Ws::open(h.berth.addr, Protocol::TransportWs, &h.owner.auth().header().unwrap()).await;
    let events = events_ws
        .subscribe(
            "subscription($u: Int) { containerEvents(container: $u) { container kind generation state } }",
            json!({ "u": uid }),
        )
        .await;
    let generation = h.provision(uid).await;
    let runtime = h.running(uid, generation).await;
    assert!(runtime["pid"].as_i64().unwrap() > 1, "{runtime}");
    // Subscribers see the observed state change, with the generation it runs.
    let mut seen = vec![];
    loop {
        let event = events_ws.next_data(&events).await["containerEvents"].clone();
        seen.push(event.clone());
        if event["state"] == "RUNNING" {
            assert_eq!(event["generation"].as_i64(), Some(generation), "{seen:?}");
            break;
        }
        assert!(seen.len() < 10, "no RUNNING event: {seen:?}");
    }
    events_ws.close().await;
    assert!(runtime["lastError"].is_null(), "{runtime}");

    let id = h.exec(uid, "id -u").await;
    assert_eq!((id["exitCode"].as_i64(), out(&id, "stdout")), (Some(0), uid.to_string()));
    let limit = h.exec(uid, "cat /run/cgroup/memory.limit_in_bytes 2>/dev/null || cat /run/cgroup/memory.max").await;
    assert_eq!(out(&limit, "stdout"), (64 * 1024 * 1024).to_string(), "the memory limit is visible inside");
    let fill = h.exec(uid, "dd if=/dev/zero of=$HOME/fill bs=1M count=100").await;
    assert_ne!(fill["exitCode"].as_i64(), Some(0));
    assert!(out(&fill, "stderr").contains("No space left on device"), "{fill}");
    h.exec(uid, "rm -f $HOME/fill").await;

    // Console output is kept and readable through GraphQL.
    let logs = h
        .berth
        .gql_ok(h.owner.auth(), "query($u: Int!) { container(uid: $u) { logs { unix line } } }", json!({ "u": uid }))
        .await;
    let lines = logs["container"]["logs"].as_array().unwrap().clone();
    assert!(!lines.is_empty(), "the console log has the start lines: {logs}");

    // Tenancy: a stranger can neither read the runtime nor enter the container.
    let stranger = h.berth.fixture_customer("stranger").await;
    let peek = h.runtime(stranger.auth(), uid).await;
    assert_eq!(common::error_code(&peek), Some("NOT_FOUND"), "{peek}");
    let enter = h.exec_as(stranger.auth(), uid, "id").await;
    assert_eq!(common::error_code(&enter), Some("NOT_FOUND"), "{enter}");
    let logs = h
        .berth
        .gql(stranger.auth(), "query($u: Int!) { container(uid: $u) { logs { line } } }", json!({ "u": uid }))
        .await;
    assert_eq!(common::error_code(&logs), Some("NOT_FOUND"), "{logs}");

    // A read-only loopbox refuses writes.
    let made = h
        .exec(uid, "dd if=/dev/zero of=box.img bs=1M count=2 2>/dev/null && mke2fs -q -F box.img >/dev/null && mkdir -p box && echo ok")
        .await;
    assert_eq!(out(&made, "stdout"), "ok", "{made}");
    h.berth
        .gql_ok(
            h.owner.auth(),
            "mutation($u: Int!) { createLoopbox(input: { container: $u, filename: \"box.img\", mountpoint: \"box\", ro: true }) { id } }",
            json!({ "u": uid }),
        )
        .await;
    let mut mounted = Value::Null;
    for _ in 0..100 {
        mounted = h.exec(uid, "grep -c \" $HOME/box \" /proc/mounts").await;
        if out(&mounted, "stdout") == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(out(&mounted, "stdout"), "1", "the loopbox was mounted: {mounted}\n{}", h.log());
    let write = h.exec(uid, "touch box/x").await;
    assert!(out(&write, "stderr").contains("Read-only file system"), "{write}");

    // An update that bumps the generation restarts it (new pid).
    let pid = runtime["pid"].as_i64().unwrap();
    let reboot = h
        .berth
        .gql_ok(
            h.owner.auth(),
            "mutation($u: Int!) { updateContainer(uid: $u, input: { reboot: true }) { generation } }",
            json!({ "u": uid }),
        )
        .await["updateContainer"]["generation"]
        .as_i64()
        .unwrap();
    let restarted = h.running(uid, reboot).await;
    assert_ne!(restarted["pid"].as_i64(), Some(pid), "a reboot restarts the container");

    // Deleting the container leaves no mount, loop device, cgroup, process or file.
    h.berth.admin(&["container", "remove", "--uid", &uid.to_string()]).await;
    let mut left = vec![];
    for _ in 0..150 {
        left = h.jails.leftovers(uid as u32);
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(left.is_empty(), "deleted container left {left:#?}\n{}", h.log());
    drop(h);
}

/// A program past the memory limit is OOM-killed and a level-0 alarm says so, live and in
/// the alarms list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_raises_an_alarm() {
    if !can_run() {
        return;
    }
    let h = host().await;
    let uid = h.create("hog", 32, 32).await;
    let generation = h.provision(uid).await;
    h.running(uid, generation).await;
    // Host safety: the hog runs only once the limit is read back from inside its cgroup.
    let limit = h.exec(uid, "cat /run/cgroup/memory.limit_in_bytes 2>/dev/null || cat /run/cgroup/memory.max").await;
    assert_eq!(out(&limit, "stdout"), (32 * 1024 * 1024).to_string(), "no memory limit: refusing to run the hog");
    // Live: the owner subscribes to the container's system alarms; a stranger to all of its own.
    let mut owner_ws = Ws::open(h.berth.addr, Protocol::TransportWs, &h.owner.auth().header().unwrap()).await;
    let owner_sub = owner_ws
        .subscribe(
            "subscription($u: Int) { alarms(container: $u, level: 0) { container level message } }",
            json!({ "u": uid }),
        )
        .await;
    let stranger = h.berth.fixture_customer("onlooker").await;
    let mut stranger_ws = Ws::open(h.berth.addr, Protocol::LegacyWs, &stranger.auth().header().unwrap()).await;
    let stranger_sub = stranger_ws.subscribe("subscription { alarms { container message } }", json!({})).await;
    let hog = h.exec(uid, "ulimit -v 262144; dd if=/dev/zero of=/dev/null bs=100M count=1").await;
    assert_ne!(hog["exitCode"].as_i64(), Some(0), "{hog}");
    let mut alarms = Value::Null;
    for _ in 0..100 {
        alarms = h
            .berth
            .gql_ok(
                h.owner.auth(),
                "query($u: Int!) { alarms(container: $u, level: 0) { edges { node { level message } } } }",
                json!({ "u": uid }),
            )
            .await;
        if !alarms["alarms"]["edges"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let edges = alarms["alarms"]["edges"].as_array().unwrap();
    assert!(
        edges.iter().any(|e| e["node"]["message"].as_str().unwrap_or_default().contains("oom")),
        "no OOM alarm: {alarms}\n{}",
        h.log()
    );
    let live = owner_ws.next_data(&owner_sub).await;
    assert_eq!((live["alarms"]["container"].as_i64(), live["alarms"]["level"].as_i64()), (Some(uid), Some(0)));
    assert!(live["alarms"]["message"].as_str().unwrap().contains("oom"), "{live}");
    match stranger_ws.frame_within(Duration::from_secs(1)).await {
        None => {}
        Some(Frame::Json(m)) if m["id"] != stranger_sub => {}
        Some(other) => panic!("another customer received {other:?}"),
    }
    drop(h);
}

/// kill -9 of `berth serve`, then a restart: the agent adopts the running container (same
/// pid) instead of restarting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_containers() {
    if !can_run() {
        return;
    }
    let mut h = host().await;
    let uid = h.create("steady", 64, 32).await;
    let generation = h.provision(uid).await;
    let before = h.running(uid, generation).await;
    let pid = before["pid"].as_i64().unwrap();
    h.berth.restart().await;
    // Several resyncs pass; the container keeps its pid and stays reachable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = h.running(uid, generation).await;
    assert_eq!(after["pid"].as_i64(), Some(pid), "adoption must not restart a healthy container: {after}");
    assert_eq!(after["startedAt"], before["startedAt"]);
    assert_eq!(out(&h.exec(uid, "id -u").await, "stdout"), uid.to_string());
    drop(h);
}

/// The agent samples every series into the metrics the APIs read, raises one quota alarm
/// per `alarm_freq` when the home passes `quota_threshold`, and stops a container that
/// lost its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_metrics_raises_quota_alarms_and_stops_without_keys() {
    if !can_run() {
        return;
    }
    let h = host().await;
    let uid = h.create("quota", 64, 32).await;
    let generation = h.provision(uid).await;
    h.running(uid, generation).await;
    let threshold = h
        .berth
        .gql_ok(
            h.owner.auth(),
            "mutation($u: Int!) { updateContainer(uid: $u, input: { quotaThreshold: 50 }) { generation } }",
            json!({ "u": uid }),
        )
        .await["updateContainer"]["generation"]
        .as_i64()
        .unwrap();
    h.running(uid, threshold).await;
    let fill = h.exec(uid, "dd if=/dev/zero of=$HOME/fill bs=1M count=20 conv=fsync 2>&1 && echo done").await;
    assert!(out(&fill, "stdout").ends_with("done"), "{fill}");

    let quota_alarms = || async {
        let page = h
            .berth
            .gql_ok(
                h.owner.auth(),
                "query($u: Int!) { alarms(container: $u, level: 0) { edges { node { message } } } }",
                json!({ "u": uid }),
            )
            .await;
        page["alarms"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["node"]["message"].as_str().map(str::to_owned))
            .filter(|m| m.contains("quota"))
            .collect::<Vec<_>>()
    };
    let mut alarms = vec![];
    for _ in 0..100 {
        alarms = quota_alarms().await;
        if !alarms.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(alarms.len(), 1, "one quota alarm: {alarms:?}\n{}", h.log());
    // More samples pass (one a second): alarm_freq (60 s) holds further quota alarms back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(quota_alarms().await.len(), 1, "at most one quota alarm per alarm_freq");

    for kind in ["cpu", "mem", "mem.rss", "mem.cache", "io.read", "io.write", "net.rx", "net.tx", "quota"] {
        let samples = h
            .berth
            .gql_ok(
                h.owner.auth(),
                "query($u: Int!, $k: String!) { containerMetrics(container: $u, kind: $k) { unix value } }",
                json!({ "u": uid, "k": kind }),
            )
            .await;
        let samples = samples["containerMetrics"].as_array().unwrap();
        assert!(!samples.is_empty(), "no {kind} samples");
        if kind == "quota" {
            let last = samples.last().unwrap()["value"].as_i64().unwrap();
            assert!(last >= 20 * 1024 * 1024, "quota sample counts the home's use: {last}");
        }
        if kind == "mem" {
            assert!(samples.iter().any(|s| s["value"].as_i64() > Some(0)), "{samples:?}");
        }
    }
    let runtime = h.runtime(h.owner.auth(), uid).await["data"]["container"]["runtime"].clone();
    assert!(runtime["diskUsed"].as_i64() >= Some(20 * 1024 * 1024), "{runtime}");
    assert!(runtime["memoryUsed"].as_i64() > Some(0), "{runtime}");

    // Seed: a container without keys does not run.
    h.berth
        .gql_ok(
            h.owner.auth(),
            "mutation($u: Int!) { updateContainer(uid: $u, input: { sshKeys: [] }) { uid } }",
            json!({ "u": uid }),
        )
        .await;
    let stopped = h.wait_runtime(uid, "STOPPED", |r| r["state"] == "STOPPED").await;
    assert!(stopped["pid"].is_null(), "{stopped}");
    drop(h);
}

/// A container that cannot start shows why in `lastError` (FAILED), is retried with
/// backoff, and runs once the cause is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_shows_its_error_and_recovers() {
    if !can_run() {
        return;
    }
    let h = host().await;
    let broken = h.berth.admin(&["distro", "add", "--name", "broken", "--path", "/nonexistent/berth-distro"]).await;
    let uid = h.create("broken", 64, 32).await;
    h.berth
        .gql_ok(
            h.owner.auth(),
            "mutation($u: Int!, $d: Int!, $k: [String!]) { updateContainer(uid: $u, input: { distro: $d, sshKeys: $k }) { uid } }",
            json!({ "u": uid, "d": broken["id"], "k": [KEY] }),
        )
        .await;
    let failed = h.wait_runtime(uid, "FAILED", |r| r["state"] == "FAILED").await;
    let error = failed["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("distro"), "lastError names the cause: {failed}");
    assert!(!error.contains("/nonexistent"), "no host path in a customer's error: {error}");
    let generation = h.provision(uid).await;
    let running = h.running(uid, generation).await;
    assert!(running["lastError"].is_null(), "a success clears the error: {running}");
    drop(h);
}
