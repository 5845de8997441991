//! The commands a [`crate::Store`] sends its owner thread, and what each one
//! does inside a transaction. Writes take `&self` so that a write can be
//! applied again on its own when the batch it was in failed.

use std::fmt;

use redb::{ReadTransaction, ReadableTable, TableHandle, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{db, db_owned, StoreError};
use crate::tables::{
    after, subtask_order, CHECKPOINTS, CONVERSATIONS, JOURNAL, LOADS, OUTCOMES, PROVIDER_CALLS,
    SUBTASKS, TASKS,
};
use crate::types::{
    now_ms, CheckpointRecord, ConversationMessage, JournalEntry, LoadRecord, OutcomeRecord,
    ProviderCall, Speaker, SubtaskRecord, TaskEvent, TaskRecord,
};

/// Where the owner thread sends a command's result.
pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<Answer, StoreError>>;

/// One request to the owner thread.
pub(crate) enum Command {
    /// Applied in the batch's write transaction; answered once it is durable.
    /// Boxed: a task and an event together are far larger than any read.
    Write(Box<WriteOp>, Reply),
    /// Answered from a read transaction begun after the batch's commit.
    Read(ReadOp, Reply),
    /// Finishes the batch, closes the database (releasing its file lock)
    /// and answers; later commands get `StoreError::Closed`.
    Close(Reply),
}

/// A change to the database.
pub(crate) enum WriteOp {
    PutTask(TaskRecord),
    PutSubtasks(Vec<SubtaskRecord>),
    Append {
        task_id: String,
        event: TaskEvent,
    },
    AppendWithTask {
        task: TaskRecord,
        event: TaskEvent,
    },
    RecordOutcome(OutcomeRecord),
    RecordLoad(LoadRecord),
    RecordProviderCall(ProviderCall),
    AppendMessage {
        conversation: String,
        role: Speaker,
        content: String,
    },
    PutCheckpoint(CheckpointRecord),
}

/// A question about the database.
pub(crate) enum ReadOp {
    Task(String),
    Tasks { unfinished_only: bool },
    Subtasks(String),
    Journal { task_id: String, from_seq: u64 },
    Outcomes,
    Loads,
    ProviderCalls,
    Conversation(String),
    Checkpoints(String),
}

/// What a command came to. One enum for every command keeps the channel and
/// the batching untyped; the handle unpacks the variant it asked for.
#[derive(Debug)]
pub(crate) enum Answer {
    Done,
    Entry(JournalEntry),
    Message(ConversationMessage),
    Task(Option<TaskRecord>),
    Tasks(Vec<TaskRecord>),
    Subtasks(Vec<SubtaskRecord>),
    Journal(Vec<JournalEntry>),
    Outcomes(Vec<OutcomeRecord>),
    Loads(Vec<LoadRecord>),
    ProviderCalls(Vec<ProviderCall>),
    Conversation(Vec<ConversationMessage>),
    Checkpoints(Vec<CheckpointRecord>),
}

impl WriteOp {
    pub(crate) fn apply(&self, txn: &WriteTransaction) -> Result<Answer, StoreError> {
        match self {
            WriteOp::PutTask(task) => put_task(txn, task).map(|()| Answer::Done),
            WriteOp::PutSubtasks(subtasks) => put_subtasks(txn, subtasks).map(|()| Answer::Done),
            WriteOp::Append { task_id, event } => append(txn, task_id, event).map(Answer::Entry),
            WriteOp::AppendWithTask { task, event } => {
                put_task(txn, task)?;
                append(txn, &task.id, event).map(Answer::Entry)
            }
            WriteOp::RecordOutcome(outcome) => record_outcome(txn, outcome).map(|()| Answer::Done),
            WriteOp::RecordLoad(load) => append_numbered(txn, LOADS, load).map(|()| Answer::Done),
            WriteOp::RecordProviderCall(call) => {
                append_numbered(txn, PROVIDER_CALLS, call).map(|()| Answer::Done)
            }
            WriteOp::AppendMessage {
                conversation,
                role,
                content,
            } => append_message(txn, conversation, *role, content).map(Answer::Message),
            WriteOp::PutCheckpoint(cp) => put_checkpoint(txn, cp).map(|()| Answer::Done),
        }
    }
}

impl ReadOp {
    pub(crate) fn apply(&self, txn: &ReadTransaction) -> Result<Answer, StoreError> {
        match self {
            ReadOp::Task(id) => task(txn, id).map(Answer::Task),
            ReadOp::Tasks { unfinished_only } => tasks(txn, *unfinished_only).map(Answer::Tasks),
            ReadOp::Subtasks(task_id) => subtasks(txn, task_id).map(Answer::Subtasks),
            ReadOp::Journal { task_id, from_seq } => {
                journal(txn, task_id, *from_seq).map(Answer::Journal)
            }
            ReadOp::Outcomes => outcome_rows(txn)
                .map(|(calls, _)| calls)
                .map(Answer::Outcomes),
            ReadOp::Loads => loads(txn).map(Answer::Loads),
            ReadOp::ProviderCalls => {
                let table = txn
                    .open_table(PROVIDER_CALLS)
                    .map_err(db("open provider-calls-0"))?;
                let rows = table.iter().map_err(db("list provider calls"))?;
                decode_rows(PROVIDER_CALLS.name(), rows).map(Answer::ProviderCalls)
            }
            ReadOp::Conversation(name) => conversation(txn, name).map(Answer::Conversation),
            ReadOp::Checkpoints(task_id) => checkpoints(txn, task_id).map(Answer::Checkpoints),
        }
    }
}

fn put_task(txn: &WriteTransaction, task: &TaskRecord) -> Result<(), StoreError> {
    let mut table = txn.open_table(TASKS).map_err(db("open tasks-0"))?;
    table
        .insert(task.id.as_str(), encode(task)?.as_slice())
        .map_err(db("write a task"))?;
    Ok(())
}

fn put_subtasks(txn: &WriteTransaction, subtasks: &[SubtaskRecord]) -> Result<(), StoreError> {
    let mut table = txn.open_table(SUBTASKS).map_err(db("open subtasks-0"))?;
    for subtask in subtasks {
        let key = (
            subtask.task_id.as_str(),
            subtask_order(&subtask.id),
            subtask.id.as_str(),
        );
        table
            .insert(key, encode(subtask)?.as_slice())
            .map_err(db("write a subtask"))?;
    }
    Ok(())
}

fn append(
    txn: &WriteTransaction,
    task_id: &str,
    event: &TaskEvent,
) -> Result<JournalEntry, StoreError> {
    let mut table = txn.open_table(JOURNAL).map_err(db("open journal-0"))?;
    let seq = next_seq(&table, task_id)?;
    let entry = JournalEntry {
        task_id: task_id.into(),
        seq,
        time_ms: now_ms(),
        event: event.clone(),
    };
    table
        .insert((task_id, seq), encode(&entry)?.as_slice())
        .map_err(db("append to the journal"))?;
    Ok(entry)
}

fn record_outcome(txn: &WriteTransaction, outcome: &OutcomeRecord) -> Result<(), StoreError> {
    append_numbered(txn, OUTCOMES, outcome)
}

/// Appends `row` under the next insertion number of `table`.
fn append_numbered<T: serde::Serialize>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<u64, &[u8]>,
    row: &T,
) -> Result<(), StoreError> {
    let name = table.name().to_owned();
    let mut table = txn
        .open_table(table)
        .map_err(db_owned(format!("open {name}")))?;
    let next = match table
        .last()
        .map_err(db_owned(format!("read the last row of {name}")))?
    {
        Some((key, _)) => key.value() + 1,
        None => 0,
    };
    table
        .insert(next, encode(row)?.as_slice())
        .map_err(db_owned(format!("append to {name}")))?;
    Ok(())
}

