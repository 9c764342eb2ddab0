//! The in-jail helper for real: a busybox root, an ext4 home, v1 cgroups; `init`, `exec`,
//! `loop-mount`, `loop-umount`, SIGTERM. Needs root (skipped otherwise, unless
//! BERTH_REQUIRE_ALL=1, which turns a skip into a failure).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_backend::{ContainerSpec, DistroSpec, ExecRequest, LoopboxSpec};
use berth_jail::protocol::{CgroupMount, ExecStatus, JailConfig, Layout};

const UID: u32 = 30123;
const HELPER: &str = env!("CARGO_BIN_EXE_berth-jail-helper");

fn skip(reason: &str) -> bool {
    if std::env::var("BERTH_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("cannot run: {reason}");
    }
    eprintln!("skipped: {reason}");
    true
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Removes what the test made, jail first (only the init pid it started), then cgroups.
struct Guard {
    cgroups: Vec<PathBuf>,
    init: Option<i32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pid) = self.init.take() {
            // SAFETY: signals only the init this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_gone(pid);
        }
        for dir in self.cgroups.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for whoever adopted it.
        if state.is_empty() || state.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn mount_points() -> Vec<String> {
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect();
    points.sort();
    points
}

fn loop_backing_files() -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(file) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            files.push(file.trim().to_string());
        }
    }
    files
}

