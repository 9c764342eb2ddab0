//! Berth's persistence: one schema on SQLite (the embedded default) and PostgreSQL, reached
//! through sqlx's `Any` driver so every query is written once.
//!
//! Each entity module exposes free functions taking `&mut AnyConnection`, so the same helper
//! runs on a pooled connection ([`Store::read`]) or inside a write transaction
//! ([`Store::write`]). The hot reads take `&mut impl fetch::Fetch` instead, which
//! [`Store::reads`] serves inline on a SQLite file (see [`inline`]). The store knows SQL
//! and nothing else: **Architecture Invariant:** no authorization or business rule lives
//! here; `berth-service` decides, the store persists.
//!
//! SQL is written in the subset both engines share: `$n` placeholders (sqlx binds them by
//! number on SQLite too), `RETURNING`, `ON CONFLICT`, `CAST(SUM(..) AS BIGINT)`.

pub mod accounts;
pub mod alarm_delivery;
pub mod alarms;
pub mod containers;
pub mod custom_distros;
pub mod distros;
pub mod domains;
pub mod error;
pub mod events;
pub mod fetch;
mod flags;
pub mod inline;
pub mod links;
pub mod loopboxes;
pub mod metrics;
pub mod news;
pub mod portmaps;
pub mod runtime;
pub mod servers;
pub mod tags;
pub mod versions;
mod wal_index;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use error::{StoreError, StoreResult};
pub use sqlx::AnyConnection;
pub use wal_index::CommitMark;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// SQLite allows one writer; taking this lock before `BEGIN` turns would-be
    /// `SQLITE_BUSY` upgrade failures into a short wait. PostgreSQL needs none.
    write_lock: Option<Arc<Mutex<()>>>,
    /// SQLite files: hot reads on the calling thread (see [`inline`]).
    inline: Option<Arc<inline::InlineReader>>,
    /// SQLite files in WAL mode: whether anything committed, without a read (see
    /// [`wal_index`]).
    wal_index: Option<Arc<wal_index::WalIndex>>,
}

impl Store {
    /// Opens (creating a SQLite file when needed) and checks the database; does not migrate.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(StoreError::BadUrl(format!(
                "unsupported database url {:?}: expected sqlite:… or postgres://…",
                redact(url)
            )));
        };
        let url = match engine {
            // `mode=rwc` creates the file on first start.
            Engine::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|e| StoreError::BadUrl(format!("{}: {e}", redact(&url))))?;
        // One direct attempt first: a pool only reports "timed out" after retrying, which
        // hides why (refused, bad password, not a database file).
        {
            use sqlx::Connection as _;
            let mut probe = sqlx::AnyConnection::connect_with(&options)
                .await
                .map_err(|e| StoreError::Connect(format!("{}: {e}", redact(&url))))?;
            if engine == Engine::Sqlite {
                probe
                    .execute("PRAGMA schema_version")
                    .await
                    .map_err(|e| StoreError::Connect(format!("{}: {e}", redact(&url))))?;
            }
            let _ = probe.close().await;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every checkout is one more round trip to the connection's worker
            // thread per query; a local SQLite file does not hang up (sqlx still pings each
            // connection when it is returned). PostgreSQL keeps the check: a server restart
            // drops idle connections.
            .test_before_acquire(engine != Engine::Sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers run beside the writer; synchronous=FULL makes every
                        // commit durable before it is acknowledged (survives kill -9 and power
                        // loss); foreign keys are off by default in SQLite.
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect(format!("{}: {e}", redact(&url))))?;
        let write_lock = (engine == Engine::Sqlite).then(|| Arc::new(Mutex::new(())));
        let inline = match engine {
            Engine::Sqlite => inline::InlineReader::for_url(&url)?.map(Arc::new),
            Engine::Postgres => None,
        };
        let wal_index = match &inline {
            // Without it every check reads the database: slower, never wrong.
            Some(reader) => wal_index::WalIndex::open(reader.open()?).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the wal-index cannot be watched; commits are seen by reading");
                None
            }),
            None => None,
        }
        .map(Arc::new);
        Ok(Store { pool, engine, write_lock, inline, wal_index })
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> StoreResult<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations the database lacks; returns how many it applied.
    pub async fn migrate(&self) -> StoreResult<usize> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        };
        let before = self.applied_migrations().await;
        migrator.run(&self.pool).await.map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(self.applied_migrations().await.saturating_sub(before))
    }

    /// Migrations recorded as applied; 0 before the first created sqlx's table.
    async fn applied_migrations(&self) -> usize {
        let counted: Result<(i64,), _> =
            sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM _sqlx_migrations").fetch_one(&self.pool).await;
        counted.map_or(0, |(n,)| usize::try_from(n).unwrap_or(0))
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where the database's commits stand, from any process: equal marks mean nothing at
    /// all was committed between the two looks. `None` when that cannot be told without a
    /// read (PostgreSQL, an in-memory database, a commit being written at this instant).
    pub fn commit_mark(&self) -> Option<CommitMark> {
        self.wal_index.as_ref().and_then(|index| index.mark())
    }

    /// A pooled connection for reads.
    pub async fn read(&self) -> StoreResult<PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// A reader outside any transaction for the hot reads written against [`fetch::Fetch`]:
    /// inline on a SQLite file, a pooled connection otherwise.
    pub async fn reads(&self) -> StoreResult<fetch::Reads> {
        Ok(match &self.inline {
            Some(reader) => fetch::Reads::Inline(reader.clone()),
            None => fetch::Reads::Pooled(self.pool.acquire().await?),
        })
    }

    /// A write transaction: all of an operation's statements commit together or not at all.
    pub async fn write(&self) -> StoreResult<WriteTx> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = match self.engine {
            // IMMEDIATE takes SQLite's write lock at BEGIN, where the busy timeout applies. A
            // deferred transaction that reads first and then writes cannot wait: if another
            // connection still holds the lock (a dropped transaction whose ROLLBACK sqlx has
            // only queued), the upgrade fails at once with "database is locked".
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// An open write transaction; dropping it without [`WriteTx::commit`] rolls back.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> StoreResult<()> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// Current time in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Current time in Unix milliseconds.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Now on the database's clock, in Unix milliseconds. Times that gateways and agents on
/// different machines compare with each other (delivery leases and due times, `alarm_freq`
/// slots) are read off this one clock, so the machines' own clocks need not agree. SQLite
/// is only ever shared by the processes of one machine: its clock is this one.
pub async fn database_millis(conn: &mut AnyConnection) -> StoreResult<i64> {
    if conn.backend_name() != <sqlx::Postgres as sqlx::Database>::NAME {
        return Ok(unix_millis());
    }
    let (millis,): (i64,) =
        sqlx::query_as("SELECT CAST(floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)")
            .fetch_one(conn)
            .await?;
    Ok(millis)
}

/// A fresh random UUID4 in its 36-character text form.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `$from, $from+1, …` for `count` values, for `IN (…)` lists.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite:/x.db"), "sqlite:/x.db");
    }
}
