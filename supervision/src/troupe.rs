//! [`Troupe`]: the whole system as one handle, for embedding programs and
//! for troupe's own front doors (`troupe run`, `troupe chat`, `troupe
//! serve`). It owns the actor tree that [`boot`](crate::boot) assembles.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = troupe_config::Config::defaults();
//! let troupe = troupe_supervision::Troupe::start(config).await?;
//! let id = troupe.submit(troupe_supervision::TaskSpec::new("write a haiku about actors")).await?;
//! let task = troupe.wait(&id).await?;
//! println!("{}: {}", task.state, task.answer.unwrap_or_default());
//! troupe.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use troupe_agents::director::DirectorHandle;
use troupe_agents::learner::LearnerHandle;
use troupe_agents::memory::AgentMemory;
use troupe_agents::router::Router;
use troupe_agents::runtime::{AgentError, Control, Decision, PendingApproval, TroupeEvent};
use troupe_agents::runtime::{Approvals, TaskJournal};
use troupe_agents::ux::UxHandle;
use troupe_agents::ux::UxReply;
use troupe_agents::worker::remote::{PeerWorkers, WorkerHost};
use troupe_agents::worker::WorkerPool;
use troupe_host::ModelHostHandle;
use troupe_store::{JournalEntry, Store, SubtaskRecord, TaskEvent, TaskId, TaskRecord};
use troupe_tools::ToolRegistry;

use crate::boot::{boot, BootError, BootOptions};
use crate::supervisor::{ChildStatus, SupervisorHandle};

pub use troupe_agents::director::TaskSpec;

/// A task with its plan and journal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskView {
    /// The task.
    #[serde(flatten)]
    pub task: TaskRecord,
    /// Its subtasks (all plans; replaced ones are `cancelled`).
    pub subtasks: Vec<SubtaskRecord>,
    /// Its journal.
    pub events: Vec<JournalEntry>,
}

/// A running troupe.
pub struct Troupe {
    /// The models.
    pub(crate) host: ModelHostHandle,
    /// Where the agents' model requests go: the host, then each role's
    /// chain (cluster peers, remote providers).
    pub(crate) router: Router,
    /// The store.
    pub(crate) store: Store,
    /// The store and the bus.
    pub(crate) journal: TaskJournal,
    /// Calls waiting for a person.
    pub(crate) approvals: Approvals,
    /// The workers' tools (built-in and MCP), with the approval policy.
    pub(crate) tools: Arc<ToolRegistry>,
    /// Tasks.
    pub(crate) director: DirectorHandle,
    /// The conversation.
    pub(crate) ux: UxHandle,
    /// Model choice and outcomes.
    pub(crate) learner: LearnerHandle,
    /// Long-term memory and its sentence embedder (`None`: disabled, or the
    /// embedder is not installed).
    pub(crate) memory: Option<AgentMemory>,
    /// The root supervisor.
    pub(crate) supervisor: SupervisorHandle,
    /// Ends when the supervisor stops (escalation or shutdown).
    pub(crate) supervisor_done: JoinHandle<()>,
    /// Where the pools find other cluster nodes' workers; empty until the
    /// process joins a cluster.
    pub(crate) peer_workers: PeerWorkers,
    pub(crate) pools: Vec<WorkerPool>,
}

impl std::fmt::Debug for Troupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Troupe")
            .field("store", &self.store)
            .finish()
    }
}

impl Troupe {
    /// Starts troupe with `config`: the store under `config.data_dir`, the
    /// ModelHost, and the supervised actors. Unfinished tasks resume.
    ///
    /// # Errors
    /// [`BootError`]: the data dir is in use by another process, a pinned
    /// model fails to load, ...
    pub async fn start(config: troupe_config::Config) -> Result<Troupe, BootError> {
        Troupe::start_with(config, BootOptions::default()).await
    }

