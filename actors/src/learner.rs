//! The Learner, first form: records every outcome in the store and
//! recommends models from configuration (the person's choice, the role's
//! model, then `[[agents.rules]]` on task kind, complexity and free memory,
//! then `[agents] model`). The learning issue replaces the rules with a
//! policy learned from the outcomes.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use troupe_config::AgentsConfig;
use troupe_store::{OutcomeRecord, Store};

use crate::model_host::{format_bytes, ModelHostHandle};
use crate::runtime::AgentError;

/// What a model is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Planning a task.
    Plan,
    /// Running a subtask.
    Subtask,
    /// Answering the person in the UX.
    Ux,
    /// Writing a task's final answer.
    Answer,
}

impl Role {
    /// The word used in outcomes and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Plan => "plan",
            Role::Subtask => "subtask",
            Role::Ux => "ux",
            Role::Answer => "answer",
        }
    }
}

/// A question to the Learner.
#[derive(Debug, Clone)]
pub struct RecommendRequest {
    /// What for.
    pub role: Role,
    /// The task kind (`general`, `code`, `research`; the role's word otherwise).
    pub kind: String,
    /// 1 to 10 (0 when there is none).
    pub complexity: u8,
    /// A model the person asked for.
    pub task_model: Option<String>,
    /// The model configured for the specialist or role.
    pub role_model: Option<String>,
    /// A model that failed: recommend the next stronger one.
    pub stronger_than: Option<String>,
}

/// The Learner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The model.
    pub model: String,
    /// Why, in one line.
    pub reason: String,
}

/// The Learner's messages.
pub enum LearnerMsg {
    /// Recommends a model.
    Recommend(
        Box<RecommendRequest>,
        RpcReplyPort<Result<Recommendation, AgentError>>,
    ),
    /// Records an outcome.
    Record(Box<OutcomeRecord>),
}

/// The actor.
pub struct Learner;

/// What it starts from.
pub struct LearnerArgs {
    /// Where outcomes go.
    pub store: Store,
    /// Models and rules.
    pub agents: AgentsConfig,
    /// For free memory.
    pub host: ModelHostHandle,
}

impl Actor for Learner {
    type Msg = LearnerMsg;
    type State = LearnerArgs;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<LearnerMsg>,
        args: LearnerArgs,
    ) -> Result<LearnerArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<LearnerMsg>,
        msg: LearnerMsg,
        state: &mut LearnerArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LearnerMsg::Recommend(req, reply) => {
                let free = match state.host.status().await {
                    Ok(s) => s.budget_bytes.saturating_sub(s.reserved_bytes),
                    Err(_) => 0,
                };
                let _ = reply.send(recommend(&state.agents, &req, free));
            }
            LearnerMsg::Record(outcome) => {
                if let Err(error) = state.store.record_outcome(*outcome).await {
                    tracing::warn!(%error, "could not record an outcome");
                }
            }
        }
        Ok(())
    }
}

/// The recommendation the configuration gives, with `free` bytes of the
/// memory budget unused.
///
/// # Errors
/// [`AgentError::NoModel`] when nothing names a model.
pub fn recommend(
    agents: &AgentsConfig,
    req: &RecommendRequest,
    free: u64,
) -> Result<Recommendation, AgentError> {
    let pick = |model: &str, reason: String| Recommendation {
        model: model.to_string(),
        reason,
    };
    if let Some(failed) = &req.stronger_than {
        let ladder = &agents.ladder;
        return Ok(match ladder.iter().position(|m| m == failed) {
            Some(i) if i + 1 < ladder.len() => pick(
                &ladder[i + 1],
                format!("retry one step up the ladder after {failed} failed"),
            ),
            _ => pick(
                failed,
                format!("retry with {failed}: no stronger model in [agents] ladder"),
            ),
        });
    }
    if let Some(m) = &req.task_model {
        return Ok(pick(m, "the task asked for it".to_string()));
    }
    if let Some(m) = &req.role_model {
        return Ok(pick(
            m,
            format!("configured for {} {}", req.kind, req.role.as_str()),
        ));
    }
    for (i, rule) in agents.rules.iter().enumerate() {
        if rule.matches(&req.kind, req.complexity, free) {
            return Ok(pick(
                &rule.model,
                format!(
                    "rule {}: {}, complexity {}–{}, {} free → {}",
                    i + 1,
                    rule.kind.as_deref().unwrap_or("any kind"),
                    rule.min_complexity,
                    rule.max_complexity,
                    format_bytes(free),
                    rule.model
                ),
            ));
        }
    }
    if let Some(m) = &agents.model {
        return Ok(pick(m, "[agents] model".to_string()));
    }
    if let Some(m) = agents.ladder.first() {
        return Ok(pick(m, "the weakest model of [agents] ladder".to_string()));
    }
    Err(AgentError::NoModel {
        role: format!("{} ({})", req.role.as_str(), req.kind),
    })
}

/// The public way to the Learner. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LearnerHandle {
    actor: crate::runtime::ActorSlot<LearnerMsg>,
}

impl LearnerHandle {
    /// Wraps a running Learner.
    pub fn new(actor: crate::runtime::ActorSlot<LearnerMsg>) -> LearnerHandle {
        LearnerHandle { actor }
    }

    /// The actor now.
    pub fn actor(&self) -> ActorRef<LearnerMsg> {
        self.actor.get()
    }

    /// A model for `req`.
    ///
    /// # Errors
    /// [`AgentError::NoModel`], or [`AgentError::Stopped`].
    pub async fn recommend(&self, req: RecommendRequest) -> Result<Recommendation, AgentError> {
        match self
            .actor
            .get()
            .call(|reply| LearnerMsg::Recommend(Box::new(req), reply), None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            _ => Err(AgentError::Stopped("Learner")),
        }
    }

    /// Records an outcome (fire and forget).
    pub fn record(&self, outcome: OutcomeRecord) {
        let _ = self.actor.get().cast(LearnerMsg::Record(Box::new(outcome)));
    }
}
