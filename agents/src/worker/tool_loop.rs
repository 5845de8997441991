//! One job, from recovery to outcome: ask the model for a step, run it,
//! journal it, until a final answer is accepted or a budget runs out.

use serde_json::{json, Value};
use troupe_config::TaskKind;
use troupe_inference::backend::{Constraint, GenerateRequest, GenerationResult};
use troupe_inference::chat::ChatMessage;
use troupe_store::TaskEvent;
use troupe_tools::Workspace;

use super::compact;
use super::prompt::{self, Reply, FINAL, INVALID_OUTPUT};
use super::recovery::{self, step_label, StepRecord};
use super::step::{blocking, ActionEnd, StepCx};
use super::{StepPoint, SubtaskJob, SubtaskOutcome, WorkerEnv};
use crate::router::{failover_note, Call, Route, RouteError};
use crate::runtime::sampling::agent_sampling;
use crate::runtime::{AgentError, Control, TroupeEvent};

/// Tries of a step whose prompt turned out longer than estimated, each with
/// a smaller prompt budget.
const CONTEXT_TRIES: usize = 3;

/// Added to the sampling temperature per attempt after the first.
const RETRY_TEMPERATURE_STEP: f32 = 0.3;

/// The highest temperature a retry raises it to.
const MAX_RETRY_TEMPERATURE: f32 = 1.0;

/// Runs `job` to its outcome. Errors of troupe itself (the store, the
/// workspace, the model host) end the attempt as failed, with the error as
/// the reason.
pub(crate) async fn run(env: &WorkerEnv, job: SubtaskJob) -> SubtaskOutcome {
    let mut run = Run {
        env,
        job: &job,
        tokens: 0,
        attempt_tokens: 0,
        history: Vec::new(),
        failed_over: false,
    };
    match run.go().await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(task = %job.task_id, subtask = %job.subtask.id, %error, "subtask attempt failed");
            SubtaskOutcome::Failed {
                reason: error.to_string(),
                tokens: run.tokens,
                steps: run.steps_done(),
                hit_budget: false,
            }
        }
    }
}

/// A job's run.
struct Run<'a> {
    env: &'a WorkerEnv,
    job: &'a SubtaskJob,
    /// Tokens used in this run.
    tokens: u64,
    /// Tokens used by the attempt, journaled steps of earlier runs included.
    attempt_tokens: u64,
    /// The attempt's committed steps.
    history: Vec<StepRecord>,
    /// Whether a failover of this run was journaled (only the first is).
    failed_over: bool,
}

/// What a reply leads to.
enum Next {
    Done(SubtaskOutcome),
    Step(Box<(StepRecord, Option<ActionEnd>)>),
}

/// What a model call came to.
enum Generated {
    Done(GenerationResult),
    Cancelled,
}

