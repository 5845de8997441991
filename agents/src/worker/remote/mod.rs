//! Workers on other cluster nodes.
//!
//! A subtask attempt can run on a peer's worker instead of a local one:
//! when this node lacks the attempt's model, or when every local worker of
//! the specialist is busy and a peer has one free. The peer runs the same
//! tool loop in a scratch copy of the task's workspace, against its own
//! ModelHost, tools and approval policy. Nothing of the task lives only on
//! the peer:
//! - each journal entry the peer's worker makes comes back and is recorded
//!   here, so the attempt's steps are in this node's journal as they are
//!   taken;
//! - each step's file changes come back with its `step_committed` and are
//!   checkpointed in this node's workspace before that entry is recorded;
//! - a tool call that needs the person's approval is parked in this node's
//!   approvals (where the UX, the dashboard and the API see it) and the
//!   decision goes back;
//! - pause and cancel go to the peer and stop its worker at a step boundary.
//!
//! A peer lost mid-attempt is a lost worker ([`super::WorkerLost::PeerLost`]):
//! the Director hands the attempt out again, and the next worker (local or
//! on another peer) replays the committed steps from this journal.
//!
//! # Layout
//! - `mod.rs`: the wire types, [`WorkerPeers`] (how this node reaches its
//!   peers, implemented by troupe-cluster) and the [`PeerWorkers`] slot.
//! - `host`: [`WorkerHost`], the peer's side: runs jobs that peers send.
//! - `relay`: this node's side: sends a job, records what comes back.

mod host;
mod relay;

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use troupe_inference::backend::BoxFuture;
use troupe_store::{SubtaskRecord, TaskEvent, TaskId, TaskKind};
use troupe_tools::{ApprovalRequest, FileChange};

use crate::runtime::{Control, Decision};

pub use host::{WorkerHost, ABANDONED_AFTER, LONG_POLL};
pub(crate) use relay::{dispatch, Dispatch};

use super::SubtaskOutcome;

/// Most bytes of files and journal a job may carry to a peer; a larger
/// workspace runs its subtasks locally.
pub const MAX_JOB_BYTES: usize = 32 << 20;

/// A subtask attempt as it crosses to a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteJob {
    /// The specialist that takes it.
    pub kind: TaskKind,
    /// The task.
    pub task_id: TaskId,
    /// The task as the person wrote it.
    pub request: String,
    /// The subtask.
    pub subtask: SubtaskRecord,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The model to run it with.
    pub model: String,
    /// `("id: description", result)` of each subtask it depends on.
    pub dependencies: Vec<(String, String)>,
    /// The attempt's token budget.
    pub max_tokens: Option<u64>,
    /// The task's journal so far (the attempt's committed steps replay
    /// from it).
    pub journal: Vec<TaskEvent>,
    /// Every file of the task's workspace at its latest checkpoint.
    pub files: Vec<FileChange>,
}

/// What a peer's worker reports, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteUpdate {
    /// A journal entry. A `step_committed` carries the step's file changes
    /// and its checkpoint label; its checkpoint id is the peer's and is
    /// replaced by the one this node commits.
    Journal {
        /// The event.
        event: TaskEvent,
        /// The step's changes (only with `step_committed`).
        #[serde(default)]
        files: Vec<FileChange>,
        /// The step's checkpoint label (only with `step_committed`).
        #[serde(default)]
        label: Option<String>,
    },
    /// Live progress (not journaled).
    Progress {
        /// What is going on.
        text: String,
        /// Tokens used so far.
        tokens: u64,
    },
    /// A tool call waits for the person; answer it with
    /// [`WorkerPeers::decide`].
    Approval(ApprovalRequest),
    /// The attempt ended; nothing follows.
    Finished(SubtaskOutcome),
    /// The peer's worker died (panicked) before answering; nothing follows.
    Died(String),
}

impl RemoteUpdate {
    /// Whether nothing follows this update.
    pub fn is_last(&self) -> bool {
        matches!(self, RemoteUpdate::Finished(_) | RemoteUpdate::Died(_))
    }
}

/// What a node offers its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerOffer {
    /// The node's name.
    pub node: String,
    /// The models its ModelHost serves.
    pub models: Vec<String>,
    /// Its specialists, with their free workers.
    pub kinds: Vec<KindOffer>,
}

/// One specialist of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindOffer {
    /// The specialist's kind.
    pub kind: TaskKind,
    /// Its workers for peers' jobs.
    pub workers: u32,
    /// Of those, free now.
    pub free: u32,
}

impl WorkerOffer {
    /// Free workers of `kind` (0 when the node has no such specialist).
    pub fn free(&self, kind: TaskKind) -> u32 {
        self.kinds
            .iter()
            .find(|k| k.kind == kind)
            .map_or(0, |k| k.free)
    }
}

/// How this node reaches its peers' workers (troupe-cluster implements it
/// over ractor_cluster). Every call names the peer by node name; `id` is
/// the job's id on that peer.
pub trait WorkerPeers: Send + Sync {
    /// What each connected peer offers now.
    fn offers(&self) -> BoxFuture<Vec<WorkerOffer>>;
    /// Starts `job` on `node`; its id there, or why the peer refused (no
    /// free worker, no such specialist, unreachable).
    fn start(&self, node: &str, job: RemoteJob) -> BoxFuture<Result<u64, String>>;
    /// The job's updates since the last poll (waits a moment for one); an
    /// error when the peer is lost or no longer knows the job.
    fn poll(&self, node: &str, id: u64) -> BoxFuture<Result<Vec<RemoteUpdate>, String>>;
    /// The person's answer to an [`RemoteUpdate::Approval`].
    fn decide(&self, node: &str, id: u64, approval: &str, decision: Decision);
    /// Pause or cancel the job at its next step boundary.
    fn control(&self, node: &str, id: u64, control: Control);
    /// Drops the job (this node gave up on it).
    fn cancel(&self, node: &str, id: u64);
}

/// Where a node's pools find its peers' workers; empty until the node
/// joins a cluster. Cheap to clone: every clone is the same slot.
#[derive(Clone, Default)]
pub struct PeerWorkers {
    slot: Arc<RwLock<Option<Arc<dyn WorkerPeers>>>>,
}

impl std::fmt::Debug for PeerWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerWorkers")
            .field("set", &self.get().is_some())
            .finish()
    }
}

impl PeerWorkers {
    /// Gives the pools their peers; subtasks may run there from now on.
    pub fn set(&self, peers: Arc<dyn WorkerPeers>) {
        if let Ok(mut slot) = self.slot.write() {
            *slot = Some(peers);
        }
    }

    /// The peers, once set.
    pub fn get(&self) -> Option<Arc<dyn WorkerPeers>> {
        self.slot.read().ok().and_then(|slot| slot.clone())
    }
}
