//! The Learner: records every outcome, learns from them which model to use
//! for each kind of call and how many tokens to give it, and learns how
//! long each model takes to load.
//!
//! Its knowledge is a [`LearnerState`], a plain struct rebuilt from the
//! store's outcomes when the actor starts (so it survives restarts) and
//! updated with each outcome after. Model loads are outcomes too (role
//! `load`), heard from the ModelHost's events; their mean times go back to
//! the host as reload costs for its eviction order.
//!
//! # Layout
//! - `mod.rs`: the messages, the actor and [`LearnerHandle`]; [`recommend`],
//!   the configuration's own choice, which the policy starts from.
//! - [`policy`]: [`LearnerState`], the bandit that picks models.
//! - [`stats`]: the per kind × complexity × model aggregates.
//! - [`budget`]: token budgets from quantiles of successful runs.
//! - [`sim`]: a seeded simulated workload for `troupe bench learner`.

pub mod budget;
pub mod policy;
pub mod sim;
pub mod stats;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use troupe_config::{AgentsConfig, LearnerConfig, TaskKind};
use troupe_store::{now_ms, Context, LoadRecord, OutcomeRecord, Store};

use crate::runtime::AgentError;
use troupe_host::{format_bytes, HostEvent, HostStatus, ModelHostHandle};

pub use policy::{HostView, LearnerState};
pub use stats::{LoadRow, StatsRow};

/// What a call is for (the store's [`troupe_store::CallRole`]: one
/// vocabulary for requests, outcomes and tables).
pub use troupe_store::CallRole as Role;

/// A question to the Learner.
#[derive(Debug, Clone)]
pub struct RecommendRequest {
    /// What for.
    pub role: Role,
    /// The subtask's kind, or what the call is for when it has none.
    pub kind: Context,
    /// 1 to 10 (0 when there is none).
    pub complexity: u8,
    /// A model the person asked for.
    pub task_model: Option<String>,
    /// The model configured for the specialist or role.
    pub role_model: Option<String>,
    /// A model that failed: recommend the next stronger one.
    pub stronger_than: Option<String>,
    /// The configured token maximum of the call (0: no budget wanted).
    pub max_tokens: u64,
    /// Estimated tokens of the request (0: unknown); budgets scale with it.
    pub request_tokens: u64,
    /// A model whose learned budget ran out: keep it, with `max_tokens`.
    pub raise_budget_of: Option<String>,
}

impl RecommendRequest {
    /// A request for `role` and `kind` with nothing else set.
    pub fn new(role: Role, kind: impl Into<Context>, complexity: u8) -> RecommendRequest {
        RecommendRequest {
            role,
            kind: kind.into(),
            complexity,
            task_model: None,
            role_model: None,
            stronger_than: None,
            max_tokens: 0,
            request_tokens: 0,
            raise_budget_of: None,
        }
    }
}

/// The Learner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The model.
    pub model: String,
    /// Why, in one line.
    pub reason: String,
    /// The call's token budget (`None` when the request gave no maximum).
    pub max_tokens: Option<u64>,
}

/// Estimated tokens of `text` (about four bytes each), for
/// [`RecommendRequest::request_tokens`].
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

// Local only; ractor's `cluster` feature (on for the workspace, see the
// root Cargo.toml) has no blanket impl.
impl ractor::Message for LearnerMsg {}

/// The Learner's messages.
pub enum LearnerMsg {
    /// Recommends a model.
    Recommend(
        Box<RecommendRequest>,
        RpcReplyPort<Result<Recommendation, AgentError>>,
    ),
    /// Records an outcome.
    Record(Box<OutcomeRecord>),
    /// The ModelHost loaded a model.
    Loaded {
        /// Its name.
        model: String,
        /// How long the load took, in milliseconds.
        millis: u64,
        /// Memory it holds.
        bytes: u64,
    },
    /// The table of what it has learned.
    Stats(RpcReplyPort<Vec<StatsRow>>),
}

/// The actor.
pub struct Learner;

/// What it starts from.
pub struct LearnerArgs {
    /// Where outcomes go.
    pub store: Store,
    /// Models and rules.
    pub agents: AgentsConfig,
    /// For free memory, load events and reload costs.
    pub host: ModelHostHandle,
    /// The policy's settings.
    pub learner: LearnerConfig,
}

/// The running actor's state.
pub struct Running {
    store: Store,
    host: ModelHostHandle,
    policy: LearnerState,
    events: JoinHandle<()>,
}

