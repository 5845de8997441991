//! The thread that owns the `redb::Database`, and how it batches writes.
//!
//! Every command already queued when the thread wakes is one batch. All of
//! the batch's writes are applied in one write transaction, committed with
//! immediate durability, and only then answered: a caller that has its reply
//! has a write that survives a SIGKILL, and N concurrent writers pay for
//! about one fsync, not N. The batch's reads are answered after that commit,
//! from one read transaction, so a read sees every write acknowledged before
//! it was sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use redb::{Database, Durability, ReadableDatabase};
use tracing::{debug, warn};

use crate::commands::{Answer, Command, ReadOp, Reply, WriteOp};
use crate::error::{db, StoreError};

/// The most commands one batch takes, so that a steady stream of writers
/// cannot hold a batch's replies back indefinitely.
const MAX_BATCH: usize = 1024;

/// The owner thread; dropping this waits for it to end (and so for the
/// database file to be closed and unlocked).
#[derive(Debug)]
pub(crate) struct OwnerThread(Option<JoinHandle<()>>);

impl OwnerThread {
    /// Starts the thread `troupe-store` serving `commands` until every
    /// sender is gone.
    pub(crate) fn spawn(
        db: Database,
        commands: Receiver<Command>,
        commits: Arc<AtomicU64>,
    ) -> std::io::Result<OwnerThread> {
        let owner = Owner { db, commits };
        let thread = std::thread::Builder::new()
            .name("troupe-store".into())
            .spawn(move || owner.run(&commands))?;
        Ok(OwnerThread(Some(thread)))
    }
}

impl Drop for OwnerThread {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            if thread.join().is_err() {
                warn!("the store's owner thread panicked");
            }
        }
    }
}

struct Owner {
    db: Database,
    commits: Arc<AtomicU64>,
}

impl Owner {
    fn run(self, commands: &Receiver<Command>) {
        let mut closing = Vec::new();
        while let Ok(first) = commands.recv() {
            let mut writes = Vec::new();
            let mut reads = Vec::new();
            let queued = commands.try_iter().take(MAX_BATCH - 1);
            for command in std::iter::once(first).chain(queued) {
                match command {
                    Command::Write(op, reply) => writes.push((op, reply)),
                    Command::Read(op, reply) => reads.push((op, reply)),
                    Command::Close(reply) => closing.push(reply),
                }
            }
            self.write(writes);
            self.read(reads);
            if !closing.is_empty() {
                break;
            }
        }
        debug!("closing the database");
        // Dropping the database releases its file lock; only then is the
        // close answered, so the caller may reopen the directory at once.
        drop(self);
        for reply in closing {
            let _ = reply.send(Ok(Answer::Done));
        }
    }

    fn write(&self, writes: Vec<(Box<WriteOp>, Reply)>) {
        if writes.is_empty() {
            return;
        }
        let ops: Vec<&WriteOp> = writes.iter().map(|(op, _)| &**op).collect();
        match self.transact(&ops) {
            Ok(answers) => {
                for ((_, reply), answer) in writes.into_iter().zip(answers) {
                    // A caller that stopped waiting still has its write.
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(err) if writes.len() == 1 => {
                if let Some((_, reply)) = writes.into_iter().next() {
                    let _ = reply.send(Err(err));
                }
            }
            // One bad write must not fail the others that happened to share
            // its batch: give each its own transaction and its own answer.
            Err(err) => {
                warn!(%err, writes = writes.len(), "a batch of writes failed; retrying them one by one");
                for (op, reply) in writes {
                    let answer = self.transact(&[&op]).and_then(|answers| {
                        let missing = || StoreError::Database("a write had no answer".into());
                        answers.into_iter().next().ok_or_else(missing)
                    });
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Applies `ops` in one write transaction and commits it, or changes
    /// nothing.
    fn transact(&self, ops: &[&WriteOp]) -> Result<Vec<Answer>, StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(db("begin a write transaction"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(db("ask for immediate durability"))?;
        match ops.iter().map(|op| op.apply(&txn)).collect() {
            Ok(answers) => {
                txn.commit().map_err(db("commit"))?;
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(answers)
            }
            Err(err) => {
                if let Err(abort) = txn.abort() {
                    warn!(%abort, "aborting a failed write transaction failed too");
                }
                Err(err)
            }
        }
    }

    fn read(&self, reads: Vec<(ReadOp, Reply)>) {
        if reads.is_empty() {
            return;
        }
        match self.db.begin_read() {
            Ok(txn) => {
                for (op, reply) in reads {
                    let _ = reply.send(op.apply(&txn));
                }
            }
            Err(err) => {
                for (_, reply) in reads {
                    let _ = reply.send(Err(db("begin a read transaction")(&err)));
                }
            }
        }
    }
}
