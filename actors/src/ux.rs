//! The UX: the person's constant companion. It answers every message at
//! once, tells chat from a request for work from a command, hands work to
//! the Director, relays approvals, and reports progress on its own while
//! tasks run.
//!
//! Its mailbox only routes: anything that waits (a model reply, a store
//! read, a submission) runs in a spawned task that answers the caller's
//! reply port itself, so the UX never waits on a task or a model.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::json;
use troupe_inference::backend::{Constraint, GenerateRequest};
use troupe_inference::chat::ChatMessage;
use troupe_store::{now_ms, OutcomeRecord, TaskEvent, TaskId, TaskState};

use crate::director::{DirectorHandle, TaskSpec};
use crate::learner::{LearnerHandle, Role};
use crate::model_host::ModelHostHandle;
use crate::runtime::{Approvals, Control, Decision, TaskJournal, TroupeEvent};

/// What a message was taken as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Conversation.
    Chat,
    /// A job: a task was started.
    Work,
    /// A command (status, pause, resume, cancel, approve, deny, help).
    Command,
}

/// The UX's answer to one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UxReply {
    /// How the message was taken.
    pub intent: Intent,
    /// The answer.
    pub text: String,
    /// The task started, for work.
    pub task_id: Option<TaskId>,
}

/// The UX's messages.
pub enum UxMsg {
    /// The person said something.
    Say {
        /// The conversation.
        conversation: String,
        /// What they said.
        text: String,
        /// Where the answer goes.
        reply: RpcReplyPort<UxReply>,
    },
    /// Something happened (from the event bus).
    Event(Box<TroupeEvent>),
    /// Time to report progress.
    Tick,
    /// A task started from a conversation: its progress goes there.
    Track(TaskId, String),
}

/// What the UX starts from.
pub struct UxArgs {
    /// Its model; none: template answers.
    pub model: Option<String>,
    /// Most tokens of a reply.
    pub max_tokens: u32,
    /// How often progress is reported.
    pub progress_interval: Duration,
    /// The models.
    pub host: ModelHostHandle,
    /// Where work goes.
    pub director: DirectorHandle,
    /// The store and the bus.
    pub journal: TaskJournal,
    /// Calls waiting for approval.
    pub approvals: Approvals,
    /// Outcomes of its replies.
    pub learner: LearnerHandle,
}

#[derive(Debug, Default)]
struct Tracked {
    conversation: Option<String>,
    line: String,
    changed: bool,
    tokens: u64,
}

/// The UX's state.
pub struct UxState {
    args: UxArgs,
    tracked: HashMap<TaskId, Tracked>,
}

/// The actor.
pub struct Ux;

impl Actor for Ux {
    type Msg = UxMsg;
    type State = UxState;
    type Arguments = UxArgs;

    async fn pre_start(
        &self,
        me: ActorRef<UxMsg>,
        args: UxArgs,
    ) -> Result<UxState, ActorProcessingErr> {
        let mut events = args.journal.bus().subscribe();
        let forward = me.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if forward.cast(UxMsg::Event(Box::new(event))).is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the UX fell behind the event bus");
                    }
                    Err(_) => break,
                }
            }
        });
        me.send_interval(args.progress_interval, || UxMsg::Tick);
        Ok(UxState {
            args,
            tracked: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<UxMsg>,
        msg: UxMsg,
        state: &mut UxState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UxMsg::Say {
                conversation,
                text,
                reply,
            } => say(&me, state, conversation, text, reply),
            UxMsg::Event(event) => observe(state, *event),
            UxMsg::Tick => report(state),
            UxMsg::Track(id, conversation) => {
                let t = state.tracked.entry(id).or_default();
                t.conversation = Some(conversation);
            }
        }
        Ok(())
    }
}

/// A parsed command.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Status,
    Steer(Control, String),
    Decide(bool, String, Option<String>),
    Work(String),
    Chat(String),
}

