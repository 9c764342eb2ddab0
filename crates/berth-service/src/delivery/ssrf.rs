//! Customer-supplied destinations (`slack_webhook`, `webhook_url`, the XMPP server a JID
//! names) must not reach the operator's own network: loopback, private (RFC 1918, RFC 6598 shared, IPv6 ULA), link-local, unspecified,
//! broadcast and multicast addresses are refused unless the operator allows them.
//!
//! The check runs twice: cheaply on the URL when it is set (literal addresses, `localhost`),
//! and on the addresses a name really resolves to, inside the HTTP client's resolver, so the
//! connection only ever goes to an address that passed (no DNS-rebinding window).

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// True for addresses a customer URL may not point at.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 0.0.0.0/8 ("this network") and 100.64.0.0/10 (RFC 6598 shared address space).
        || a == 0
        || (a == 100 && (b & 0xc0) == 64)
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 (deprecated) site-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // 64:ff9b::/96 NAT64: judge the IPv4 address inside.
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && {
            let o = ip.octets();
            is_forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        })
}

/// Why a customer URL is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refused {}

/// Parses a customer URL and checks what can be checked without DNS: `http`/`https`, a
/// host, and (unless `allow_private`) no forbidden literal address and no `localhost`.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, Refused> {
    let url = Url::parse(raw.trim()).map_err(|e| Refused(format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused("only http and https URLs are accepted".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused("credentials in the URL are not accepted".to_owned()));
    }
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase(),
        _ => return Err(Refused("the URL has no host".to_owned())),
    };
    if allow_private {
        return Ok(url);
    }
    let forbidden = match host.parse::<IpAddr>() {
        Ok(ip) => is_forbidden(ip),
        Err(_) => {
            let name = host.trim_end_matches('.');
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if forbidden {
        return Err(Refused(format!(
            "{} is a private, loopback or link-local address",
            url.host_str().unwrap_or_default()
        )));
    }
    Ok(url)
}

/// A resolver for the customer-URL client: resolves with the system resolver and refuses a
/// name when any of its addresses is forbidden.
#[derive(Debug, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match resolve_public(&host, 0).await? {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(refused) => Err(Box::new(refused) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

/// The addresses `host` resolves to (on `port`), refused as a whole when any of them is
/// forbidden: a customer's destination (URL host, XMPP server) is connected to only
/// through addresses that passed. The outer error is the lookup's own.
pub async fn resolve_public(host: &str, port: u16) -> std::io::Result<Result<Vec<SocketAddr>, Refused>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    Ok(match addrs.iter().find(|a| is_forbidden(a.ip())) {
        Some(bad) => Err(Refused(format!("{host} resolves to {}, a private address", bad.ip()))),
        None => Ok(addrs),
    })
}

/// The [`Refused`] somewhere in an error's source chain (the resolver's verdict as the HTTP
/// client reports it).
pub fn refusal_in(error: &(dyn StdError + 'static)) -> Option<Refused> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad}");
        }
        for good in ["1.1.1.1", "93.184.216.34", "100.128.0.1", "2606:4700::1111", "64:ff9b::101:101"] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn checks_literal_urls() {
        assert!(check_url("https://hooks.slack.com/services/T/B/X", false).is_ok());
        for bad in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://localhost/",
            "http://a.localhost./",
            "http://169.254.169.254/latest/meta-data",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://user:pw@example.com/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
        assert!(check_url("ftp://127.0.0.1/", true).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_private_names() {
        let name: Name = "localhost".parse().unwrap();
        let err = match GuardedResolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(refusal_in(err.as_ref()).is_some(), "{err}");
    }
}
