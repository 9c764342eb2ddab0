//! Every committed change a customer can read moves that customer's data version and no
//! other customer's; changes every customer reads move the shared version; what agents write
//! all the time (metric samples, usage figures), which no kept answer shows, moves nothing.
//! The triggers of migration 0007 are checked table by table, on both engines, through raw
//! SQL so that no store function is needed to reach them.

mod common;

use berth_model::DataVersion;
use berth_store::{versions, Store};

/// What a statement is expected to move.
#[derive(Debug, Clone, Copy)]
enum Moves {
    /// The version of customer A (the one whose rows the statements touch).
    CustomerA,
    /// The version every customer reads.
    Shared,
    Nothing,
}

async fn versions_of(store: &Store, customer: i64) -> DataVersion {
    // The inline path (SQLite) and the sqlx path must agree.
    let inline = versions::data_version(&mut store.reads().await.unwrap(), customer).await.unwrap();
    let pooled = versions::data_version(&mut store.read().await.unwrap(), customer).await.unwrap();
    assert_eq!(inline, pooled);
    inline
}

async fn check(store: &Store, a: i64, b: i64, sql: &str, moves: Moves) {
    let (a_before, b_before) = (versions_of(store, a).await, versions_of(store, b).await);
    let mut tx = store.write().await.unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    tx.commit().await.unwrap();
    let (a_after, b_after) = (versions_of(store, a).await, versions_of(store, b).await);
    assert_eq!(b_after.customer, b_before.customer, "{sql} moved another customer's version");
    match moves {
        Moves::CustomerA => {
            assert!(a_after.customer > a_before.customer, "{sql} did not move the customer's version");
            assert_eq!(a_after.shared, a_before.shared, "{sql} moved the shared version");
        }
        Moves::Shared => {
            assert!(a_after.shared > a_before.shared, "{sql} did not move the shared version");
            assert_eq!(b_after.shared, a_after.shared);
            assert_eq!(a_after.customer, a_before.customer, "{sql} moved a customer's version");
        }
        Moves::Nothing => assert_eq!(a_after, a_before, "{sql} moved a version"),
    }
}

