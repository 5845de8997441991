//! What the store keeps: tasks, their subtasks, the task journal, outcomes,
//! conversations and checkpoints. Every record is serde; the store writes
//! them as JSON values in redb tables (see `tables.rs`), so a field added
//! later with `#[serde(default)]` reads old databases.

use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use troupe_config::TaskKind;

/// A task's id: `t-` and 12 lowercase hex digits. Also the name of the
/// task's workspace directory.
pub type TaskId = Id<TaskTag>;

/// A subtask's id within its task: `s1`, `s2`, ... as the plan names them.
pub type SubtaskId = Id<SubtaskTag>;

/// Marks an [`Id`] as a task's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskTag {}

/// Marks an [`Id`] as a subtask's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubtaskTag {}

/// An id of one kind of thing ([`TaskId`], [`SubtaskId`]): text on the
/// wire and in the store, but a task's id is not a subtask's, nor any
/// other string. It reads as a `&str` wherever one is wanted.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id<T> {
    text: String,
    #[serde(skip)]
    kind: std::marker::PhantomData<T>,
}

impl<T> Id<T> {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        Id::from(self.text.clone())
    }
}

impl<T> Default for Id<T> {
    fn default() -> Self {
        Id::from(String::new())
    }
}

impl<T> std::fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.text, f)
    }
}

