//! `ask_user`: a question that reaches the person through the UX and waits
//! for the answer. The tool talks to a [`UserChannel`]; the runtime supplies
//! one wired to the UX actor. [`MpscUserChannel`] is a ready-made channel
//! over tokio mpsc, used by tests and simple embedders.

use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, RiskLevel, Tool, ToolContext, ToolError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A question for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserQuestion {
    /// The task asking.
    pub task_id: String,
    /// The question.
    pub text: String,
    /// Suggested answers, if any (the person may answer otherwise).
    pub choices: Vec<String>,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// Nobody is listening for questions.
    #[error("no one is available to answer questions")]
    NoListener,
    /// The question was dropped without an answer.
    #[error("the question was dismissed without an answer")]
    Dismissed,
}

/// Where questions go and answers come from.
#[async_trait::async_trait]
pub trait UserChannel: Send + Sync + std::fmt::Debug {
    /// Puts `question` to the person and waits for the answer.
    async fn ask(&self, question: UserQuestion) -> Result<String, AskError>;
}

/// A question waiting on the receiving end of an [`MpscUserChannel`].
#[derive(Debug)]
pub struct PendingQuestion {
    /// The question.
    pub question: UserQuestion,
    reply: oneshot::Sender<String>,
}

impl PendingQuestion {
    /// Sends the answer back to the waiting tool call. Returns false when the
    /// call is no longer waiting.
    pub fn answer(self, text: impl Into<String>) -> bool {
        self.reply.send(text.into()).is_ok()
    }
}

/// A [`UserChannel`] that sends each question, with a reply slot, over a
/// tokio mpsc channel.
#[derive(Debug, Clone)]
pub struct MpscUserChannel {
    tx: mpsc::Sender<PendingQuestion>,
}

impl MpscUserChannel {
    /// A channel and the receiver questions arrive on.
    pub fn pair(capacity: usize) -> (MpscUserChannel, mpsc::Receiver<PendingQuestion>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (MpscUserChannel { tx }, rx)
    }
}

#[async_trait::async_trait]
impl UserChannel for MpscUserChannel {
    async fn ask(&self, question: UserQuestion) -> Result<String, AskError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(PendingQuestion { question, reply })
            .await
            .map_err(|_| AskError::NoListener)?;
        answer.await.map_err(|_| AskError::Dismissed)
    }
}

/// `ask_user`.
#[derive(Debug, Clone)]
pub struct AskUser {
    channel: Arc<dyn UserChannel>,
}

impl AskUser {
    /// A tool asking through `channel`.
    pub fn new(channel: Arc<dyn UserChannel>) -> AskUser {
        AskUser { channel }
    }
}

#[async_trait::async_trait]
impl Tool for AskUser {
    fn name(&self) -> &str {
        "ask_user"
    }

    fn description(&self) -> &str {
        "Asks the person a question and waits for the answer. Use it when the task is \
         ambiguous or a decision is theirs to make."
    }

    fn risk(&self) -> RiskLevel {
        RiskLevel::Read
    }

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "question": { "type": "string", "description": "The question, self-contained." },
                "choices": { "type": "array", "items": { "type": "string" }, "description": "Suggested answers." }
            }),
            &["question"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let text = args::string(&a, "question");
        if text.trim().is_empty() {
            return Ok(Observation::error("`question` is empty"));
        }
        let question = UserQuestion {
            task_id: ctx.workspace.task_id().to_string(),
            text,
            choices: args::strings(&a, "choices"),
        };
        match self.channel.ask(question).await {
            Ok(answer) => Ok(Observation::ok(
                format!("the person answered: {answer}"),
                json!({ "answer": answer }),
            )),
            Err(e) => Ok(Observation::error(format!(
                "{e}; carry on with your best judgement and note the assumption in README.md"
            ))),
        }
    }
}
