//! The Director: takes tasks, plans them, hands subtasks to the specialists'
//! worker pools, retries and re-plans, and writes the final answer.
//!
//! Its mailbox only does quick work: each task's run is a tokio task
//! (`drive`) that the Director starts, steers through the task's
//! [`TaskControl`] and hears back from when it ends. On start it resumes
//! every task that was running when the last process stopped (paused tasks
//! stay paused until resumed).
//!
//! # Layout
//! - `mod.rs`: the actor, its messages and [`DirectorHandle`].
//! - `drive`: one task's run.
//! - [`plan`]: the plan's prompt, schema and checks.

mod direct;
mod drive;
pub mod plan;
mod recall;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Semaphore;
use troupe_config::AgentsConfig;
use troupe_store::{now_ms, TaskEvent, TaskId, TaskRecord, TaskState};
use troupe_tools::Workspace;

use crate::learner::LearnerHandle;
use crate::router::Router;
use crate::runtime::{AgentError, Control, TaskControl, TaskJournal};
use crate::worker::WorkerPool;
pub use drive::RunEnd;
use drive::RunEnv;

/// Longest job text accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A job to do.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    /// The job in plain language.
    pub request: String,
    /// A model for every call of the task.
    pub model: Option<String>,
    /// Higher first.
    pub priority: i32,
}

impl TaskSpec {
    /// A job with no model and priority 0.
    pub fn new(request: impl Into<String>) -> TaskSpec {
        TaskSpec {
            request: request.into(),
            ..TaskSpec::default()
        }
    }
}

// Local only; ractor's `cluster` feature (on for the workspace, see the
// root Cargo.toml) has no blanket impl.
impl ractor::Message for DirectorMsg {}

/// The Director's messages.
pub enum DirectorMsg {
    /// Accepts a task and starts it.
    Submit(TaskSpec, RpcReplyPort<Result<TaskId, AgentError>>),
    /// Pauses, resumes or cancels a task.
    Control(TaskId, Control, RpcReplyPort<Result<TaskState, AgentError>>),
    /// The tasks running in this process.
    Running(RpcReplyPort<Vec<TaskId>>),
    /// A run ended (sent by the run itself).
    RunEnded(TaskId, Result<RunEnd, String>),
}

/// What the Director starts from.
pub struct DirectorArgs {
    /// Models, specialists, limits.
    pub agents: AgentsConfig,
    /// Where workspaces live.
    pub data_dir: PathBuf,
    /// The models: the local host, then the Director's chain.
    pub router: Router,
    /// The store and the bus.
    pub journal: TaskJournal,
    /// Model choice and outcomes.
    pub learner: LearnerHandle,
    /// One pool per specialist, in `agents.specialists` order.
    pub pools: Vec<WorkerPool>,
    /// Whether to resume unfinished tasks on start.
    pub recover: bool,
    /// Long-term memory: similar past tasks for planning; finished tasks
    /// and their lessons are remembered. `None` runs without it.
    pub memory: Option<Arc<troupe_memory::Memory>>,
}

/// A run in progress: its control, and its task, aborted when the Director
/// that started it goes away (a restarted Director resumes the task from
/// the store instead).
struct RunSlot {
    control: TaskControl,
    abort: tokio::task::AbortHandle,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The Director's state.
pub struct DirectorState {
    env: Arc<RunEnv>,
    runs: HashMap<TaskId, RunSlot>,
}

/// The actor.
pub struct Director;

impl Actor for Director {
    type Msg = DirectorMsg;
    type State = DirectorState;
    type Arguments = DirectorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<DirectorMsg>,
        args: DirectorArgs,
    ) -> Result<DirectorState, ActorProcessingErr> {
        let slots = Arc::new(Semaphore::new(args.agents.workers as usize));
        let env = Arc::new(RunEnv {
            agents: args.agents,
            data_dir: args.data_dir,
            router: args.router,
            journal: args.journal,
            learner: args.learner,
            pools: args.pools,
            slots,
            memory: args.memory,
        });
        let mut state = DirectorState {
            env,
            runs: HashMap::new(),
        };
        if args.recover {
            recover(&me, &mut state).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        me: ActorRef<DirectorMsg>,
        msg: DirectorMsg,
        state: &mut DirectorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DirectorMsg::Submit(spec, reply) => {
                let _ = reply.send(submit(&me, state, spec).await);
            }
            DirectorMsg::Control(id, control, reply) => {
                let _ = reply.send(steer(&me, state, &id, control).await);
            }
            DirectorMsg::Running(reply) => {
                let _ = reply.send(state.runs.keys().cloned().collect());
            }
            DirectorMsg::RunEnded(id, end) => {
                // Only the run that ended: a resume may already have
                // started the next one.
                if state
                    .runs
                    .get(&id)
                    .is_some_and(|slot| slot.abort.is_finished())
                {
                    state.runs.remove(&id);
                }
                match end {
                    Ok(end) => tracing::info!(task = %id, ?end, "run ended"),
                    Err(error) => tracing::warn!(task = %id, %error, "run failed"),
                }
            }
        }
        Ok(())
    }
}

