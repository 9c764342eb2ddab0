mod common;

use common::fixture;

use berth_model::{Day, DomainMetric, Tagged};
use berth_store::{domains, metrics, tags, Store, StoreError};

const TODAY: Day = Day { year: 2026, month: 3, day: 14 };
const YESTERDAY: Day = Day { year: 2026, month: 3, day: 13 };

async fn names_are_global_and_lookups_scoped(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let b = fixture(&store, "bob", "s2", false).await;
    let mut conn = store.read().await.unwrap();
    let d = domains::insert(&mut conn, a.customer, "example.org").await.unwrap();
    assert_eq!((d.name.as_str(), d.uuid.len(), d.note.as_deref()), ("example.org", 36, None));
    assert!(domains::name_taken(&mut conn, "example.org").await.unwrap());
    assert!(!domains::name_taken(&mut conn, "Example.org").await.unwrap(), "names compare exactly");
    let again = domains::insert(&mut conn, b.customer, "example.org").await;
    assert!(matches!(again, Err(StoreError::Unique)), "{:?}", again.err());
    assert_eq!(domains::owned(&mut conn, a.customer, d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(domains::owned(&mut conn, b.customer, d.id).await.unwrap(), None);
    assert_eq!(domains::owned_by_name(&mut conn, b.customer, "example.org").await.unwrap(), None);
    assert_eq!(domains::owned_by_name(&mut conn, a.customer, "example.org").await.unwrap(), Some(d.clone()));

    domains::set_note(&mut conn, d.id, Some("main site")).await.unwrap();
    let back = domains::owned(&mut conn, a.customer, d.id).await.unwrap().unwrap();
    assert_eq!(back.note.as_deref(), Some("main site"));
    assert!(domains::delete(&mut conn, d.id).await.unwrap());
    assert!(!domains::delete(&mut conn, d.id).await.unwrap());
    assert!(!domains::name_taken(&mut conn, "example.org").await.unwrap());
}
both_engines!(domain_names_are_global_and_lookups_scoped, names_are_global_and_lookups_scoped);

async fn pages_and_tag_filter(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let b = fixture(&store, "bob", "s2", false).await;
    let mut conn = store.read().await.unwrap();
    let mut ids = Vec::new();
    for name in ["a.test", "b.test", "c.test", "d.test"] {
        ids.push(domains::insert(&mut conn, a.customer, name).await.unwrap().id);
    }
    domains::insert(&mut conn, b.customer, "bob.test").await.unwrap();
    let web = tags::insert(&mut conn, a.customer, "web", None).await.unwrap().id;
    let prod = tags::insert(&mut conn, a.customer, "prod", None).await.unwrap().id;
    let bob_web = tags::insert(&mut conn, b.customer, "web", None).await.unwrap().id;
    tags::set(&mut conn, Tagged::Domain, ids[0], &[web, prod]).await.unwrap();
    tags::set(&mut conn, Tagged::Domain, ids[2], &[prod]).await.unwrap();

    let all = domains::page(&mut conn, a.customer, &[], None, 10).await.unwrap();
    assert_eq!(all.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    let second = domains::page(&mut conn, a.customer, &[], Some(ids[1]), 1).await.unwrap();
    assert_eq!(second.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[2]]);

    // A domain with both tags appears once (Q2 fixed); bob's "web" tag matches nothing of alice's.
    let tagged = domains::page(&mut conn, a.customer, &["web".into(), "prod".into()], None, 10).await.unwrap();
    assert_eq!(tagged.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[0], ids[2]]);
    let none = domains::page(&mut conn, a.customer, &["nope".into()], None, 10).await.unwrap();
    assert!(none.is_empty());

    let names = domains::tag_names(&mut conn, a.customer, &[ids[0], ids[1], ids[2]]).await.unwrap();
    assert_eq!(names.get(&ids[0]).unwrap(), &["web", "prod"]);
    assert_eq!(names.get(&ids[2]).unwrap(), &["prod"]);
    assert!(!names.contains_key(&ids[1]));
    // Another customer asking for alice's domain ids learns nothing.
    tags::set(&mut conn, Tagged::Domain, ids[3], &[bob_web]).await.unwrap();
    assert!(domains::tag_names(&mut conn, b.customer, &ids).await.unwrap().is_empty());
    assert!(!domains::tag_names(&mut conn, a.customer, &ids).await.unwrap().contains_key(&ids[3]));
}
both_engines!(domain_pages_and_tag_filter, pages_and_tag_filter);

async fn served_today_is_scoped_to_the_customer(store: Store) {
    let a = fixture(&store, "alice", "s1", false).await;
    let b = fixture(&store, "bob", "s2", false).await;
    let mut conn = store.read().await.unwrap();
    let mine = domains::insert(&mut conn, a.customer, "mine.test").await.unwrap();
    let other = domains::insert(&mut conn, a.customer, "other.test").await.unwrap();
    let bobs = domains::insert(&mut conn, b.customer, "bob.test").await.unwrap();
    let hits = DomainMetric::Hits;
    metrics::append_domain_sample(&mut conn, mine.id, a.container, hits, TODAY, 1, 5).await.unwrap();
    // Yesterday's hits and other kinds do not count.
    metrics::append_domain_sample(&mut conn, other.id, a.container, hits, YESTERDAY, 1, 5).await.unwrap();
    metrics::append_domain_sample(&mut conn, other.id, a.container, DomainMetric::NetRx, TODAY, 1, 5).await.unwrap();
    // Q11: bob's container serving alice's domain, and alice's container serving bob's domain.
    metrics::append_domain_sample(&mut conn, mine.id, b.container, hits, TODAY, 1, 5).await.unwrap();
    metrics::append_domain_sample(&mut conn, bobs.id, a.container, hits, TODAY, 1, 5).await.unwrap();

    let served =
        domains::served_by_containers(&mut conn, a.customer, &[a.container, b.container], TODAY).await.unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served.get(&a.container).unwrap(), &vec![mine.clone()]);
    let serving =
        domains::serving_containers(&mut conn, a.customer, &[mine.id, other.id, bobs.id], TODAY).await.unwrap();
    assert_eq!(serving.len(), 1);
    assert_eq!(serving.get(&mine.id).unwrap(), &vec![a.container]);
    let bob_view =
        domains::served_by_containers(&mut conn, b.customer, &[a.container, b.container], TODAY).await.unwrap();
    assert_eq!(bob_view.get(&b.container).map(Vec::len), None, "bob's container served only alice's domain");

    // Deleting a domain removes its metric rows (FK cascade).
    domains::delete(&mut conn, mine.id).await.unwrap();
    assert!(metrics::domain_day(&mut conn, mine.id, hits, TODAY).await.unwrap().is_empty());
    assert!(domains::served_by_containers(&mut conn, a.customer, &[a.container], TODAY).await.unwrap().is_empty());
}
both_engines!(served_today_is_scoped, served_today_is_scoped_to_the_customer);
