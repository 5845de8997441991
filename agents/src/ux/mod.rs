//! The UX: the person's constant companion. It answers every message at
//! once, tells chat from a request for work from a command, hands work to
//! the Director, relays approvals, and reports progress on its own while
//! tasks run.
//!
//! Its mailbox only routes: anything that waits (a model reply, a store
//! read, a submission) runs in a spawned task that answers the caller's
//! reply port itself, so the UX never waits on a task or a model.
//!
//! # Layout
//! - `mod.rs`: the actor, its messages, progress reports and [`UxHandle`].
//! - `commands`: commands, telling work from chat without a model, status.
//! - `chat`: replies from the UX model.

mod chat;
mod commands;
mod remember;

pub use commands::looks_like_work;
use commands::{command, parse_command, resolve_task, short, status_text, Command, HELP};

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use troupe_store::{Speaker, TaskEvent, TaskId, TaskState};

use crate::director::{DirectorHandle, TaskSpec};
use crate::learner::LearnerHandle;
use crate::router::Router;
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

// Local only; ractor's `cluster` feature (on for the workspace, see the
// root Cargo.toml) has no blanket impl.
impl ractor::Message for UxMsg {}

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
    /// The models: the local host, then the UX's chain.
    pub router: Router,
    /// Where work goes.
    pub director: DirectorHandle,
    /// The store and the bus.
    pub journal: TaskJournal,
    /// Calls waiting for approval.
    pub approvals: Approvals,
    /// Outcomes of its replies.
    pub learner: LearnerHandle,
    /// Where conversation summaries go; `None` runs without memory.
    pub memory: Option<std::sync::Arc<troupe_memory::Memory>>,
}

#[derive(Debug, Default)]
struct Tracked {
    conversation: Option<String>,
    line: String,
    changed: bool,
    tokens: troupe_store::TokenTally,
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
    let memory = state.args.memory.clone();
    let replier = chat::Replier {
        router: state.args.router.clone(),
        learner: state.args.learner.clone(),
        model: state.args.model.clone(),
        max_tokens: state.args.max_tokens,
        journal: journal.clone(),
    };
    // The answer is worked out off the mailbox; the tasks a conversation
    // starts are tracked here, when their events arrive.
    tokio::spawn(async move {
        let store = journal.store().clone();
        let _ = store
            .append_message(&conversation, Speaker::User, &text)
            .await;
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
            Some(Command::Decide(approved, id, reason)) => command(
                match approvals.decide(
                    &id,
                    Decision {
                        approved,
                        reason,
                        by: troupe_store::Approver::Chat,
                    },
                ) {
                    Ok(p) => format!(
                        "{} `{}` for task {}.",
                        if approved { "Approved" } else { "Denied" },
                        p.request.tool,
                        p.task_id
                    ),
                    Err(e) => e.to_string(),
                },
            ),
            Some(Command::Work(job)) => work(&director, &conversation, job, None).await,
            Some(Command::Chat(t)) => chat::chat(&replier, &conversation, &t, true).await,
            None => {
                if replier.model.is_some() {
                    chat::chat(&replier, &conversation, &text, false).await
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
        let said = store
            .append_message(&conversation, Speaker::Assistant, &answer.text)
            .await;
        let _ = reply.send(answer);
        if let (Some(memory), Ok(last)) = (&memory, said) {
            if let Ok(messages) = store.conversation(&conversation).await {
                remember::maybe_summarise(memory, &last, &messages).await;
            }
        }
    });
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

fn observe(state: &mut UxState, event: TroupeEvent) {
    let bus = state.args.journal.bus().clone();
    match event {
        TroupeEvent::Journal(entry) => {
            let tracked = state.tracked.entry(entry.task_id.clone()).or_default();
            tracked.tokens.add(&entry.event);
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
                    ..
                } => Some(format!("{subtask} step {step}: {tool}")),
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
            text: format!("Task {id}: {} ({} tokens so far)", t.line, t.tokens.total()),
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
