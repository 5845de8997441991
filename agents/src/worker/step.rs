//! Running one action: the tool call (asking the person when the policy
//! says so), then journaling what it gave and committing the workspace.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use troupe_store::{now_ms, CheckpointRecord, TaskEvent};
use troupe_tools::{
    ApprovalRequest, CheckpointId, Observation, StepLock, ToolContext, ToolOutcome, Workspace,
    WorkspaceError,
};

use super::recovery::step_label;
use super::{SubtaskJob, WorkerEnv};
use crate::runtime::{AgentError, Control, Decision, PendingApproval, TroupeEvent};

/// Tries of a checkpoint before giving up: two subtasks of a task may
/// commit the shared workspace at the same moment, and git's index lock
/// lets only one through.
const CHECKPOINT_TRIES: u32 = 4;

/// What running an action came to.
pub(crate) enum ActionEnd {
    /// The tool ran (or was refused); this is what the model sees.
    Observed {
        observation: Observation,
        tool_ms: u64,
    },
    /// The task was paused while the call waited for the person.
    Paused,
    /// The task was cancelled while the call waited for the person.
    Cancelled,
}

/// What one job's steps run against.
pub(crate) struct StepCx<'a> {
    pub(crate) env: &'a WorkerEnv,
    pub(crate) job: &'a SubtaskJob,
    pub(crate) ws: Arc<Workspace>,
    /// The workspace's step lock while this job's tool runs and until its
    /// checkpoint is made (see [`Workspace::step_lock`]).
    pub(crate) step_lock: std::sync::Mutex<Option<StepLock>>,
}