/// Restarts every task a previous process left unfinished and not paused.
async fn recover(me: &ActorRef<DirectorMsg>, state: &mut DirectorState) -> Result<(), AgentError> {
    let journal = state.env.journal.clone();
    for task in journal.store().unfinished_tasks().await? {
        if task.state == TaskState::Paused {
            continue;
        }
        journal
            .record(
                &task.id,
                TaskEvent::Recovered {
                    detail: format!("resumed after a restart (it was {})", task.state),
                },
            )
            .await?;
        tracing::info!(task = %task.id, state = %task.state, "resuming an unfinished task");
        start_run(me, state, task.id);
    }
    Ok(())
}

fn new_task_id() -> TaskId {
    format!("t-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff).into()
}

async fn submit(
    me: &ActorRef<DirectorMsg>,
    state: &mut DirectorState,
    spec: TaskSpec,
) -> Result<TaskId, AgentError> {
    let request = spec.request.trim().to_string();
    if request.is_empty() {
        return Err(AgentError::BadRequest("empty".to_string()));
    }
    if request.len() > MAX_REQUEST_BYTES {
        return Err(AgentError::BadRequest(format!(
            "{} bytes long; the most is {MAX_REQUEST_BYTES}",
            request.len()
        )));
    }
    let id = new_task_id();
    let data_dir = state.env.data_dir.clone();
    let ws_id = id.clone();
    tokio::task::spawn_blocking(move || Workspace::create(&data_dir, &ws_id))
        .await
        .map_err(|_| AgentError::Stopped("workspace thread"))??;
    let now = now_ms();
    let task = TaskRecord {
        id: id.clone(),
        request: request.clone(),
        model: spec.model,
        priority: spec.priority,
        state: TaskState::Queued,
        created_ms: now,
        updated_ms: now,
        answer: None,
        error: None,
        plans: 0,
    };
    state
        .env
        .journal
        .record_with_task(task, TaskEvent::Submitted { request })
        .await?;
    start_run(me, state, id.clone());
    Ok(id)
}

fn start_run(me: &ActorRef<DirectorMsg>, state: &mut DirectorState, id: TaskId) {
    let control = TaskControl::new();
    let watch = control.watch();
    let env = Arc::clone(&state.env);
    let me = me.clone();
    let task_id = id.clone();
    // A panic inside the run must not leave the task marked running in this
    // process: it comes back as a JoinError and the Director hears of it.
    let run = tokio::spawn(drive::run_task(env, id.clone(), watch));
    let abort = run.abort_handle();
    tokio::spawn(async move {
        let end = match run.await {
            Ok(Ok(end)) => Ok(end),
            Ok(Err(error)) => Err(error.to_string()),
            Err(join) if join.is_cancelled() => return,
            Err(join) => Err(format!("the run panicked: {join}")),
        };
        let _ = me.cast(DirectorMsg::RunEnded(task_id, end));
    });
    state.runs.insert(id, RunSlot { control, abort });
}

async fn steer(
    me: &ActorRef<DirectorMsg>,
    state: &mut DirectorState,
    id: &str,
    control: Control,
) -> Result<TaskState, AgentError> {
    let store = state.env.journal.store().clone();
    let mut task = store
        .task(id)
        .await?
        .ok_or_else(|| AgentError::UnknownTask(id.into()))?;
    let invalid = |action| AgentError::InvalidState {
        id: id.into(),
        state: task.state.to_string(),
        action,
    };
    if task.state.is_finished() {
        let action = match control {
            Control::Run => "resume",
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        };
        return Err(invalid(action));
    }
    match (control, state.runs.get(id)) {
        // Running here: the run stops at its next step boundary.
        (Control::Pause | Control::Cancel, Some(run)) => {
            run.control.set(control);
            Ok(task.state)
        }
        // The run already stopped for the pause (it writes Paused as its
        // last act): start the next one.
        (Control::Run, Some(run)) if task.state == TaskState::Paused || run.abort.is_finished() => {
            resume(me, state, task).await
        }
        // Not stopped yet: it simply goes on.
        (Control::Run, Some(run)) => {
            run.control.set(Control::Run);
            Ok(task.state)
        }
        (Control::Pause, None) => {
            if task.state == TaskState::Paused {
                return Ok(TaskState::Paused);
            }
            task.state = TaskState::Paused;
            task.updated_ms = now_ms();
            state
                .env
                .journal
                .record_with_task(task, TaskEvent::Paused)
                .await?;
            Ok(TaskState::Paused)
        }
        (Control::Cancel, None) => {
            task.state = TaskState::Cancelled;
            task.error = Some("cancelled by the person".to_string());
            task.updated_ms = now_ms();
            state
                .env
                .journal
                .record_with_task(
                    task,
                    TaskEvent::Finished {
                        state: TaskState::Cancelled,
                        summary: "cancelled by the person".to_string(),
                    },
                )
                .await?;
            Ok(TaskState::Cancelled)
        }
        (Control::Run, None) => resume(me, state, task).await,
    }
}

/// Marks a paused task running (durably, so a caller that reads it next
/// sees it running) and starts its run.
async fn resume(
    me: &ActorRef<DirectorMsg>,
    state: &mut DirectorState,
    mut task: TaskRecord,
) -> Result<TaskState, AgentError> {
    if task.state == TaskState::Paused {
        task.state = TaskState::Running;
        task.updated_ms = now_ms();
        state
            .env
            .journal
            .record_with_task(task.clone(), TaskEvent::Resumed)
            .await?;
    }
    start_run(me, state, task.id);
    Ok(TaskState::Running)
}

/// The public way to the Director. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DirectorHandle {
    actor: crate::runtime::ActorSlot<DirectorMsg>,
}

