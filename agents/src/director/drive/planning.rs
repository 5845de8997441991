//! A run's planning and answering: the calls to the Director's model (with
//! what memory recalls), and the plan's checks and retries.

use std::time::Instant;

use troupe_inference::backend::{Constraint, FinishReason, GenerateRequest};
use troupe_inference::chat::ChatMessage;
use troupe_store::{now_ms, OutcomeRecord, SubtaskRecord, SubtaskState, TaskEvent, TaskState};

use super::super::{direct, plan, recall};
use super::Run;
use crate::learner::{estimate_tokens, RecommendRequest, Role};
use crate::runtime::AgentError;

/// Who planned a one-action job (journaled as its plan's model).
pub(super) const DIRECT_PLANNER: &str = "rules";

/// Why it was planned without a model.
const DIRECT_REASON: &str =
    "one action on the workspace: one subtask with the tools it needs, no planning call";

impl Run {
    /// Makes a plan (or a new one); false when planning failed and the task
    /// has been failed.
    pub(super) async fn plan(
        &mut self,
        existing: &[SubtaskRecord],
        history: Option<&str>,
    ) -> Result<bool, AgentError> {
        self.set_state_quiet(TaskState::Planning).await?;
        if self.env.agents.direct && history.is_none() && existing.is_empty() {
            let first_free = plan::next_free_id(existing);
            let specialists = &self.env.agents.specialists;
            if let Some(subtask) = direct::triage(&self.task.request, specialists, first_free) {
                self.adopt(vec![subtask], DIRECT_PLANNER, DIRECT_REASON)
                    .await?;
                return Ok(true);
            }
        }
        let rec = self
            .env
            .learner
            .recommend(RecommendRequest {
                task_model: self.task.model.clone(),
                role_model: self.env.agents.director_model.clone(),
                max_tokens: u64::from(self.env.agents.director_max_tokens),
                request_tokens: estimate_tokens(&self.task.request),
                ..RecommendRequest::new(Role::Plan, Role::Plan, 0)
            })
            .await?;
        let first_free = plan::next_free_id(existing);
        let past = match &self.env.memory {
            Some(memory) => recall::similar_tasks(memory, &self.task.request).await,
            None => Vec::new(),
        };
        let mut messages = plan::plan_prompt(&self.task.request, history, &past);
        let mut last_error = String::new();
        // One retry with the error shown: a plan cut short by max_tokens or
        // one that fails the checks gets a second chance.
        for round in 0..2 {
            let started = Instant::now();
            let mut req = GenerateRequest::chat(messages.clone());
            req.sampling = self.sampling(&format!("plan/{}/{round}", self.task.plans));
            req.constraint = Some(Constraint::JsonSchema(plan::plan_schema()));
            // The retry gets the configured maximum: the learned budget may
            // be what cut the first plan short.
            req.max_tokens = self.env.agents.director_max_tokens;
            if round == 0 {
                if let Some(budget) = rec.max_tokens {
                    req.max_tokens = u32::try_from(budget)
                        .unwrap_or(u32::MAX)
                        .min(req.max_tokens);
                }
            }
            let given = req.max_tokens;
            let result = self.generate(&rec.model, req).await;
            let (text, usage, finish) = match result {
                Ok(r) => (r.text, r.usage, r.finish),
                Err(e) => {
                    let reason = format!("planning with {} failed: {e}", rec.model);
                    self.finish(TaskState::Failed, &reason).await?;
                    return Ok(false);
                }
            };
            let parsed = plan::parse_plan(&text, &self.env.agents.specialists, first_free);
            let call = TaskEvent::DirectorCall {
                purpose: "plan".to_string(),
                model: rec.model.clone(),
                tokens: u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens),
            };
            self.env.learner.record(OutcomeRecord {
                task_id: Some(self.task.id.clone()),
                subtask: None,
                role: Role::Plan,
                model: rec.model.clone(),
                kind: Role::Plan.into(),
                complexity: 0,
                prompt_tokens: u64::from(usage.prompt_tokens),
                completion_tokens: u64::from(usage.completion_tokens),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                success: parsed.is_ok(),
                time_ms: now_ms(),
                max_tokens: Some(u64::from(given)),
                hit_budget: parsed.is_err() && finish == FinishReason::Length,
                request_tokens: u64::from(usage.prompt_tokens),
                ..Default::default()
            });
            match parsed {
                Ok(planned) => {
                    self.adopt(planned, &rec.model, &rec.reason).await?;
                    self.env.journal.record(&self.task.id, call).await?;
                    return Ok(true);
                }
                Err(problem) => {
                    self.env.journal.record(&self.task.id, call).await?;
                    tracing::warn!(task = %self.task.id, %problem, "invalid plan");
                    messages.push(ChatMessage::assistant(text));
                    messages.push(ChatMessage::user(format!(
                        "{}. That plan is invalid: {problem}. Answer with a corrected plan.",
                        plan::PLAN_MARKER
                    )));
                    last_error = problem;
                }
            }
        }
        let reason = format!("the planner's output was invalid twice: {last_error}");
        self.finish(TaskState::Failed, &reason).await?;
        Ok(false)
    }

    /// The sampling of the Director's call named `what`.
    fn sampling(&self, what: &str) -> troupe_inference::sampling::SamplingOptions {
        let agents = &self.env.agents;
        let place = format!("{}/{what}", self.task.id);
        crate::runtime::sampling::agent_sampling(agents.temperature, agents.seed, &place)
    }

    /// Stores a plan's subtasks and journals it.
    async fn adopt(
        &mut self,
        planned: Vec<troupe_store::PlannedSubtask>,
        model: &str,
        reason: &str,
    ) -> Result<(), AgentError> {
        let records = plan::records(&self.task.id, &planned);
        self.env.journal.store().put_subtasks(records).await?;
        self.task.plans += 1;
        self.task.state = TaskState::Running;
        self.task.updated_ms = now_ms();
        self.env
            .journal
            .record_with_task(
                self.task.clone(),
                TaskEvent::Planned {
                    subtasks: planned,
                    model: model.to_string(),
                    reason: reason.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    pub(super) async fn replan(
        &mut self,
        subtasks: &[SubtaskRecord],
        reason: &str,
    ) -> Result<(), AgentError> {
        let store = self.env.journal.store().clone();
        self.env
            .journal
            .record(
                &self.task.id,
                TaskEvent::Replanning {
                    reason: reason.to_string(),
                },
            )
            .await?;
        let mut history = String::new();
        let mut dropped = Vec::new();
        for s in subtasks
            .iter()
            .filter(|s| s.state != SubtaskState::Cancelled)
        {
            let what = match s.state {
                SubtaskState::Succeeded => {
                    format!("succeeded: {}", s.result.as_deref().unwrap_or(""))
                }
                _ => format!("did not succeed: {}", s.error.as_deref().unwrap_or("")),
            };
            history.push_str(&format!("- {} ({}) {what}\n", s.description, s.kind));
            let mut s = s.clone();
            s.state = SubtaskState::Cancelled;
            dropped.push(s);
        }
        store.put_subtasks(dropped).await?;
        history.push_str(&format!("Reason for the new plan: {reason}\n"));
        self.plan(subtasks, Some(&history)).await?;
        Ok(())
    }

    /// Writes the final answer and finishes the task.
    pub(super) async fn answer(&mut self, done: &[SubtaskRecord]) -> Result<(), AgentError> {
        // A one-action job's answer is its one subtask's result: another
        // model call would only restate it.
        if let [only] = done {
            if !only.tools.is_empty() {
                let answer = only
                    .result
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                self.task.answer = Some(answer.clone());
                return self.finish(TaskState::Succeeded, &answer).await;
            }
        }
        let rec = self
            .env
            .learner
            .recommend(RecommendRequest {
                task_model: self.task.model.clone(),
                role_model: self.env.agents.director_model.clone(),
                // No learned budget: an answer cut short has no retry.
                request_tokens: estimate_tokens(&self.task.request),
                ..RecommendRequest::new(Role::Answer, Role::Answer, 0)
            })
            .await?;
        let started = Instant::now();
        let mut req = GenerateRequest::chat(plan::answer_prompt(&self.task.request, done));
        req.sampling = self.sampling("answer");
        req.max_tokens = self.env.agents.director_max_tokens;
        let given = req.max_tokens;
        let (answer, success, usage, cut) = match self.generate(&rec.model, req).await {
            Ok(r) => (
                r.text.trim().to_string(),
                true,
                r.usage,
                r.finish == FinishReason::Length,
            ),
            Err(e) => {
                // The work is done and committed; the person still gets the
                // results, with the reason the summary is missing.
                let mut text = format!(
                    "(the answer could not be written with {}: {e})\n",
                    rec.model
                );
                for s in done {
                    text.push_str(&format!(
                        "{}: {}\n",
                        s.id,
                        s.result.as_deref().unwrap_or("")
                    ));
                }
                (text, false, Default::default(), false)
            }
        };
        let tokens = u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens);
        if tokens > 0 {
            let call = TaskEvent::DirectorCall {
                purpose: "answer".to_string(),
                model: rec.model.clone(),
                tokens,
            };
            self.env.journal.record(&self.task.id, call).await?;
        }
        self.env.learner.record(OutcomeRecord {
            task_id: Some(self.task.id.clone()),
            subtask: None,
            role: Role::Answer,
            model: rec.model,
            kind: Role::Answer.into(),
            complexity: 0,
            prompt_tokens: u64::from(usage.prompt_tokens),
            completion_tokens: u64::from(usage.completion_tokens),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            success,
            time_ms: now_ms(),
            max_tokens: Some(u64::from(given)),
            hit_budget: cut,
            request_tokens: u64::from(usage.prompt_tokens),
            ..Default::default()
        });
        self.task.answer = Some(answer.clone());
        self.finish(TaskState::Succeeded, &answer).await
    }
}
