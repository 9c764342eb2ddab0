//! create→running latency of the jail backend against a raw `unshare` + pivot_root jail of
//! the same busybox rootfs, alternating run by run so both see the same machine state.
//! Not a criterion bench: each sample creates real namespaces, mounts and cgroups.
//! Run through `benches/jail_start.sh` (root; see BENCHMARKS.md).
//!
//! * raw: `unshare --mount --uts --ipc --net --pid --cgroup --fork --kill-child` running a
//!   shell that mounts the overlay, pivot_roots into it, mounts /proc and execs a process
//!   of the rootfs that prints `running` — timed until that line arrives.
//! * jail: `JailBackend::create` (home image, cgroups, files) + `start` (namespaces,
//!   overlay, loop-mounted home, /dev, /proc, cgroup mount, privileges dropped, init up) —
//!   timed until `start` returns, which is when the init reported ready.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_backend::{distro, Backend, ContainerSpec, DistroSpec};
use berth_jail::{HelperCommand, JailBackend, JailOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let helper =
        PathBuf::from(std::env::var("BERTH_JAIL_HELPER").expect("BERTH_JAIL_HELPER: path of berth-jail-helper"));
    let dir = tempfile::Builder::new().prefix("berth-bench-jail-").tempdir().unwrap();
    let rootfs = dir.path().join("busybox");
    distro::build_busybox(Path::new(distro::HOST_BUSYBOX), &rootfs).unwrap();
    let parent = format!("berth-t-bench-{}", std::process::id());
    let backend = JailBackend::new(JailOptions {
        root: dir.path().join("jails"),
        cgroup_parent: parent.clone(),
        helper: HelperCommand { program: helper, args: vec![] },
    });
    let distro = DistroSpec { name: "busybox".into(), path: rootfs.clone() };
    backend.prepare_distro(&distro).await.unwrap();

    // One warm-up of each, untimed (page cache, binaries).
    raw_jail(dir.path(), &rootfs, 0).await;
    jail(&backend, &distro, 39900).await;

    let (mut raw, mut ours, mut creates) = (vec![], vec![], vec![]);
    for i in 0..runs {
        if i % 2 == 0 {
            raw.push(raw_jail(dir.path(), &rootfs, i + 1).await);
        }
        let (total, create) = jail(&backend, &distro, 39901 + i as u32).await;
        ours.push(total);
        creates.push(create);
        if i % 2 == 1 {
            raw.push(raw_jail(dir.path(), &rootfs, i + 1).await);
        }
    }
    for controller in ["memory", "cpuacct", "pids", "blkio"] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(controller).join(&parent));
    }
    let (raw_med, ours_med) = (median(&mut raw), median(&mut ours));
    println!("runs: {runs} each, alternating");
    println!("raw unshare+pivot_root jail: median {:.1} ms, p90 {:.1} ms", ms(raw_med), ms(p90(&raw)));
    println!("berth jail create+start:     median {:.1} ms, p90 {:.1} ms", ms(ours_med), ms(p90(&ours)));
    println!("  of which create (home image, cgroups, files): median {:.1} ms", ms(median(&mut creates)));
    println!("ratio (median): {:.2}x", ours_med.as_secs_f64() / raw_med.as_secs_f64());
    if std::env::var_os("SAMPLES").is_some() {
        let all = |v: &[Duration]| v.iter().map(|d| format!("{:.1}", ms(*d))).collect::<Vec<_>>().join(" ");
        println!("raw samples (ms, sorted): {}", all(&raw));
        println!("jail samples (ms, sorted): {}", all(&ours));
    }
}

/// create + start of one container; also returns the create part alone.
async fn jail(backend: &JailBackend, distro: &DistroSpec, uid: u32) -> (Duration, Duration) {
    let spec = ContainerSpec {
        uid,
        generation: 1,
        hostname: format!("bench-{uid}"),
        memory_mb: 64,
        storage_mb: 32,
        distro: distro.clone(),
        ssh_keys: vec!["ssh-ed25519 AAAA bench".into()],
        loopboxes: vec![],
        ip: std::net::Ipv4Addr::new(10, 0, 0, 3),
        command: None,
    };
    let started = Instant::now();
    backend.create(&spec).await.unwrap();
    let created = started.elapsed();
    backend.start(uid).await.unwrap();
    let took = started.elapsed();
    backend.remove(uid).await.unwrap();
    (took, created)
}

async fn raw_jail(base: &Path, rootfs: &Path, n: usize) -> Duration {
    let d = base.join(format!("raw-{n}"));
    for sub in ["upper", "work", "merged"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let script = format!(
        "mount -t overlay overlay -o lowerdir={lower},upperdir={d}/upper,workdir={d}/work {d}/merged && \
         mkdir -p {d}/merged/.old && cd {d}/merged && pivot_root . .old && \
         /bin/umount -l /.old && /bin/mount -t proc proc /proc && exec /bin/sh -c 'echo running; exec sleep 1000'",
        lower = rootfs.display(),
        d = d.display()
    );
    let started = Instant::now();
    let mut child = tokio::process::Command::new("unshare")
        .args([
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
        ])
        .args(["/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap();
    let took = started.elapsed();
    assert_eq!(line.as_deref(), Some("running"));
    // SIGKILL to the unshare we spawned; --kill-child takes its pid namespace down with it.
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
    took
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &[Duration]) -> Duration {
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
