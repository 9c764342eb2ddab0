//! The reads written against `Fetch` answer the same through `Store::reads` (inline on a
//! SQLite file, pooled on PostgreSQL) as through a pooled sqlx connection, see each write
//! committed before them, and cannot write.
mod common;

use berth_model::{Day, DomainMetric, Tagged};
use berth_store::fetch::{Fetch, Reads};
use berth_store::{
    accounts, alarms, containers, distros, domains, links, loopboxes, metrics, servers, tags, Engine, Store,
};

/// Two customers sharing a server; `a` has three containers with every relation the hot
/// reads cover, `b` one container with its own tag, link and loopbox.
async fn seed(store: &Store) -> (i64, i64, Vec<i64>, i64) {
    let mut tx = store.write().await.unwrap();
    let customer = |name: &'static str| accounts::NewCustomer {
        username: name,
        password_hash: "h",
        email: "e@example.com",
        company: Some("co"),
        vat: None,
    };
    let a = accounts::insert_customer(&mut tx, &customer("a")).await.unwrap().id;
    let b = accounts::insert_customer(&mut tx, &customer("b")).await.unwrap().id;
    let new_server =
        servers::NewServer { name: "s1", address: "192.0.2.1", memory: 10_000, storage: 10_000, owner_id: Some(a) };
    let s = servers::insert(&mut tx, &new_server).await.unwrap();
    let distro = distros::insert(&mut tx, "bookworm", "/d/bookworm", None).await.unwrap();
    let web = tags::insert(&mut tx, a, "web", None).await.unwrap();
    let db = tags::insert(&mut tx, a, "db", Some("note")).await.unwrap();
    let b_tag = tags::insert(&mut tx, b, "secret", None).await.unwrap();
    let day = Day { year: 2026, month: 12, day: 2 };
    let mut ids = Vec::new();
    for name in ["a1", "a2", "a3"] {
        let new = containers::NewContainer { customer_id: a, server_id: s.id, name, memory: 100, storage: 100 };
        let mut c = containers::insert(&mut tx, &new).await.unwrap();
        c.distro_id = Some(distro.id);
        c.note = Some(format!("note of {name}"));
        containers::save(&mut tx, &c).await.unwrap();
        tags::set(&mut tx, Tagged::Container, c.id, &[web.id, db.id]).await.unwrap();
        let lb = loopboxes::insert(&mut tx, c.id, &format!("{name}.img"), "/data", name == "a2").await.unwrap();
        tags::set(&mut tx, Tagged::Loopbox, lb.id, &[db.id]).await.unwrap();
        let dom = domains::insert(&mut tx, a, &format!("{name}.example.com")).await.unwrap();
        metrics::append_domain_sample(&mut tx, dom.id, c.id, DomainMetric::Hits, day, 1, 1).await.unwrap();
        let alarm = alarms::NewAlarm {
            container_id: c.id,
            unix: 1_000 + c.id,
            level: 1,
            color: "#ff0000",
            msg: "disk full",
            line: Some(7),
            func: None,
            filename: Some("x.py"),
            class: None,
            vassal: Some("v"),
        };
        alarms::insert(&mut tx, &alarm).await.unwrap();
        ids.push(c.id);
    }
    let new = containers::NewContainer { customer_id: b, server_id: s.id, name: "b1", memory: 100, storage: 100 };
    let b1 = containers::insert(&mut tx, &new).await.unwrap();
    tags::set(&mut tx, Tagged::Container, b1.id, &[b_tag.id]).await.unwrap();
    loopboxes::insert(&mut tx, b1.id, "b1.img", "/data", false).await.unwrap();
    links::insert(&mut tx, ids[0], ids[1]).await.unwrap();
    links::insert(&mut tx, ids[0], b1.id).await.unwrap();
    links::insert(&mut tx, b1.id, ids[0]).await.unwrap();
    tx.commit().await.unwrap();
    (a, s.id, ids, b1.id)
}

fn sorted<V: std::fmt::Debug>(map: std::collections::HashMap<i64, V>) -> String {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by_key(|(k, _)| *k);
    format!("{v:?}")
}

