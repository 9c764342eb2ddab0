//! Password checks: concurrent logins with the same credentials share one argon2 hash,
//! and a wrong password is still refused to every one of them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;
use berth_service::{Error, Result, Service, ServiceConfig};
use berth_store::{accounts, Store};

struct NoDns;

#[async_trait]
impl berth_service::dns::DomainOwnership for NoDns {
    async fn txt_contains(&self, _name: &str, _needle: &str) -> Result<bool> {
        Ok(false)
    }
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn service_with_kratos(dir: &tempfile::TempDir) -> (Service, i64) {
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
    let service =
        Service::new(store.clone(), ServiceConfig { domain_ownership: Arc::new(NoDns), auth: Default::default() });
    let hash = berth_service::auth::hash_password("deimos").unwrap();
    let mut tx = store.write().await.unwrap();
    let new = accounts::NewCustomer { username: "kratos", password_hash: &hash, email: "", company: None, vat: None };
    let id = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
    tx.commit().await.unwrap();
    (service, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_with_the_same_password_share_one_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (service, id) = service_with_kratos(&dir).await;
    let logins = (0..16).map(|_| {
        let service = service.clone();
        tokio::spawn(async move { service.authenticate_password("kratos", "deimos", PEER).await })
    });
    let logins: Vec<_> = logins.collect();
    for login in logins {
        assert_eq!(login.await.unwrap().unwrap().customer_id, id);
    }
    assert_eq!(service.password_hashes_run(), 1, "one argon2 hash for sixteen identical logins");

    // Once the burst is over, the credentials are still remembered: no new hash.
    service.authenticate_password("kratos", "deimos", PEER).await.unwrap();
    assert_eq!(service.password_hashes_run(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_to_every_concurrent_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = service_with_kratos(&dir).await;
    let logins = (0..4).map(|_| {
        let service = service.clone();
        tokio::spawn(async move { service.authenticate_password("kratos", "wrong", PEER).await })
    });
    let logins: Vec<_> = logins.collect();
    for login in logins {
        assert!(matches!(login.await.unwrap(), Err(Error::Unauthenticated)));
    }
    // A right password afterwards is not held up by the failed checks.
    assert!(service.authenticate_password("kratos", "deimos", PEER).await.is_ok());
}
