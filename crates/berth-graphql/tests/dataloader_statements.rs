//! A nested page of containers must cost a number of SQL statements that does not grow with
//! the page: every relation is one `IN (...)` batch of its per-request loader (run up front
//! by the page's prefetch, or by the DataLoader).
//!
//! sqlx logs every statement as a `tracing` event with target `sqlx::query`, the store's
//! inline SQLite reads with target `berth_store::inline`. SQLite runs sqlx statements on a
//! worker thread, so the counting subscriber must be the global default; that is why this
//! file holds a single test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use berth_model::{Day, DomainMetric, Tagged};
use berth_service::{auth::AuthConfig, Caller, Service, ServiceConfig};
use berth_store::{
    accounts, containers, custom_distros, distros, domains, links, loopboxes, metrics, servers, tags, Store,
};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{filter, Layer};

struct Counter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        if std::env::var("SHOW_SQL").is_ok() {
            struct V;
            impl tracing::field::Visit for V {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "summary" {
                        eprintln!("SQL {v:?}");
                    }
                }
            }
            event.record(&mut V);
        }
    }
}

struct NoDns;

#[async_trait]
impl berth_service::dns::DomainOwnership for NoDns {
    async fn txt_contains(&self, _name: &str, _needle: &str) -> berth_service::Result<bool> {
        Ok(false)
    }
}

const QUERY: &str = "query($first: Int) { containers(first: $first) { edges { node { uid name \
    server { name address } distro { id name } customDistro { id name } tags linkedTo linkedFrom legionAddress \
    loopboxes { id filename tags } domains { name } } } pageInfo { hasNextPage } } }";

fn today() -> Day {
    let now = time::OffsetDateTime::now_utc();
    Day { year: i64::from(now.year()), month: i64::from(u8::from(now.month())), day: i64::from(now.day()) }
}

/// Seeds `n` containers of one customer, each with a distro, a custom distro, tags, links,
/// loopboxes (tagged) and a domain served today; plus another customer's container.
async fn seed(store: &Store, n: usize) -> Caller {
    let mut tx = store.write().await.unwrap();
    let new = |u| accounts::NewCustomer { username: u, password_hash: "h", email: "", company: None, vat: None };
    let me = accounts::insert_customer(&mut tx, &new("me")).await.unwrap().id;
    let other = accounts::insert_customer(&mut tx, &new("other")).await.unwrap().id;
    let s = servers::insert(
        &mut tx,
        &servers::NewServer {
            name: "s1",
            address: "192.0.2.1",
            memory: 1_000_000,
            storage: 1_000_000,
            owner_id: Some(me),
        },
    )
    .await
    .unwrap();
    let d = distros::insert(&mut tx, "bookworm", "/d/bookworm", None).await.unwrap();
    let t1 = tags::insert(&mut tx, me, "web", None).await.unwrap();
    let t2 = tags::insert(&mut tx, me, "db", None).await.unwrap();
    let foreign = containers::insert(
        &mut tx,
        &containers::NewContainer { customer_id: other, server_id: s.id, name: "x", memory: 1, storage: 1 },
    )
    .await
    .unwrap();
    let mut storage = containers::insert(
        &mut tx,
        &containers::NewContainer { customer_id: me, server_id: s.id, name: "store", memory: 1, storage: 1 },
    )
    .await
    .unwrap();
    storage.custom_distros_storage = true;
    containers::save(&mut tx, &storage).await.unwrap();
    let cd = custom_distros::insert(&mut tx, storage.id, "img", "img", None).await.unwrap();
    let mut prev = storage.id;
    for i in 1..n {
        let mut c = containers::insert(
            &mut tx,
            &containers::NewContainer {
                customer_id: me,
                server_id: s.id,
                name: &format!("c{i}"),
                memory: 1,
                storage: 1,
            },
        )
        .await
        .unwrap();
        c.distro_id = Some(d.id);
        c.custom_distro_id = Some(cd.id);
        containers::save(&mut tx, &c).await.unwrap();
        tags::set(&mut tx, Tagged::Container, c.id, &[t1.id, t2.id]).await.unwrap();
        links::insert(&mut tx, c.id, prev).await.unwrap();
        links::insert(&mut tx, c.id, foreign.id).await.unwrap();
        for j in 0..2 {
            let b = loopboxes::insert(&mut tx, c.id, &format!("img{j}"), &format!("mnt{j}"), false).await.unwrap();
            tags::set(&mut tx, Tagged::Loopbox, b.id, &[t1.id]).await.unwrap();
        }
        let dom = domains::insert(&mut tx, me, &format!("d{i}.example.org")).await.unwrap();
        metrics::append_domain_sample(&mut tx, dom.id, c.id, DomainMetric::Hits, today(), 1, 1).await.unwrap();
        prev = c.id;
    }
    tx.commit().await.unwrap();
    Caller { customer_id: me }
}

