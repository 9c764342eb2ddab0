//! SQLite reads on the calling thread.
//!
//! sqlx runs every SQLite connection on a thread of its own: a statement is a command sent
//! to that thread, rows sent back one by one, and a ping when the connection returns to the
//! pool — four to six thread wake-ups, which for a point read cost ten times the statement
//! itself (BENCHMARKS.md §2). The hot reads run here instead: synchronously, on the async
//! worker that asked, on connections of the same file that refuse writes (`query_only`).
//! WAL mode means such a read sees every committed write and never waits for the writer.
//! Only short reads belong here (a page, a batch of a DataLoader, a point lookup): a long
//! one would hold up every task of the worker it runs on, so a read binding many arguments
//! goes to the blocking pool instead (`fetch::Reads`).

use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult};

/// Prepared statements kept per connection: the hot reads, each with its few list lengths.
const STATEMENT_CACHE: usize = 128;
/// Idle connections kept; as many are open as threads read at once (reads never await).
const MAX_IDLE: usize = 16;

pub struct InlineReader {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReader {
    /// Readers for the SQLite database at `url`; `None` for an in-memory database, which no
    /// second connection could see.
    pub(crate) fn for_url(url: &str) -> StoreResult<Option<InlineReader>> {
        let Some(path) = sqlite_path(url) else {
            return Ok(None);
        };
        let reader = InlineReader { path, idle: Mutex::new(Vec::new()) };
        // Opened once up front, so a file we cannot read fails at start, not at first query.
        let first = reader.open()?;
        reader.idle.lock().expect("inline reader pool poisoned").push(first);
        Ok(Some(reader))
    }

    /// A new connection of the same file, refusing writes.
    pub(crate) fn open(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(inline_error)?;
        conn.pragma_update(None, "query_only", true).map_err(inline_error)?;
        // Readers of a WAL database wait only while a checkpoint resets the log.
        conn.busy_timeout(Duration::from_secs(2)).map_err(inline_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (opening one when all are in use elsewhere).
    pub(crate) fn run<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self.idle.lock().expect("inline reader pool poisoned").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().expect("inline reader pool poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }
}

pub(crate) fn inline_error(e: rusqlite::Error) -> StoreError {
    StoreError::Inline(e.to_string())
}

/// The file of a `sqlite:` URL, or `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
    (!in_memory).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn paths_of_sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/berth/berth.db?mode=rwc").as_deref(),
            Some("/var/lib/berth/berth.db")
        );
        assert_eq!(sqlite_path("sqlite://berth.db").as_deref(), Some("berth.db"));
        assert_eq!(sqlite_path("sqlite:berth.db").as_deref(), Some("berth.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory&cache=shared"), None);
        assert_eq!(sqlite_path("postgres://localhost/berth"), None);
    }
}
