//! Bookkeeping files of one container directory: `config.json` and `state.json`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use berth_backend::BackendError;

#[derive(Debug, Error)]
pub enum FileError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: io::Error },
    #[error("{what} {path} is damaged: {source}")]
    Parse { what: &'static str, path: String, source: serde_json::Error },
}

impl From<FileError> for BackendError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Io { what, path, source } => BackendError::io(format!("{what} {path}"), source),
            other => BackendError::Failed(other.to_string()),
        }
    }
}

/// Writes `value` as JSON through a temporary file and a rename, so a reader sees the old
/// or the new content, never half of it. No fsync: both files describe what lives only as
/// long as the host is up (a run record names a process; a config is rewritten by the
/// agent's next `create`), and a crash of the agent alone leaves the page cache intact.
/// An fsync here cost about a millisecond of every start.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), FileError> {
    let data = serde_json::to_vec_pretty(value).expect("bookkeeping types serialize");
    let tmp = path.with_extension("json.tmp");
    let io_err = |source| FileError::Io { what: "writing", path: path.display().to_string(), source };
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io_err)?;
    file.write_all(&data).map_err(io_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err)
}

/// Reads a JSON file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FileError> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|source| FileError::Parse {
            what: "file",
            path: path.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Io { what: "reading", path: path.display().to_string(), source }),
    }
}

/// Removes a file; a missing file is fine.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
