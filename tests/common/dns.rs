//! A real DNS server for the domain ownership check: dnsmasq on 127.0.0.1, serving only the
//! TXT records a test gives it, killed (its own pid only) on drop, also on panic.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dnsmasq binary; `None` (test skipped) when missing, unless `BERTH_REQUIRE_ALL=1`.
pub fn dnsmasq_binary() -> Option<&'static str> {
    let found = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].into_iter().find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(std::env::var("BERTH_REQUIRE_ALL").as_deref() != Ok("1"), "BERTH_REQUIRE_ALL=1 but dnsmasq is missing");
        eprintln!("skipping: dnsmasq not installed (package dnsmasq-base)");
    }
    found
}

/// A port for dnsmasq, learned before it starts (berth needs it at start, and the TXT
/// records need the customers' uuids).
pub fn free_port() -> u16 {
    super::free_dns_port()
}

/// Starts dnsmasq on 127.0.0.1:`port` with `records` (`--txt-record=…` arguments).
pub fn start_dnsmasq(binary: &str, port: u16, records: &[String]) -> Dnsmasq {
    let child = Command::new(binary)
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
            &format!("--port={port}"),
        ])
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let mut dns = Dnsmasq { child, addr: ([127, 0, 0, 1], port).into() };
    for _ in 0..200 {
        if let Ok(Some(status)) = dns.child.try_wait() {
            panic!("dnsmasq exited ({status}); is port {port} taken?");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return dns;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("dnsmasq did not start on port {port}");
}
