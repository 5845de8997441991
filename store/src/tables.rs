//! Every redb table troupe keeps, in one place. The version in a name is the
//! layout of its key and value: a change to either gets a new name (and a
//! migration) rather than a silent reinterpretation of old bytes.
//!
//! Values are the JSON of the records in [`crate::types`]. Keys are tuples
//! whose first element is the owner (task or conversation), so one owner's
//! rows are a contiguous range.

use redb::TableDefinition;

/// Task id → [`crate::TaskRecord`].
pub(crate) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks-0");

/// (task id, number after the `s` of the subtask id, subtask id) →
/// [`crate::SubtaskRecord`]. The number makes `s2` sort before `s10`; an id
/// without one sorts last, by its text.
pub(crate) const SUBTASKS: TableDefinition<(&str, u64, &str), &[u8]> =
    TableDefinition::new("subtasks-0");

/// (task id, seq) → [`crate::JournalEntry`]. Append-only; seq from 0 without gaps.
pub(crate) const JOURNAL: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("journal-0");

/// (conversation, seq) → [`crate::ConversationMessage`].
pub(crate) const CONVERSATIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("conversations-0");

/// Insertion number → [`crate::OutcomeRecord`] (and, in databases
/// written before `loads-0`, model loads as outcomes with role `load`).
pub(crate) const OUTCOMES: TableDefinition<u64, &[u8]> = TableDefinition::new("outcomes-0");

/// Insertion number → [`crate::LoadRecord`].
pub(crate) const LOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("loads-0");

/// Insertion number → [`crate::ProviderCall`].
pub(crate) const PROVIDER_CALLS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("provider-calls-0");

/// (task id, index from 0) → [`crate::CheckpointRecord`].
pub(crate) const CHECKPOINTS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("checkpoints-0");

/// The subtask key's middle element: the number of `s<n>`, or `u64::MAX`.
pub(crate) fn subtask_order(id: &str) -> u64 {
    id.strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Where `owner`'s rows end (exclusive) in a table whose key starts with a
/// string and goes on with something unbounded: `owner + "\0"` is the
/// smallest string above `owner`, so the range `(owner, min..)` to
/// `(owner\0, min..)` holds exactly the keys whose first element is `owner`
/// (and not those of `owner` + more text).
pub(crate) fn after(owner: &str) -> String {
    format!("{owner}\0")
}

/// Creates every table that does not exist yet, so that read transactions
/// never meet a missing one.
pub(crate) fn create_all(db: &redb::Database) -> Result<(), crate::StoreError> {
    use crate::error::db as err;
    let txn = db.begin_write().map_err(err("begin a write transaction"))?;
    txn.open_table(TASKS).map_err(err("create tasks-0"))?;
    txn.open_table(SUBTASKS).map_err(err("create subtasks-0"))?;
    txn.open_table(JOURNAL).map_err(err("create journal-0"))?;
    txn.open_table(CONVERSATIONS)
        .map_err(err("create conversations-0"))?;
    txn.open_table(OUTCOMES).map_err(err("create outcomes-0"))?;
    txn.open_table(LOADS).map_err(err("create loads-0"))?;
    txn.open_table(CHECKPOINTS)
        .map_err(err("create checkpoints-0"))?;
    txn.open_table(PROVIDER_CALLS)
        .map_err(err("create provider-calls-0"))?;
    txn.commit().map_err(err("commit the new tables"))
}
