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
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;

use rusqlite::{ffi, Connection};

use crate::inline::inline_error;
use crate::{StoreError, StoreResult};

/// Words in one copy of the header (48 bytes).
const HEADER_WORDS: usize = 12;
/// `iVersion`, the header's first word, of every wal-index SQLite has written since 3.7.0.
const WAL_INDEX_VERSION: u32 = 3_007_000;
/// The size of a wal-index region, as SQLite's WAL code maps them (`WALINDEX_PGSZ`).
const REGION_BYTES: i32 = 32 * 1024;

/// Where the commits of a database stood at one look. Equal marks: no transaction committed
/// between the two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark([u32; HEADER_WORDS]);

pub(crate) struct WalIndex {
    /// The connection whose mapping of the wal-index `header` points into; SQLite keeps a
    /// region mapped until its connection closes. Never used after opening.
    _holder: Mutex<Connection>,
    header: NonNull<c_void>,
}

// SAFETY: `header` is only ever read (volatile loads), and stays mapped while `_holder` is
// open, which it is for the life of this value.
unsafe impl Send for WalIndex {}
unsafe impl Sync for WalIndex {}

impl WalIndex {
    /// The wal-index of the database `holder` has open, or `None` when the database is not
    /// in WAL mode.
    ///
    /// The header is read through SQLite's own mapping (its VFS's `xShmMap`), never through
    /// a descriptor of ours: POSIX record locks belong to the process, so closing any
    /// descriptor of `-shm` would drop every lock SQLite holds on it, the lock that keeps
    /// other processes from re-initialising the file among them.
    pub(crate) fn open(holder: Connection) -> StoreResult<Option<WalIndex>> {
        let mode: String = holder.query_row("PRAGMA journal_mode", [], |row| row.get(0)).map_err(inline_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        // A first read maps (and, for the first process, initialises) the wal-index.
        holder.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0)).map_err(inline_error)?;
        let Some(header) = mapped_region_zero(&holder)? else {
            return Ok(None);
        };
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
            // SAFETY: in bounds of region 0 (REGION_BYTES) and 4-aligned (page-aligned
            // base). Other processes write these words, so each is read once, as it is now:
            // volatile, the way memory shared outside the program is read.
            unsafe { words.add(which * HEADER_WORDS + i).read_volatile() }
        });
        fence(Ordering::Acquire);
        copy
    }
}

/// The first region of the wal-index as `conn`'s VFS has it mapped, or `None` when that
/// VFS keeps no shared wal-index.
fn mapped_region_zero(conn: &Connection) -> StoreResult<Option<NonNull<c_void>>> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle of an open connection, used on this thread only while `conn` is
    // borrowed; FILE_POINTER writes the main database's `sqlite3_file` into `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(StoreError::Inline(format!("the database file of a reader connection (SQLite code {rc})")));
    }
    // SAFETY: `file` is the connection's open main database file; its methods outlive it.
    let methods = unsafe { (*file).pMethods };
    if methods.is_null() {
        return Ok(None);
    }
    // SAFETY: as above; `xShmMap` exists from version 2 of the methods on.
    let map = unsafe { ((*methods).iVersion >= 2).then_some((*methods).xShmMap).flatten() };
    let Some(map) = map else {
        return Ok(None);
    };
    let mut region: *mut c_void = std::ptr::null_mut();
    // SAFETY: region 0 exists (the read above mapped it); with "extend" 0 this only returns
    // the connection's mapping of it, as SQLite's WAL code asks for it.
    let rc = unsafe { map(file, 0, REGION_BYTES, 0, &mut region) };
    if rc != ffi::SQLITE_OK {
        return Err(StoreError::Inline(format!("mapping the wal-index (SQLite code {rc})")));
    }
    Ok(NonNull::new(region))
}
