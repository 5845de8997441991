//! troupe-store: troupe's durable state in redb, one file per data
//! directory (`troupe.redb`).
//!
//! # Layout
//! - [`types`]: the records kept (tasks, subtasks, journal entries,
//!   outcomes, conversation messages, checkpoints), stored as JSON values.
//! - `tables.rs`: every `TableDefinition`, with the layout version in its
//!   name (`tasks-0`), and why each key is shaped the way it is.
//! - `commands.rs`: the commands the handle sends, and what each does inside
//!   a transaction.
//! - `owner.rs`: the one thread that owns the `redb::Database`. It takes
//!   every queued command as a batch, applies all of its writes in one write
//!   transaction, commits with immediate durability and only then replies, so
//!   an acknowledged write survives a SIGKILL and concurrent writers share a
//!   commit.
//! - `handle.rs`: [`Store`], the cloneable async handle everyone else holds.
//! - `error.rs`: [`StoreError`]. A second troupe process on the same data
//!   directory gets [`StoreError::InUse`], which says so in words.

#![warn(missing_docs)]

mod commands;
mod error;
mod handle;
mod owner;
mod tables;
pub mod types;

pub use error::StoreError;
pub use handle::{Store, DATABASE_FILE};
pub use types::*;
