//! Resource use of one container, read from its cgroups and from /proc of its init.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use berth_backend::Stats;

use super::cgroup::Cgroups;

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// v1 `blkio.throttle.io_service_bytes`: `<maj:min> Read <n>` ... summed over devices.
pub fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3 {
            let n: u64 = f[2].parse().unwrap_or(0);
            match f[1] {
                "Read" => read = read.saturating_add(n),
                "Write" => write = write.saturating_add(n),
                _ => {}
            }
        }
    }
    (read, write)
}

/// v2 `io.stat`: `<maj:min> rbytes=<n> wbytes=<n> ...` summed over devices.
pub fn io_v2(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for l in text.lines() {
        for kv in l.split_whitespace().skip(1) {
            if let Some((k, v)) = kv.split_once('=') {
                let n: u64 = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => read = read.saturating_add(n),
                    "wbytes" => write = write.saturating_add(n),
                    _ => {}
                }
            }
        }
    }
    (read, write)
}

/// `/proc/<pid>/net/dev`: received and sent bytes over every interface but `lo`.
pub fn net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0u64, 0u64);
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        if f.len() >= 9 {
            rx = rx.saturating_add(f[0]);
            tx = tx.saturating_add(f[8]);
        }
    }
    (rx, tx)
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_default()
}

fn number(dir: &Path, file: &str) -> u64 {
    let text = read(dir, file);
    let t = text.trim();
    if t == "max" {
        u64::MAX
    } else {
        t.parse().unwrap_or(0)
    }
}

/// The OOM-kill counter of the container's memory cgroup.
pub fn oom_kills(cg: &Cgroups) -> u64 {
    match cg {
        Cgroups::V1 { memory, .. } => keyed(&read(memory, "memory.oom_control"), "oom_kill").unwrap_or(0),
        Cgroups::V2 { dir, .. } => keyed(&read(dir, "memory.events"), "oom_kill").unwrap_or(0),
    }
}

/// Cgroup counters (cpu, memory, io, OOM kills); missing files read as 0.
pub fn cgroup_stats(cg: &Cgroups) -> Stats {
    let mut s = Stats::default();
    match cg {
        Cgroups::V1 { memory, cpuacct, blkio, .. } => {
            if let Some(d) = cpuacct {
                s.cpu_nanos = number(d, "cpuacct.usage");
            }
            s.memory_bytes = number(memory, "memory.usage_in_bytes");
            let stat = read(memory, "memory.stat");
            s.memory_rss = keyed(&stat, "total_rss").or_else(|| keyed(&stat, "rss")).unwrap_or(0);
            s.memory_cache = keyed(&stat, "total_cache").or_else(|| keyed(&stat, "cache")).unwrap_or(0);
            s.memory_limit = number(memory, "memory.limit_in_bytes");
            if let Some(d) = blkio {
                let rec = d.join("blkio.throttle.io_service_bytes_recursive");
                let file = if rec.exists() {
                    "blkio.throttle.io_service_bytes_recursive"
                } else {
                    "blkio.throttle.io_service_bytes"
                };
                (s.io_read_bytes, s.io_write_bytes) = blkio_v1(&read(d, file));
            }
        }
        Cgroups::V2 { dir, .. } => {
            s.cpu_nanos = keyed(&read(dir, "cpu.stat"), "usage_usec").unwrap_or(0).saturating_mul(1000);
            s.memory_bytes = number(dir, "memory.current");
            let stat = read(dir, "memory.stat");
            s.memory_rss = keyed(&stat, "anon").unwrap_or(0);
            s.memory_cache = keyed(&stat, "file").unwrap_or(0);
            s.memory_limit = number(dir, "memory.max");
            (s.io_read_bytes, s.io_write_bytes) = io_v2(&read(dir, "io.stat"));
        }
    }
    s.oom_kills = oom_kills(cg);
    s
}

/// Network counters of the init's network namespace.
pub fn net_stats(pid: u32) -> (u64, u64) {
    fs::read_to_string(format!("/proc/{pid}/net/dev")).map(|t| net_dev(&t)).unwrap_or((0, 0))
}

/// Used and total bytes of the container's home, `/containers/<uid>` as the running init
/// `pid` sees it. Opened below the init's root without following any symlink (a link the
/// customer placed must not lead to a host filesystem), and only once the init is known to
/// still be the one that started at `start_ticks` (a reused pid is never looked into).
pub fn home_disk_stats(pid: u32, start_ticks: u64, uid: u32) -> Option<(u64, u64)> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    if !super::process::is_alive(pid, start_ticks) {
        return None;
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let home = openat2(root.as_fd(), format!("containers/{uid}").as_str(), how).ok()?;
    let st = nix::sys::statvfs::fstatvfs(&home).ok()?;
    let frsize = st.fragment_size() as u64;
    let blocks = st.blocks() as u64;
    let free = st.blocks_free() as u64;
    Some((blocks.saturating_sub(free).saturating_mul(frsize), blocks.saturating_mul(frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keyed_files() {
        let stat = "cache 10\nrss 20\ntotal_cache 110\ntotal_rss 120\n";
        assert_eq!(keyed(stat, "total_rss"), Some(120));
        assert_eq!(keyed(stat, "rss"), Some(20));
        assert_eq!(keyed(stat, "swap"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(3));
        let events = "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        assert_eq!(keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"), Some(1500));
    }

    #[test]
    fn sums_block_io() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n7:1 Read 100\n7:1 Write 1\nTotal 12389\n";
        assert_eq!(blkio_v1(v1), (4196, 8193));
        let v2 = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n7:1 rbytes=100 wbytes=1 rios=1 wios=1\n";
        assert_eq!(io_v2(v2), (4196, 8193));
        assert_eq!(blkio_v1(""), (0, 0));
    }

    #[test]
    fn sums_network_without_loopback() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    5000      50    0    0    0     0          0         0     7000      70    0    0    0     0       0          0
  veth1:     1       1    0    0    0     0          0         0        2       1    0    0    0     0       0          0
";
        assert_eq!(net_dev(dev), (5001, 7002));
        let only_lo = dev.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(net_dev(&only_lo), (0, 0));
    }
}