fn append_message(
    txn: &WriteTransaction,
    conversation: &str,
    role: Speaker,
    content: &str,
) -> Result<ConversationMessage, StoreError> {
    let mut table = txn
        .open_table(CONVERSATIONS)
        .map_err(db("open conversations-0"))?;
    let message = ConversationMessage {
        conversation: conversation.to_owned(),
        seq: next_seq(&table, conversation)?,
        role,
        content: content.to_owned(),
        time_ms: now_ms(),
    };
    table
        .insert((conversation, message.seq), encode(&message)?.as_slice())
        .map_err(db("append to a conversation"))?;
    Ok(message)
}

fn put_checkpoint(txn: &WriteTransaction, cp: &CheckpointRecord) -> Result<(), StoreError> {
    let mut table = txn
        .open_table(CHECKPOINTS)
        .map_err(db("open checkpoints-0"))?;
    let index = next_seq(&table, &cp.task_id)?;
    table
        .insert((cp.task_id.as_str(), index), encode(cp)?.as_slice())
        .map_err(db("write a checkpoint"))?;
    Ok(())
}

/// One past the last seq under `owner` in an `(owner, seq)` table.
fn next_seq(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    owner: &str,
) -> Result<u64, StoreError> {
    let mut rows = table
        .range((owner, 0)..=(owner, u64::MAX))
        .map_err(db("find the last seq"))?;
    match rows.next_back() {
        Some(row) => {
            let (key, _) = row.map_err(db("find the last seq"))?;
            Ok(key.value().1 + 1)
        }
        None => Ok(0),
    }
}

fn task(txn: &ReadTransaction, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let table = txn.open_table(TASKS).map_err(db("open tasks-0"))?;
    match table.get(id).map_err(db("read a task"))? {
        Some(value) => decode(TASKS.name(), &id, value.value()).map(Some),
        None => Ok(None),
    }
}