impl Run<'_> {
    fn steps_done(&self) -> u32 {
        u32::try_from(self.history.len()).unwrap_or(u32::MAX)
    }

    fn token_budget(&self) -> u64 {
        self.job
            .max_tokens
            .unwrap_or(self.env.specialist.max_tokens)
    }

    fn outcome_for(&self, control: Control) -> SubtaskOutcome {
        match control {
            Control::Cancel => SubtaskOutcome::Cancelled {
                tokens: self.tokens,
            },
            _ => SubtaskOutcome::Paused {
                tokens: self.tokens,
            },
        }
    }

    fn failed(&self, reason: String) -> SubtaskOutcome {
        SubtaskOutcome::Failed {
            reason,
            tokens: self.tokens,
            steps: self.steps_done(),
            hit_budget: false,
        }
    }

    /// What to do at a step boundary: `Some` to stop here.
    fn boundary(&self, step: u32) -> Option<SubtaskOutcome> {
        match self.job.control.get() {
            Control::Run => {}
            stop => return Some(self.outcome_for(stop)),
        }
        if let Some(hook) = &self.env.faults {
            hook(&StepPoint {
                task_id: self.job.task_id.clone(),
                subtask: self.job.subtask.id.clone(),
                attempt: self.job.attempt,
                step,
            });
        }
        None
    }

    async fn go(&mut self) -> Result<SubtaskOutcome, AgentError> {
        let (env, job) = (self.env, self.job);
        let ws = {
            let (data_dir, task_id) = (env.data_dir.clone(), job.task_id.clone());
            tokio::task::spawn_blocking(move || Workspace::open(&data_dir, &task_id))
                .await
                .map_err(|_| AgentError::Stopped("async runtime"))??
        };
        let cx = StepCx::new(env, job, ws);
        let redo = self.recover(&cx).await?;
        if let Some(pending) = redo {
            let step = pending.step;
            if let Some(stop) = self.boundary(step) {
                return Ok(stop);
            }
            let end = self.redo(&cx, &pending).await?;
            if let Some(outcome) = self.settle(&cx, pending, end).await? {
                return Ok(outcome);
            }
        }
        let context = match env.router.context_length(Route::Worker, &job.model).await {
            Ok(context) => context,
            Err(error) => return Ok(self.failed(error.to_string())),
        };
        let step_prompt = StepPrompt::for_job(env, job);
        loop {
            let step = self.steps_done() + 1;
            if let Some(stop) = self.boundary(step) {
                return Ok(stop);
            }
            let max_steps = env.specialist.max_steps;
            if step > max_steps {
                return Ok(self.failed(format!("the step budget ({max_steps}) ran out")));
            }
            let budget = self.token_budget();
            if self.attempt_tokens >= budget {
                return Ok(SubtaskOutcome::Failed {
                    reason: format!("the token budget ({budget}) ran out"),
                    tokens: self.tokens,
                    steps: self.steps_done(),
                    hit_budget: true,
                });
            }
            let left = budget - self.attempt_tokens;
            let step_max = u64::from(env.specialist.step_max_tokens).min(left);
            // A context smaller than a step's completion still leaves half
            // of it for the prompt.
            let step_max = step_max.min(u64::from(context / 2)).max(1);
            let step_max = u32::try_from(step_max).unwrap_or(u32::MAX);
            let prompt_budget = context.saturating_sub(step_max) as usize;
            let result = match self.generate(&step_prompt, step_max, prompt_budget).await {
                Ok(Generated::Done(result)) => result,
                Ok(Generated::Cancelled) => return Ok(self.outcome_for(Control::Cancel)),
                Err(error) => return Ok(self.failed(error.to_string())),
            };
            let used =
                u64::from(result.usage.prompt_tokens) + u64::from(result.usage.completion_tokens);
            self.tokens += used;
            self.attempt_tokens += used;
            let reply = prompt::parse_reply(&result.text, result.finish);
            let (record, end) = match self.take(step, reply, used) {
                Next::Done(outcome) => return Ok(outcome),
                Next::Step(step) => *step,
            };
            self.progress(&format!("{} step {step}: {}", job.subtask.id, record.tool));
            cx.started(step, &record.thought, &record.tool, &record.args, used)
                .await?;
            let end = match end {
                Some(end) => end,
                None => cx.run_tool(&record.tool, record.args.clone(), None).await?,
            };
            if let Some(outcome) = self.settle(&cx, record, end).await? {
                return Ok(outcome);
            }
            if let Some(reason) = prompt::repeated_failure(&self.history) {
                return Ok(self.failed(reason));
            }
        }
    }

    /// What a reply leads to: the answer, or a step to run (with its end
    /// already known when it runs no tool).
    fn take(&self, step: u32, reply: Reply, used: u64) -> Next {
        let (env, job) = (self.env, self.job);
        match reply {
            Reply::Final { thought, text } => {
                // A one-action subtask is not done before its action has
                // run (small models answer at once, copying the example).
                let nothing_done =
                    !job.subtask.tools.is_empty() && !self.history.iter().any(prompt::acted);
                let refusal = if nothing_done {
                    Some(prompt::act_first())
                } else {
                    (env.specialist.kind == TaskKind::Code)
                        .then(|| prompt::untested_change(&self.history, &env.tools))
                        .flatten()
                        .map(prompt::run_tests_first)
                };
                let Some(refusal) = refusal else {
                    self.progress(&format!("{} step {step}: final answer", job.subtask.id));
                    let text = match job.subtask.tools.is_empty() {
                        true => text,
                        false => with_report(text, &self.history),
                    };
                    return Next::Done(SubtaskOutcome::Succeeded {
                        result: text,
                        tokens: self.tokens,
                        steps: step,
                    });
                };
                let args = json!({ "final": text });
                let record = StepRecord::started(step, thought, FINAL.into(), args, used);
                Next::Step(Box::new((record, pseudo_end(refusal))))
            }
            Reply::Invalid { output, problem } => {
                let args = json!({ "output": output });
                let record =
                    StepRecord::started(step, String::new(), INVALID_OUTPUT.into(), args, used);
                Next::Step(Box::new((
                    record,
                    pseudo_end(prompt::invalid_observation(&problem)),
                )))
            }
            Reply::Action {
                thought,
                tool,
                args,
            } => {
                // A one-action subtask that repeats the action that just
                // worked is not run again: it is told to answer instead.
                let repeat = (!job.subtask.tools.is_empty())
                    .then(|| self.history.iter().rev().find(|s| prompt::acted(s)))
                    .flatten()
                    .filter(|done| done.tool == tool && done.args == args)
                    .map(prompt::already_done);
                Next::Step(Box::new((
                    StepRecord::started(step, thought, tool, args, used),
                    repeat.and_then(pseudo_end),
                )))
            }
        }
    }

    /// Journals and commits a step that ran; `Some` when the run stops here
    /// (paused or cancelled while the step waited for the person).
    async fn settle(
        &mut self,
        cx: &StepCx<'_>,
        mut record: StepRecord,
        end: ActionEnd,
    ) -> Result<Option<SubtaskOutcome>, AgentError> {
        let (observation, tool_ms) = match end {
            ActionEnd::Observed {
                observation,
                tool_ms,
            } => (observation, tool_ms),
            ActionEnd::Paused => return Ok(Some(self.outcome_for(Control::Pause))),
            ActionEnd::Cancelled => return Ok(Some(self.outcome_for(Control::Cancel))),
        };
        let text =
            prompt::cut_observation(observation.text, self.env.specialist.observation_max_bytes);
        let checkpoint = cx
            .commit(
                record.step,
                &record.tool,
                &text,
                observation.is_error,
                tool_ms,
            )
            .await?;
        record.observation = Some((text, observation.is_error));
        record.checkpoint = Some(checkpoint);
        self.history.push(record);
        Ok(None)
    }

    /// Reads the attempt's earlier steps from the journal. A step that was
    /// started but not committed is either found committed in the workspace
    /// (then journaled as committed) or returned to be redone.
    async fn recover(&mut self, cx: &StepCx<'_>) -> Result<Option<StepRecord>, AgentError> {
        let job = self.job;
        let entries = self.env.journal.store().journal(&job.task_id, 0).await?;
        let log = recovery::read(&entries, &job.subtask.id, job.attempt);
        self.attempt_tokens = log.committed.iter().map(|s| s.tokens).sum();
        self.history = log.committed;
        let Some(pending) = log.pending else {
            return Ok(None);
        };
        self.attempt_tokens += pending.tokens;
        // Under the step lock: the checkpoints read are the latest, and no
        // other subtask's step is half done in the files being reset.
        cx.hold_step_lock().await?;
        let settled = self.recover_pending(cx, pending).await;
        cx.release_step_lock();
        settled
    }

    /// Recovery of the step that was started and not journaled as
    /// committed (the step lock held).
    async fn recover_pending(
        &mut self,
        cx: &StepCx<'_>,
        mut pending: StepRecord,
    ) -> Result<Option<StepRecord>, AgentError> {
        let job = self.job;
        let label = step_label(&job.subtask.id, job.attempt, pending.step, &pending.tool);
        let checkpoints = blocking(&cx.ws, |ws| ws.checkpoints()).await?;
        let made = checkpoints.iter().rev().find(|c| c.step == label);
        if let (Some(made), Some(_)) = (made, &pending.observation) {
            // The worker died between its checkpoint and journaling it.
            cx.committed(pending.step, &label, &made.id.0).await?;
            pending.checkpoint = Some(made.id.0.clone());
            self.history.push(pending);
            return Ok(None);
        }
        // Whatever the interrupted step did to the files is undone by going
        // back to the workspace's latest checkpoint: it holds every
        // committed step of this attempt, and also those other subtasks of
        // the task committed since, which an older checkpoint would lose.
        let Some(latest) = checkpoints.last() else {
            return Ok(Some(pending));
        };
        let id = latest.id.clone();
        let detail = format!(
            "{label} had not finished when its worker stopped; the workspace is back at \
             checkpoint {} ({}) and the step's recorded action runs again{}",
            short(&id.0),
            latest.step,
            match pending.approved {
                Some(true) => ", with the person's approval given before",
                Some(false) => ", with the person's refusal given before",
                None => "",
            }
        );
        blocking(&cx.ws, move |ws| ws.restore(&id)).await?;
        self.env
            .journal
            .record(&job.task_id, TaskEvent::Recovered { detail })
            .await?;
        Ok(Some(pending))
    }

    /// Runs an interrupted step's recorded action again, without asking the
    /// model.
    async fn redo(
        &mut self,
        cx: &StepCx<'_>,
        pending: &StepRecord,
    ) -> Result<ActionEnd, AgentError> {
        match pending.tool.as_str() {
            INVALID_OUTPUT => {
                let output = pending
                    .args
                    .get("output")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let problem = match prompt::parse_reply(
                    output,
                    troupe_inference::backend::FinishReason::Stop,
                ) {
                    Reply::Invalid { problem, .. } => problem,
                    _ => "it could not be read".to_string(),
                };
                Ok(ActionEnd::Observed {
                    observation: troupe_tools::Observation::error(prompt::invalid_observation(
                        &problem,
                    )),
                    tool_ms: 0,
                })
            }
            FINAL => {
                let text = match prompt::untested_change(&self.history, &self.env.tools) {
                    Some(changed) => prompt::run_tests_first(changed),
                    None => "Not accepted: check the subtask is done, then give your final answer again.".to_string(),
                };
                Ok(ActionEnd::Observed {
                    observation: troupe_tools::Observation::error(text),
                    tool_ms: 0,
                })
            }
            tool => {
                cx.run_tool(tool, pending.args.clone(), pending.approved)
                    .await
            }
        }
    }

    /// Asks the model for the next step, pruning the history to the
    /// context, and watching for a cancel meanwhile (a pause lets the step
    /// finish).
    async fn generate(
        &mut self,
        step_prompt: &StepPrompt,
        max_tokens: u32,
        prompt_budget: usize,
    ) -> Result<Generated, RouteError> {
        let StepPrompt {
            system,
            examples,
            task,
            ..
        } = step_prompt;
        let schema = step_prompt.schema_after(&self.history);
        let job = self.job;
        let mut budget = prompt_budget;
        let mut tries = 0;
        loop {
            tries += 1;
            let messages = prompt::assemble(system, examples, task, &self.history, budget);
            match self.generate_once(messages, schema, max_tokens).await {
                Err(error) if error.prompt_too_long() && tries < CONTEXT_TRIES => {
                    // The estimate fell short of the real token count.
                    budget = budget * 2 / 3;
                    tracing::debug!(task = %job.task_id, subtask = %job.subtask.id, budget, "prompt too long; pruning harder");
                }
                other => return other,
            }
        }
    }

    async fn generate_once(
        &mut self,
        messages: Vec<ChatMessage>,
        schema: &Value,
        max_tokens: u32,
    ) -> Result<Generated, RouteError> {
        let job = self.job;
        let place = format!(
            "{}/{}/{}/{}",
            job.task_id,
            job.subtask.id,
            job.attempt,
            self.steps_done() + 1
        );
        let specialist = &self.env.specialist;
        // A retry on the same model samples more freely: at the attempt's
        // temperature it would mostly repeat what just failed.
        let temperature = (specialist.temperature
            + RETRY_TEMPERATURE_STEP * job.attempt.saturating_sub(1) as f32)
            .min(MAX_RETRY_TEMPERATURE)
            .max(specialist.temperature);
        let request = GenerateRequest {
            max_tokens,
            sampling: agent_sampling(temperature, specialist.seed, &place),
            constraint: Some(Constraint::JsonSchema(schema.clone())),
            session: Some(format!(
                "{}/{}/{}",
                job.task_id, job.subtask.id, job.attempt
            )),
            ..GenerateRequest::chat(messages)
        };
        let env = self.env;
        let router = &env.router;
        let call = Call {
            route: Route::Worker,
            model: &job.model,
            task_id: Some(&job.task_id),
        };
        let journal = &env.journal;
        let noted = &mut self.failed_over;
        let generation = async {
            let done = router.complete(call, request).await?;
            if done.failed_over() {
                if !*noted {
                    *noted = true;
                    let event = done.failover_event(Some(&job.subtask.id));
                    if let Err(error) = journal.record(&job.task_id, event).await {
                        tracing::warn!(%error, "could not journal a failover");
                    }
                }
                journal.bus().publish(TroupeEvent::Progress {
                    task_id: job.task_id.clone(),
                    subtask: Some(job.subtask.id.clone()),
                    text: format!("{}: {}", job.subtask.id, failover_note(&done)),
                    tokens: 0,
                });
            }
            Ok::<_, RouteError>(done.result)
        };
        tokio::pin!(generation);
        let mut control = job.control.clone();
        tokio::select! {
            result = &mut generation => return result.map(Generated::Done),
            stop = control.stopped() => if stop == Control::Cancel {
                // Dropping the stream cancels the request.
                return Ok(Generated::Cancelled);
            }
        }
        // Paused: the step finishes, unless the task is cancelled meanwhile.
        tokio::select! {
            result = &mut generation => result.map(Generated::Done),
            () = control.cancelled() => Ok(Generated::Cancelled),
        }
    }

    fn progress(&self, text: &str) {
        self.env.journal.bus().publish(TroupeEvent::Progress {
            task_id: self.job.task_id.clone(),
            subtask: Some(self.job.subtask.id.clone()),
            text: text.to_string(),
            tokens: self.attempt_tokens,
        });
    }
}

