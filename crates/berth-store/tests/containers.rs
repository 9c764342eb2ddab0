mod common;

use berth_model::Tagged;
use berth_store::{
    accounts, containers, custom_distros, distros, links, servers, tags, AnyConnection, Store, StoreError,
};

async fn customer(conn: &mut AnyConnection, name: &str) -> i64 {
    let new = accounts::NewCustomer { username: name, password_hash: "h", email: "", company: None, vat: None };
    accounts::insert_customer(conn, &new).await.unwrap().id
}

async fn server(conn: &mut AnyConnection, name: &str, owner: Option<i64>) -> berth_model::Server {
    servers::insert(
        conn,
        &servers::NewServer { name, address: "10.9.9.9", memory: 1000, storage: 1000, owner_id: owner },
    )
    .await
    .unwrap()
}

async fn container(conn: &mut AnyConnection, customer_id: i64, server_id: i64, name: &str) -> berth_model::Container {
    containers::insert(conn, &containers::NewContainer { customer_id, server_id, name, memory: 100, storage: 100 })
        .await
        .unwrap()
}

async fn pages_filter_by_owner_and_tags(store: Store) {
    let mut conn = store.read().await.unwrap();
    let a = customer(&mut conn, "a").await;
    let b = customer(&mut conn, "b").await;
    let s = server(&mut conn, "s1", Some(a)).await;
    let a1 = container(&mut conn, a, s.id, "a1").await;
    let b1 = container(&mut conn, b, s.id, "b1").await;
    let a2 = container(&mut conn, a, s.id, "a2").await;
    let a3 = container(&mut conn, a, s.id, "a3").await;

    let ids = |v: Vec<berth_model::Container>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(containers::ids_of_customer(&mut conn, a).await.unwrap(), [a1.id, a2.id, a3.id]);
    assert_eq!(containers::ids_of_customer(&mut conn, b).await.unwrap(), [b1.id]);
    let nobody = customer(&mut conn, "nobody").await;
    assert!(containers::ids_of_customer(&mut conn, nobody).await.unwrap().is_empty());
    assert_eq!(ids(containers::page_of_customer(&mut conn, a, None, 10, &[]).await.unwrap()), [a1.id, a2.id, a3.id]);
    assert_eq!(ids(containers::page_of_customer(&mut conn, a, Some(a1.id), 1, &[]).await.unwrap()), [a2.id]);

    // Two matching tags on one container: it appears once (Q2 fixed).
    let web = tags::insert(&mut conn, a, "web", None).await.unwrap();
    let db = tags::insert(&mut conn, a, "db", None).await.unwrap();
    let b_web = tags::insert(&mut conn, b, "web", None).await.unwrap();
    tags::set(&mut conn, Tagged::Container, a1.id, &[web.id, db.id]).await.unwrap();
    tags::set(&mut conn, Tagged::Container, a3.id, &[db.id]).await.unwrap();
    tags::set(&mut conn, Tagged::Container, b1.id, &[b_web.id]).await.unwrap();
    let both = vec!["web".to_owned(), "db".to_owned()];
    assert_eq!(ids(containers::page_of_customer(&mut conn, a, None, 10, &both).await.unwrap()), [a1.id, a3.id]);
    assert_eq!(ids(containers::page_of_customer(&mut conn, b, None, 10, &both).await.unwrap()), [b1.id]);

    assert_eq!(ids(containers::owned_many(&mut conn, a, &[a1.id, b1.id, a2.id]).await.unwrap()).len(), 2);
    let names = tags::owned_names_of(&mut conn, Tagged::Container, a, &[a1.id, b1.id]).await.unwrap();
    assert_eq!(names.get(&a1.id).unwrap(), &vec!["web".to_owned(), "db".to_owned()]);
    assert!(!names.contains_key(&b1.id), "another tenant's tags must not show");

    // Servers: one row per server; visible when owned or running one of the customer's
    // containers, never otherwise.
    let lone = server(&mut conn, "lone", None).await;
    let b_own = server(&mut conn, "b-own", Some(b)).await;
    let seen = |v: Vec<berth_model::Server>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(seen(servers::visible_to(&mut conn, a, &[s.id, lone.id, b_own.id]).await.unwrap()), ["s1"]);
    assert_eq!(seen(servers::visible_to(&mut conn, b, &[s.id, lone.id, b_own.id]).await.unwrap()), ["s1", "b-own"]);
    container(&mut conn, a, lone.id, "a-on-lone").await;
    assert_eq!(seen(servers::visible_to(&mut conn, a, &[lone.id]).await.unwrap()), ["lone"]);
}
both_engines!(pages_filter_by_owner_and_tags_work, pages_filter_by_owner_and_tags);