impl<'a> StepCx<'a> {
    pub(crate) fn new(env: &'a WorkerEnv, job: &'a SubtaskJob, ws: Workspace) -> StepCx<'a> {
        StepCx {
            env,
            job,
            ws: Arc::new(ws),
            step_lock: std::sync::Mutex::new(None),
        }
    }

    /// Takes the workspace's step lock unless this job holds it already:
    /// waits while another subtask's tool runs in the shared workspace.
    pub(crate) async fn hold_step_lock(&self) -> Result<(), AgentError> {
        if self.step_lock.lock().is_ok_and(|held| held.is_some()) {
            return Ok(());
        }
        let lock = blocking(&self.ws, |ws| ws.step_lock()).await?;
        if let Ok(mut held) = self.step_lock.lock() {
            *held = Some(lock);
        }
        Ok(())
    }

    /// Lets the next subtask's tool run.
    pub(crate) fn release_step_lock(&self) {
        drop(self.take_step_lock());
    }

    /// The step lock, out of this job's hands: a tool call's task owns it
    /// while it runs, so that the lock lasts as long as the tool even when
    /// this worker is stopped meanwhile.
    fn take_step_lock(&self) -> Option<StepLock> {
        self.step_lock.lock().ok().and_then(|mut held| held.take())
    }

    fn put_step_lock(&self, lock: Option<StepLock>) {
        if let (Some(lock), Ok(mut held)) = (lock, self.step_lock.lock()) {
            *held = Some(lock);
        }
    }

    async fn record(&self, event: TaskEvent) -> Result<(), AgentError> {
        self.env.journal.record(&self.job.task_id, event).await?;
        Ok(())
    }

    /// Journals that step `step` is about to run `tool`.
    pub(crate) async fn started(
        &self,
        step: u32,
        thought: &str,
        tool: &str,
        args: &Value,
        tokens: u64,
    ) -> Result<(), AgentError> {
        self.record(TaskEvent::StepStarted {
            subtask: self.job.subtask.id.clone(),
            attempt: self.job.attempt,
            step,
            thought: thought.to_string(),
            tool: tool.to_string(),
            args: args.clone(),
            tokens,
        })
        .await
    }

    /// Runs `tool` with `args`. `earlier`: the person's decision on this
    /// very call, given before the worker that asked stopped.
    pub(crate) async fn run_tool(
        &self,
        tool: &str,
        args: Value,
        earlier: Option<bool>,
    ) -> Result<ActionEnd, AgentError> {
        // The memory tools store into the specialist's own namespace.
        let ctx =
            ToolContext::new(Arc::clone(&self.ws)).with_agent(self.env.specialist.kind.as_str());
        // Held from here until the step's checkpoint (`commit`), except
        // while the person is asked.
        self.hold_step_lock().await?;
        let started = Instant::now();
        let call = {
            let tools = Arc::clone(&self.env.tools);
            let ctx = ctx.clone();
            let name = tool.to_string();
            let held = self.take_step_lock();
            async move { (tools.call(&ctx, &name, args).await, held) }
        };
        let outcome = match guarded(tool, call).await {
            Err(panicked) => return Ok(observed(panicked, started)),
            Ok((outcome, held)) => {
                self.put_step_lock(held);
                outcome
            }
        };
        let request = match outcome {
            Err(error) => return Ok(observed(tool_failed(&self.ws, tool, &error), started)),
            Ok(ToolOutcome::Done(observation)) => return Ok(observed(observation, started)),
            Ok(ToolOutcome::NeedsApproval(request)) => request,
        };
        let mut tool_time = started.elapsed();
        // Nothing ran; other subtasks' tools may while the person thinks.
        self.release_step_lock();
        let decision = match earlier {
            Some(approved) => Decision {
                approved,
                reason: None,
                by: troupe_store::Approver::Replayed,
            },
            None => match self.ask(&request).await? {
                Asked::Decided(decision) => decision,
                Asked::Stopped(control) => {
                    // Forget the call; the step is redone (and asked again)
                    // when the job is handed out again.
                    let _ = self.env.tools.rejected(&request, None);
                    return Ok(match control {
                        Control::Cancel => ActionEnd::Cancelled,
                        _ => ActionEnd::Paused,
                    });
                }
            },
        };
        let observation = if decision.approved {
            self.hold_step_lock().await?;
            let again = Instant::now();
            let call = {
                let tools = Arc::clone(&self.env.tools);
                let request = request.clone();
                let held = self.take_step_lock();
                async move { (tools.call_approved(&ctx, &request).await, held) }
            };
            let observation = match guarded(tool, call).await {
                Err(panicked) => panicked,
                Ok((result, held)) => {
                    self.put_step_lock(held);
                    match result {
                        Err(error) => tool_failed(&self.ws, tool, &error),
                        Ok(observation) => observation,
                    }
                }
            };
            tool_time += again.elapsed();
            observation
        } else {
            self.env
                .tools
                .rejected(&request, decision.reason.as_deref())
        };
        Ok(ActionEnd::Observed {
            observation,
            tool_ms: millis(tool_time),
        })
    }

    /// Parks `request` for the person and waits for their answer, or for
    /// the task to be paused or cancelled.
    async fn ask(&self, request: &ApprovalRequest) -> Result<Asked, AgentError> {
        let task_id = &self.job.task_id;
        // Parked before it is journaled or announced, so whoever reacts to
        // either finds it waiting.
        let answer = self.env.approvals.ask(PendingApproval {
            task_id: task_id.clone(),
            subtask: self.job.subtask.id.clone(),
            request: request.clone(),
        });
        self.record(TaskEvent::ApprovalRequested {
            subtask: self.job.subtask.id.clone(),
            request_id: request.id.clone(),
            tool: request.tool.clone(),
            args: request.args.clone(),
        })
        .await?;
        self.env
            .journal
            .bus()
            .publish(TroupeEvent::ApprovalPending {
                task_id: task_id.clone(),
                request: request.clone(),
            });
        let mut control = self.job.control.clone();
        let decision = tokio::select! {
            answer = answer => answer.unwrap_or_else(|_| Decision {
                approved: false,
                reason: Some("the question could not be put to the person".to_string()),
                by: troupe_store::Approver::Unasked,
            }),
            stop = control.stopped() => return Ok(Asked::Stopped(stop)),
        };
        self.record(TaskEvent::ApprovalDecided {
            request_id: request.id.clone(),
            approved: decision.approved,
            by: Some(decision.by),
        })
        .await?;
        Ok(Asked::Decided(decision))
    }

    /// Journals step `step`'s observation, commits the workspace as its
    /// checkpoint and journals that. Returns the checkpoint.
    pub(crate) async fn commit(
        &self,
        step: u32,
        tool: &str,
        observation: &str,
        is_error: bool,
        tool_ms: u64,
    ) -> Result<String, AgentError> {
        let subtask = &self.job.subtask.id;
        self.record(TaskEvent::StepObserved {
            subtask: subtask.clone(),
            attempt: self.job.attempt,
            step,
            observation: observation.to_string(),
            is_error,
            tool_ms,
        })
        .await?;
        let label = step_label(subtask, self.job.attempt, step, tool);
        // A step that ran no tool (a final answer refused, output that could
        // not be read) takes the lock here: a checkpoint is whole steps.
        let made = async {
            self.hold_step_lock().await?;
            let id = checkpoint(&self.ws, &label).await?;
            self.committed(step, &label, &id.0).await?;
            Ok(id.0)
        }
        .await;
        self.release_step_lock();
        made
    }

    /// Journals that step `step` is checkpoint `commit` and records the
    /// checkpoint.
    pub(crate) async fn committed(
        &self,
        step: u32,
        label: &str,
        commit: &str,
    ) -> Result<(), AgentError> {
        let subtask = &self.job.subtask.id;
        self.record(TaskEvent::StepCommitted {
            subtask: subtask.clone(),
            attempt: self.job.attempt,
            step,
            checkpoint: commit.to_string(),
        })
        .await?;
        self.env
            .journal
            .store()
            .put_checkpoint(CheckpointRecord {
                task_id: self.job.task_id.clone(),
                subtask: subtask.clone(),
                step: label.to_string(),
                commit: commit.to_string(),
                time_ms: now_ms(),
            })
            .await?;
        Ok(())
    }
}

