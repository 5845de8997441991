//! troupe-memory: what troupe remembers across tasks (finished tasks,
//! lessons, conversation summaries, documents a Worker kept) and how it
//! finds them again: by embedding similarity, weighted by how recently each
//! memory was used.
//!
//! # Layout
//! - [`types`]: [`Namespace`] (`shared` or `agent:<name>`), [`Kind`],
//!   [`NewMemory`], [`MemoryRecord`], [`Query`], [`Hit`],
//!   [`MemoryOptions`] and [`HnswParams`].
//! - [`store`]: [`MemoryStore`], the redb file (`tables.rs`, `codec.rs`)
//!   and its in-memory mirror (`entries.rs`, filled by `load.rs`): exact search over few
//!   memories, the HNSW index (`ann.rs`, hnsw_rs) past `exact_threshold`.
//! - [`embedder`]: the [`Embedder`] trait, all this crate asks of a model.
//! - [`service`]: [`Memory`], a store with its embedder (`remember`,
//!   `recall`), and the Director's [`Memory::remember_task`] and
//!   [`Memory::similar_tasks`].
//! - [`error`]: [`MemoryError`] and [`EmbedFailure`].
//! - [`hashed`]: [`HashedWords`], a deterministic hashed bag-of-words
//!   embedder: a test double, not a model.
//!
//! Everything blocks; async callers use `spawn_blocking`.
//!
//! A memory's score is its cosine similarity to the query times
//! `0.5^(age / decay_half_life)`, age counted from its last use (or its
//! creation): memories nobody uses fade, and [`MemoryStore::mark_used`]
//! brings one back.

#![warn(missing_docs)]

mod ann;
mod codec;
pub mod embedder;
mod entries;
pub mod error;
pub mod hashed;
mod load;
pub mod service;
pub mod store;
mod tables;
pub mod types;

pub use embedder::Embedder;
pub use entries::SearchMode;
pub use error::{EmbedFailure, MemoryError};
pub use hashed::HashedWords;
pub use service::{FinishedTask, Memory};
pub use store::{EmbeddingSpace, MemoryStore};
pub use types::{
    Hit, HnswParams, Kind, MemoryId, MemoryOptions, MemoryRecord, Namespace, NewMemory, Query,
};