    /// [`Troupe::start`] with options (another engine, a budget, fault
    /// injection).
    ///
    /// # Errors
    /// As [`Troupe::start`].
    pub async fn start_with(
        config: troupe_config::Config,
        opts: BootOptions,
    ) -> Result<Troupe, BootError> {
        boot(&config, opts).await
    }

    /// Accepts a job; answers with its id once it is durable.
    ///
    /// # Errors
    /// [`AgentError::BadRequest`] for an empty or oversized job; store errors.
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskId, AgentError> {
        self.director.submit(spec).await
    }

    /// Every event from now on: journal entries, progress, UX messages,
    /// approvals.
    pub fn subscribe(&self) -> broadcast::Receiver<TroupeEvent> {
        self.journal.bus().subscribe()
    }

    /// Says `text` to the UX in `conversation`; the answer comes at once.
    ///
    /// # Errors
    /// [`AgentError::Stopped`].
    pub async fn chat(&self, conversation: &str, text: &str) -> Result<UxReply, AgentError> {
        self.ux.say(conversation, text).await
    }

    /// Cancels a task (it stops at its next step boundary).
    ///
    /// # Errors
    /// Unknown or finished task; store errors.
    pub async fn cancel(&self, id: &str) -> Result<(), AgentError> {
        self.director.control(id, Control::Cancel).await.map(|_| ())
    }

    /// Pauses a task at its next step boundary.
    ///
    /// # Errors
    /// As [`Troupe::cancel`].
    pub async fn pause(&self, id: &str) -> Result<(), AgentError> {
        self.director.control(id, Control::Pause).await.map(|_| ())
    }

    /// Resumes a paused task (also one paused by an earlier process).
    ///
    /// # Errors
    /// As [`Troupe::cancel`].
    pub async fn resume(&self, id: &str) -> Result<(), AgentError> {
        self.director.control(id, Control::Run).await.map(|_| ())
    }