impl<T> std::fmt::Display for Id<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl<T> std::ops::Deref for Id<T> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl<T> AsRef<str> for Id<T> {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl<T> AsRef<std::path::Path> for Id<T> {
    fn as_ref(&self) -> &std::path::Path {
        self.text.as_ref()
    }
}

impl<T> std::borrow::Borrow<str> for Id<T> {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl<T> From<String> for Id<T> {
    fn from(text: String) -> Self {
        Id {
            text,
            kind: std::marker::PhantomData,
        }
    }
}

impl<T> From<&str> for Id<T> {
    fn from(text: &str) -> Self {
        Id::from(text.to_owned())
    }
}

impl<T> From<Id<T>> for String {
    fn from(id: Id<T>) -> String {
        id.text
    }
}

impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T> Eq for Id<T> {}

impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl<T> std::hash::Hash for Id<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl<T> PartialEq<str> for Id<T> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl<T> PartialEq<&str> for Id<T> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<T> PartialEq<String> for Id<T> {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

impl<T> PartialEq<Id<T>> for str {
    fn eq(&self, other: &Id<T>) -> bool {
        self == other.text
    }
}

impl<T> PartialEq<Id<T>> for &str {
    fn eq(&self, other: &Id<T>) -> bool {
        *self == other.text
    }
}

impl<T> PartialEq<Id<T>> for String {
    fn eq(&self, other: &Id<T>) -> bool {
        *self == other.text
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted, not yet planned.
    Queued,
    /// The Director is planning it.
    Planning,
    /// Subtasks are running.
    Running,
    /// Stopped at a step boundary by the person; resumes on `resume`.
    Paused,
    /// Finished with an answer.
    Succeeded,
    /// Finished without one; `error` says why.
    Failed,
    /// Stopped for good by the person.
    Cancelled,
}

impl TaskState {
    /// Succeeded, failed or cancelled: nothing more will happen to it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// The word shown to people and in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Planning => "planning",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task as the person submitted it and as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// The job in the person's words.
    pub request: String,
    /// A model the person asked for (used for every call of the task).
    #[serde(default)]
    pub model: Option<String>,
    /// Higher runs first when workers are scarce.
    #[serde(default)]
    pub priority: i32,
    /// Where it is.
    pub state: TaskState,
    /// When it was submitted.
    pub created_ms: u64,
    /// When its record last changed.
    pub updated_ms: u64,
    /// The final answer, once succeeded.
    #[serde(default)]
    pub answer: Option<String>,
    /// Why it failed or was cancelled.
    #[serde(default)]
    pub error: Option<String>,
    /// How many times it has been planned (1 after the first plan).
    #[serde(default)]
    pub plans: u32,
}

/// Where a subtask is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskState {
    /// Waiting for its dependencies or a worker.
    Pending,
    /// A worker has it.
    Running,
    /// Done; `result` holds what it produced.
    Succeeded,
    /// Given up on; `error` says why.
    Failed,
    /// Dropped by a re-plan or a cancel.
    Cancelled,
}

impl SubtaskState {
    /// The word shown to people and in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            SubtaskState::Pending => "pending",
            SubtaskState::Running => "running",
            SubtaskState::Succeeded => "succeeded",
            SubtaskState::Failed => "failed",
            SubtaskState::Cancelled => "cancelled",
        }
    }
}

/// One subtask of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskRecord {
    /// The task it belongs to.
    pub task_id: TaskId,
    /// Its id within the task (`s1`, `s2`, ...; a re-plan continues the
    /// numbering so ids are never reused).
    pub id: SubtaskId,
    /// What to do.
    pub description: String,
    /// Which specialist takes it.
    pub kind: TaskKind,
    /// 1 (trivial) to 10 (hardest).
    pub complexity: u8,
    /// Ids of subtasks that must succeed first.
    pub depends_on: Vec<SubtaskId>,
    /// How to tell it is done.
    pub acceptance: String,
    /// Where it is.
    pub state: SubtaskState,
    /// Attempts started so far.
    #[serde(default)]
    pub attempts: u32,
    /// The model of the latest attempt.
    #[serde(default)]
    pub model: Option<String>,
    /// What it produced.
    #[serde(default)]
    pub result: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Tokens used over all attempts.
    #[serde(default)]
    pub tokens: u64,
    /// The only tools its worker is offered, when the Director narrowed
    /// them (a one-action job); empty: every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// One subtask as the planner wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSubtask {
    /// Its id within the task.
    pub id: SubtaskId,
    /// What to do.
    pub description: String,
    /// Which specialist takes it.
    pub kind: TaskKind,
    /// 1 to 10.
    pub complexity: u8,
    /// Ids of subtasks that must succeed first.
    pub depends_on: Vec<SubtaskId>,
    /// How to tell it is done.
    pub acceptance: String,
    /// The only tools its worker is offered; empty: every tool. The
    /// planner never writes it; the Director's one-action path does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// Something that happened to a task. The journal is the ordered list of
/// these; it is append-only and what recovery replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskEvent {
    /// The task was accepted.
    Submitted {
        /// The job.
        request: String,
    },
    /// A plan was made (the first, or a re-plan).
    Planned {
        /// The subtasks.
        subtasks: Vec<PlannedSubtask>,
        /// The model that planned.
        model: String,
        /// Why that model.
        reason: String,
    },
    /// A worker took a subtask.
    SubtaskStarted {
        /// The subtask.
        subtask: SubtaskId,
        /// Its attempt number, from 1.
        attempt: u32,
        /// The model it runs with.
        model: String,
        /// Why that model.
        reason: String,
    },
    /// A worker decided on an action and is about to run it.
    StepStarted {
        /// The subtask.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: u32,
        /// The step number within the attempt, from 1.
        step: u32,
        /// The model's reasoning.
        thought: String,
        /// The tool.
        tool: String,
        /// Its arguments.
        args: Value,
        /// Tokens the model used for this step (prompt + completion).
        tokens: u64,
    },
    /// The tool ran; this is what the model will see.
    StepObserved {
        /// The subtask.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: u32,
        /// The step.
        step: u32,
        /// The observation text, as the model sees it.
        observation: String,
        /// Whether the tool reported an error.
        is_error: bool,
        /// Milliseconds the tool took.
        tool_ms: u64,
    },
    /// The step's effects are a checkpoint in the workspace.
    StepCommitted {
        /// The subtask.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: u32,
        /// The step.
        step: u32,
        /// The checkpoint's commit id.
        checkpoint: String,
    },
    /// A tool call waits for the person.
    ApprovalRequested {
        /// The subtask.
        subtask: SubtaskId,
        /// The approval request's id.
        request_id: String,
        /// The tool.
        tool: String,
        /// Its arguments.
        args: Value,
    },
    /// The person answered.
    ApprovalDecided {
        /// The approval request's id.
        request_id: String,
        /// Yes or no.
        approved: bool,
        /// Who answered, through which door (absent in journals written
        /// before troupe recorded it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Approver>,
    },
    /// A subtask ended.
    SubtaskFinished {
        /// The subtask.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: u32,
        /// Whether it succeeded.
        success: bool,
        /// Its result (on success) or the reason it failed.
        summary: String,
        /// Tokens the attempt used.
        tokens: u64,
    },
    /// A model request went past the first link of its chain (the local
    /// model missing, too large for the budget, or a provider failing) and
    /// was served by a later one. Journaled once per subtask attempt (the
    /// first time) and per Director request.
    FailedOver {
        /// The subtask, or none for the Director's plan and answer.
        #[serde(default)]
        subtask: Option<SubtaskId>,
        /// The links that failed, in order, with why.
        failed: Vec<(String, String)>,
        /// The provider that answered (`cluster:<node>` or a provider name).
        served_by: String,
        /// The model it answered with.
        model: String,
    },
    /// A subtask attempt was handed to a worker on another cluster node
    /// (this node lacked the model or a free worker). Its steps come back
    /// into this journal and its files into this workspace as it goes.
    Delegated {
        /// The subtask.
        subtask: SubtaskId,
        /// The attempt, from 1.
        attempt: u32,
        /// The node running it.
        node: String,
        /// Why it went there.
        reason: String,
    },
    /// The Director asked its model to plan or to write the answer; these
    /// tokens count toward the task's total like the Workers' steps.
    DirectorCall {
        /// `plan` or `answer`.
        purpose: String,
        /// The model asked.
        model: String,
        /// Tokens used (prompt + completion).
        tokens: u64,
    },
    /// The plan is being replaced.
    Replanning {
        /// Why.
        reason: String,
    },
    /// Paused at a step boundary.
    Paused,
    /// Resumed.
    Resumed,
    /// The process that ran the task stopped and a new one picked it up.
    Recovered {
        /// What recovery did (for example a step redone).
        detail: String,
    },
    /// The task ended.
    Finished {
        /// The state it ended in.
        state: TaskState,
        /// The answer, or why it failed or was cancelled.
        summary: String,
    },
}