fn exec(layout: &Layout, pid: i32, argv: &[&str], stdin: Option<&Path>) -> (ExecStatus, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let status_path = dir.path().join("status");
    let status = std::fs::File::create(&status_path).unwrap();
    let request = ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout_secs: Some(20),
        ..Default::default()
    };
    let mut cmd = Command::new(HELPER);
    cmd.arg("exec").arg(&layout.dir).arg(pid.to_string()).arg(serde_json::to_string(&request).unwrap());
    cmd.stdin(match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
        None => Stdio::null(),
    });
    let raw = std::os::fd::AsRawFd::as_raw_fd(&status);
    // SAFETY: dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep CLOEXEC.
            let res = if raw == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(raw, 3) };
            if res < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let line = std::fs::read_to_string(&status_path).unwrap();
    let status: ExecStatus = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("{line:?}: {e}; {out:?} {}", String::from_utf8_lossy(&out.stderr)));
    let code = match &status {
        ExecStatus::Exited { code } => *code,
        ExecStatus::TimedOut => 137,
        ExecStatus::Failed { .. } => 125,
    };
    assert_eq!(out.status.code(), Some(code), "{status:?}");
    (status, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn sh(layout: &Layout, pid: i32, script: &str) -> String {
    let (status, stdout, stderr) = exec(layout, pid, &["sh", "-c", script], None);
    assert_eq!(status, ExecStatus::Exited { code: 0 }, "{script}: {stdout} {stderr}");
    stdout
}

fn helper(args: &[&str]) -> Output {
    Command::new(HELPER).args(args).output().unwrap()
}

#[test]
fn jail_runs_and_leaves_nothing_behind() {
    if !nix::unistd::geteuid().is_root() {
        skip("not root");
        return;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists());
    let Some(busybox) = busybox else {
        skip("no busybox");
        return;
    };
    if !Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() || !Path::new("/dev/loop-control").exists() {
        skip("no cgroup v1 memory controller or no loop devices");
        return;
    }
    let mounts_before = mount_points();
    let tmp = tempfile::Builder::new().prefix("berth-t-inside-").tempdir().unwrap();
    let root = tmp.path();

    // Distro: busybox with relative applet links.
    let distro = root.join("distro");
    std::fs::create_dir_all(distro.join("bin")).unwrap();
    std::fs::create_dir_all(distro.join("etc")).unwrap();
    std::fs::copy(busybox, distro.join("bin/busybox")).unwrap();
    let applets = run(Command::new(busybox).arg("--list")).stdout;
    for applet in String::from_utf8(applets).unwrap().lines() {
        let _ = std::os::unix::fs::symlink("busybox", distro.join("bin").join(applet));
    }
    std::fs::write(distro.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();

    let layout = Layout::new(&root.join("jails"), UID);
    for dir in [layout.upper(), layout.work(), layout.rootfs(), layout.log_dir()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::os::unix::fs::chown(layout.log_dir(), Some(UID), Some(UID)).unwrap();
    let image = layout.home_image();
    std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
    let owner = format!("root_owner={UID}:{UID}");
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-E", &owner]).arg(&image));
    let loopbox = root.join("lb.img");
    std::fs::File::create(&loopbox).unwrap().set_len(2 << 20).unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-E", &owner]).arg(&loopbox));

    let name = format!("berth-t-inside-{}", std::process::id());
    let mut guard = Guard { cgroups: vec![], init: None };
    for controller in ["memory", "cpuacct", "pids", "blkio"] {
        let dir = PathBuf::from(format!("/sys/fs/cgroup/{controller}/{name}/{UID}"));
        std::fs::create_dir_all(&dir).unwrap();
        guard.cgroups.push(dir);
    }
    let limit = 96u64 << 20;
    std::fs::write(guard.cgroups[0].join("memory.limit_in_bytes"), limit.to_string()).unwrap();
    let read_back = std::fs::read_to_string(guard.cgroups[0].join("memory.limit_in_bytes")).unwrap();
    assert_eq!(read_back.trim(), limit.to_string());

    let config = JailConfig {
        spec: ContainerSpec {
            uid: UID,
            generation: 1,
            hostname: "inside.test".into(),
            memory_mb: 96,
            storage_mb: 32,
            distro: DistroSpec { name: "busybox".into(), path: distro.clone() },
            ssh_keys: vec!["ssh-ed25519 AAAAtest t@x".into()],
            loopboxes: vec![
                LoopboxSpec { filename: "lb.img".into(), mountpoint: "lb".into(), ro: true },
                LoopboxSpec { filename: "missing.img".into(), mountpoint: "nowhere".into(), ro: false },
            ],
            ip: "10.0.0.2".parse().unwrap(),
            command: Some(vec!["sh".into(), "-c".into(), "echo hello from the command; exec sleep 1000".into()]),
        },
        cgroups: guard.cgroups.clone(),
        cgroup_mount: CgroupMount::V1Memory,
    };
    std::fs::write(layout.config(), serde_json::to_vec(&config).unwrap()).unwrap();

    let start = |guard: &mut Guard| -> i32 {
        let out = helper(&["init", layout.dir.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let pid: i32 = lines.next().and_then(|l| l.strip_prefix("pid ")).and_then(|p| p.parse().ok()).expect(&text);
        guard.init = Some(pid);
        assert_eq!(lines.next(), Some("ok"), "{text}");
        assert!(out.status.success());
        pid
    };
    let pid = start(&mut guard);

    // Identity, limits, hostname, keys, no capabilities.
    assert_eq!(sh(&layout, pid, "id -u; id -g").split_whitespace().collect::<Vec<_>>(), ["30123", "30123"]);
    assert_eq!(sh(&layout, pid, "cat /run/cgroup/memory.limit_in_bytes").trim(), limit.to_string());
    assert_eq!(sh(&layout, pid, "hostname").trim(), "inside.test");
    assert_eq!(sh(&layout, pid, "pwd; echo $HOME").split_whitespace().collect::<Vec<_>>(), ["/containers/30123"; 2]);
    assert_eq!(sh(&layout, pid, "cat ~/.ssh/authorized_keys"), "ssh-ed25519 AAAAtest t@x\n");
    let status = sh(&layout, pid, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status");
    assert!(status.contains("CapEff:\t0000000000000000") && status.contains("NoNewPrivs:\t1"), "{status}");
    assert_eq!(sh(&layout, pid, "ps -o pid,comm | awk '$1 == 1 {print \"init\"}'").trim(), "init");

    // Exit codes, signals, missing commands, timeouts.
    assert_eq!(exec(&layout, pid, &["false"], None).0, ExecStatus::Exited { code: 1 });
    assert_eq!(exec(&layout, pid, &["sh", "-c", "kill -9 $$"], None).0, ExecStatus::Exited { code: 137 });
    let (status, _, stderr) = exec(&layout, pid, &["no-such-command"], None);
    assert_eq!(status, ExecStatus::Exited { code: 127 });
    assert!(stderr.contains("berth: no-such-command"), "{stderr}");

    // Storage is the image: writing past it fails.
    let out =
        exec(&layout, pid, &["sh", "-c", "dd if=/dev/zero of=big bs=1M count=64; s=$?; rm -f big; exit $s"], None);
    assert_ne!(out.0, ExecStatus::Exited { code: 0 });
    assert!(out.2.contains("No space left"), "{}", out.2);

    // Loopboxes: the missing one is logged, the other mounts at start once it exists.
    let log = std::fs::read_to_string(layout.console_log()).unwrap();
    assert!(log.contains("berth: container 30123 started"), "{log}");
    assert!(log.contains("hello from the command"), "{log}");
    assert!(log.contains("missing.img"), "{log}");
    exec(&layout, pid, &["sh", "-c", "cat > lb.img && mkdir lb data"], Some(&loopbox));
    let pid_str = pid.to_string();
    let dir = layout.dir.to_str().unwrap();
    let mount_box = |json: &str| helper(&["loop-mount", dir, &pid_str, json]);
    let out = mount_box(r#"{"filename":"lb.img","mountpoint":"data","ro":false}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sh(&layout, pid, "echo kept > data/f && sync");
    assert!(!mount_box(r#"{"filename":"lb.img","mountpoint":"../x","ro":true}"#).status.success());
    sh(&layout, pid, "ln -s /etc/passwd evil.img; truncate -s 100k small.img");
    assert!(!mount_box(r#"{"filename":"evil.img","mountpoint":"lb","ro":true}"#).status.success());
    assert!(!mount_box(r#"{"filename":"small.img","mountpoint":"lb","ro":true}"#).status.success());
    assert!(helper(&["loop-umount", dir, &pid_str, "data"]).status.success());
    assert!(helper(&["loop-umount", dir, &pid_str, "data"]).status.success());
    assert_eq!(sh(&layout, pid, "ls data | wc -l").trim(), "0");

    // SIGTERM: the init forwards it, reaps, logs, exits; nothing is left.
    let stop = |guard: &mut Guard, pid: i32| {
        // SAFETY: the init this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        assert!(wait_gone(pid), "init {pid} did not stop");
        guard.init = None;
    };
    stop(&mut guard, pid);
    assert!(std::fs::read_to_string(layout.console_log()).unwrap().ends_with("berth: container stopped\n"));

    // Restart: the ro loopbox mounts at start; writes to it are refused.
    let pid = start(&mut guard);
    assert_eq!(sh(&layout, pid, "cat lb/f"), "kept\n");
    let (status, _, stderr) = exec(&layout, pid, &["touch", "lb/g"], None);
    assert_eq!(status, ExecStatus::Exited { code: 1 }, "{stderr}");
    assert!(stderr.contains("Read-only"), "{stderr}");
    stop(&mut guard, pid);

    // Mounts and loop devices die with the namespace (loop autoclear is asynchronous).
    let deadline = Instant::now() + Duration::from_secs(5);
    let ours = |files: Vec<String>| {
        files
            .into_iter()
            .filter(|f| f.starts_with(root.to_str().unwrap()) || f.starts_with("/containers/30123/"))
            .count()
    };
    while ours(loop_backing_files()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ours(loop_backing_files()), 0, "loop devices left");
    assert_eq!(mount_points(), mounts_before);
}