/// The end of a step that runs no tool: its observation is an error the
/// model should react to.
fn pseudo_end(text: String) -> Option<ActionEnd> {
    Some(ActionEnd::Observed {
        observation: troupe_tools::Observation::error(text),
        tool_ms: 0,
    })
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What every step of an attempt is asked with: the system message, a
/// worked example (one-action subtasks), the task message and the reply
/// schema.
struct StepPrompt {
    system: String,
    examples: Vec<ChatMessage>,
    task: String,
    schema: Value,
    /// For a one-action subtask: the schema of its steps until one has
    /// acted (an action only).
    act_first: Option<Value>,
    /// For a one-action subtask that is not code: the schema once its
    /// action has worked (the answer only; small models otherwise go on
    /// acting after the job is done).
    then_answer: Option<Value>,
}

impl StepPrompt {
    /// A subtask whose tools the Director narrowed (a one-action job) gets
    /// the short prompt with only those tools and a worked example; any
    /// other gets the specialist's prompt with every tool.
    fn for_job(env: &WorkerEnv, job: &SubtaskJob) -> StepPrompt {
        let sub = &job.subtask;
        let tools = env.tools.offered(&sub.tools);
        if sub.tools.is_empty() {
            return StepPrompt {
                system: prompt::system_message(env.specialist.kind, &tools),
                examples: Vec::new(),
                task: prompt::task_message(job),
                schema: prompt::step_schema(&tools, false),
                act_first: None,
                then_answer: None,
            };
        }
        StepPrompt {
            system: compact::system_message(&tools),
            examples: compact::example_turns(&sub.description, sub.kind, &tools),
            task: compact::task_message(&sub.description),
            schema: prompt::step_schema(&tools, true),
            act_first: Some(prompt::action_schema(&tools, true)),
            // A code subtask writes, then runs what it wrote.
            then_answer: (sub.kind != TaskKind::Code).then(|| prompt::final_schema(true)),
        }
    }

    /// The schema of the next step, given the attempt's steps so far.
    fn schema_after(&self, history: &[StepRecord]) -> &Value {
        let acted = history.iter().any(prompt::acted);
        match (&self.act_first, &self.then_answer) {
            (Some(action_only), _) if !acted => action_only,
            (_, Some(answer_only)) if acted => answer_only,
            _ => &self.schema,
        }
    }
}

/// A one-action subtask's answer with what its last reporting step returned
/// (see [`compact::REPORTING_TOOLS`]).
fn with_report(answer: String, history: &[StepRecord]) -> String {
    let last = history
        .iter()
        .rev()
        .find(|s| !s.is_error() && compact::REPORTING_TOOLS.contains(&s.tool.as_str()));
    let Some(step) = last else {
        return answer;
    };
    let output = troupe_tools::observation::utf8_prefix(
        step.observation_text().trim_end(),
        compact::REPORT_MAX_BYTES,
    );
    format!("{answer}\n\n`{}` returned:\n{output}", step.tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tool: &str, is_error: bool) -> StepRecord {
        let mut s = StepRecord::started(1, String::new(), tool.into(), json!({}), 1);
        s.observation = Some(("x".into(), is_error));
        s
    }

    fn one_action(kind: TaskKind) -> StepPrompt {
        StepPrompt {
            system: String::new(),
            examples: Vec::new(),
            task: String::new(),
            schema: json!("action or final"),
            act_first: Some(json!("action only")),
            then_answer: (kind != TaskKind::Code).then(|| json!("final only")),
        }
    }

    #[test]
    fn a_one_action_subtask_acts_first_then_answers() {
        let general = one_action(TaskKind::General);
        assert_eq!(general.schema_after(&[]), "action only");
        // A failed action or a refused answer is not acting.
        let failed = [record("write_file", true), record(FINAL, true)];
        assert_eq!(general.schema_after(&failed), "action only");
        let acted = [record("write_file", true), record("write_file", false)];
        assert_eq!(general.schema_after(&acted), "final only");
        // Code writes, then runs: after acting, either.
        assert_eq!(
            one_action(TaskKind::Code).schema_after(&acted),
            "action or final"
        );
        // Any other subtask: either, always.
        let planned = StepPrompt {
            act_first: None,
            then_answer: None,
            ..one_action(TaskKind::General)
        };
        assert_eq!(planned.schema_after(&[]), "action or final");
        assert_eq!(planned.schema_after(&acted), "action or final");
    }
}
