//! What can go wrong in the store.

use std::fmt;
use std::path::{Path, PathBuf};

/// An error from [`crate::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another [`crate::Store`] in this one) has the
    /// database open. redb holds an OS file lock for as long as a database is
    /// open, so this is reported across processes too.
    #[error(
        "the data directory {} is already in use by another troupe process (database {} is locked)",
        DataDir(path),
        path.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The database file could not be opened (not a redb file, an old format,
    /// an I/O error).
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The owner thread could not be started.
    #[error("cannot start the store's owner thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// redb failed an operation; the text names the operation and redb's error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value does not deserialize into its record type.
    #[error("corrupt value in table {table} at key {key}: {reason}")]
    Corrupt {
        /// The table's name (`tasks-0`, ...).
        table: String,
        /// The key, as text.
        key: String,
        /// What the JSON decoder said.
        reason: String,
    },
    /// The store's owner thread is gone (it panicked), so nothing can be read
    /// or written through this handle any more.
    #[error("the store's owner thread has stopped")]
    Closed,
}

/// `map_err` for a redb failure during `operation`. redb's error types
/// differ per operation and callers only need to show them, so they are kept
/// as text.
pub(crate) fn db<E: fmt::Display>(operation: &str) -> impl FnOnce(E) -> StoreError + '_ {
    move |err| StoreError::Database(format!("{operation}: {err}"))
}

/// [`db`] for an operation named at run time.
pub(crate) fn db_owned<E: fmt::Display>(operation: String) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Database(format!("{operation}: {err}"))
}

/// Displays the directory that holds a database file.
struct DataDir<'a>(&'a Path);

impl fmt::Display for DataDir<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.0.parent().unwrap_or(self.0);
        fmt::Display::fmt(&dir.display(), f)
    }
}
