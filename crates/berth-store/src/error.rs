//! Store errors, and the one place where database failures become service errors.

use berth_model::Error;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot connect to database {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migrate(String),
    /// A unique constraint refused the write: the object already exists.
    #[error("already exists")]
    Unique,
    /// PostgreSQL refused a text parameter holding a NUL (SQLSTATE 22021), which no column
    /// can hold. The service refuses such input first; this keeps a place it missed from
    /// answering 500.
    #[error("a text holds a NUL character")]
    NulInText,
    /// A foreign-key or check constraint refused the write.
    #[error("constraint violated: {0}")]
    Constraint(String),
    #[error("stored value is malformed: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A read on the inline SQLite path failed (reads only: no constraint can fire).
    #[error("database error: {0}")]
    Inline(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// PostgreSQL's SQLSTATE for a parameter its encoding cannot hold (a NUL in a text).
const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => return StoreError::Unique,
                sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::NotNullViolation => return StoreError::Constraint(db.message().to_owned()),
                _ if db.code().as_deref() == Some(CHARACTER_NOT_IN_REPERTOIRE) => return StoreError::NulInText,
                _ => {}
            }
        }
        StoreError::Database(e)
    }
}

/// Unique violations become conflicts here and nowhere else; the rest is internal (logged by
/// the front door, never sent).
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unique => Error::conflict("already exists"),
            StoreError::Constraint(msg) => Error::conflict(format!("refused by the database: {msg}")),
            StoreError::NulInText => Error::bad_input("text", "contains a NUL character"),
            other => Error::internal(other),
        }
    }
}
