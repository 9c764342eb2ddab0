//! Criterion: the nested 100-container page on a 10,000-container SQLite database, executed
//! in-process through the schema (`berth_graphql::schema` + `prepare_request`), no HTTP.
//!
//! ```sh
//! nice -n 10 cargo bench -p berth-benches --bench nested_page
//! ```
//!
//! Also measures `{ me { company } }` the same way, as the floor of one operation.

use std::sync::Arc;
use std::time::Duration;

use berth_service::{auth::AuthConfig, Caller, Service, ServiceConfig};
use berth_store::{accounts, servers, Store};
use criterion::{criterion_group, criterion_main, Criterion};

const CONTAINERS: usize = 10_000;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    schema: berth_graphql::BerthSchema,
    service: Service,
    caller: Caller,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (service, caller) = runtime.block_on(async {
        let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.unwrap();
        let (customer_id, server_id) = {
            let mut tx = store.write().await.unwrap();
            let new = accounts::NewCustomer {
                username: "me",
                password_hash: "h",
                email: "",
                company: Some("bench"),
                vat: None,
            };
            let me = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
            let s = servers::insert(
                &mut tx,
                &servers::NewServer {
                    name: "s1",
                    address: "192.0.2.1",
                    memory: 1 << 40,
                    storage: 1 << 40,
                    owner_id: Some(me),
                },
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            (me, s.id)
        };
        let started = std::time::Instant::now();
        berth_benches::seed_containers(&store, customer_id, server_id, CONTAINERS, "bench").await;
        eprintln!("seeded {CONTAINERS} containers in {:.1?}", started.elapsed());
        // Never asked: no domain is added here. A closed local port, so nothing leaves the host.
        let dns = berth_service::dns::TxtOverDns::new(Some("127.0.0.1:9".parse().unwrap())).unwrap();
        let config = ServiceConfig { domain_ownership: Arc::new(dns), auth: AuthConfig::default() };
        (Service::new(store, config), Caller { customer_id })
    });
    let schema = berth_graphql::schema(service.clone());
    Fixture { runtime, schema, service, caller, _dir: dir }
}

impl Fixture {
    fn run(&self, query: &str) -> async_graphql::Response {
        self.runtime.block_on(async {
            let request =
                berth_graphql::prepare_request(async_graphql::Request::new(query), &self.service, Some(self.caller));
            self.schema.execute(request).await
        })
    }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    // The page really is what we claim: 100 nodes with every relation loaded.
    let resp = f.run(berth_benches::NESTED_PAGE);
    assert!(resp.errors.is_empty(), "{:?}", resp.errors);
    let data = resp.data.into_json().unwrap();
    let edges = data["containers"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 100);
    let node = &edges[5]["node"];
    assert_eq!(node["distro"]["name"], "bookworm-bench");
    assert_eq!(node["tags"].as_array().unwrap().len(), 2);
    assert_eq!(node["loopboxes"].as_array().unwrap().len(), 2);
    assert_eq!(node["linkedTo"].as_array().unwrap().len(), 1);
    assert_eq!(node["domains"].as_array().unwrap().len(), 1);
    assert!(f.run("{ me { company } }").errors.is_empty());

    let mut group = c.benchmark_group("graphql_in_process");
    group.sample_size(100).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(3));
    group.bench_function("nested_page_100_of_10000", |b| {
        b.iter(|| {
            let resp = f.run(berth_benches::NESTED_PAGE);
            debug_assert!(resp.errors.is_empty());
            resp
        })
    });
    group.bench_function("me_company", |b| b.iter(|| f.run("{ me { company } }")));
    group.finish();
}

criterion_group!(nested_page, benches);
criterion_main!(nested_page);
