//! The DNS ownership check of new domains (spec §6.6), behind a trait so the operator picks
//! the resolver and tests point it at a real DNS server on 127.0.0.1.

use async_trait::async_trait;

use crate::Result;

#[async_trait]
pub trait DomainOwnership: Send + Sync {
    /// Whether a TXT record of `name` or one of its parent names (never the bare TLD)
    /// contains `needle`.
    async fn txt_contains(&self, name: &str, needle: &str) -> Result<bool>;
}

/// TODO(domains helper): the real hickory-resolver implementation.
pub struct TxtOverDns;

impl TxtOverDns {
    pub fn new(_server: Option<std::net::SocketAddr>) -> Result<TxtOverDns> {
        Ok(TxtOverDns)
    }
}

#[async_trait]
impl DomainOwnership for TxtOverDns {
    async fn txt_contains(&self, _name: &str, _needle: &str) -> Result<bool> {
        Ok(false)
    }
}
