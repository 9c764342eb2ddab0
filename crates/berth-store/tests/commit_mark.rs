//! `Store::commit_mark` on a SQLite file: it stays put while nothing is committed and moves
//! with every commit, whichever connection or process makes it. Kept GraphQL answers are
//! served without a read on the strength of an unchanged mark, so a commit that did not
//! move it would be served stale.

mod common;

use berth_store::Store;

/// Set for the child process of `a_commit_by_another_process_moves_the_mark`: the file it
/// works on.
const CHILD_DB: &str = "BERTH_COMMIT_MARK_CHILD_DB";
/// And the statement it runs.
const CHILD_SQL: &str = "BERTH_COMMIT_MARK_CHILD_SQL";

fn mark(store: &Store) -> berth_store::CommitMark {
    // `None` only while a commit is being written; nothing writes here meanwhile.
    store.commit_mark().expect("a SQLite file in WAL mode has a commit mark")
}

async fn write(store: &Store, sql: &str) {
    let mut tx = store.write().await.unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mark_stays_put_until_a_commit_and_moves_with_every_one() {
    let db = common::TestDb::sqlite().await;
    let store = &db.store;
    write(store, "CREATE TABLE scratch (n INTEGER)").await;
    let quiet = mark(store);
    assert_eq!(mark(store), quiet);
    let _ = berth_store::versions::data_version(&mut store.reads().await.unwrap(), 1).await.unwrap();
    let _: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM scratch").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mark(store), quiet, "reads commit nothing");

    let mut seen = vec![quiet];
    for n in 0..20 {
        write(store, &format!("INSERT INTO scratch VALUES ({n})")).await;
        let now = mark(store);
        assert!(!seen.contains(&now), "commit {n} left the mark where an earlier look saw it");
        seen.push(now);
    }

    // A checkpoint that empties the log: the next commit starts it over from its first
    // frame, where an earlier commit's frame count could repeat.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.pool()).await.unwrap();
    for n in 20..23 {
        write(store, &format!("INSERT INTO scratch VALUES ({n})")).await;
        let now = mark(store);
        assert!(!seen.contains(&now), "commit {n} after a checkpoint left the mark where an earlier look saw it");
        seen.push(now);
    }

    // A connection of its own, outside the store's pool.
    let path = store_path(store).await;
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute("INSERT INTO scratch VALUES (100)", []).unwrap();
    assert!(!seen.contains(&mark(store)), "a commit by another connection left the mark");

    let before = mark(store);
    let mut tx = store.write().await.unwrap();
    sqlx::query("INSERT INTO scratch VALUES (101)").execute(&mut *tx).await.unwrap();
    drop(tx);
    let rolled_back: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM scratch WHERE n = 101").fetch_one(store.pool()).await.unwrap();
    assert_eq!(rolled_back.0, 0);
    assert_eq!(mark(store), before, "a rolled-back transaction committed nothing");
    drop(other);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_by_another_process_moves_the_mark() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        // This test binary, started again by the test below as its other process.
        return statement_in_this_process(&path);
    }
    let db = common::TestDb::sqlite().await;
    let store = &db.store;
    write(store, "CREATE TABLE scratch (n INTEGER)").await;
    let path = store_path(store).await;
    for round in 0..3 {
        // A process that only reads finds the wal-index held by this one, so it neither
        // re-initialises it nor moves the mark. (Were this process's locks on `-shm` lost,
        // the newcomer would truncate and rebuild it, under this process's mappings.)
        let before = mark(store);
        run_child(&path, "SELECT COUNT(*) FROM scratch");
        assert_eq!(mark(store), before, "round {round}: a process that only read moved the mark");

        run_child(&path, "INSERT INTO scratch VALUES (1)");
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM scratch").fetch_one(store.pool()).await.unwrap();
        assert_eq!(n, round + 1, "the child's row is there");
        assert_ne!(mark(store), before, "round {round}: a commit by another process left the mark");
    }
    db.finish().await;
}

/// Runs `sql` on `path` in another process: this test binary again, for just this test,
/// which then runs the statement and nothing else.
fn run_child(path: &str, sql: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_commit_by_another_process_moves_the_mark", "--nocapture"])
        .env(CHILD_DB, path)
        .env(CHILD_SQL, sql)
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed to run {sql}");
}

/// The child's whole work: `CHILD_SQL` on the file at `path`, through a connection of its own.
fn statement_in_this_process(path: &str) {
    let sql = std::env::var(CHILD_SQL).expect("the statement to run");
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    conn.prepare(&sql).unwrap().raw_query().next().unwrap();
}

#[tokio::test]
async fn no_mark_without_a_shared_wal_index() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    assert_eq!(store.commit_mark(), None, "an in-memory database has no file another process could write");
    store.close().await;
    if let Some(db) = common::TestDb::postgres().await {
        assert_eq!(db.store.commit_mark(), None, "PostgreSQL's commits are not seen without a read");
        db.finish().await;
    }
}

/// The file the store has open.
async fn store_path(store: &Store) -> String {
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("PRAGMA database_list").fetch_all(store.pool()).await.unwrap();
    rows.into_iter().find(|(_, name, _)| name == "main").map(|(_, _, file)| file).expect("main database")
}
