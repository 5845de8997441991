//! The Workers: the specialists' tool loop, run as a ractor factory pool
//! per specialist (general, code, research).
//!
//! A worker takes one [`SubtaskJob`] at a time and runs its tool loop: it
//! asks the model for one step, constrained to a JSON Schema (an action
//! `{thought, action: {tool, args}}` or an answer `{thought, final}`), runs
//! the action through the [`ToolRegistry`] (asking the person when the
//! approval policy says so), and shows the model what came back, until the
//! model gives its final answer or a budget runs out. Every step is
//! journaled as it goes (`StepStarted`, `StepObserved`, `StepCommitted`)
//! and ends in a checkpoint of the task's workspace, so a worker that dies
//! loses at most the step it was on: the next worker to take the job
//! replays the committed steps from the journal instead of asking the model
//! again, and finishes or redoes the interrupted one.
//!
//! # Layout
//! - `mod.rs`: what the Director hands in and gets back.
//! - `pool`: [`WorkerPool`], the ractor factory and its workers.
//! - `tool_loop`: one job from start to outcome.
//! - `step`: running one action: the tool call, approval, the checkpoint.
//! - `prompt`: the chat sent to the model, pruning to its context, the
//!   step schema and parsing the reply.
//! - `recovery`: rebuilding an attempt's transcript from the journal.
//! - [`remote`]: attempts run by a worker on another cluster node.

mod compact;
mod pool;
mod prompt;
mod recovery;
pub mod remote;
mod step;
mod tool_loop;

use std::path::PathBuf;
use std::sync::Arc;

use troupe_config::SpecialistConfig;
use troupe_store::{SubtaskId, SubtaskRecord, TaskId};
use troupe_tools::ToolRegistry;

use crate::router::Router;
use crate::runtime::{Approvals, ControlWatch, TaskJournal};

pub use pool::{WorkerPool, WorkerSeat};

/// A test hook called in the worker actor before each step, with where the
/// worker is. A test makes it panic to kill the worker at a chosen step.
pub type FaultHook = Arc<dyn Fn(&StepPoint) + Send + Sync>;

/// Where a worker is: the step it is about to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPoint {
    /// The task.
    pub task_id: TaskId,
    /// The subtask.
    pub subtask: SubtaskId,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The step about to be taken, from 1.
    pub step: u32,
}

/// What the workers of one specialist share. Cheap to clone: each worker
/// the factory builds (and rebuilds after a crash) gets a clone.
#[derive(Clone)]
pub struct WorkerEnv {
    /// The specialist: its kind and budgets.
    pub specialist: SpecialistConfig,
    /// The models: the local host, then the Workers' chain.
    pub router: Router,
    /// The store and the event bus; steps are recorded durably, then published.
    pub journal: TaskJournal,
    /// The tools and the approval policy.
    pub tools: Arc<ToolRegistry>,
    /// Where calls that need a person wait.
    pub approvals: Approvals,
    /// The data directory; the task's workspace is
    /// `Workspace::open(&data_dir, task_id)`.
    pub data_dir: PathBuf,
    /// A test hook run before each step.
    pub faults: Option<FaultHook>,
    /// Other cluster nodes' workers, once this node joins a cluster.
    pub peers: remote::PeerWorkers,
}

impl std::fmt::Debug for WorkerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerEnv")
            .field("specialist", &self.specialist.kind)
            .field("data_dir", &self.data_dir)
            .field("faults", &self.faults.is_some())
            .finish_non_exhaustive()
    }
}

/// One subtask attempt to run.
#[derive(Debug, Clone)]
pub struct SubtaskJob {
    /// The task.
    pub task_id: TaskId,
    /// The task as the person wrote it.
    pub request: String,
    /// The subtask: id, description, kind, complexity, acceptance.
    pub subtask: SubtaskRecord,
    /// The attempt, from 1. Handing out the same attempt again (after a
    /// worker died or the task was paused) continues it from the journal.
    pub attempt: u32,
    /// The model to run it with.
    pub model: String,
    /// `("id: description", result)` of each subtask it depends on.
    pub dependencies: Vec<(String, String)>,
    /// Pause and cancel, read at each step boundary.
    pub control: ControlWatch,
    /// The attempt's token budget (prompt + completion over all steps);
    /// `None`: the specialist's `max_tokens`.
    pub max_tokens: Option<u64>,
}

/// What a job came to. `tokens` counts the prompt and completion tokens the
/// model used in this run of the job; steps replayed from the journal were
/// counted by the run that made them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SubtaskOutcome {
    /// The model gave its final answer and it was accepted.
    Succeeded {
        /// The answer.
        result: String,
        /// Tokens used in this run.
        tokens: u64,
        /// Steps of the attempt, the final answer included.
        steps: u32,
    },
    /// The attempt gave up: a budget ran out or the model could not be used.
    Failed {
        /// Why, in words.
        reason: String,
        /// Tokens used in this run.
        tokens: u64,
        /// Steps of the attempt that were taken.
        steps: u32,
        /// Whether it stopped because the token budget ran out (the
        /// Learner retries such a run with a larger budget).
        hit_budget: bool,
    },
    /// Stopped at a step boundary because the task was paused; the same
    /// attempt continues from the journal when it is handed out again.
    Paused {
        /// Tokens used in this run.
        tokens: u64,
    },
    /// Stopped because the task was cancelled.
    Cancelled {
        /// Tokens used in this run.
        tokens: u64,
    },
}

/// The job got no answer: its worker died or the pool stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerLost {
    /// The worker running the job died (panicked) before answering; the
    /// factory has replaced it.
    #[error("the {kind} worker running the subtask died before answering")]
    Died {
        /// The specialist.
        kind: String,
    },
    /// The pool has stopped.
    #[error("the {kind} worker pool has stopped")]
    Stopped {
        /// The specialist.
        kind: String,
    },
    /// The cluster node running the job was lost (or its worker died)
    /// before answering; the journal holds the steps it committed.
    #[error("the {kind} worker on node {node} was lost: {reason}")]
    PeerLost {
        /// The specialist.
        kind: String,
        /// The node.
        node: String,
        /// What happened, as far as this node can tell.
        reason: String,
    },
}
