mod common;

use berth_model::Tagged;
use berth_store::{accounts, containers, servers, tags, Store, StoreError};

async fn tags_per_customer(store: Store) {
    let mut conn = store.read().await.unwrap();
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let new = accounts::NewCustomer { username: name, password_hash: "h", email: "", company: None, vat: None };
        ids.push(accounts::insert_customer(&mut conn, &new).await.unwrap().id);
    }
    let (a, b) = (ids[0], ids[1]);
    let web = tags::insert(&mut conn, a, "web", Some("front")).await.unwrap();
    // Names are unique per customer, not globally.
    assert!(matches!(tags::insert(&mut conn, a, "web", None).await, Err(StoreError::Unique)));
    let b_web = tags::insert(&mut conn, b, "web", None).await.unwrap();
    assert_eq!(tags::owned(&mut conn, a, web.id).await.unwrap(), Some(web.clone()));
    assert_eq!(tags::owned(&mut conn, a, b_web.id).await.unwrap(), None);

    let db = tags::insert(&mut conn, a, "db", None).await.unwrap();
    assert!(matches!(tags::update(&mut conn, db.id, "web", None).await, Err(StoreError::Unique)));
    tags::update(&mut conn, db.id, "database", Some("n")).await.unwrap();
    let back = tags::owned(&mut conn, a, db.id).await.unwrap().unwrap();
    assert_eq!((back.name.as_str(), back.note.as_deref()), ("database", Some("n")));

    // Unknown names are dropped, duplicates collapse, order follows the request.
    let names: Vec<String> = ["database", "nope", "web", "database"].iter().map(|s| s.to_string()).collect();
    assert_eq!(tags::ids_by_names(&mut conn, a, &names).await.unwrap(), vec![db.id, web.id]);
    assert_eq!(tags::ids_by_names(&mut conn, b, &names).await.unwrap(), vec![b_web.id]);

    let s = servers::insert(
        &mut conn,
        &servers::NewServer { name: "s", address: "1.1.1.1", memory: 10, storage: 10, owner_id: None },
    )
    .await
    .unwrap();
    let c = containers::insert(
        &mut conn,
        &containers::NewContainer { customer_id: a, server_id: s.id, name: "c", memory: 1, storage: 1 },
    )
    .await
    .unwrap();
    tags::set(&mut conn, Tagged::Container, c.id, &[web.id, db.id]).await.unwrap();
    tags::set(&mut conn, Tagged::Container, c.id, &[db.id]).await.unwrap();
    let now = tags::owned_names_of(&mut conn, Tagged::Container, a, &[c.id]).await.unwrap();
    assert_eq!(now.get(&c.id).unwrap(), &vec!["database".to_owned()]);
    tags::delete(&mut conn, db.id).await.unwrap();
    assert!(tags::owned_names_of(&mut conn, Tagged::Container, a, &[c.id]).await.unwrap().is_empty());
    assert_eq!(tags::of_customer(&mut conn, a).await.unwrap(), vec![web]);
}
both_engines!(tags_per_customer_work, tags_per_customer);
