//! troupe-store: troupe's durable state in redb.
//!
//! Not written yet: the agent-runtime issue fills it. It will hold every
//! `TableDefinition` as a `const` in one `tables.rs` (tasks, subtasks, the
//! append-only task journal, conversations, outcomes, checkpoints), one thread
//! owning the `Database`, and a cloneable async handle that batches writes.
//! Nothing here pretends to work before then.