    /// Tool calls waiting for a person.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        self.approvals.pending()
    }

    /// Approves or denies a waiting call (`id` or an unambiguous prefix).
    ///
    /// # Errors
    /// The id matches no waiting call.
    pub fn decide(
        &self,
        id: &str,
        approved: bool,
        reason: Option<String>,
        by: troupe_store::Approver,
    ) -> Result<PendingApproval, troupe_agents::runtime::UnknownApproval> {
        self.approvals.decide(
            id,
            Decision {
                approved,
                reason,
                by,
            },
        )
    }

    /// A task with its subtasks and journal.
    ///
    /// # Errors
    /// Store errors.
    pub async fn task(&self, id: &str) -> Result<Option<TaskView>, AgentError> {
        task_view(&self.store, id).await
    }

    /// Every task, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn tasks(&self) -> Result<Vec<TaskRecord>, AgentError> {
        Ok(self.store.tasks().await?)
    }

    /// Waits until task `id` has finished (succeeded, failed or cancelled)
    /// or is paused, and returns it.
    ///
    /// # Errors
    /// [`AgentError::UnknownTask`]; store errors.
    pub async fn wait(&self, id: &str) -> Result<TaskRecord, AgentError> {
        // Subscribe before reading, so an end between the two is not missed.
        let mut events = self.subscribe();
        loop {
            let task = self
                .store
                .task(id)
                .await?
                .ok_or_else(|| AgentError::UnknownTask(id.into()))?;
            if task.state.is_finished() || task.state == troupe_store::TaskState::Paused {
                return Ok(task);
            }
            loop {
                match events.recv().await {
                    Ok(TroupeEvent::Journal(e)) if e.task_id == id => {
                        if matches!(e.event, TaskEvent::Finished { .. } | TaskEvent::Paused) {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(AgentError::Stopped("event bus"))
                    }
                }
            }
        }
    }

    /// The ModelHost.
    pub fn model_host(&self) -> &ModelHostHandle {
        &self.host
    }

    /// Where the agents' model requests go: each role's chain (the local
    /// host, cluster peers, remote providers). `set_cluster` on it gives the
    /// `cluster` links their peers.
    pub fn router(&self) -> &troupe_agents::router::Router {
        &self.router
    }

    /// Where the worker pools find other cluster nodes' workers; `set` it
    /// when this process joins a cluster.
    pub fn peer_workers(&self) -> &troupe_agents::worker::remote::PeerWorkers {
        &self.peer_workers
    }

    /// A host that runs other cluster nodes' subtasks on this troupe's
    /// specialists (their tools, approval policy and models), working in
    /// `DATA_DIR/cluster-jobs`.
    pub fn worker_host(&self) -> WorkerHost {
        let scratch = self
            .pools
            .first()
            .map(|p| p.env().data_dir.join("cluster-jobs"))
            .unwrap_or_default();
        WorkerHost::new(self.pools.iter().map(|p| p.env().clone()), scratch)
    }

    /// The specialists' worker pools (their kinds, how busy they are).
    pub fn worker_pools(&self) -> &[WorkerPool] {
        &self.pools
    }

    /// The workers' tools (built-in and from MCP servers) under the
    /// configured approval policy.
    pub fn tools(&self) -> &std::sync::Arc<troupe_tools::ToolRegistry> {
        &self.tools
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Long-term memory and its sentence embedder; `None` when `[memory]`
    /// is disabled or the embedder is not installed.
    pub fn memory(&self) -> Option<&troupe_agents::memory::AgentMemory> {
        self.memory.as_ref()
    }

    /// The Learner's statistics: per task kind, complexity band and model.
    ///
    /// # Errors
    /// [`AgentError::Stopped`] when the Learner is not running.
    pub async fn learner_stats(&self) -> Result<Vec<troupe_agents::learner::StatsRow>, AgentError> {
        self.learner.stats().await
    }

    /// The supervisor's children and their restarts.
    pub async fn agents(&self) -> Vec<ChildStatus> {
        self.supervisor.children().await
    }

    /// Ends when the supervisor has stopped (it escalated a failure).
    pub fn supervisor_stopped(&mut self) -> &mut tokio::task::JoinHandle<()> {
        &mut self.supervisor_done
    }

    /// Stops the actors, the pools and the ModelHost (freeing the models).
    /// Unfinished tasks stay in the store and resume at the next boot.
    pub async fn shutdown(self) {
        // The host and the pools leave the supervisor first: its stop would
        // kill them, and they stop in their own way, after the agents.
        let supervisor = self.supervisor.cell();
        self.host.actor_cell().unlink(supervisor.clone());
        for pool in &self.pools {
            pool.actor_cell().unlink(supervisor.clone());
        }
        self.supervisor.stop();
        let _ = self.supervisor_done.await;
        for pool in &self.pools {
            pool.stop();
        }
        self.host.shutdown().await;
        let _ = self.host.actor_cell().wait(None).await;
        // Provider-call records are saved off the callers' path; the last
        // ones land before the store closes.
        self.router.flush_records().await;
        // Runs that were aborted and workers still stopping may hold store
        // handles a moment longer; closing it releases the data directory
        // now, so the next start (this process or another) gets it.
        if let Err(error) = self.store.close().await {
            tracing::debug!(%error, "the store was already closed");
        }
    }
}

/// A task with its subtasks and journal, read from `store`.
///
/// # Errors
/// Store errors.
pub async fn task_view(store: &Store, id: &str) -> Result<Option<TaskView>, AgentError> {
    // The journal first, the task record last: the three reads are not one
    // snapshot, and in this order a journal that holds `finished` always
    // comes with a record that says so. (The other order could show a
    // running task whose journal already ended, and a follower that skips
    // what it has seen would wait for an end that already went by.)
    let events = store.journal(id, 0).await?;
    let subtasks = store.subtasks(id).await?;
    let Some(task) = store.task(id).await? else {
        return Ok(None);
    };
    Ok(Some(TaskView {
        subtasks,
        events,
        task,
    }))
}