fn tasks(txn: &ReadTransaction, unfinished_only: bool) -> Result<Vec<TaskRecord>, StoreError> {
    let table = txn.open_table(TASKS).map_err(db("open tasks-0"))?;
    let rows = table.iter().map_err(db("list tasks"))?;
    let mut tasks: Vec<TaskRecord> = decode_rows(TASKS.name(), rows)?;
    tasks.retain(|task| !(unfinished_only && task.state.is_finished()));
    tasks.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    Ok(tasks)
}

fn subtasks(txn: &ReadTransaction, task_id: &str) -> Result<Vec<SubtaskRecord>, StoreError> {
    let table = txn.open_table(SUBTASKS).map_err(db("open subtasks-0"))?;
    let end = after(task_id);
    let rows = table
        .range((task_id, 0, "")..(end.as_str(), 0, ""))
        .map_err(db("list subtasks"))?;
    decode_rows(SUBTASKS.name(), rows)
}

fn journal(
    txn: &ReadTransaction,
    task_id: &str,
    from_seq: u64,
) -> Result<Vec<JournalEntry>, StoreError> {
    let table = txn.open_table(JOURNAL).map_err(db("open journal-0"))?;
    let rows = table
        .range((task_id, from_seq)..=(task_id, u64::MAX))
        .map_err(db("read the journal"))?;
    decode_rows(JOURNAL.name(), rows)
}

/// A model load as `outcomes-0` held it before `loads-0` existed: role
/// `load`, the load time in `latency_ms`.
#[derive(serde::Deserialize)]
struct LegacyLoad {
    model: String,
    latency_ms: u64,
    #[serde(default)]
    memory_bytes: u64,
    time_ms: u64,
}

/// The rows of `outcomes-0`, calls and legacy loads apart.
fn outcome_rows(
    txn: &ReadTransaction,
) -> Result<(Vec<OutcomeRecord>, Vec<LoadRecord>), StoreError> {
    let table = txn.open_table(OUTCOMES).map_err(db("open outcomes-0"))?;
    let rows = table.iter().map_err(db("list outcomes"))?;
    let (mut calls, mut loads) = (Vec::new(), Vec::new());
    for row in rows {
        let (key, value) = row.map_err(db("read a row"))?;
        let (key, bytes) = (key.value(), value.value());
        // The role says which record a row is, so a bad row's error names
        // its real fault (an unknown kind, say), not "no variant matched".
        let is_load = serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|row| row["role"] == "load");
        if is_load {
            let l: LegacyLoad = decode(OUTCOMES.name(), &key, bytes)?;
            loads.push(LoadRecord {
                model: l.model,
                load_ms: l.latency_ms,
                memory_bytes: l.memory_bytes,
                time_ms: l.time_ms,
            });
        } else {
            calls.push(decode(OUTCOMES.name(), &key, bytes)?);
        }
    }
    Ok((calls, loads))
}

/// Every model load: those `outcomes-0` still holds first (they are
/// older), then `loads-0`.
fn loads(txn: &ReadTransaction) -> Result<Vec<LoadRecord>, StoreError> {
    let (_, mut loads) = outcome_rows(txn)?;
    let table = txn.open_table(LOADS).map_err(db("open loads-0"))?;
    let rows = table.iter().map_err(db("list loads"))?;
    loads.extend(decode_rows::<_, LoadRecord>(LOADS.name(), rows)?);
    Ok(loads)
}

fn conversation(
    txn: &ReadTransaction,
    conversation: &str,
) -> Result<Vec<ConversationMessage>, StoreError> {
    let table = txn
        .open_table(CONVERSATIONS)
        .map_err(db("open conversations-0"))?;
    let rows = table
        .range((conversation, 0)..=(conversation, u64::MAX))
        .map_err(db("read a conversation"))?;
    decode_rows(CONVERSATIONS.name(), rows)
}

fn checkpoints(txn: &ReadTransaction, task_id: &str) -> Result<Vec<CheckpointRecord>, StoreError> {
    let table = txn
        .open_table(CHECKPOINTS)
        .map_err(db("open checkpoints-0"))?;
    let rows = table
        .range((task_id, 0)..=(task_id, u64::MAX))
        .map_err(db("list checkpoints"))?;
    decode_rows(CHECKPOINTS.name(), rows)
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(db("encode a record as JSON"))
}

fn decode<T: DeserializeOwned>(
    table: &str,
    key: &dyn fmt::Debug,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Corrupt {
        table: table.to_owned(),
        key: format!("{key:?}"),
        reason: err.to_string(),
    })
}

fn decode_rows<K, T>(
    table: &str,
    rows: redb::Range<'_, K, &'static [u8]>,
) -> Result<Vec<T>, StoreError>
where
    K: redb::Key + 'static,
    for<'a> K::SelfType<'a>: fmt::Debug,
    T: DeserializeOwned,
{
    rows.map(|row| {
        let (key, value) = row.map_err(db("read a row"))?;
        // Bound first: the key's borrowed value must not outlive `key`,
        // which a tail expression's temporaries would.
        let decoded = decode(table, &key.value(), value.value());
        decoded
    })
    .collect()
}