async fn save_and_generation(store: Store) {
    let mut conn = store.read().await.unwrap();
    let a = customer(&mut conn, "a").await;
    let s = server(&mut conn, "s1", Some(a)).await;
    let d = distros::insert(&mut conn, "bookworm", "/d/bookworm", None).await.unwrap();
    let mut c = container(&mut conn, a, s.id, "c").await;
    assert_eq!(c.generation, 1);
    c.name = "renamed".into();
    c.distro_id = Some(d.id);
    c.jid_secret = Some("s3cret".into());
    c.nofollow = true;
    c.ssh_keys_raw = Some("k1\nk2".into());
    containers::save(&mut conn, &c).await.unwrap();
    let back = containers::get(&mut conn, c.id).await.unwrap().unwrap();
    assert_eq!(back.name, "renamed");
    assert_eq!(back.distro_id, Some(d.id));
    assert_eq!(back.jid_secret.as_deref(), Some("s3cret"));
    assert!(back.nofollow);
    assert_eq!(back.ssh_keys(), vec!["k1", "k2"]);

    containers::bump_generation(&mut conn, c.id).await.unwrap();
    let bumped = containers::get(&mut conn, c.id).await.unwrap().unwrap();
    assert_eq!(bumped.generation, 2);
    assert!(bumped.last_reboot > 0);

    // Memory must stay positive: the schema refuses 0.
    let mut zero = bumped.clone();
    zero.memory = 0;
    assert!(matches!(containers::save(&mut conn, &zero).await, Err(StoreError::Constraint(_))));
}
both_engines!(save_and_generation_work, save_and_generation);

async fn links_and_custom_distros(store: Store) {
    let mut conn = store.read().await.unwrap();
    let a = customer(&mut conn, "a").await;
    let b = customer(&mut conn, "b").await;
    let s = server(&mut conn, "s1", Some(a)).await;
    let a1 = container(&mut conn, a, s.id, "a1").await;
    let a2 = container(&mut conn, a, s.id, "a2").await;
    let b1 = container(&mut conn, b, s.id, "b1").await;

    links::insert(&mut conn, a1.id, b1.id).await.unwrap();
    links::insert(&mut conn, a1.id, a2.id).await.unwrap();
    links::insert(&mut conn, b1.id, a1.id).await.unwrap();
    assert!(matches!(links::insert(&mut conn, a1.id, a2.id).await, Err(StoreError::Unique)));
    assert!(links::exists(&mut conn, a1.id, b1.id).await.unwrap());
    let out = links::targets_of(&mut conn, a, &[a1.id, b1.id]).await.unwrap();
    assert_eq!(out.get(&a1.id).unwrap(), &vec![a2.id, b1.id]);
    assert!(!out.contains_key(&b1.id), "links of another tenant's container must not show");
    // b1 links to a1 but b1 is not a's: a sees no incoming link from it.
    let incoming = links::own_sources_of(&mut conn, a, &[a1.id, a2.id]).await.unwrap();
    assert!(!incoming.contains_key(&a1.id));
    assert_eq!(incoming.get(&a2.id).unwrap(), &vec![a1.id]);
    assert!(links::delete(&mut conn, a1.id, b1.id).await.unwrap());
    assert!(!links::delete(&mut conn, a1.id, b1.id).await.unwrap());

    let cd = custom_distros::insert(&mut conn, a1.id, "mine", "mine.img", Some("n")).await.unwrap();
    assert!(matches!(custom_distros::insert(&mut conn, a1.id, "mine", "other", None).await, Err(StoreError::Unique)));
    assert!(matches!(
        custom_distros::insert(&mut conn, a1.id, "other", "mine.img", None).await,
        Err(StoreError::Unique)
    ));
    assert_eq!(custom_distros::owned(&mut conn, a, cd.id).await.unwrap(), Some(cd.clone()));
    assert_eq!(custom_distros::owned(&mut conn, b, cd.id).await.unwrap(), None);
    assert_eq!(custom_distros::usable_by(&mut conn, a, s.id, a2.id).await.unwrap(), vec![cd.clone()]);
    assert!(custom_distros::usable_by(&mut conn, a, s.id, a1.id).await.unwrap().is_empty());
    assert!(custom_distros::owned_many(&mut conn, b, &[cd.id]).await.unwrap().is_empty());

    let mut user = containers::get(&mut conn, a2.id).await.unwrap().unwrap();
    user.custom_distro_id = Some(cd.id);
    containers::save(&mut conn, &user).await.unwrap();
    let touched = containers::clear_custom_distro(&mut conn, cd.id).await.unwrap();
    assert_eq!(touched, vec![(a2.id, a, user.generation + 1)]);
    custom_distros::delete(&mut conn, cd.id).await.unwrap();
    let after = containers::get(&mut conn, a2.id).await.unwrap().expect("the container survives (Q15 fixed)");
    assert_eq!(after.custom_distro_id, None);
}
both_engines!(links_and_custom_distros_work, links_and_custom_distros);
