//! The DNS ownership check of new domains (spec §6.6), behind a trait so the operator picks
//! the resolver and tests point it at a real DNS server on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{Name, TokioResolver};

use crate::{Error, Result};

#[async_trait]
pub trait DomainOwnership: Send + Sync {
    /// Whether a TXT record of `name` or one of its parent names (never the bare TLD)
    /// contains `needle`.
    async fn txt_contains(&self, name: &str, needle: &str) -> Result<bool>;
}

/// How long one DNS query may take, as in the reference.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many of a zone's NS hosts are asked.
const MAX_NS: usize = 4;

/// The check over real DNS (hickory-resolver): the zone's own name servers when the name
/// has NS records whose hosts resolve, else the configured resolver.
pub struct TxtOverDns {
    /// The configured resolver (`--dns-server`) or the system's; `None` when the system
    /// configuration could not be read (every check then fails as an internal error).
    base: Option<(ResolverConfig, ResolverOpts)>,
    /// Port of the NS hosts asked directly; 53 except in tests.
    ns_port: u16,
}

impl TxtOverDns {
    /// `server`: the resolver to ask (IP:port); `None` uses the system resolvers.
    pub fn new(server: Option<SocketAddr>) -> Result<TxtOverDns> {
        let base = match server {
            Some(addr) => Some((
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
                ),
                ResolverOpts::default(),
            )),
            None => match hickory_resolver::system_conf::read_system_conf() {
                Ok(conf) => Some(conf),
                Err(e) => {
                    // A host without resolv.conf can still serve everything but domain adds.
                    tracing::warn!(error = %e, "cannot read the system DNS configuration; domain checks will fail");
                    None
                }
            },
        };
        Ok(TxtOverDns { base: base.map(|(config, opts)| (config, tuned(opts))), ns_port: 53 })
    }

    /// Asks a zone's NS hosts on `port` instead of 53 (tests run them on a free port).
    pub fn with_ns_port(mut self, port: u16) -> TxtOverDns {
        self.ns_port = port;
        self
    }

    /// A fresh resolver per check: no cache, so a record added after a failed attempt is
    /// seen on the next one.
    fn resolver(config: ResolverConfig, opts: ResolverOpts) -> TokioResolver {
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).with_options(opts).build()
    }

    /// Addresses of the name's NS hosts (first A record of each, at most [`MAX_NS`]); NS
    /// hosts without an address are skipped (Q26 fixed).
    async fn authoritative(&self, resolver: &TokioResolver, name: &Name) -> Vec<IpAddr> {
        let Ok(Ok(ns)) = tokio::time::timeout(DNS_TIMEOUT, resolver.ns_lookup(name.clone())).await else {
            return Vec::new();
        };
        let mut ips = Vec::new();
        for host in ns.iter().take(MAX_NS) {
            if let Ok(Ok(a)) = tokio::time::timeout(DNS_TIMEOUT, resolver.ipv4_lookup(host.0.clone())).await {
                if let Some(addr) = a.iter().next() {
                    ips.push(IpAddr::V4(addr.0));
                }
            }
        }
        ips
    }
}

fn tuned(mut opts: ResolverOpts) -> ResolverOpts {
    opts.timeout = DNS_TIMEOUT;
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    opts
}

/// The name, then each parent while at least two labels remain (spec §6.6 step 3).
fn candidates(name: &Name) -> Vec<Name> {
    let mut out = Vec::new();
    let mut current = name.clone();
    while current.num_labels() >= 2 {
        out.push(current.clone());
        current = current.base_name();
    }
    out
}

