//! Why a memory operation failed.

use crate::types::MemoryId;

/// An embedder could not turn text into vectors (the model failed to load,
/// the text could not be tokenised, ...). Implementations of
/// [`crate::Embedder`] put their own error's text in `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("embedding failed: {message}")]
pub struct EmbedFailure {
    /// What went wrong, in the embedder's words.
    pub message: String,
}

impl EmbedFailure {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> EmbedFailure {
        EmbedFailure {
            message: message.into(),
        }
    }
}

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// redb failed.
    #[error("memory database: cannot {op}: {source}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// redb's error.
        source: redb::Error,
    },
    /// A stored record or vector cannot be read back: the file was written
    /// by something else or damaged.
    #[error("memory database is corrupt at {}: {reason}", .id.map(|i| format!("memory {i}")).unwrap_or_else(|| "its metadata".to_string()))]
    Corrupt {
        /// The memory whose bytes are bad; `None` for the store's metadata.
        id: Option<MemoryId>,
        /// What is wrong with them.
        reason: String,
    },
    /// Vectors from another embedding model (or of another size) were
    /// offered to a store that already holds vectors of one model. Vectors of
    /// two models are not comparable, so the store refuses to mix them.
    #[error(
        "this memory store holds embeddings of model `{stored_model}` ({stored_dim} dimensions); \
         it cannot take `{given_model}` ({given_dim} dimensions): configure the same embedder, \
         or point the memory at a new file"
    )]
    EmbedderMismatch {
        /// The model the store's vectors come from.
        stored_model: String,
        /// Their length.
        stored_dim: usize,
        /// The model offered now.
        given_model: String,
        /// Its vectors' length.
        given_dim: usize,
    },
    /// A vector's length is not the store's dimension.
    #[error("a vector of {got} dimensions was given where {expected} are expected")]
    WrongDimension {
        /// The store's (or embedder's) dimension.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A vector is all zeros or holds NaN or infinity.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// A namespace is neither `shared` nor `agent:<name>`.
    #[error("invalid memory namespace `{0}`: use `shared` or `agent:<name>`")]
    InvalidNamespace(String),
    /// [`crate::MemoryOptions`] are out of range.
    #[error("invalid memory options: {0}")]
    InvalidOptions(String),
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedFailure),
    /// The embedder answered with the wrong number of vectors.
    #[error("the embedder returned {got} vectors for {asked} texts")]
    EmbedCount {
        /// Texts given.
        asked: usize,
        /// Vectors returned.
        got: usize,
    },
    /// Building the approximate index panicked.
    #[error("building the approximate index failed: {0}")]
    Index(String),
}

/// Maps a redb error of any kind to [`MemoryError::Database`].
pub(crate) fn dberr<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> MemoryError {
    move |e| MemoryError::Database {
        op,
        source: e.into(),
    }
}