impl TaskEvent {
    /// The `type` tag, as in the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskEvent::Submitted { .. } => "submitted",
            TaskEvent::Planned { .. } => "planned",
            TaskEvent::SubtaskStarted { .. } => "subtask_started",
            TaskEvent::StepStarted { .. } => "step_started",
            TaskEvent::StepObserved { .. } => "step_observed",
            TaskEvent::StepCommitted { .. } => "step_committed",
            TaskEvent::ApprovalRequested { .. } => "approval_requested",
            TaskEvent::ApprovalDecided { .. } => "approval_decided",
            TaskEvent::SubtaskFinished { .. } => "subtask_finished",
            TaskEvent::FailedOver { .. } => "failed_over",
            TaskEvent::Delegated { .. } => "delegated",
            TaskEvent::DirectorCall { .. } => "director_call",
            TaskEvent::Replanning { .. } => "replanning",
            TaskEvent::Paused => "paused",
            TaskEvent::Resumed => "resumed",
            TaskEvent::Recovered { .. } => "recovered",
            TaskEvent::Finished { .. } => "finished",
        }
    }
}

/// A task's tokens so far, read from its journal: the Director's calls,
/// every finished attempt's total, and the steps of attempts still running.
/// Every view of a task (the live screen, `tasks show`, the UX, the TUI)
/// counts with this, so they agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenTally {
    running: std::collections::HashMap<(SubtaskId, u32), u64>,
    settled: u64,
}