/// Every hot read of the nested page and of `me`, as text to compare.
async fn hot_reads(conn: &mut impl Fetch, a: i64, server: i64, ids: &[i64], foreign: i64) -> Vec<String> {
    let mut all = ids.to_vec();
    all.push(foreign);
    let day = Day { year: 2026, month: 12, day: 2 };
    let query = alarms::AlarmQuery { customer_id: a, vassal: Some("v".into()), ..Default::default() };
    vec![
        format!("{:?}", accounts::customer(conn, a).await.unwrap()),
        format!("{:?}", containers::page_of_customer(conn, a, None, 10, &[]).await.unwrap()),
        format!("{:?}", containers::page_of_customer(conn, a, Some(ids[0]), 10, &["db".to_owned()]).await.unwrap()),
        format!("{:?}", servers::visible_to(conn, a, &[server]).await.unwrap()),
        format!("{:?}", distros::many(conn, &[1, 2]).await.unwrap()),
        sorted(tags::owned_names_of(conn, Tagged::Container, a, &all).await.unwrap()),
        // More ids than run on the calling worker: the inline path takes the blocking pool.
        sorted(tags::owned_names_of(conn, Tagged::Container, a, &(1..=400).collect::<Vec<_>>()).await.unwrap()),
        sorted(loopboxes::of_containers(conn, a, &all).await.unwrap()),
        sorted(links::targets_of(conn, a, &all).await.unwrap()),
        sorted(domains::served_by_containers(conn, a, &all, day).await.unwrap()),
        format!("{:?}", alarms::count(conn, &query).await.unwrap()),
        format!("{:?}", alarms::list(conn, &query, alarms::Window::NewestFirst { offset: 1, limit: 5 }).await.unwrap()),
    ]
}

async fn same_answers_on_both_paths(store: Store) {
    let (a, server, ids, foreign) = seed(&store).await;
    let mut reads = store.reads().await.unwrap();
    assert_eq!(matches!(reads, Reads::Inline(_)), store.engine() == Engine::Sqlite);
    let mut pooled = store.read().await.unwrap();
    let expected = hot_reads(&mut pooled, a, server, &ids, foreign).await;
    let got = hot_reads(&mut reads, a, server, &ids, foreign).await;
    assert_eq!(got, expected);
    // Not vacuous: the page has the three containers, the foreign one's rows stay out.
    assert!(expected[1].contains("note of a3"), "{}", expected[1]);
    assert!(!expected[5].contains("secret"), "another tenant's tag leaked: {}", expected[5]);
    assert_eq!(expected[6], expected[5], "the 400-id batch holds the same containers' tags");
    assert!(expected[9].contains("a2.example.com"), "{}", expected[9]);
    assert_eq!(expected[10], "3");
}
both_engines!(same_answers_on_both_paths_work, same_answers_on_both_paths);

async fn reads_see_committed_writes(store: Store) {
    let (a, _, ids, _) = seed(&store).await;
    let mut reads = store.reads().await.unwrap();
    let before = containers::page_of_customer(&mut reads, a, None, 10, &[]).await.unwrap();
    assert_eq!(before.len(), 3);
    let mut tx = store.write().await.unwrap();
    let mut c = before[1].clone();
    c.note = Some("changed".to_owned());
    containers::save(&mut tx, &c).await.unwrap();
    containers::delete(&mut tx, ids[2]).await.unwrap();
    tx.commit().await.unwrap();
    // The same reader, straight after the commit was acknowledged.
    let after = containers::page_of_customer(&mut reads, a, None, 10, &[]).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[1].note.as_deref(), Some("changed"));
}
both_engines!(reads_see_committed_writes_work, reads_see_committed_writes);

/// The inline connections are `query_only`: a statement that writes is refused, and the
/// row is still there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_reads_cannot_write() {
    let db = common::TestDb::sqlite().await;
    let (a, _, _, _) = seed(&db.store).await;
    let mut reads = db.store.reads().await.unwrap();
    assert!(matches!(reads, Reads::Inline(_)));
    let deleted: Result<Vec<(i64,)>, _> = reads
        .fetch_all("DELETE FROM containers WHERE customer_id = $1 RETURNING id", &[berth_store::fetch::Arg::Int(a)])
        .await;
    assert!(deleted.is_err(), "an inline reader wrote: {deleted:?}");
    assert_eq!(containers::ids_of_customer(&mut db.store.read().await.unwrap(), a).await.unwrap().len(), 3);
    db.finish().await;
}

/// An in-memory database has no file a second connection could open: reads stay pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_reads_stay_pooled() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    assert!(matches!(store.reads().await.unwrap(), Reads::Pooled(_)));
    store.close().await;
}
