//! Fixtures shared by the benchmarks (see BENCHMARKS.md): many containers of one customer with every relation
//! populated, written with the store's own functions in ONE transaction (`berth admin` runs
//! one process and one transaction per object, far too slow for 10,000 rows).

use berth_model::{DomainMetric, Tagged};
use berth_store::{containers, custom_distros, distros, domains, links, loopboxes, metrics, tags, Store};

/// What every seeded container points at.
pub struct Seeded {
    pub customer_id: i64,
    pub containers: usize,
}

/// Adds `n` containers to `customer_id` on `server_id`, each with a distro, two tags, a link
/// to the previous container, two tagged loopboxes and one domain it served today (so the
/// container's `domains` relation is not empty). Creates its own distro and tags (names
/// suffixed with `tag`, so it can run on a database that already has some).
pub async fn seed_containers(store: &Store, customer_id: i64, server_id: i64, n: usize, tag: &str) -> Seeded {
    let today = berth_service::metrics::today_utc();
    let mut tx = store.write().await.expect("begin");
    let d = distros::insert(&mut tx, &format!("bookworm-{tag}"), &format!("/d/bookworm-{tag}"), None)
        .await
        .expect("distro");
    let t1 = tags::insert(&mut tx, customer_id, &format!("web-{tag}"), None).await.expect("tag");
    let t2 = tags::insert(&mut tx, customer_id, &format!("db-{tag}"), None).await.expect("tag");
    // A container holding custom distros, so `customDistro` can be populated too.
    let mut storage = containers::insert(
        &mut tx,
        &containers::NewContainer { customer_id, server_id, name: &format!("store-{tag}"), memory: 1, storage: 1 },
    )
    .await
    .expect("container");
    storage.custom_distros_storage = true;
    containers::save(&mut tx, &storage).await.expect("save");
    let cd = custom_distros::insert(&mut tx, storage.id, "img", "img", None).await.expect("custom distro");
    let mut prev = storage.id;
    for i in 1..n {
        let mut c = containers::insert(
            &mut tx,
            &containers::NewContainer { customer_id, server_id, name: &format!("c{i}-{tag}"), memory: 1, storage: 1 },
        )
        .await
        .expect("container");
        c.distro_id = Some(d.id);
        c.custom_distro_id = Some(cd.id);
        containers::save(&mut tx, &c).await.expect("save");
        tags::set(&mut tx, Tagged::Container, c.id, &[t1.id, t2.id]).await.expect("tags");
        links::insert(&mut tx, c.id, prev).await.expect("link");
        for j in 0..2 {
            let b =
                loopboxes::insert(&mut tx, c.id, &format!("img{j}"), &format!("mnt{j}"), false).await.expect("loopbox");
            tags::set(&mut tx, Tagged::Loopbox, b.id, &[t1.id]).await.expect("loopbox tags");
        }
        let dom = domains::insert(&mut tx, customer_id, &format!("d{i}-{tag}.example.org")).await.expect("domain");
        metrics::append_domain_sample(&mut tx, dom.id, c.id, DomainMetric::Hits, today, 1, 1)
            .await
            .expect("domain sample");
        prev = c.id;
    }
    tx.commit().await.expect("commit");
    Seeded { customer_id, containers: n }
}

/// The nested page the benchmarks and the load runs measure.
pub const NESTED_PAGE: &str = "{ containers(first: 100) { edges { node { uid name server { name } distro { name } \
    tags loopboxes { filename } linkedTo domains { name } } } } }";