#[async_trait]
impl DomainOwnership for TxtOverDns {
    async fn txt_contains(&self, name: &str, needle: &str) -> Result<bool> {
        let (config, opts) = self.base.clone().ok_or_else(|| Error::internal("no DNS resolver configured"))?;
        // A name DNS cannot even express cannot carry the record.
        let Ok(mut fqdn) = Name::from_utf8(name) else {
            return Ok(false);
        };
        fqdn.set_fqdn(true);
        let base = Self::resolver(config, opts.clone());
        let ns_ips = self.authoritative(&base, &fqdn).await;
        let resolver = if ns_ips.is_empty() {
            base
        } else {
            let group = NameServerConfigGroup::from_ips_clear(&ns_ips, self.ns_port, true);
            Self::resolver(ResolverConfig::from_parts(None, vec![], group), opts)
        };
        for candidate in candidates(&fqdn) {
            let Ok(Ok(txt)) = tokio::time::timeout(DNS_TIMEOUT, resolver.txt_lookup(candidate)).await else {
                continue;
            };
            let found = txt.iter().any(|record| {
                let text: Vec<u8> = record.txt_data().iter().flat_map(|part| part.iter().copied()).collect();
                String::from_utf8_lossy(&text).contains(needle)
            });
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A real dnsmasq on 127.0.0.1 for DNS tests, killed (only its own pid) on drop.

    use std::net::{SocketAddr, UdpSocket};
    use std::process::{Child, Command, Stdio};

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

    /// Starts dnsmasq serving only `records` (extra `--txt-record=…` style flags);
    /// `None` (test skipped) when dnsmasq is missing, unless `BERTH_REQUIRE_ALL=1`.
    pub fn dnsmasq(records: &[String]) -> Option<Dnsmasq> {
        let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].into_iter().find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var("BERTH_REQUIRE_ALL").as_deref() != Ok("1"),
                "BERTH_REQUIRE_ALL=1 but dnsmasq is missing"
            );
            eprintln!("skipping DNS test: dnsmasq not installed (package dnsmasq-base)");
            return None;
        };
        for _ in 0..5 {
            // Pick a free UDP port; retry if dnsmasq loses the race for it.
            let port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
            let mut child = Command::new(binary)
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
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn dnsmasq");
            // Ready once it answers on UDP; a quick exit means the port was taken.
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Some(Dnsmasq { child, addr });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    /// `--dns-rr` data for an NS record pointing at `host` (uncompressed wire-format name).
    pub fn ns_rr(name: &str, host: &str) -> String {
        let mut hex = String::new();
        for label in host.trim_end_matches('.').split('.') {
            hex.push_str(&format!("{:02x}", label.len()));
            hex.extend(label.bytes().map(|b| format!("{b:02x}")));
        }
        hex.push_str("00");
        format!("--dns-rr={name},2,{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{dnsmasq, ns_rr};
    use super::*;

    const NEEDLE: &str = "uwsgi:11111111-2222-3333-4444-555555555555";

    #[test]
    fn candidates_stop_before_the_tld() {
        let name = Name::from_utf8("a.b.example.org").unwrap();
        let got: Vec<String> =
            candidates(&name).iter().map(|n| n.to_string().trim_end_matches('.').to_owned()).collect();
        assert_eq!(got, ["a.b.example.org", "b.example.org", "example.org"]);
        assert!(candidates(&Name::from_utf8("org").unwrap()).is_empty());
    }

    #[tokio::test]
    async fn txt_on_the_name_or_a_parent() {
        let Some(dns) = dnsmasq(&[
            format!("--txt-record=example.test,\"{NEEDLE}\""),
            "--txt-record=other.test,\"uwsgi:someone-else\"".to_owned(),
        ]) else {
            return;
        };
        let check = TxtOverDns::new(Some(dns.addr)).unwrap();
        assert!(check.txt_contains("example.test", NEEDLE).await.unwrap());
        assert!(check.txt_contains("www.a.example.test", NEEDLE).await.unwrap());
        assert!(!check.txt_contains("other.test", NEEDLE).await.unwrap());
        assert!(!check.txt_contains("nothing.test", NEEDLE).await.unwrap());
        assert!(!check.txt_contains("", NEEDLE).await.unwrap());
    }

    #[tokio::test]
    async fn asks_the_zone_name_servers_directly() {
        // The configured resolver knows the NS of sub.zone.test and its host's address, but
        // only the zone's own server (another dnsmasq) has the right TXT.
        let Some(zone) = dnsmasq(&[format!("--txt-record=sub.zone.test,\"{NEEDLE}\"")]) else {
            return;
        };
        let Some(resolver) = dnsmasq(&[
            ns_rr("sub.zone.test", "ns1.zone.test"),
            "--host-record=ns1.zone.test,127.0.0.1".to_owned(),
            "--txt-record=sub.zone.test,\"uwsgi:wrong\"".to_owned(),
        ]) else {
            return;
        };
        let check = TxtOverDns::new(Some(resolver.addr)).unwrap().with_ns_port(zone.addr.port());
        // Only the zone's server holds the right record, so this proves the direct query.
        assert!(check.txt_contains("sub.zone.test", NEEDLE).await.unwrap());
    }

    #[tokio::test]
    async fn ns_host_without_address_falls_back() {
        // Q26: an NS host with no A record must not break the check.
        let Some(dns) =
            dnsmasq(&[ns_rr("lame.test", "ns.nowhere.test"), format!("--txt-record=lame.test,\"{NEEDLE}\"")])
        else {
            return;
        };
        let check = TxtOverDns::new(Some(dns.addr)).unwrap();
        assert!(check.txt_contains("lame.test", NEEDLE).await.unwrap());
    }
}