async fn every_visible_change_moves_its_owners_version(store: Store) {
    let a = common::fixture(&store, "a", "s1", false).await;
    let b = common::fixture(&store, "b", "s2", false).await;
    let (c, s) = (a.container, a.server);
    let (ca, cb) = (a.customer, b.customer);
    let untouched = versions_of(&store, cb).await;
    assert!(untouched.customer > 0, "creating a customer's rows moves its version");

    use Moves::*;
    let steps: Vec<(String, Moves)> = vec![
        (format!("UPDATE customers SET company = 'x' WHERE id = {ca}"), CustomerA),
        (format!("INSERT INTO api_tokens (customer_id, name, secret_hash, created_at) VALUES ({ca}, 't', 'h', 0)"), CustomerA),
        (format!("UPDATE api_tokens SET last_used_at = 5 WHERE customer_id = {ca}"), Nothing),
        (format!("UPDATE api_tokens SET name = 'u' WHERE customer_id = {ca}"), CustomerA),
        (format!("DELETE FROM api_tokens WHERE customer_id = {ca}"), CustomerA),
        (format!("UPDATE containers SET note = 'n' WHERE id = {c}"), CustomerA),
        (
            format!(
                "INSERT INTO containers (customer_id, server_id, name, memory, storage, uuid, created_at, updated_at) \
                 VALUES ({ca}, {s}, 'second', 1, 1, 'uuid-second', 0, 0)"
            ),
            CustomerA,
        ),
        (
            format!("INSERT INTO container_links (container_id, to_id) SELECT {c}, id FROM containers WHERE name = 'second'"),
            CustomerA,
        ),
        (format!("DELETE FROM container_links WHERE container_id = {c}"), CustomerA),
        (format!("INSERT INTO custom_distros (container_id, name, path, uuid) VALUES ({c}, 'd', '/d', 'uuid-d')"), CustomerA),
        (format!("INSERT INTO tags (customer_id, name, created_at, updated_at) VALUES ({ca}, 't', 0, 0)"), CustomerA),
        (
            "INSERT INTO custom_distro_tags (custom_distro_id, tag_id) SELECT d.id, t.id FROM custom_distros d, tags t \
             WHERE d.name = 'd' AND t.name = 't'"
                .into(),
            CustomerA,
        ),
        (format!("INSERT INTO container_tags (container_id, tag_id) SELECT {c}, id FROM tags WHERE name = 't'"), CustomerA),
        (
            format!(
                "INSERT INTO portmaps (server_id, container_id, proto, public_port, private_port, created_at) \
                 VALUES ({s}, {c}, 'tcp', 2000, 3000, 0)"
            ),
            CustomerA,
        ),
        (format!("INSERT INTO loopboxes (container_id, filename, mountpoint) VALUES ({c}, 'f', 'm')"), CustomerA),
        ("INSERT INTO loopbox_tags (loopbox_id, tag_id) SELECT l.id, t.id FROM loopboxes l, tags t".into(), CustomerA),
        (format!("UPDATE loopboxes SET ro = 1 WHERE container_id = {c}"), CustomerA),
        (
            format!(
                "INSERT INTO domains (customer_id, name, uuid, created_at, updated_at) VALUES ({ca}, 'a.test', 'uuid-dom', 0, 0)"
            ),
            CustomerA,
        ),
        ("INSERT INTO domain_tags (domain_id, tag_id) SELECT d.id, t.id FROM domains d, tags t".into(), CustomerA),
        (format!("INSERT INTO alarms (container_id, unix, level, msg) VALUES ({c}, 0, 1, 'm')"), CustomerA),
        (format!("DELETE FROM alarms WHERE container_id = {c}"), CustomerA),
        (
            format!(
                "INSERT INTO container_metrics (container_id, kind, year, month, day, json) VALUES ({c}, 'cpu', 2026, 1, 1, '[]')"
            ),
            Nothing,
        ),
        (
            format!(
                "INSERT INTO domain_metrics (domain_id, container_id, kind, year, month, day, json) \
                 SELECT id, {c}, 'net', 2026, 1, 1, '[]' FROM domains"
            ),
            Nothing,
        ),
        (format!("INSERT INTO container_runtime (container_id, state, updated_at) VALUES ({c}, 'running', 0)"), CustomerA),
        (format!("UPDATE container_runtime SET memory_bytes = 7, disk_bytes = 8 WHERE container_id = {c}"), Nothing),
        (format!("UPDATE container_runtime SET oom_kills = 1, last_quota_alarm = 9 WHERE container_id = {c}"), Nothing),
        (format!("UPDATE container_runtime SET state = 'stopped' WHERE container_id = {c}"), CustomerA),
        ("DELETE FROM domain_tags".into(), CustomerA),
        ("DELETE FROM loopbox_tags".into(), CustomerA),
        ("DELETE FROM custom_distro_tags".into(), CustomerA),
        ("DELETE FROM container_tags".into(), CustomerA),
        (format!("UPDATE tags SET note = 'n' WHERE customer_id = {ca}"), CustomerA),
        (format!("UPDATE servers SET address = '192.0.2.9' WHERE id = {s}"), Shared),
        // The capacity check's row lock (containers.rs) changes nothing anyone can read.
        (format!("UPDATE servers SET memory = memory WHERE id = {s}"), Nothing),
        ("INSERT INTO legions (name, address) VALUES ('l', '192.0.2.2')".into(), Shared),
        (format!("INSERT INTO legion_nodes (legion_id, server_id) SELECT id, {s} FROM legions"), Shared),
        ("INSERT INTO distros (name, path, uuid) VALUES ('deb', '/deb', 'uuid-deb')".into(), Shared),
        ("INSERT INTO news (content, created_at) VALUES ('hello', 0)".into(), Shared),
        // A removal cascades: the container's own trigger moves the version even when the
        // cascaded rows can no longer find their owner.
        (format!("DELETE FROM containers WHERE id = {c}"), CustomerA),
        (format!("DELETE FROM domains WHERE customer_id = {ca}"), CustomerA),
    ];
    for (sql, moves) in &steps {
        check(&store, ca, cb, sql, *moves).await;
    }
    assert_eq!(versions_of(&store, cb).await.customer, untouched.customer);
    // A customer nobody ever wrote stands at 0, and nothing else stands below it.
    assert_eq!(versions_of(&store, 1_000_000).await.customer, 0);
}
both_engines!(every_visible_change, every_visible_change_moves_its_owners_version);

/// A rolled-back change moves nothing: versions follow commits only.
async fn a_rolled_back_change_moves_nothing(store: Store) {
    let a = common::fixture(&store, "a", "s1", false).await;
    let before = versions_of(&store, a.customer).await;
    let mut tx = store.write().await.unwrap();
    sqlx::query(&format!("UPDATE containers SET note = 'n' WHERE id = {}", a.container))
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx);
    assert_eq!(versions_of(&store, a.customer).await, before);
}
both_engines!(rollback, a_rolled_back_change_moves_nothing);
