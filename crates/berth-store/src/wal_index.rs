//! Whether anything at all has been committed to a SQLite file since an earlier look, told
//! without a read transaction.
//!
//! A WAL database keeps its wal-index in `<file>-shm`, shared by every process that has the
//! file open (<https://sqlite.org/walformat.html> §2, "The WAL-Index Header"). Its header
//! begins with two copies of a 48-byte record that the committing connection rewrites before
//! its commit returns, second copy first; the record's change counter moves with every
//! transaction, so no commit, from any process, leaves it as it was. Reading it is a few
//! loads from a shared mapping, where a read transaction costs fcntl locks on the same file
//! (BENCHMARKS.md §2g). The copies are read as SQLite's own readers read them: first, a
//! barrier, second; unequal copies mean a commit is being written, and nothing is told.
//!
//! What the two copies hold is SQLite's and is checked, not trusted: a header of another
//! version, or one not yet initialised, tells nothing, and the caller reads the database
//! as it would without this file.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use rusqlite::Connection;

use crate::inline::inline_error;
use crate::{StoreError, StoreResult};

/// Words in one copy of the header (48 bytes).
const HEADER_WORDS: usize = 12;
/// `iVersion`, the header's first word, of every wal-index SQLite has written since 3.7.0.
const WAL_INDEX_VERSION: u32 = 3_007_000;
/// Both copies.
const MAPPED: usize = 2 * HEADER_WORDS * 4;

/// Where the commits of a database stood at one look. Equal marks: no transaction committed
/// between the two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark([u32; HEADER_WORDS]);

pub(crate) struct WalIndex {
    /// The mapping stays backed while this connection is open: SQLite re-initialises (and
    /// truncates) a wal-index only when no process holds it, and this connection holds it
    /// for ours. Never used after opening.
    _holder: Mutex<Connection>,
    header: NonNull<c_void>,
}

// SAFETY: the mapping is read-only for its whole life and only ever read (volatile loads).
unsafe impl Send for WalIndex {}
unsafe impl Sync for WalIndex {}

impl WalIndex {
    /// The wal-index of the database `holder` has open, or `None` when the database is not
    /// in WAL mode.
    pub(crate) fn open(holder: Connection) -> StoreResult<Option<WalIndex>> {
        let mode: String = holder.query_row("PRAGMA journal_mode", [], |row| row.get(0)).map_err(inline_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        // A first read maps (and, for the first process, initialises) the wal-index.
        holder.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0)).map_err(inline_error)?;
        let Some(path) = holder.path().filter(|p| !p.is_empty()).map(|p| format!("{p}-shm")) else {
            return Ok(None);
        };
        let file = std::fs::File::open(&path).map_err(|e| StoreError::Inline(format!("{path}: {e}")))?;
        let len = file.metadata().map_err(|e| StoreError::Inline(format!("{path}: {e}")))?.len();
        if len < MAPPED as u64 {
            return Ok(None);
        }
        // SAFETY: a fresh read-only shared mapping of a file at least MAPPED bytes long,
        // which nobody truncates while `holder` is open (above).
        let header = unsafe {
            mmap(
                None,
                NonZeroUsize::new(MAPPED).expect("non-zero"),
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                &file,
                0,
            )
        }
        .map_err(|e| StoreError::Inline(format!("mapping {path}: {e}")))?;
        let index = WalIndex { _holder: Mutex::new(holder), header };
        Ok(index.mark().is_some().then_some(index))
    }

    /// Where commits stand now, or `None` while one is being written (or the header is not
    /// one this file knows).
    pub(crate) fn mark(&self) -> Option<CommitMark> {
        let first = self.copy(0);
        fence(Ordering::SeqCst);
        let second = self.copy(1);
        let initialised = first[3].to_ne_bytes()[0] != 0;
        (first == second && first[0] == WAL_INDEX_VERSION && initialised).then_some(CommitMark(first))
    }

    fn copy(&self, which: usize) -> [u32; HEADER_WORDS] {
        let words = self.header.as_ptr().cast::<u32>().cast_const();
        let copy = std::array::from_fn(|i| {
            // SAFETY: in bounds of the mapping (MAPPED bytes) and 4-aligned (page-aligned
            // base). Other processes write these words, so each is read once, as it is now:
            // volatile, the way memory shared outside the program is read.
            unsafe { words.add(which * HEADER_WORDS + i).read_volatile() }
        });
        fence(Ordering::Acquire);
        copy
    }
}

impl Drop for WalIndex {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, no longer read by anyone.
        let _ = unsafe { munmap(self.header, MAPPED) };
    }
}
