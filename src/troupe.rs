//! [`Troupe`]: the whole system as one handle, for embedding programs and
//! for troupe's own front doors (`troupe run`, `troupe chat`, `troupe
//! serve`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = troupe::config::Config::defaults();
//! let troupe = troupe::Troupe::start(config).await?;
//! let id = troupe.submit(troupe::TaskSpec::new("write a haiku about actors")).await?;
//! let task = troupe.wait(&id).await?;
//! println!("{}: {}", task.state, task.answer.unwrap_or_default());
//! troupe.shutdown().await;
//! # Ok(()) }
//! ```

use tokio::sync::broadcast;
use troupe_actors::model_host::ModelHostHandle;
use troupe_actors::runtime::{AgentError, Control, Decision, PendingApproval, TroupeEvent};
use troupe_actors::ux::UxReply;
use troupe_store::{JournalEntry, Store, SubtaskRecord, TaskEvent, TaskId, TaskRecord};
use troupe_supervision::{boot, BootError, BootOptions, ChildStatus, Tree};

pub use troupe_actors::director::TaskSpec;

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
    tree: Tree,
}

impl std::fmt::Debug for Troupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Troupe")
            .field("store", &self.tree.store)
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
        Ok(Troupe {
            tree: boot(&config, opts).await?,
        })
    }

    /// Accepts a job; answers with its id once it is durable.
    ///
    /// # Errors
    /// [`AgentError::BadRequest`] for an empty or oversized job; store errors.
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskId, AgentError> {
        self.tree.director.submit(spec).await
    }

    /// Every event from now on: journal entries, progress, UX messages,
    /// approvals.
    pub fn subscribe(&self) -> broadcast::Receiver<TroupeEvent> {
        self.tree.journal.bus().subscribe()
    }

    /// Says `text` to the UX in `conversation`; the answer comes at once.
    ///
    /// # Errors
    /// [`AgentError::Stopped`].
    pub async fn chat(&self, conversation: &str, text: &str) -> Result<UxReply, AgentError> {
        self.tree.ux.say(conversation, text).await
    }

    /// Cancels a task (it stops at its next step boundary).
    ///
    /// # Errors
    /// Unknown or finished task; store errors.
    pub async fn cancel(&self, id: &str) -> Result<(), AgentError> {
        self.tree
            .director
            .control(id, Control::Cancel)
            .await
            .map(|_| ())
    }

    /// Pauses a task at its next step boundary.
    ///
    /// # Errors
    /// As [`Troupe::cancel`].
    pub async fn pause(&self, id: &str) -> Result<(), AgentError> {
        self.tree
            .director
            .control(id, Control::Pause)
            .await
            .map(|_| ())
    }

    /// Resumes a paused task (also one paused by an earlier process).
    ///
    /// # Errors
    /// As [`Troupe::cancel`].
    pub async fn resume(&self, id: &str) -> Result<(), AgentError> {
        self.tree
            .director
            .control(id, Control::Run)
            .await
            .map(|_| ())
    }

    /// Tool calls waiting for a person.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        self.tree.approvals.pending()
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
    ) -> Result<PendingApproval, troupe_actors::runtime::UnknownApproval> {
        self.tree.approvals.decide(
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
        task_view(&self.tree.store, id).await
    }

    /// Every task, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn tasks(&self) -> Result<Vec<TaskRecord>, AgentError> {
        Ok(self.tree.store.tasks().await?)
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
                .tree
                .store
                .task(id)
                .await?
                .ok_or_else(|| AgentError::UnknownTask(id.to_string()))?;
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
        &self.tree.host
    }

    /// Where the agents' model requests go: each role's chain (the local
    /// host, cluster peers, remote providers). `set_cluster` on it gives the
    /// `cluster` links their peers.
    pub fn router(&self) -> &troupe_actors::router::Router {
        &self.tree.router
    }

    /// Where the worker pools find other cluster nodes' workers; `set` it
    /// when this process joins a cluster.
    pub fn peer_workers(&self) -> &troupe_actors::worker::remote::PeerWorkers {
        &self.tree.peer_workers
    }

    /// A host that runs other cluster nodes' subtasks on this troupe's
    /// workers (for `troupe_cluster::ClusterOptions::workers`).
    pub fn worker_host(&self) -> troupe_actors::worker::remote::WorkerHost {
        self.tree.worker_host()
    }

    /// The workers' tools (built-in and from MCP servers) under the
    /// configured approval policy.
    pub fn tools(&self) -> &std::sync::Arc<troupe_tools::ToolRegistry> {
        &self.tree.tools
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.tree.store
    }

    /// Long-term memory and its sentence embedder; `None` when `[memory]`
    /// is disabled or the embedder is not installed.
    pub fn memory(&self) -> Option<&troupe_actors::memory::AgentMemory> {
        self.tree.memory.as_ref()
    }

    /// The Learner's statistics: per task kind, complexity band and model.
    ///
    /// # Errors
    /// [`AgentError::Stopped`] when the Learner is not running.
    pub async fn learner_stats(&self) -> Result<Vec<troupe_actors::learner::StatsRow>, AgentError> {
        self.tree.learner.stats().await
    }

    /// The supervisor's children and their restarts.
    pub async fn agents(&self) -> Vec<ChildStatus> {
        self.tree.supervisor.children().await
    }

    /// Ends when the supervisor has stopped (it escalated a failure).
    pub fn supervisor_stopped(&mut self) -> &mut tokio::task::JoinHandle<()> {
        &mut self.tree.supervisor_done
    }

    /// Stops everything; unfinished tasks resume at the next start.
    pub async fn shutdown(self) {
        self.tree.shutdown().await;
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
