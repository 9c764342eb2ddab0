//! One way to run a read, whatever runs it: sqlx (PostgreSQL; SQLite inside a write
//! transaction) or the inline SQLite reader ([`crate::inline`]). The hot reads are written
//! once against [`Fetch`]; their row types derive both `sqlx::FromRow` and
//! `serde::Deserialize`, so both paths map columns by name with the same struct.

use futures::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection};

use crate::inline::{inline_error, InlineReader};
use crate::{StoreError, StoreResult, WriteTx};

/// The `tracing` target of each inline statement (DEBUG).
pub const INLINE_TARGET: &str = "berth_store::inline";

/// A bound value of a `$n` placeholder: `args[n - 1]`.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

/// `leading` then one `Int` per id: the usual shape of a batch read (`$1 … IN ($n…)`).
pub fn with_ids<'a>(leading: &[Arg<'a>], ids: &[i64]) -> Vec<Arg<'a>> {
    leading.iter().copied().chain(ids.iter().map(|&id| Arg::Int(id))).collect()
}

/// A row both paths can produce.
pub trait Row: for<'r> sqlx::FromRow<'r, AnyRow> + serde::de::DeserializeOwned + Send + Unpin + 'static {}
impl<T: for<'r> sqlx::FromRow<'r, AnyRow> + serde::de::DeserializeOwned + Send + Unpin + 'static> Row for T {}

pub trait Fetch: Send {
    /// Every row of `sql` with `args` bound to `$1…`.
    fn fetch_all<'a, T: Row>(&'a mut self, sql: &'a str, args: &'a [Arg<'a>]) -> BoxFuture<'a, StoreResult<Vec<T>>>;

    /// The first row, if any.
    fn fetch_optional<'a, T: Row>(
        &'a mut self,
        sql: &'a str,
        args: &'a [Arg<'a>],
    ) -> BoxFuture<'a, StoreResult<Option<T>>> {
        Box::pin(async move { Ok(self.fetch_all(sql, args).await?.into_iter().next()) })
    }
}

fn sqlx_fetch_all<'a, T: Row>(
    conn: &'a mut AnyConnection,
    sql: &'a str,
    args: &'a [Arg<'a>],
) -> BoxFuture<'a, StoreResult<Vec<T>>> {
    Box::pin(async move {
        let mut query = sqlx::query_as::<Any, T>(sql);
        for arg in args {
            query = match *arg {
                Arg::Int(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
            };
        }
        Ok(query.fetch_all(conn).await?)
    })
}

impl Fetch for AnyConnection {
    fn fetch_all<'a, T: Row>(&'a mut self, sql: &'a str, args: &'a [Arg<'a>]) -> BoxFuture<'a, StoreResult<Vec<T>>> {
        sqlx_fetch_all(self, sql, args)
    }
}

impl Fetch for PoolConnection<Any> {
    fn fetch_all<'a, T: Row>(&'a mut self, sql: &'a str, args: &'a [Arg<'a>]) -> BoxFuture<'a, StoreResult<Vec<T>>> {
        sqlx_fetch_all(self, sql, args)
    }
}

impl Fetch for WriteTx {
    fn fetch_all<'a, T: Row>(&'a mut self, sql: &'a str, args: &'a [Arg<'a>]) -> BoxFuture<'a, StoreResult<Vec<T>>> {
        sqlx_fetch_all(self, sql, args)
    }
}

/// Reads outside any transaction: inline on SQLite files, a pooled connection otherwise.
pub enum Reads {
    Inline(std::sync::Arc<InlineReader>),
    Pooled(PoolConnection<Any>),
}

/// Arguments up to which a read runs on the calling worker. A page binds ~100 ids; a read
/// with thousands (REST lists every container's relations at once) is long enough to stall
/// the worker's other tasks, so it runs on the blocking pool instead: one hand-off for a
/// read that costs milliseconds.
const INLINE_MAX_ARGS: usize = 256;

impl Fetch for Reads {
    fn fetch_all<'a, T: Row>(&'a mut self, sql: &'a str, args: &'a [Arg<'a>]) -> BoxFuture<'a, StoreResult<Vec<T>>> {
        match self {
            Reads::Inline(reader) if args.len() <= INLINE_MAX_ARGS => {
                Box::pin(std::future::ready(reader.run(|conn| inline_fetch_all(conn, sql, args))))
            }
            Reads::Inline(reader) => {
                let reader = reader.clone();
                let sql = sql.to_owned();
                let owned: Vec<OwnedArg> = args.iter().map(|arg| arg.into()).collect();
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        let args: Vec<Arg<'_>> = owned.iter().map(OwnedArg::borrow).collect();
                        reader.run(|conn| inline_fetch_all(conn, &sql, &args))
                    })
                    .await
                    .map_err(|e| StoreError::Inline(format!("inline read task: {e}")))?
                })
            }
            Reads::Pooled(conn) => sqlx_fetch_all(conn, sql, args),
        }
    }
}

/// An [`Arg`] that can move to another thread.
enum OwnedArg {
    Int(i64),
    Text(String),
}

impl From<&Arg<'_>> for OwnedArg {
    fn from(arg: &Arg<'_>) -> Self {
        match *arg {
            Arg::Int(v) => OwnedArg::Int(v),
            Arg::Text(v) => OwnedArg::Text(v.to_owned()),
        }
    }
}

impl OwnedArg {
    fn borrow(&self) -> Arg<'_> {
        match self {
            OwnedArg::Int(v) => Arg::Int(*v),
            OwnedArg::Text(v) => Arg::Text(v),
        }
    }
}

/// Runs a read on a rusqlite connection. SQLite reads `$1` as a *named* parameter (indexed
/// by order of first appearance, and found by a linear search of the names, so binding a
/// 100-id batch by name is quadratic); the text is rewritten to `?1` (numbered: index 1)
/// first, so `args[n - 1]` binds straight at index `n`.
fn inline_fetch_all<T: Row>(conn: &rusqlite::Connection, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(&numbered_placeholders(sql)).map_err(inline_error)?;
    let count = statement.parameter_count();
    if count > args.len() {
        return Err(StoreError::Inline(format!("{sql:?} takes {count} parameters, {} given", args.len())));
    }
    for (i, arg) in args.iter().take(count).enumerate() {
        match *arg {
            Arg::Int(v) => statement.raw_bind_parameter(i + 1, v),
            Arg::Text(v) => statement.raw_bind_parameter(i + 1, v),
        }
        .map_err(inline_error)?;
    }
    let rows = serde_rusqlite::from_rows::<T>(statement.raw_query())
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| StoreError::Inline(e.to_string()))?;
    // As sqlx logs its statements (target `sqlx::query`), so counting them sees both paths.
    tracing::debug!(target: INLINE_TARGET, summary = sql, rows = rows.len(), "inline read");
    Ok(rows)
}

/// `$n` → `?n` outside quoted strings and identifiers.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('?');
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT '$1', \"a$2\" FROM t WHERE a = $1 AND b IN ($12, $3) AND c = $"),
            "SELECT '$1', \"a$2\" FROM t WHERE a = ?1 AND b IN (?12, ?3) AND c = $"
        );
    }
}
