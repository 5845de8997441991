//! [`Store`], the handle the rest of troupe holds.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use redb::{Database, DatabaseError};
use tokio::sync::oneshot;

use crate::commands::{Answer, Command, ReadOp, WriteOp};
use crate::owner::OwnerThread;
use crate::tables;
use crate::types::{
    CheckpointRecord, ConversationMessage, JournalEntry, LoadRecord, OutcomeRecord, ProviderCall,
    Speaker, SubtaskRecord, TaskEvent, TaskRecord,
};
use crate::StoreError;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "troupe.redb";

/// troupe's durable state: a cloneable async handle to the thread that owns
/// the redb database (see the crate docs).
///
/// Every write is durable when its call returns. The owner thread ends, and
/// the database file is closed and unlocked, when the last clone is dropped;
/// that drop waits for the batch in progress to finish (milliseconds), so a
/// later [`Store::open`] of the same directory succeeds.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Fields drop in declaration order: the sender goes first, which ends the
    // owner thread's loop, and only then does `owner` join the thread.
    commands: Sender<Command>,
    owner: OwnerThread,
    path: PathBuf,
    commits: Arc<AtomicU64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when needed) `data_dir/troupe.redb` and starts the
    /// owner thread `troupe-store`.
    ///
    /// Fails with [`StoreError::InUse`] when the database is already open,
    /// whether by another troupe process or by another `Store` in this one:
    /// redb 4.4 locks the file with OS locks tied to the open file (on Linux
    /// open-file-description `fcntl` locks, plus the `flock` of older redb;
    /// `flock`/`LockFileEx` elsewhere), which the kernel enforces between
    /// processes and releases when the process dies, even by SIGKILL.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::InUse { path }),
            Err(source) => return Err(StoreError::Open { path, source }),
        };
        tables::create_all(&db)?;
        let (commands, receiver) = crossbeam_channel::unbounded();
        let commits = Arc::new(AtomicU64::new(0));
        let owner = OwnerThread::spawn(db, receiver, commits.clone()).map_err(StoreError::Spawn)?;
        Ok(Store {
            inner: Arc::new(Inner {
                commands,
                owner,
                path,
                commits,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many write transactions the owner thread has committed since
    /// [`Store::open`] (for tests of the batching).
    #[doc(hidden)]
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Writes `task`, replacing any record with its id.
    pub async fn put_task(&self, task: TaskRecord) -> Result<(), StoreError> {
        self.send_write(WriteOp::PutTask(task)).await.map(drop)
    }

    /// The task with this id.
    pub async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        match self.send_read(ReadOp::Task(id.to_owned())).await? {
            Answer::Task(task) => Ok(task),
            other => Err(mismatch(other)),
        }
    }

    /// Every task, oldest first (by `created_ms`, then id).
    pub async fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.list_tasks(false).await
    }

    /// Tasks that are not succeeded, failed or cancelled, oldest first: what
    /// recovery resumes on boot.
    pub async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.list_tasks(true).await
    }

    async fn list_tasks(&self, unfinished_only: bool) -> Result<Vec<TaskRecord>, StoreError> {
        match self.send_read(ReadOp::Tasks { unfinished_only }).await? {
            Answer::Tasks(tasks) => Ok(tasks),
            other => Err(mismatch(other)),
        }
    }

    /// Writes each subtask, replacing any record with its task and id; all
    /// of them or none.
    pub async fn put_subtasks(&self, subtasks: Vec<SubtaskRecord>) -> Result<(), StoreError> {
        self.send_write(WriteOp::PutSubtasks(subtasks))
            .await
            .map(drop)
    }

    /// A task's subtasks in id order by number (`s2` before `s10`).
    pub async fn subtasks(&self, task_id: &str) -> Result<Vec<SubtaskRecord>, StoreError> {
        match self.send_read(ReadOp::Subtasks(task_id.to_owned())).await? {
            Answer::Subtasks(subtasks) => Ok(subtasks),
            other => Err(mismatch(other)),
        }
    }

    /// Appends `event` to the task's journal, giving it the next seq (from
    /// 0, without gaps) and the current time.
    pub async fn append(
        &self,
        task_id: &str,
        event: TaskEvent,
    ) -> Result<JournalEntry, StoreError> {
        let op = WriteOp::Append {
            task_id: task_id.to_owned(),
            event,
        };
        self.send_entry(op).await
    }

    /// Writes `task` and appends `event` to its journal in one transaction:
    /// after a crash either both are there or neither is.
    pub async fn append_with_task(
        &self,
        task: TaskRecord,
        event: TaskEvent,
    ) -> Result<JournalEntry, StoreError> {
        self.send_entry(WriteOp::AppendWithTask { task, event })
            .await
    }

    async fn send_entry(&self, op: WriteOp) -> Result<JournalEntry, StoreError> {
        match self.send_write(op).await? {
            Answer::Entry(entry) => Ok(entry),
            other => Err(mismatch(other)),
        }
    }

    /// The task's journal from `from_seq` on, in order.
    pub async fn journal(
        &self,
        task_id: &str,
        from_seq: u64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let op = ReadOp::Journal {
            task_id: task_id.to_owned(),
            from_seq,
        };
        match self.send_read(op).await? {
            Answer::Journal(entries) => Ok(entries),
            other => Err(mismatch(other)),
        }
    }

    /// Records what a model call or a subtask came to.
    pub async fn record_outcome(&self, outcome: OutcomeRecord) -> Result<(), StoreError> {
        self.send_write(WriteOp::RecordOutcome(outcome))
            .await
            .map(drop)
    }

    /// Records a model load.
    pub async fn record_load(&self, load: LoadRecord) -> Result<(), StoreError> {
        self.send_write(WriteOp::RecordLoad(load)).await.map(drop)
    }

    /// Every model load, in the order they were recorded.
    pub async fn loads(&self) -> Result<Vec<LoadRecord>, StoreError> {
        match self.send_read(ReadOp::Loads).await? {
            Answer::Loads(loads) => Ok(loads),
            other => Err(mismatch(other)),
        }
    }

    /// Every outcome, in the order they were recorded.
    pub async fn outcomes(&self) -> Result<Vec<OutcomeRecord>, StoreError> {
        match self.send_read(ReadOp::Outcomes).await? {
            Answer::Outcomes(outcomes) => Ok(outcomes),
            other => Err(mismatch(other)),
        }
    }

    /// Records one request a provider (local, a cluster peer or a remote
    /// server) served or failed.
    pub async fn record_provider_call(&self, call: ProviderCall) -> Result<(), StoreError> {
        self.send_write(WriteOp::RecordProviderCall(call))
            .await
            .map(drop)
    }

    /// Every provider call, in the order they were recorded.
    pub async fn provider_calls(&self) -> Result<Vec<ProviderCall>, StoreError> {
        match self.send_read(ReadOp::ProviderCalls).await? {
            Answer::ProviderCalls(calls) => Ok(calls),
            other => Err(mismatch(other)),
        }
    }

    /// Appends a message to a conversation, giving it the next seq and the
    /// current time.
    pub async fn append_message(
        &self,
        conversation: &str,
        role: Speaker,
        content: &str,
    ) -> Result<ConversationMessage, StoreError> {
        let op = WriteOp::AppendMessage {
            conversation: conversation.to_owned(),
            role,
            content: content.to_owned(),
        };
        match self.send_write(op).await? {
            Answer::Message(message) => Ok(message),
            other => Err(mismatch(other)),
        }
    }

    /// A conversation's messages, in order.
    pub async fn conversation(
        &self,
        conversation: &str,
    ) -> Result<Vec<ConversationMessage>, StoreError> {
        match self
            .send_read(ReadOp::Conversation(conversation.to_owned()))
            .await?
        {
            Answer::Conversation(messages) => Ok(messages),
            other => Err(mismatch(other)),
        }
    }

    /// Appends a checkpoint to its task's list.
    pub async fn put_checkpoint(&self, cp: CheckpointRecord) -> Result<(), StoreError> {
        self.send_write(WriteOp::PutCheckpoint(cp)).await.map(drop)
    }

    /// A task's checkpoints, in the order they were put.
    pub async fn checkpoints(&self, task_id: &str) -> Result<Vec<CheckpointRecord>, StoreError> {
        match self
            .send_read(ReadOp::Checkpoints(task_id.to_owned()))
            .await?
        {
            Answer::Checkpoints(checkpoints) => Ok(checkpoints),
            other => Err(mismatch(other)),
        }
    }

    /// Closes the database now, even while other clones of this handle
    /// exist: every write acknowledged before is durable, the file lock is
    /// released when this returns, and every later call (through any clone)
    /// fails with [`StoreError::Closed`]. A shutdown uses it so that the
    /// data directory is free at once, whatever tasks still hold a handle.
    ///
    /// # Errors
    /// [`StoreError::Closed`] when it was already closed.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.send(Command::Close).await.map(drop)
    }

    async fn send_write(&self, op: WriteOp) -> Result<Answer, StoreError> {
        self.send(|reply| Command::Write(Box::new(op), reply)).await
    }

    async fn send_read(&self, op: ReadOp) -> Result<Answer, StoreError> {
        self.send(|reply| Command::Read(op, reply)).await
    }

    async fn send(
        &self,
        command: impl FnOnce(crate::commands::Reply) -> Command,
    ) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// The owner thread answered a command with another command's kind of
/// answer: a bug in this crate, reported rather than panicked on.
fn mismatch(answer: Answer) -> StoreError {
    StoreError::Database(format!(
        "unexpected answer from the owner thread: {answer:?}"
    ))
}