fn parse_command(text: &str) -> Option<Command> {
    let t = text.trim();
    let t = t.strip_prefix('/').unwrap_or(t);
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    let arg = || rest.split_whitespace().next().unwrap_or("").to_string();
    let reason = || {
        rest.split_once(char::is_whitespace)
            .map(|(_, r)| r.trim().to_string())
            .filter(|r| !r.is_empty())
    };
    // `cancel the plan` is a sentence, `cancel t-1a2b` a command.
    let looks_like_id = !rest.is_empty() && !rest.contains(char::is_whitespace);
    Some(match word.to_ascii_lowercase().as_str() {
        "help" | "?" if rest.is_empty() => Command::Help,
        "status" | "tasks" if rest.is_empty() => Command::Status,
        "pause" if looks_like_id => Command::Steer(Control::Pause, arg()),
        "resume" if looks_like_id => Command::Steer(Control::Run, arg()),
        "cancel" if looks_like_id => Command::Steer(Control::Cancel, arg()),
        "approve" if !rest.is_empty() => Command::Decide(true, arg(), reason()),
        "deny" if !rest.is_empty() => Command::Decide(false, arg(), reason()),
        "run" | "task" | "do" if text.trim_start().starts_with('/') && !rest.is_empty() => {
            Command::Work(rest.to_string())
        }
        "chat" if text.trim_start().starts_with('/') && !rest.is_empty() => {
            Command::Chat(rest.to_string())
        }
        _ => return None,
    })
}

/// Verbs that open a request for work, when no model decides.
const WORK_VERBS: &[&str] = &[
    "write",
    "build",
    "create",
    "make",
    "implement",
    "research",
    "find",
    "fix",
    "analyze",
    "analyse",
    "summarize",
    "summarise",
    "generate",
    "refactor",
    "test",
    "add",
    "compute",
    "calculate",
    "draft",
    "translate",
    "convert",
    "compare",
    "plan",
    "design",
    "set",
    "install",
    "download",
    "collect",
    "investigate",
    "produce",
    "port",
    "update",
    "debug",
    "document",
];

/// Whether `text` asks for work, by its first verb (after "please", "can
/// you" and the like).
pub fn looks_like_work(text: &str) -> bool {
    let lower = text.trim().to_lowercase();
    let mut rest = lower.as_str();
    for prefix in [
        "please",
        "can you",
        "could you",
        "would you",
        "i need you to",
        "i want you to",
        "kindly",
    ] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r.trim_start_matches([',', ' ']);
        }
    }
    let first = rest
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("");
    WORK_VERBS.contains(&first)
}

const HELP: &str = "Tell me a job in plain words and I plan and run it with the team \
(e.g. \"write a Python fibonacci function with tests\"). Commands: status, pause ID, \
resume ID, cancel ID, approve ID, deny ID [reason], /run JOB, /chat TEXT.";

