mod common;

use berth_store::{accounts, news, servers, Store, StoreError};

async fn customers_and_tokens(store: Store) {
    let mut tx = store.write().await.unwrap();
    let new = accounts::NewCustomer {
        username: "kratos",
        password_hash: "$argon2id$fake",
        email: "k@example.com",
        company: Some("God of war"),
        vat: None,
    };
    let kratos = accounts::insert_customer(&mut tx, &new).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(kratos.uuid.len(), 36);

    let mut tx = store.write().await.unwrap();
    let again = accounts::insert_customer(&mut tx, &new).await;
    assert!(matches!(again, Err(StoreError::Unique)), "{:?}", again.err());
    drop(tx);

    let mut conn = store.read().await.unwrap();
    let creds = accounts::credentials(&mut conn, "kratos").await.unwrap().unwrap();
    assert_eq!(creds.customer_id, kratos.id);
    assert!(creds.active);
    accounts::update_profile(&mut conn, kratos.id, "new@example.com", None, Some("IT123")).await.unwrap();
    let back = accounts::customer(&mut conn, kratos.id).await.unwrap().unwrap();
    assert_eq!((back.email.as_str(), back.company, back.vat.as_deref()), ("new@example.com", None, Some("IT123")));

    let token = accounts::insert_token(&mut conn, kratos.id, "ci", "hash").await.unwrap();
    assert_eq!(accounts::token_secret(&mut conn, token.id).await.unwrap(), Some((kratos.id, "hash".to_owned())));
    assert!(!accounts::delete_token(&mut conn, kratos.id + 1, token.id).await.unwrap());
    assert!(accounts::delete_token(&mut conn, kratos.id, token.id).await.unwrap());
    assert!(accounts::tokens_of(&mut conn, kratos.id).await.unwrap().is_empty());
}
both_engines!(customers_and_tokens_work, customers_and_tokens);

async fn rollback_leaves_nothing(store: Store) {
    let mut tx = store.write().await.unwrap();
    let new = accounts::NewCustomer { username: "ghost", password_hash: "h", email: "", company: None, vat: None };
    accounts::insert_customer(&mut tx, &new).await.unwrap();
    drop(tx); // no commit
    let mut conn = store.read().await.unwrap();
    assert!(accounts::customer_by_username(&mut conn, "ghost").await.unwrap().is_none());
}
both_engines!(dropped_transaction_rolls_back, rollback_leaves_nothing);

async fn servers_capacity_and_news(store: Store) {
    let mut conn = store.read().await.unwrap();
    let s = servers::insert(
        &mut conn,
        &servers::NewServer { name: "s1", address: "1.2.3.4", memory: 1000, storage: 2000, owner_id: None },
    )
    .await
    .unwrap();
    assert_eq!(servers::used_capacity(&mut conn, s.id, None).await.unwrap(), (0, 0));
    assert_eq!(servers::by_address(&mut conn, "1.2.3.4").await.unwrap(), vec![s.clone()]);
    assert_eq!(servers::many(&mut conn, &[s.id, 999]).await.unwrap(), vec![s]);
    news::insert(&mut conn, "private", false).await.unwrap();
    news::insert(&mut conn, "public", true).await.unwrap();
    let public = news::latest(&mut conn, false, 10).await.unwrap();
    assert_eq!(public.iter().map(|n| n.content.as_str()).collect::<Vec<_>>(), ["public"]);
    assert_eq!(news::latest(&mut conn, true, 10).await.unwrap().len(), 2);
}
both_engines!(servers_capacity_and_news_work, servers_capacity_and_news);

/// A text holding a NUL finds nothing on SQLite; PostgreSQL cannot be asked and refuses
/// the parameter, which is `NulInText` (bad input), never a generic database error.
async fn nul_in_a_looked_up_text(store: Store) {
    let mut conn = store.read().await.unwrap();
    let looked_up = accounts::credentials(&mut conn, "kra\0tos").await;
    match store.engine() {
        berth_store::Engine::Postgres => assert!(matches!(looked_up, Err(StoreError::NulInText)), "{looked_up:?}"),
        berth_store::Engine::Sqlite => assert!(matches!(looked_up, Ok(None)), "{looked_up:?}"),
    }
}
both_engines!(nul_in_a_looked_up_text_is_no_database_error, nul_in_a_looked_up_text);