impl TokenTally {
    /// Counts `event`.
    pub fn add(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::StepStarted {
                subtask,
                attempt,
                tokens,
                ..
            } => *self.running.entry((subtask.clone(), *attempt)).or_default() += tokens,
            // An attempt's total includes its final answer, which has no
            // step of its own; after a restart it counts only the steps of
            // the new process, so the larger of the two is the attempt's.
            TaskEvent::SubtaskFinished {
                subtask,
                attempt,
                tokens,
                ..
            } => {
                let steps = self
                    .running
                    .remove(&(subtask.clone(), *attempt))
                    .unwrap_or(0);
                self.settled += steps.max(*tokens);
            }
            TaskEvent::DirectorCall { tokens, .. } => self.settled += tokens,
            _ => {}
        }
    }

    /// The tally of a whole journal.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> Self {
        let mut tally = Self::default();
        for event in events {
            tally.add(event);
        }
        tally
    }

    /// Tokens counted so far.
    pub fn total(&self) -> u64 {
        self.settled + self.running.values().sum::<u64>()
    }
}

/// One journal entry: an event with its place and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The task.
    pub task_id: TaskId,
    /// Its position in the task's journal, from 0, without gaps.
    pub seq: u64,
    /// When it was appended.
    pub time_ms: u64,
    /// What happened.
    pub event: TaskEvent,
}

/// What a model call was for: the Learner's contexts, and the role of an
/// [`OutcomeRecord`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CallRole {
    /// Planning a task.
    #[default]
    Plan,
    /// Running a subtask (its outcome covers all its steps).
    Subtask,
    /// Answering the person in the UX.
    Ux,
    /// Writing a task's final answer.
    Answer,
}

impl CallRole {
    /// The word used in records, reasons and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CallRole::Plan => "plan",
            CallRole::Subtask => "subtask",
            CallRole::Ux => "ux",
            CallRole::Answer => "answer",
        }
    }
}

impl std::fmt::Display for CallRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the Learner learns per: a subtask's kind, or, for a call that
/// has none, what the call was for (a plan, a UX reply, a final answer).
/// Written as one word (`code`, `plan`, ...) in records and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// A subtask of this kind.
    Task(TaskKind),
    /// A call outside any subtask.
    Call(CallRole),
}

impl Context {
    /// The word used in records, rules and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Task(kind) => kind.as_str(),
            Context::Call(role) => role.as_str(),
        }
    }

    /// Every word a context can be written as.
    pub const WORDS: [&'static str; 7] = [
        "general", "code", "research", "plan", "subtask", "ux", "answer",
    ];
}

impl Default for Context {
    fn default() -> Self {
        Context::Task(TaskKind::General)
    }
}

impl From<TaskKind> for Context {
    fn from(kind: TaskKind) -> Self {
        Context::Task(kind)
    }
}

impl From<CallRole> for Context {
    fn from(role: CallRole) -> Self {
        Context::Call(role)
    }
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Context {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, String> {
        Ok(match word {
            "general" => Context::Task(TaskKind::General),
            "code" => Context::Task(TaskKind::Code),
            "research" => Context::Task(TaskKind::Research),
            "plan" => Context::Call(CallRole::Plan),
            "subtask" => Context::Call(CallRole::Subtask),
            "ux" => Context::Call(CallRole::Ux),
            "answer" => Context::Call(CallRole::Answer),
            other => {
                return Err(format!(
                    "unknown context `{other}`; expected one of {}",
                    Context::WORDS.join(", ")
                ))
            }
        })
    }
}

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

/// One model load on this process's ModelHost; the Learner learns reload
/// costs and the memory each model holds from these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// The model.
    pub model: String,
    /// How long the load took, in milliseconds.
    pub load_ms: u64,
    /// Memory the loaded model held, in bytes (0: unknown).
    pub memory_bytes: u64,
    /// When it was recorded.
    pub time_ms: u64,
}