/// The person's answer, or why there was none.
enum Asked {
    Decided(Decision),
    Stopped(Control),
}

fn observed(observation: Observation, started: Instant) -> ActionEnd {
    ActionEnd::Observed {
        observation,
        tool_ms: millis(started.elapsed()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fault of the tool, as the model sees it (host paths left out; the
/// log has the full error).
fn tool_failed(ws: &Workspace, tool: &str, error: &troupe_tools::ToolError) -> Observation {
    tracing::warn!(tool, %error, "a tool failed");
    Observation::error(ws.without_host_paths(&format!("the tool `{tool}` failed: {error}")))
}

/// Runs a tool call on its own tokio task, so that a tool that panics
/// fails the step (an error observation) instead of killing the worker.
async fn guarded<T, F>(tool: &str, call: F) -> Result<T, Observation>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    match tokio::spawn(call).await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => {
            let payload = error.into_panic();
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            tracing::error!(tool, panic = %why, "a tool panicked");
            Err(Observation::error(format!(
                "the tool `{tool}` panicked: {why}"
            )))
        }
        Err(_) => Err(Observation::error(format!(
            "the tool `{tool}` was stopped before it finished"
        ))),
    }
}

/// Runs blocking workspace work (libgit2) off the async runtime. A panic in
/// it is carried on into the worker.
pub(crate) async fn blocking<T, F>(ws: &Arc<Workspace>, f: F) -> Result<T, AgentError>
where
    T: Send + 'static,
    F: FnOnce(&Workspace) -> Result<T, WorkspaceError> + Send + 'static,
{
    let ws = Arc::clone(ws);
    match tokio::task::spawn_blocking(move || f(&ws)).await {
        Ok(result) => Ok(result?),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(AgentError::Stopped("async runtime")),
    }
}

/// Commits the workspace as checkpoint `label`, retrying a few times.
pub(crate) async fn checkpoint(
    ws: &Arc<Workspace>,
    label: &str,
) -> Result<CheckpointId, AgentError> {
    let mut delay = Duration::from_millis(25);
    let mut tries = 0;
    loop {
        tries += 1;
        let owned = label.to_string();
        match blocking(ws, move |ws| ws.checkpoint(&owned)).await {
            Err(AgentError::Workspace(error)) if tries < CHECKPOINT_TRIES => {
                tracing::warn!(label, %error, "checkpoint failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}