fn say(
    me: &ActorRef<UxMsg>,
    state: &mut UxState,
    conversation: String,
    text: String,
    reply: RpcReplyPort<UxReply>,
) {
    let me = me.clone();
    let journal = state.args.journal.clone();
    let director = state.args.director.clone();
    let approvals = state.args.approvals.clone();
    let host = state.args.host.clone();
    let learner = state.args.learner.clone();
    let model = state.args.model.clone();
    let max_tokens = state.args.max_tokens;
    // The answer is worked out off the mailbox; the tasks a conversation
    // starts are tracked here, when their events arrive.
    tokio::spawn(async move {
        let store = journal.store().clone();
        let _ = store.append_message(&conversation, "user", &text).await;
        let answer = match parse_command(&text) {
            Some(Command::Help) => command(HELP.to_string()),
            Some(Command::Status) => command(status_text(&journal).await),
            Some(Command::Steer(control, id)) => {
                let verb = match control {
                    Control::Run => "resumed",
                    Control::Pause => "pausing",
                    Control::Cancel => "cancelling",
                };
                command(match resolve_task(&journal, &id).await {
                    Ok(id) => match director.control(&id, control).await {
                        Ok(_) => format!("Task {id}: {verb}."),
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e,
                })
            }
            Some(Command::Decide(approved, id, reason)) => {
                command(match approvals.decide(&id, Decision { approved, reason }) {
                    Ok(p) => format!(
                        "{} `{}` for task {}.",
                        if approved { "Approved" } else { "Denied" },
                        p.request.tool,
                        p.task_id
                    ),
                    Err(e) => e.to_string(),
                })
            }
            Some(Command::Work(job)) => work(&director, &conversation, job, None).await,
            Some(Command::Chat(t)) => {
                chat(
                    &host,
                    &learner,
                    model.as_deref(),
                    max_tokens,
                    &journal,
                    &conversation,
                    &t,
                    true,
                )
                .await
            }
            None => {
                if model.is_some() {
                    chat(
                        &host,
                        &learner,
                        model.as_deref(),
                        max_tokens,
                        &journal,
                        &conversation,
                        &text,
                        false,
                    )
                    .await
                } else if looks_like_work(&text) {
                    work(&director, &conversation, text.clone(), None).await
                } else {
                    UxReply {
                        intent: Intent::Chat,
                        text: format!("Hello! {HELP}"),
                        task_id: None,
                    }
                }
            }
        };
        let answer = match answer.intent {
            // A model that took the message as work: start it.
            Intent::Work if answer.task_id.is_none() => {
                work(&director, &conversation, text.clone(), Some(answer.text)).await
            }
            _ => answer,
        };
        if let Some(id) = &answer.task_id {
            let _ = me.cast(UxMsg::Track(id.clone(), conversation.clone()));
        }
        let _ = store
            .append_message(&conversation, "assistant", &answer.text)
            .await;
        let _ = reply.send(answer);
    });
}

fn command(text: String) -> UxReply {
    UxReply {
        intent: Intent::Command,
        text,
        task_id: None,
    }
}

async fn work(
    director: &DirectorHandle,
    conversation: &str,
    job: String,
    preface: Option<String>,
) -> UxReply {
    // The conversation a task came from is where its progress goes.
    let spec = TaskSpec::new(job);
    match director.submit(spec).await {
        Ok(id) => UxReply {
            intent: Intent::Work,
            text: format!(
                "{}Started task {id}. I will report progress here{}.",
                preface
                    .map(|p| format!("{} ", p.trim()))
                    .unwrap_or_default(),
                if conversation.is_empty() {
                    ""
                } else {
                    " as it goes"
                }
            ),
            task_id: Some(id),
        },
        Err(e) => UxReply {
            intent: Intent::Work,
            text: format!("I could not start that: {e}"),
            task_id: None,
        },
    }
}

#[derive(Deserialize)]
struct ModelAnswer {
    intent: String,
    reply: String,
}

#[allow(clippy::too_many_arguments)]
async fn chat(
    host: &ModelHostHandle,
    learner: &LearnerHandle,
    model: Option<&str>,
    max_tokens: u32,
    journal: &TaskJournal,
    conversation: &str,
    text: &str,
    chat_only: bool,
) -> UxReply {
    let Some(model) = model else {
        return UxReply {
            intent: Intent::Chat,
            text: format!("Hello! {HELP}"),
            task_id: None,
        };
    };
    let mut messages = vec![ChatMessage::system(
        "You are the front desk of troupe, a team of AI agents that does multi-step jobs. \
         Decide whether the person's last message asks for a job to be done (intent \"work\") \
         or is conversation (intent \"chat\"), and reply in one or two friendly sentences. \
         Answer with JSON only.",
    )];
    if let Ok(history) = journal.store().conversation(conversation).await {
        // The last message is the one being answered; it is already there.
        for m in history.iter().rev().take(9).rev() {
            messages.push(match m.role.as_str() {
                "assistant" => ChatMessage::assistant(m.content.clone()),
                _ => ChatMessage::user(m.content.clone()),
            });
        }
    }
    if messages.len() == 1 {
        messages.push(ChatMessage::user(text.to_string()));
    }
    let mut req = GenerateRequest::chat(messages);
    req.max_tokens = max_tokens;
    req.session = Some(format!("ux/{conversation}"));
    req.constraint = Some(Constraint::JsonSchema(json!({
        "type": "object",
        "properties": {
            "intent": { "enum": ["chat", "work"] },
            "reply": { "type": "string", "maxLength": 600 }
        },
        "required": ["intent", "reply"],
        "additionalProperties": false
    })));
    let started = std::time::Instant::now();
    let result = match host.generate(model, req, None).await {
        Ok(stream) => stream.into_result().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let parsed = result
        .as_ref()
        .ok()
        .and_then(|r| serde_json::from_str::<ModelAnswer>(r.text.trim()).ok());
    let usage = result.as_ref().map(|r| r.usage).unwrap_or_default();
    learner.record(OutcomeRecord {
        task_id: None,
        subtask: None,
        role: Role::Ux.as_str().to_string(),
        model: model.to_string(),
        kind: "ux".to_string(),
        complexity: 0,
        prompt_tokens: u64::from(usage.prompt_tokens),
        completion_tokens: u64::from(usage.completion_tokens),
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        success: parsed.is_some(),
        time_ms: now_ms(),
    });
    match parsed {
        Some(a) => UxReply {
            intent: if a.intent == "work" && !chat_only {
                Intent::Work
            } else {
                Intent::Chat
            },
            text: a.reply,
            task_id: None,
        },
        // The model failed: fall back to the rule so the person still gets
        // an answer at once.
        None => {
            let why = match result {
                Err(e) => e,
                Ok(r) => format!("its reply was not the expected JSON: {:?}", r.text),
            };
            tracing::warn!(model, %why, "the UX model failed; answering from the template");
            UxReply {
                intent: if !chat_only && looks_like_work(text) {
                    Intent::Work
                } else {
                    Intent::Chat
                },
                text: format!("(my model is unavailable: {why}) {HELP}"),
                task_id: None,
            }
        }
    }
}

async fn resolve_task(journal: &TaskJournal, id: &str) -> Result<TaskId, String> {
    let tasks = journal.store().tasks().await.map_err(|e| e.to_string())?;
    let matches: Vec<&str> = tasks
        .iter()
        .map(|t| t.id.as_str())
        .filter(|t| t.starts_with(id))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Err(format!("there is no task `{id}`")),
        _ => Err(format!(
            "`{id}` matches {} tasks; give more of the id",
            matches.len()
        )),
    }
}

async fn status_text(journal: &TaskJournal) -> String {
    let tasks = match journal.store().tasks().await {
        Ok(t) => t,
        Err(e) => return e.to_string(),
    };
    if tasks.is_empty() {
        return "No tasks yet.".to_string();
    }
    let mut out = String::new();
    for t in tasks.iter().rev().take(10) {
        let subs = journal.store().subtasks(&t.id).await.unwrap_or_default();
        let done = subs
            .iter()
            .filter(|s| s.state == troupe_store::SubtaskState::Succeeded)
            .count();
        let live = subs
            .iter()
            .filter(|s| s.state != troupe_store::SubtaskState::Cancelled)
            .count();
        out.push_str(&format!(
            "{} {:<9} {done}/{live} subtasks  {}\n",
            t.id,
            t.state.as_str(),
            short(&t.request, 60)
        ));
    }
    out.trim_end().to_string()
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn observe(state: &mut UxState, event: TroupeEvent) {
    let bus = state.args.journal.bus().clone();
    match event {
        TroupeEvent::Journal(entry) => {
            let tracked = state.tracked.entry(entry.task_id.clone()).or_default();
            let line = match &entry.event {
                TaskEvent::Submitted { .. } => Some("accepted".to_string()),
                TaskEvent::Planned { subtasks, .. } => {
                    Some(format!("planned {} subtasks", subtasks.len()))
                }
                TaskEvent::SubtaskStarted { subtask, model, .. } => {
                    Some(format!("{subtask} started on {model}"))
                }
                TaskEvent::StepStarted {
                    subtask,
                    step,
                    tool,
                    tokens,
                    ..
                } => {
                    tracked.tokens += tokens;
                    Some(format!("{subtask} step {step}: {tool}"))
                }
                TaskEvent::SubtaskFinished {
                    subtask, success, ..
                } => Some(format!(
                    "{subtask} {}",
                    if *success { "done" } else { "failed" }
                )),
                TaskEvent::Replanning { reason } => {
                    Some(format!("re-planning: {}", short(reason, 80)))
                }
                TaskEvent::Finished { state: s, summary } => {
                    let text = match s {
                        TaskState::Succeeded => {
                            format!("Task {} succeeded: {}", entry.task_id, short(summary, 400))
                        }
                        other => {
                            format!("Task {} {}: {}", entry.task_id, other, short(summary, 200))
                        }
                    };
                    let conversation = tracked.conversation.clone().unwrap_or_default();
                    bus.publish(TroupeEvent::Ux { conversation, text });
                    state.tracked.remove(&entry.task_id);
                    return;
                }
                _ => None,
            };
            if let Some(line) = line {
                tracked.line = line;
                tracked.changed = true;
            }
        }
        TroupeEvent::ApprovalPending { task_id, request } => {
            let conversation = state
                .tracked
                .get(&task_id)
                .and_then(|t| t.conversation.clone())
                .unwrap_or_default();
            let text = format!(
                "Task {task_id} asks: {} Say `approve {}` or `deny {} [reason]`.",
                request.question(),
                request.id,
                request.id
            );
            bus.publish(TroupeEvent::Ux { conversation, text });
        }
        TroupeEvent::Progress { .. } | TroupeEvent::Ux { .. } => {}
    }
}

fn report(state: &mut UxState) {
    let bus = state.args.journal.bus().clone();
    for (id, t) in state.tracked.iter_mut().filter(|(_, t)| t.changed) {
        t.changed = false;
        bus.publish(TroupeEvent::Ux {
            conversation: t.conversation.clone().unwrap_or_default(),
            text: format!("Task {id}: {} ({} tokens so far)", t.line, t.tokens),
        });
    }
}

/// The public way to the UX. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UxHandle {
    actor: crate::runtime::ActorSlot<UxMsg>,
}

impl UxHandle {
    /// Wraps a running UX.
    pub fn new(actor: crate::runtime::ActorSlot<UxMsg>) -> UxHandle {
        UxHandle { actor }
    }

    /// The actor now.
    pub fn actor(&self) -> ActorRef<UxMsg> {
        self.actor.get()
    }

    /// Says `text` in `conversation`; the answer comes back at once (a
    /// model reply, a command's result, or the id of the task started).
    /// Progress and the task's end arrive later as [`TroupeEvent::Ux`].
    ///
    /// # Errors
    /// [`crate::runtime::AgentError::Stopped`].
    pub async fn say(
        &self,
        conversation: &str,
        text: &str,
    ) -> Result<UxReply, crate::runtime::AgentError> {
        let conversation = conversation.to_string();
        let text = text.to_string();
        match self
            .actor
            .get()
            .call(
                |reply| UxMsg::Say {
                    conversation,
                    text,
                    reply,
                },
                None,
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            _ => Err(crate::runtime::AgentError::Stopped("UX")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_parsed() {
        assert_eq!(parse_command("status"), Some(Command::Status));
        assert_eq!(
            parse_command("/pause t-abc"),
            Some(Command::Steer(Control::Pause, "t-abc".into()))
        );
        assert_eq!(
            parse_command("deny 1234 too risky"),
            Some(Command::Decide(
                false,
                "1234".into(),
                Some("too risky".into())
            ))
        );
        assert_eq!(
            parse_command("/run write a poem"),
            Some(Command::Work("write a poem".into()))
        );
        assert_eq!(parse_command("cancel the whole plan please"), None);
        assert_eq!(parse_command("how are you?"), None);
    }

    #[test]
    fn work_is_told_from_chat() {
        assert!(looks_like_work(
            "Write a Python fibonacci function with tests"
        ));
        assert!(looks_like_work("please, research the best HNSW crates"));
        assert!(looks_like_work("Can you fix the failing build?"));
        assert!(!looks_like_work("hello there"));
        assert!(!looks_like_work("what can you do?"));
    }
}
