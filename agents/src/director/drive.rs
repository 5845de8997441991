//! One task's run, from plan to answer. It runs as a tokio task the
//! Director spawns, so the Director's mailbox never waits on a task: the
//! Director only starts runs, flips their controls and hears when they end.
//!
//! A run is restartable at any point: everything it decides is in the store
//! (task and subtask records, the journal) before it acts on it, so a run
//! started again after a crash, a pause or a lost worker picks up where the
//! last one stopped. Subtasks marked running are resumed with the same
//! attempt; the worker replays their committed steps from the journal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use troupe_config::AgentsConfig;
use troupe_inference::backend::GenerateRequest;
use troupe_store::{
    now_ms, OutcomeRecord, SubtaskId, SubtaskRecord, SubtaskState, TaskEvent, TaskId, TaskRecord,
    TaskState,
};
use troupe_tools::Workspace;

mod planning;

use super::recall;
use crate::learner::{estimate_tokens, LearnerHandle, RecommendRequest, Role};
use crate::router::{Call, Route, Router};
use crate::runtime::{AgentError, Control, ControlWatch, TaskJournal};
use crate::worker::{SubtaskJob, SubtaskOutcome, WorkerPool};

/// Times a subtask is handed out again after its worker died mid-way.
const MAX_LOST: u32 = 3;
/// Attempts per subtask (the second with a stronger model) before re-planning.
const MAX_ATTEMPTS: u32 = 2;

/// What every run shares.
pub(crate) struct RunEnv {
    pub agents: AgentsConfig,
    pub data_dir: std::path::PathBuf,
    /// Where model requests go: the local host, then the chain.
    pub router: Router,
    pub journal: TaskJournal,
    pub learner: LearnerHandle,
    pub pools: Vec<WorkerPool>,
    pub slots: Arc<Semaphore>,
    /// Past tasks to plan from, and where finished ones go.
    pub memory: Option<Arc<troupe_memory::Memory>>,
}

/// How a task's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The task finished in this state.
    Finished(TaskState),
    /// It stopped at a step boundary for a pause.
    Paused,
}

struct Run {
    env: Arc<RunEnv>,
    task: TaskRecord,
    control: ControlWatch,
    budgets: Budgets,
}

/// The token budgets the Learner gave this run's subtask attempts.
#[derive(Default)]
struct Budgets {
    /// Subtask → the budget of its current attempt.
    given: HashMap<SubtaskId, u64>,
    /// Subtask → the model whose learned budget ran out in its last attempt.
    ran_out: HashMap<SubtaskId, String>,
}

/// Runs `task_id` until it finishes or is paused.
pub(crate) async fn run_task(
    env: Arc<RunEnv>,
    task_id: TaskId,
    control: ControlWatch,
) -> Result<RunEnd, AgentError> {
    let store = env.journal.store().clone();
    let task = store
        .task(&task_id)
        .await?
        .ok_or_else(|| AgentError::UnknownTask(task_id.clone()))?;
    let mut run = Run {
        env,
        task,
        control,
        budgets: Budgets::default(),
    };
    let result = run.drive().await;
    match result {
        Ok(end) => Ok(end),
        Err(error) => {
            // A fault of troupe (store, workspace): the task fails with it
            // rather than staying "running" forever.
            let reason = error.to_string();
            let _ = run.finish(TaskState::Failed, &reason).await;
            Err(error)
        }
    }
}

impl Run {
    async fn drive(&mut self) -> Result<RunEnd, AgentError> {
        let store = self.env.journal.store().clone();
        let id = self.task.id.clone();
        if self.task.state == TaskState::Paused {
            self.set_state(TaskState::Running, TaskEvent::Resumed)
                .await?;
        }
        let mut lost: HashMap<SubtaskId, u32> = HashMap::new();
        loop {
            if let Some(end) = self.check_control().await? {
                return Ok(end);
            }
            let subtasks = store.subtasks(&id).await?;
            let live: Vec<&SubtaskRecord> = subtasks
                .iter()
                .filter(|s| s.state != SubtaskState::Cancelled)
                .collect();
            if live.is_empty() {
                if !self.plan(&subtasks, None).await? {
                    return Ok(RunEnd::Finished(TaskState::Failed));
                }
                continue;
            }
            if live.iter().all(|s| s.state == SubtaskState::Succeeded) {
                let done: Vec<SubtaskRecord> = live.into_iter().cloned().collect();
                self.answer(&done).await?;
                return Ok(RunEnd::Finished(TaskState::Succeeded));
            }
            if let Some(failed) = live.iter().find(|s| s.state == SubtaskState::Failed) {
                let reason = format!(
                    "subtask {} ({}) failed: {}",
                    failed.id,
                    failed.description,
                    failed.error.as_deref().unwrap_or("no reason given")
                );
                if self.task.plans > self.env.agents.max_replans {
                    self.finish(TaskState::Failed, &reason).await?;
                    return Ok(RunEnd::Finished(TaskState::Failed));
                }
                self.replan(&subtasks, &reason).await?;
                continue;
            }
            if self.task.state != TaskState::Running {
                self.set_state_quiet(TaskState::Running).await?;
            }
            self.run_ready(&subtasks, &mut lost).await?;
        }
    }

