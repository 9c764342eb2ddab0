//! Runs each store test against a fresh SQLite file and a fresh PostgreSQL database.
//!
//! PostgreSQL comes from `BERTH_TEST_POSTGRES_URL` (an account allowed to create databases,
//! e.g. `postgres://berth:berth@127.0.0.1:5432/postgres`; `.ci/run` provides it). Without it
//! the PostgreSQL half is skipped, unless `BERTH_REQUIRE_ALL=1`, which makes it fail.
#![allow(dead_code)]

use berth_store::{accounts, containers, servers, Store};

pub struct TestDb {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("berth.db").display());
        let store = Store::open(&url).await.expect("open sqlite store");
        TestDb { store, _dir: Some(dir), drop_pg: None }
    }

    /// `None` when no PostgreSQL is configured and it is not required.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = match std::env::var("BERTH_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("BERTH_REQUIRE_ALL").as_deref() != Ok("1"),
                    "BERTH_REQUIRE_ALL=1 but BERTH_TEST_POSTGRES_URL is not set"
                );
                eprintln!("skipping PostgreSQL half: BERTH_TEST_POSTGRES_URL not set");
                return None;
            }
        };
        let name = format!("berth_t_{:016x}", rand::random::<u64>());
        let admin = Store::connect(&admin_url).await.expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.expect("create test database");
        admin.close().await;
        let url = match admin_url.rfind('/') {
            Some(slash) => format!("{}/{name}", &admin_url[..slash]),
            None => panic!("BERTH_TEST_POSTGRES_URL must end in /<database>"),
        };
        let store = Store::open(&url).await.expect("open postgres store");
        Some(TestDb { store, _dir: None, drop_pg: Some((admin_url, name)) })
    }

    /// Closes the store and removes a PostgreSQL test database.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.drop_pg {
            let admin = Store::connect(&admin_url).await.expect("reconnect to PostgreSQL");
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // A backend PostgreSQL started itself (autovacuum) may briefly hold the database.
            let mut attempts = 0;
            while let Err(e) = sqlx::query(&drop).execute(admin.pool()).await {
                attempts += 1;
                assert!(attempts < 10, "drop test database {name}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            admin.close().await;
        }
    }
}

/// `both_engines!(name, body)` makes `name_sqlite` and `name_postgres` tests that each call
/// `body(store).await` on a fresh database.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                super::$body(db.store.clone()).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::TestDb::postgres().await {
                    super::$body(db.store.clone()).await;
                    db.finish().await;
                }
            }
        }
    };
}

/// A customer with one server (owned when `own_server`) and one container on it.
pub struct Fixture {
    pub customer: i64,
    pub server: i64,
    pub container: i64,
}

pub async fn fixture(store: &Store, username: &str, server_name: &str, own_server: bool) -> Fixture {
    let mut tx = store.write().await.unwrap();
    let new = accounts::NewCustomer { username, password_hash: "h", email: "", company: None, vat: None };
    let customer = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
    let server = servers::insert(
        &mut tx,
        &servers::NewServer {
            name: server_name,
            address: "192.0.2.1",
            memory: 10_000,
            storage: 10_000,
            owner_id: own_server.then_some(customer),
        },
    )
    .await
    .unwrap()
    .id;
    let container = containers::insert(
        &mut tx,
        &containers::NewContainer { customer_id: customer, server_id: server, name: "app", memory: 100, storage: 100 },
    )
    .await
    .unwrap()
    .id;
    tx.commit().await.unwrap();
    Fixture { customer, server, container }
}