impl Actor for Learner {
    type Msg = LearnerMsg;
    type State = Running;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        me: ActorRef<LearnerMsg>,
        args: LearnerArgs,
    ) -> Result<Running, ActorProcessingErr> {
        let past = match (args.store.loads().await, args.store.outcomes().await) {
            (Ok(loads), Ok(outcomes)) => (loads, outcomes),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "could not read past outcomes; the Learner starts empty");
                (Vec::new(), Vec::new())
            }
        };
        let policy = LearnerState::rebuild(args.agents, args.learner, &past.0, &past.1);
        args.host.set_reload_costs(policy.reload_costs());
        let events = spawn_load_listener(&args.host, me);
        Ok(Running {
            store: args.store,
            host: args.host,
            policy,
            events,
        })
    }

    async fn post_stop(
        &self,
        _me: ActorRef<LearnerMsg>,
        state: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        state.events.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<LearnerMsg>,
        msg: LearnerMsg,
        state: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LearnerMsg::Recommend(req, reply) => {
                let view = match state.host.status().await {
                    Ok(s) => host_view(&s),
                    Err(_) => HostView::default(),
                };
                let _ = reply.send(state.policy.recommend(&req, &view));
            }
            LearnerMsg::Record(outcome) => record(state, *outcome).await,
            LearnerMsg::Loaded {
                model,
                millis,
                bytes,
            } => {
                let load = LoadRecord {
                    model,
                    load_ms: millis,
                    memory_bytes: bytes,
                    time_ms: now_ms(),
                };
                state.policy.observe_load(&load);
                if let Err(error) = state.store.record_load(load).await {
                    tracing::warn!(%error, "could not record a model load");
                }
                state.host.set_reload_costs(state.policy.reload_costs());
            }
            LearnerMsg::Stats(reply) => {
                let _ = reply.send(state.policy.rows());
            }
        }
        Ok(())
    }
}

async fn record(state: &mut Running, mut outcome: OutcomeRecord) {
    state.policy.price(&mut outcome);
    state.policy.observe(&outcome);
    if let Err(error) = state.store.record_outcome(outcome).await {
        tracing::warn!(%error, "could not record an outcome");
    }
}

/// Forwards the host's finished loads to the Learner until it stops.
fn spawn_load_listener(host: &ModelHostHandle, me: ActorRef<LearnerMsg>) -> JoinHandle<()> {
    let mut events = host.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(HostEvent::Loaded {
                    model,
                    duration,
                    memory,
                }) => {
                    let msg = LearnerMsg::Loaded {
                        model,
                        millis: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                        bytes: memory.total(),
                    };
                    if me.cast(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// What model choice needs of the host's status: the memory a load could
/// have now (unused budget plus idle, unpinned models it could evict) and
/// the loaded models.
pub fn host_view(status: &HostStatus) -> HostView {
    let evictable: u64 = status
        .models
        .iter()
        .filter(|m| !m.pinned && m.slots_in_use == 0 && m.queued_requests == 0)
        .map(|m| m.memory.total())
        .sum();
    HostView {
        free_bytes: status
            .budget_bytes
            .saturating_sub(status.reserved_bytes)
            .saturating_add(evictable),
        loaded: status.models.iter().map(|m| m.name.clone()).collect(),
    }
}

/// The recommendation the configuration gives, with `free` bytes of the
/// memory budget available: the person's model, a retry up the ladder, the
/// role's model, the first matching `[[agents.rules]]`, `[agents] model`,
/// then the ladder's weakest. The learned policy starts from it.
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
        max_tokens: (req.max_tokens > 0).then_some(req.max_tokens),
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
        let kind = match req.kind {
            Context::Task(kind) => Some(kind),
            Context::Call(_) => None,
        };
        if rule.matches(kind, req.complexity, free) {
            return Ok(pick(
                &rule.model,
                format!(
                    "rule {}: {}, complexity {}–{}, {} free → {}",
                    i + 1,
                    rule.kind.map_or("any kind", TaskKind::as_str),
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

    /// A model and token budget for `req`.
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

    /// What it has learned, one row per task kind × complexity band × model.
    ///
    /// # Errors
    /// [`AgentError::Stopped`].
    pub async fn stats(&self) -> Result<Vec<StatsRow>, AgentError> {
        match self.actor.get().call(LearnerMsg::Stats, None).await {
            Ok(ractor::rpc::CallResult::Success(rows)) => Ok(rows),
            _ => Err(AgentError::Stopped("Learner")),
        }
    }
}