    /// Runs every subtask whose dependencies have succeeded, in parallel up
    /// to the worker slots, until none is left ready or one needs the plan
    /// to change.
    async fn run_ready(
        &mut self,
        subtasks: &[SubtaskRecord],
        lost: &mut HashMap<SubtaskId, u32>,
    ) -> Result<(), AgentError> {
        let succeeded: HashMap<&str, &SubtaskRecord> = subtasks
            .iter()
            .filter(|s| s.state == SubtaskState::Succeeded)
            .map(|s| (s.id.as_str(), s))
            .collect();
        let ready: Vec<SubtaskRecord> = subtasks
            .iter()
            .filter(|s| matches!(s.state, SubtaskState::Pending | SubtaskState::Running))
            .filter(|s| {
                s.depends_on
                    .iter()
                    .all(|d| succeeded.contains_key(d.as_str()))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            // Pending subtasks wait on ones that can never succeed.
            let reason = "the remaining subtasks depend on subtasks that did not succeed";
            for mut s in subtasks
                .iter()
                .filter(|s| s.state == SubtaskState::Pending)
                .cloned()
            {
                s.state = SubtaskState::Failed;
                s.error = Some(reason.to_string());
                self.env.journal.store().put_subtasks(vec![s]).await?;
            }
            return Ok(());
        }
        let mut running = FuturesUnordered::new();
        for mut sub in ready {
            let deps: Vec<(String, String)> = sub
                .depends_on
                .iter()
                .filter_map(|d| succeeded.get(d.as_str()))
                .map(|d| {
                    (
                        format!("{}: {}", d.id, d.description),
                        d.result.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let resumed = sub.state == SubtaskState::Running && sub.model.is_some();
            let started_event = if resumed {
                None
            } else {
                Some(self.start_attempt(&mut sub).await?)
            };
            let Some(pool) = self.pool_for(&sub) else {
                sub.state = SubtaskState::Failed;
                sub.error = Some(format!("no specialist takes {} subtasks", sub.kind));
                self.env.journal.store().put_subtasks(vec![sub]).await?;
                continue;
            };
            let job = SubtaskJob {
                task_id: self.task.id.clone(),
                request: self.task.request.clone(),
                subtask: sub.clone(),
                attempt: sub.attempts,
                model: sub.model.clone().unwrap_or_default(),
                dependencies: deps,
                control: self.control.clone(),
                max_tokens: self.budgets.given.get(&sub.id).copied(),
            };
            let slots = Arc::clone(&self.env.slots);
            let journal = self.env.journal.clone();
            let task_id = self.task.id.clone();
            running.push(async move {
                let started = Instant::now();
                let _permit = slots.acquire_owned().await;
                // "Started" is journaled when a worker takes the subtask,
                // not while it waits for one.
                let seat = pool.wait_for_worker().await;
                if let Some(event) = started_event {
                    journal.record(&task_id, event).await?;
                }
                let outcome = pool.run_in(job, seat).await;
                Ok::<_, AgentError>((sub, outcome, started.elapsed()))
            });
        }
        while let Some(done) = running.next().await {
            let (sub, outcome, took) = done?;
            self.settle(sub, outcome, took, lost).await?;
        }
        Ok(())
    }

    /// Picks the model of a new attempt and records it; returns the event
    /// to journal when a worker takes the attempt.
    async fn start_attempt(&mut self, sub: &mut SubtaskRecord) -> Result<TaskEvent, AgentError> {
        let specialist = self
            .env
            .agents
            .specialists
            .iter()
            .find(|s| s.covers(sub.kind, sub.complexity));
        let specialist_model = specialist.and_then(|s| s.model.clone());
        // A learned budget that ran out is retried with the same model and
        // the full budget; any other failure one step up the ladder.
        let raise_budget_of = self.budgets.ran_out.remove(&sub.id);
        let stronger_than = if sub.attempts > 0 && raise_budget_of.is_none() {
            sub.model.clone()
        } else {
            None
        };
        let rec = self
            .env
            .learner
            .recommend(RecommendRequest {
                role: Role::Subtask,
                kind: sub.kind.into(),
                complexity: sub.complexity,
                task_model: self
                    .task
                    .model
                    .clone()
                    .filter(|_| stronger_than.is_none() && raise_budget_of.is_none()),
                role_model: specialist_model,
                stronger_than,
                max_tokens: specialist.map_or(0, |s| s.max_tokens),
                request_tokens: estimate_tokens(&sub.description)
                    + estimate_tokens(&sub.acceptance),
                raise_budget_of,
            })
            .await?;
        match rec.max_tokens {
            Some(budget) => self.budgets.given.insert(sub.id.clone(), budget),
            None => self.budgets.given.remove(&sub.id),
        };
        sub.attempts += 1;
        sub.state = SubtaskState::Running;
        sub.model = Some(rec.model.clone());
        self.env
            .journal
            .store()
            .put_subtasks(vec![sub.clone()])
            .await?;
        Ok(TaskEvent::SubtaskStarted {
            subtask: sub.id.clone(),
            attempt: sub.attempts,
            model: rec.model,
            reason: rec.reason,
        })
    }

    fn pool_for(&self, sub: &SubtaskRecord) -> Option<WorkerPool> {
        let specialists = &self.env.agents.specialists;
        let index = specialists
            .iter()
            .position(|s| s.covers(sub.kind, sub.complexity))
            .or_else(|| specialists.iter().position(|s| s.kind == sub.kind))?;
        self.env.pools.get(index).cloned()
    }

    /// Records what one subtask run came to.
    async fn settle(
        &mut self,
        mut sub: SubtaskRecord,
        outcome: Result<SubtaskOutcome, crate::worker::WorkerLost>,
        took: std::time::Duration,
        lost: &mut HashMap<SubtaskId, u32>,
    ) -> Result<(), AgentError> {
        let store = self.env.journal.store().clone();
        let mut hit = false;
        let (success, summary, tokens) = match outcome {
            Err(error) => {
                // The worker died mid-subtask; its factory has replaced it.
                // The subtask stays running with the same attempt and the
                // next round hands it out again; the new worker replays the
                // committed steps from the journal.
                let n = lost.entry(sub.id.clone()).or_insert(0);
                *n += 1;
                tracing::warn!(task = %self.task.id, subtask = %sub.id, %error, "worker lost");
                self.env
                    .journal
                    .record(
                        &self.task.id,
                        TaskEvent::Recovered {
                            detail: format!(
                                "the worker running {} stopped ({error}); handing it out again",
                                sub.id
                            ),
                        },
                    )
                    .await?;
                if *n <= MAX_LOST {
                    return Ok(());
                }
                (false, format!("its worker died {n} times: {error}"), 0)
            }
            Ok(SubtaskOutcome::Paused { tokens }) | Ok(SubtaskOutcome::Cancelled { tokens }) => {
                sub.tokens += tokens;
                store.put_subtasks(vec![sub]).await?;
                return Ok(());
            }
            Ok(SubtaskOutcome::Succeeded { result, tokens, .. }) => (true, result, tokens),
            Ok(SubtaskOutcome::Failed {
                reason,
                tokens,
                hit_budget,
                ..
            }) => {
                hit = hit_budget;
                (false, reason, tokens)
            }
        };
        sub.tokens += tokens;
        let model = sub.model.clone().unwrap_or_default();
        let given = self.budgets.given.get(&sub.id).copied();
        let max = self
            .env
            .agents
            .specialists
            .iter()
            .find(|s| s.covers(sub.kind, sub.complexity))
            .map(|s| s.max_tokens);
        if hit && matches!((given, max), (Some(g), Some(m)) if g < m) {
            self.budgets.ran_out.insert(sub.id.clone(), model.clone());
        }
        self.env.learner.record(OutcomeRecord {
            task_id: Some(self.task.id.clone()),
            subtask: Some(sub.id.clone()),
            role: Role::Subtask,
            model,
            kind: sub.kind.into(),
            complexity: sub.complexity,
            prompt_tokens: tokens,
            completion_tokens: 0,
            latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            success,
            time_ms: now_ms(),
            max_tokens: given.or(max),
            hit_budget: hit,
            request_tokens: estimate_tokens(&sub.description) + estimate_tokens(&sub.acceptance),
            ..Default::default()
        });
        if success {
            sub.state = SubtaskState::Succeeded;
            sub.result = Some(summary.clone());
            self.checkpoint(&format!("subtask {} finished", sub.id))
                .await?;
        } else if sub.attempts < MAX_ATTEMPTS {
            // Retried with a stronger model in the next round.
            sub.state = SubtaskState::Pending;
            sub.error = Some(summary.clone());
        } else {
            sub.state = SubtaskState::Failed;
            sub.error = Some(summary.clone());
        }
        let attempt = sub.attempts;
        let id = sub.id.clone();
        store.put_subtasks(vec![sub]).await?;
        self.env
            .journal
            .record(
                &self.task.id,
                TaskEvent::SubtaskFinished {
                    subtask: id,
                    attempt,
                    success,
                    summary,
                    tokens,
                },
            )
            .await?;
        Ok(())
    }

    /// Stops at a step boundary when the person paused or cancelled.
    async fn check_control(&mut self) -> Result<Option<RunEnd>, AgentError> {
        match self.control.get() {
            Control::Run => Ok(None),
            Control::Pause => {
                self.set_state(TaskState::Paused, TaskEvent::Paused).await?;
                Ok(Some(RunEnd::Paused))
            }
            Control::Cancel => {
                self.finish(TaskState::Cancelled, "cancelled by the person")
                    .await?;
                Ok(Some(RunEnd::Finished(TaskState::Cancelled)))
            }
        }
    }

    async fn generate(
        &self,
        model: &str,
        req: GenerateRequest,
    ) -> Result<troupe_inference::backend::GenerationResult, String> {
        let call = Call {
            route: Route::Director,
            model,
            task_id: Some(&self.task.id),
        };
        let done = self
            .env
            .router
            .complete(call, req)
            .await
            .map_err(|e| e.to_string())?;
        if done.failed_over() {
            let event = done.failover_event(None);
            if let Err(error) = self.env.journal.record(&self.task.id, event).await {
                tracing::warn!(%error, "could not journal a failover");
            }
        }
        Ok(done.result)
    }

    async fn checkpoint(&self, label: &str) -> Result<(), AgentError> {
        let data_dir = self.env.data_dir.clone();
        let id = self.task.id.clone();
        let label = label.to_string();
        tokio::task::spawn_blocking(move || {
            let ws = Workspace::open(&data_dir, &id)?;
            // Whole steps only: another subtask's tool may be running in
            // the shared workspace (see Workspace::step_lock).
            let _whole_steps = ws.step_lock()?;
            ws.checkpoint(&label)
        })
        .await
        .map_err(|_| AgentError::Stopped("checkpoint thread"))??;
        Ok(())
    }

    async fn set_state_quiet(&mut self, state: TaskState) -> Result<(), AgentError> {
        self.task.state = state;
        self.task.updated_ms = now_ms();
        self.env.journal.store().put_task(self.task.clone()).await?;
        Ok(())
    }

    async fn set_state(&mut self, state: TaskState, event: TaskEvent) -> Result<(), AgentError> {
        self.task.state = state;
        self.task.updated_ms = now_ms();
        self.env
            .journal
            .record_with_task(self.task.clone(), event)
            .await?;
        Ok(())
    }

    async fn finish(&mut self, state: TaskState, summary: &str) -> Result<(), AgentError> {
        if state != TaskState::Succeeded {
            self.task.error = Some(summary.to_string());
        }
        if state == TaskState::Succeeded {
            let _ = self.checkpoint("task finished").await;
        }
        // Remembered before the end is announced, so a job submitted as
        // soon as this one finishes can already recall it.
        if let Some(memory) = &self.env.memory {
            let subtasks = self.env.journal.store().subtasks(&self.task.id).await?;
            recall::remember_task(memory, &self.task, state, &subtasks, summary).await;
        }
        self.set_state(
            state,
            TaskEvent::Finished {
                state,
                summary: summary.to_string(),
            },
        )
        .await
    }
}
