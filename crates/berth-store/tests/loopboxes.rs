mod common;

use berth_model::Tagged;
use berth_store::{accounts, containers, loopboxes, servers, tags, Store, StoreError};

async fn loopboxes_by_owner(store: Store) {
    let mut conn = store.read().await.unwrap();
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let new = accounts::NewCustomer { username: name, password_hash: "h", email: "", company: None, vat: None };
        ids.push(accounts::insert_customer(&mut conn, &new).await.unwrap().id);
    }
    let (a, b) = (ids[0], ids[1]);
    let s = servers::insert(
        &mut conn,
        &servers::NewServer { name: "s", address: "1.1.1.1", memory: 1000, storage: 1000, owner_id: None },
    )
    .await
    .unwrap();
    let mk = |customer_id, name| containers::NewContainer { customer_id, server_id: s.id, name, memory: 1, storage: 1 };
    let a1 = containers::insert(&mut conn, &mk(a, "a1")).await.unwrap();
    let a2 = containers::insert(&mut conn, &mk(a, "a2")).await.unwrap();
    let b1 = containers::insert(&mut conn, &mk(b, "b1")).await.unwrap();

    let x = loopboxes::insert(&mut conn, a1.id, "img/x", "mnt/x", true).await.unwrap();
    assert!(x.ro);
    let y = loopboxes::insert(&mut conn, a2.id, "img/x", "mnt/x", false).await.unwrap();
    let z = loopboxes::insert(&mut conn, b1.id, "img/z", "mnt/z", false).await.unwrap();
    // Unique per container, for filename and mountpoint separately.
    assert!(matches!(loopboxes::insert(&mut conn, a1.id, "img/x", "mnt/other", false).await, Err(StoreError::Unique)));
    assert!(matches!(loopboxes::insert(&mut conn, a1.id, "img/other", "mnt/x", false).await, Err(StoreError::Unique)));

    assert_eq!(loopboxes::owned(&mut conn, a, x.id).await.unwrap(), Some(x.clone()));
    assert_eq!(loopboxes::owned(&mut conn, a, z.id).await.unwrap(), None);

    let list = |v: Vec<berth_model::Loopbox>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(list(loopboxes::page_of_customer(&mut conn, a, None, None, 10, &[]).await.unwrap()), [x.id, y.id]);
    assert_eq!(list(loopboxes::page_of_customer(&mut conn, a, Some(a2.id), None, 10, &[]).await.unwrap()), [y.id]);
    assert_eq!(list(loopboxes::page_of_customer(&mut conn, a, None, Some(x.id), 10, &[]).await.unwrap()), [y.id]);
    assert!(loopboxes::page_of_customer(&mut conn, a, Some(b1.id), None, 10, &[]).await.unwrap().is_empty());

    let t1 = tags::insert(&mut conn, a, "t1", None).await.unwrap();
    let t2 = tags::insert(&mut conn, a, "t2", None).await.unwrap();
    tags::set(&mut conn, Tagged::Loopbox, x.id, &[t1.id, t2.id]).await.unwrap();
    let both = vec!["t1".to_owned(), "t2".to_owned()];
    assert_eq!(list(loopboxes::page_of_customer(&mut conn, a, None, None, 10, &both).await.unwrap()), [x.id]);

    let per = loopboxes::of_containers(&mut conn, a, &[a1.id, a2.id, b1.id]).await.unwrap();
    assert_eq!(per.get(&a1.id).map(Vec::len), Some(1));
    assert_eq!(per.get(&a2.id).map(Vec::len), Some(1));
    assert!(!per.contains_key(&b1.id));

    // Deleting a tag detaches it; deleting a loopbox leaves others alone.
    tags::delete(&mut conn, t1.id).await.unwrap();
    let names = tags::owned_names_of(&mut conn, Tagged::Loopbox, a, &[x.id]).await.unwrap();
    assert_eq!(names.get(&x.id).unwrap(), &vec!["t2".to_owned()]);
    loopboxes::delete(&mut conn, x.id).await.unwrap();
    assert_eq!(loopboxes::owned(&mut conn, a, x.id).await.unwrap(), None);
    assert!(loopboxes::owned(&mut conn, a, y.id).await.unwrap().is_some());
}
both_engines!(loopboxes_by_owner_work, loopboxes_by_owner);