#[test]
fn nested_page_costs_constant_statements() {
    let count = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(
        Counter(count.clone()).with_filter(
            filter::Targets::new()
                .with_target("sqlx::query", tracing::Level::DEBUG)
                .with_target(berth_store::fetch::INLINE_TARGET, tracing::Level::DEBUG),
        ),
    );
    tracing::subscriber::set_global_default(subscriber).expect("first global subscriber");

    // One thread: a loader's batch can only run once every sibling resolver has registered
    // its key, so the count measures the loader design, not how busy the machine is (on a
    // loaded multi-thread runtime the batch timer may fire mid-page and split a batch).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A batch waits this long for keys: far longer than a page takes even on a loaded CI
    // machine, so a batch can only split if the design does.
    berth_graphql::set_loader_delay(std::time::Duration::from_millis(100));
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
        let caller = seed(&store, 120).await;
        let config = ServiceConfig { domain_ownership: Arc::new(NoDns), auth: AuthConfig::default() };
        let service = Service::new(store, config);
        let schema = berth_graphql::schema(service.clone());

        let run = |first: i64| {
            let schema = schema.clone();
            let service = service.clone();
            let count = count.clone();
            async move {
                let req = async_graphql::Request::new(QUERY)
                    .variables(async_graphql::Variables::from_json(serde_json::json!({ "first": first })));
                let before = count.load(Ordering::SeqCst);
                let resp = schema.execute(berth_graphql::prepare_request(req, &service, Some(caller))).await;
                let statements = count.load(Ordering::SeqCst) - before;
                assert!(resp.errors.is_empty(), "{:?}", resp.errors);
                let data = resp.data.into_json().unwrap();
                (statements, data)
            }
        };

        // Warm the pool so connection set-up statements are not counted.
        run(100).await;
        // DataLoaders batch by time (a short delay collects keys), so a machine busy enough
        // to stall one poll past the delay can split a batch. The design is what is under
        // test: take the fewest statements of a few runs. Without loaders (one query per
        // node) even the fewest would grow tenfold with the page.
        let fewest = |first: i64| {
            let run = &run;
            async move {
                let mut best: Option<(usize, serde_json::Value)> = None;
                for _ in 0..5 {
                    let (n, data) = run(first).await;
                    if best.as_ref().is_none_or(|(b, _)| n < *b) {
                        best = Some((n, data));
                    }
                }
                best.expect("at least one run")
            }
        };
        let (small, data10) = fewest(10).await;
        let (large, data100) = fewest(100).await;

        let edges = data100["containers"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 100);
        assert_eq!(data10["containers"]["edges"].as_array().unwrap().len(), 10);
        // The relations really were loaded (a page of empty lists would prove nothing).
        let node = &edges[5]["node"];
        assert_eq!(node["server"]["name"], "s1");
        assert_eq!(node["distro"]["name"], "bookworm");
        assert_eq!(node["customDistro"]["name"], "img");
        assert_eq!(node["tags"], serde_json::json!(["web", "db"]));
        assert_eq!(node["linkedTo"].as_array().unwrap().len(), 2);
        assert_eq!(node["loopboxes"].as_array().unwrap().len(), 2);
        assert_eq!(node["loopboxes"][0]["tags"], serde_json::json!(["web"]));
        assert_eq!(node["domains"].as_array().unwrap().len(), 1);
        assert_eq!(node["linkedFrom"].as_array().unwrap().len(), 1);

        assert!(small > 0, "the counter saw no statements: is sqlx logging to tracing?");
        assert_eq!(small, large, "statements must not grow with the page ({small} for 10, {large} for 100)");
        assert!(large <= 15, "{large} statements for one nested page");
        eprintln!("nested page of 10: {small} statements; of 100: {large}");
    });
}