/// What one model call (a plan, a worker step, a UX reply, a final answer)
/// or one subtask came to; the Learner learns from these. Model loads are
/// [`LoadRecord`]s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The task, if any (UX chat has none).
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// The subtask, if any.
    #[serde(default)]
    pub subtask: Option<SubtaskId>,
    /// What the call was for.
    pub role: CallRole,
    /// The model.
    pub model: String,
    /// The subtask's kind, or what the call was for when it has none.
    pub kind: Context,
    /// 1 to 10 (0 when it has none).
    pub complexity: u8,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Wall time in milliseconds.
    pub latency_ms: u64,
    /// Whether it did what was asked.
    pub success: bool,
    /// When it was recorded.
    pub time_ms: u64,
    /// Whether the model's thinking mode was on; `None` for models without
    /// one (and records older than the field).
    #[serde(default)]
    pub thinking: Option<bool>,
    /// The token budget it was given (`max_tokens`); `None`: none recorded.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Whether it stopped because it used up that budget.
    #[serde(default)]
    pub hit_budget: bool,
    /// Estimated tokens of the request it started from (the subtask's text
    /// for a subtask, the prompt otherwise); budgets scale with it.
    #[serde(default)]
    pub request_tokens: u64,
    /// Memory the model held while it ran, in bytes (0: unknown or remote).
    #[serde(default)]
    pub memory_bytes: u64,
    /// What it cost, in the unit of `[learner]` prices: memory held ×
    /// seconds for a local model, price × tokens for a remote one.
    #[serde(default)]
    pub cost: f64,
    /// `local`, or `remote` for a priced model reached over the network;
    /// empty in records older than the field.
    #[serde(default)]
    pub provider: String,
}

/// Who said a message of a conversation with the UX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The person.
    User,
    /// troupe's UX.
    Assistant,
}

/// One message of a conversation with the UX.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationMessage {
    /// The conversation.
    pub conversation: String,
    /// Its position in the conversation, from 0.
    pub seq: u64,
    /// Who said it.
    pub role: Speaker,
    /// The text.
    pub content: String,
    /// When it was said.
    pub time_ms: u64,
}

/// A checkpoint of a task's workspace, recorded when a step committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The task.
    pub task_id: TaskId,
    /// The subtask.
    pub subtask: SubtaskId,
    /// The step label (`s1 attempt 1 step 3`).
    pub step: String,
    /// The commit id.
    pub commit: String,
    /// When it was made.
    pub time_ms: u64,
}

/// Who asked for a model call: each has its own chain of providers
/// (`[routing]`), and a [`ProviderCall`] records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The UX's replies.
    Ux,
    /// The Director's plans and answers.
    Director,
    /// The Workers' tool loops.
    #[default]
    Worker,
}

impl Route {
    /// The name used in `[routing]` and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Ux => "ux",
            Route::Director => "director",
            Route::Worker => "worker",
        }
    }
}

/// One request as a provider served or failed it: this process's ModelHost
/// (`local`), a cluster peer (`cluster:<node>`) or a remote
/// OpenAI-compatible server (its `[[providers]]` name). Tokens and cost are
/// recorded per provider from these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderCall {
    /// When it ended.
    pub time_ms: u64,
    /// `local`, `cluster:<node>` or the provider's name.
    pub provider: String,
    /// The model it ran (the provider's own name for it).
    pub model: String,
    /// Who asked.
    pub role: Route,
    /// The task it served, if any.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// Whether it answered.
    pub ok: bool,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Price × tokens for a priced provider; 0 otherwise.
    pub cost: f64,
    /// Wall time in milliseconds.
    pub latency_ms: u64,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// Who answered a tool call's approval: the way in, since only a person
/// holding that door's credential can use it. Journaled with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Approver {
    /// The terminal troupe runs in (`troupe run`'s live view, the TUI).
    Terminal,
    /// The web dashboard, with a logged-in session.
    Dashboard,
    /// An HTTP client holding the API key.
    ApiKey,
    /// An HTTP client on a server without a key (loopback only).
    LocalHttp,
    /// A chat command to the UX (`approve …`).
    Chat,
    /// A program embedding troupe's actor API.
    Embedder,
    /// The answer given before a crash, replayed on recovery.
    Replayed,
    /// Nobody: the question could not be put to a person (a denial).
    Unasked,
}

impl Approver {
    /// The name used in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Approver::Terminal => "terminal",
            Approver::Dashboard => "dashboard",
            Approver::ApiKey => "api_key",
            Approver::LocalHttp => "local_http",
            Approver::Chat => "chat",
            Approver::Embedder => "embedder",
            Approver::Replayed => "replayed",
            Approver::Unasked => "unasked",
        }
    }
}
