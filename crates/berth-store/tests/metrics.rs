mod common;

use common::fixture;

use berth_model::{ContainerMetric, Day, DomainMetric};
use berth_store::{domains, metrics, Store};

const DAY: Day = Day { year: 2026, month: 3, day: 14 };
const OTHER_DAY: Day = Day { year: 2026, month: 3, day: 15 };

async fn samples_append_per_day_and_kind(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let mut conn = store.read().await.unwrap();
    let io_write = ContainerMetric::IoWrite;
    assert_eq!(metrics::container_day(&mut conn, a.container, io_write, DAY).await.unwrap(), None);
    metrics::append_container_sample(&mut conn, a.container, io_write, DAY, 1420070400, 123456).await.unwrap();
    metrics::append_container_sample(&mut conn, a.container, io_write, DAY, 1420070700, 123999).await.unwrap();
    metrics::append_container_sample(&mut conn, a.container, ContainerMetric::IoRead, DAY, 1, 7).await.unwrap();
    metrics::append_container_sample(&mut conn, a.container, io_write, OTHER_DAY, 2, 8).await.unwrap();
    // The reference collector's exact text shape.
    assert_eq!(
        metrics::container_day(&mut conn, a.container, io_write, DAY).await.unwrap(),
        Some(Some("[[1420070400, 123456], [1420070700, 123999]]".to_owned()))
    );
    // Q23 fixed: each kind is its own series.
    assert_eq!(
        metrics::container_day(&mut conn, a.container, ContainerMetric::IoRead, DAY).await.unwrap(),
        Some(Some("[[1, 7]]".to_owned()))
    );
    assert_eq!(
        metrics::container_day(&mut conn, a.container, io_write, OTHER_DAY).await.unwrap(),
        Some(Some("[[2, 8]]".to_owned()))
    );

    let b = fixture(&store, "bob", "s2", false).await;
    let d = domains::insert(&mut conn, a.customer, "example.org").await.unwrap();
    metrics::append_domain_sample(&mut conn, d.id, b.container, DomainMetric::Hits, DAY, 5, 50).await.unwrap();
    metrics::append_domain_sample(&mut conn, d.id, a.container, DomainMetric::Hits, DAY, 5, 10).await.unwrap();
    metrics::append_domain_sample(&mut conn, d.id, a.container, DomainMetric::Hits, DAY, 6, 11).await.unwrap();
    metrics::append_domain_sample(&mut conn, d.id, a.container, DomainMetric::NetTx, DAY, 6, 99).await.unwrap();
    assert_eq!(
        metrics::domain_day(&mut conn, d.id, DomainMetric::Hits, DAY).await.unwrap(),
        vec![(a.container, Some("[[5, 10], [6, 11]]".to_owned())), (b.container, Some("[[5, 50]]".to_owned()))]
    );
    assert!(metrics::domain_day(&mut conn, d.id, DomainMetric::Hits, OTHER_DAY).await.unwrap().is_empty());
}
both_engines!(metric_samples_append_per_day_and_kind, samples_append_per_day_and_kind);

async fn concurrent_appends_lose_nothing(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let container = a.container;
        tasks.push(tokio::spawn(async move {
            let mut tx = store.write().await.unwrap();
            metrics::append_container_sample(&mut tx, container, ContainerMetric::Cpu, DAY, i, i * 10).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut conn = store.read().await.unwrap();
    let text =
        metrics::container_day(&mut conn, a.container, ContainerMetric::Cpu, DAY).await.unwrap().unwrap().unwrap();
    let mut samples: Vec<(i64, i64)> = serde_like_parse(&text);
    samples.sort();
    assert_eq!(samples, (0..8).map(|i| (i, i * 10)).collect::<Vec<_>>());
}
both_engines!(concurrent_metric_appends_lose_nothing, concurrent_appends_lose_nothing);

/// Parses `[[a, b], ...]` without a JSON dependency in the store's tests.
fn serde_like_parse(text: &str) -> Vec<(i64, i64)> {
    let inner = text.trim().strip_prefix('[').and_then(|t| t.strip_suffix(']')).expect("array");
    inner
        .split("], [")
        .map(|pair| {
            let pair = pair.trim_matches(|c| c == '[' || c == ']');
            let (a, b) = pair.split_once(", ").expect("pair");
            (a.parse().expect("unix"), b.parse().expect("value"))
        })
        .collect()
}