impl DirectorHandle {
    /// Wraps a running Director.
    pub fn new(actor: crate::runtime::ActorSlot<DirectorMsg>) -> DirectorHandle {
        DirectorHandle { actor }
    }

    /// The actor now.
    pub fn actor(&self) -> ActorRef<DirectorMsg> {
        self.actor.get()
    }

    /// Accepts a job; answers with its id once it is durable.
    ///
    /// # Errors
    /// [`AgentError::BadRequest`] for an empty or oversized job, store and
    /// workspace errors, [`AgentError::Stopped`].
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskId, AgentError> {
        call(&self.actor.get(), |reply| DirectorMsg::Submit(spec, reply)).await?
    }

    /// Pauses (`Control::Pause`), resumes (`Control::Run`) or cancels a task.
    /// A running task stops at its next step boundary.
    ///
    /// # Errors
    /// [`AgentError::UnknownTask`], [`AgentError::InvalidState`] for a
    /// finished task, store errors, [`AgentError::Stopped`].
    pub async fn control(&self, id: &str, control: Control) -> Result<TaskState, AgentError> {
        let id = TaskId::from(id);
        call(&self.actor.get(), |reply| {
            DirectorMsg::Control(id, control, reply)
        })
        .await?
    }

    /// Tasks running in this process.
    ///
    /// # Errors
    /// [`AgentError::Stopped`].
    pub async fn running(&self) -> Result<Vec<TaskId>, AgentError> {
        call(&self.actor.get(), DirectorMsg::Running).await
    }
}

async fn call<T: Send + 'static>(
    actor: &ActorRef<DirectorMsg>,
    msg: impl FnOnce(RpcReplyPort<T>) -> DirectorMsg,
) -> Result<T, AgentError> {
    match actor.call(msg, None).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        _ => Err(AgentError::Stopped("Director")),
    }
}
