//! The memory file's redb tables. The version in a name is the layout of its
//! key and value: a change to either gets a new name rather than a silent
//! reinterpretation of old bytes.

use redb::TableDefinition;

/// Memory id → JSON of the record without its id and vector.
pub(crate) const MEMORIES: TableDefinition<u64, &[u8]> = TableDefinition::new("memories-0");

/// Memory id → its embedding, `dim` f32 little-endian. Kept apart from
/// [`MEMORIES`] so that marking a memory used rewrites a few hundred bytes,
/// not its vector.
pub(crate) const VECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors-0");

/// The store's metadata: [`META_MODEL`], [`META_DIM`], [`META_NEXT_ID`].
pub(crate) const META: TableDefinition<&str, &str> = TableDefinition::new("memory-meta-0");

/// The embedding model every vector comes from.
pub(crate) const META_MODEL: &str = "embedder_model";
/// The vectors' length.
pub(crate) const META_DIM: &str = "embedder_dim";
/// The next id to give; ids are never reused.
pub(crate) const META_NEXT_ID: &str = "next_id";
