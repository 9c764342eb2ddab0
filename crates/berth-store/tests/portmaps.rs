mod common;

use common::fixture;

use berth_model::Proto;
use berth_store::portmaps::{self, NewPortmap};
use berth_store::{containers, Store, StoreError};

async fn uniqueness_per_server(store: Store) {
    let a = fixture(&store, "alice", "s1", true).await;
    let mut conn = store.read().await.unwrap();
    let second = containers::insert(
        &mut conn,
        &containers::NewContainer { customer_id: a.customer, server_id: a.server, name: "two", memory: 1, storage: 1 },
    )
    .await
    .unwrap()
    .id;
    let new = |container_id, proto, public_port, private_port| NewPortmap {
        server_id: a.server,
        container_id,
        proto,
        public_port,
        private_port,
    };
    let first = portmaps::insert(&mut conn, &new(a.container, Proto::Tcp, 9000, 8000)).await.unwrap();
    assert_eq!((first.proto, first.public_port, first.private_port), (Proto::Tcp, 9000, 8000));
    // Q13 fixed: another container on the same server cannot take the same public port.
    let clash = portmaps::insert(&mut conn, &new(second, Proto::Tcp, 9000, 8001)).await;
    assert!(matches!(clash, Err(StoreError::Unique)), "{:?}", clash.err());
    // The same container cannot map one private port twice per protocol.
    let clash = portmaps::insert(&mut conn, &new(a.container, Proto::Tcp, 9001, 8000)).await;
    assert!(matches!(clash, Err(StoreError::Unique)), "{:?}", clash.err());
    // Other protocol: fine.
    let udp = portmaps::insert(&mut conn, &new(second, Proto::Udp, 9000, 8000)).await.unwrap();
    // The database refuses ports out of range even if a caller forgot to validate.
    assert!(portmaps::insert(&mut conn, &new(second, Proto::Tcp, 80, 8000)).await.is_err());

    let listed = portmaps::of_servers(&mut conn, &[a.server]).await.unwrap();
    assert_eq!(listed, vec![first.clone(), udp.clone()]);
    assert!(portmaps::of_servers(&mut conn, &[]).await.unwrap().is_empty());
    assert_eq!(portmaps::on_servers(&mut conn, &[a.server], udp.id).await.unwrap(), Some(udp.clone()));
    assert_eq!(portmaps::on_servers(&mut conn, &[a.server + 1], udp.id).await.unwrap(), None);

    assert_eq!(portmaps::server_mtime(&mut conn, a.server).await.unwrap(), Some(0));
    portmaps::touch_server(&mut conn, a.server).await.unwrap();
    assert!(portmaps::server_mtime(&mut conn, a.server).await.unwrap().unwrap() > 0);
    assert!(portmaps::delete(&mut conn, udp.id).await.unwrap());
    assert!(!portmaps::delete(&mut conn, udp.id).await.unwrap());
    assert_eq!(portmaps::of_servers(&mut conn, &[a.server]).await.unwrap(), vec![first]);
}
both_engines!(portmaps_are_unique_per_server, uniqueness_per_server);
