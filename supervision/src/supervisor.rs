//! The root supervisor: starts its children linked, restarts a failed one
//! (one-for-one) by its [`RestartPolicy`], and stops itself — escalating —
//! when a child fails more often than the policy allows.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use troupe_config::SupervisionConfig;

use crate::policy::{RestartDecision, RestartPolicy};

/// Starts a child linked to the supervisor it is given, and puts the new
/// actor where its handles look (an `ActorSlot`).
pub type StartFn =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, String>> + Send + Sync>;

/// One child: its name and how to start it.
#[derive(Clone)]
pub struct ChildSpec {
    /// Its name in logs and status.
    pub name: Cow<'static, str>,
    /// How to start it.
    pub start: StartFn,
    /// It outlives the supervisor: when the supervisor stops (escalating,
    /// or told to), it is unlinked rather than killed with it, and its
    /// owner stops it in its own way (the ModelHost unloads its models).
    pub outlives: bool,
}

/// A child as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    /// Its name.
    pub name: Cow<'static, str>,
    /// Whether it is running now.
    pub alive: bool,
    /// Restarts so far.
    pub restarts: u32,
}

// Local only; ractor's `cluster` feature (on for the workspace, see the
// root Cargo.toml) has no blanket impl.
impl ractor::Message for SupervisorMsg {}

/// The supervisor's messages.
pub enum SupervisorMsg {
    /// Start child `i` again (sent to itself after the backoff).
    Restart(usize),
    /// Its children.
    Status(RpcReplyPort<Vec<ChildStatus>>),
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    policy: RestartPolicy,
}

/// The supervisor's state.
pub struct SupervisorState {
    children: Vec<Child>,
}

/// What it starts from.
pub struct SupervisorArgs {
    /// Its children, started in order.
    pub children: Vec<ChildSpec>,
    /// The restart policy each child gets.
    pub policy: SupervisionConfig,
}

/// The actor.
pub struct RootSupervisor;

impl Actor for RootSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut children = Vec::new();
        for spec in args.children {
            let cell = (spec.start)(me.get_cell())
                .await
                .map_err(|e| format!("starting {}: {e}", spec.name))?;
            tracing::debug!(child = %spec.name, "started");
            children.push(Child {
                spec,
                cell: Some(cell),
                policy: RestartPolicy::new(args.policy),
            });
        }
        Ok(SupervisorState { children })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(i) => {
                let Some(child) = state.children.get_mut(i) else {
                    return Ok(());
                };
                match (child.spec.start)(me.get_cell()).await {
                    Ok(cell) => {
                        tracing::info!(
                            child = %child.spec.name,
                            restarts = child.policy.restarts(),
                            "restarted"
                        );
                        child.cell = Some(cell);
                    }
                    Err(error) => {
                        // A child that cannot start counts as failing again.
                        tracing::error!(child = %child.spec.name, %error, "restart failed");
                        decide(&me, state, i, &error);
                    }
                }
            }
            SupervisorMsg::Status(reply) => {
                let status = state
                    .children
                    .iter()
                    .map(|c| ChildStatus {
                        name: c.spec.name.clone(),
                        alive: c.cell.is_some(),
                        restarts: c.policy.restarts(),
                    })
                    .collect();
                let _ = reply.send(status);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        me: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Before ractor kills the linked children: those that outlive the
        // supervisor leave it first.
        for child in state.children.iter().filter(|c| c.spec.outlives) {
            if let Some(cell) = &child.cell {
                cell.unlink(me.get_cell());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, format!("failed: {error}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.as_deref().unwrap_or("no reason")),
            ),
            _ => return Ok(()),
        };
        let Some(i) = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|c| c.get_id() == cell.get_id()))
        else {
            return Ok(());
        };
        tracing::warn!(child = %state.children[i].spec.name, %why, "child down");
        state.children[i].cell = None;
        decide(&me, state, i, &why);
        Ok(())
    }
}

fn decide(me: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, i: usize, why: &str) {
    let child = &mut state.children[i];
    match child.policy.on_failure(Instant::now()) {
        RestartDecision::Restart(delay) => {
            // The backoff waits off the mailbox: status queries and other
            // children's failures are still handled meanwhile.
            me.send_after(delay, move || SupervisorMsg::Restart(i));
        }
        RestartDecision::Escalate => {
            let reason = format!(
                "{} failed more often than [supervision] allows; last: {why}",
                child.spec.name
            );
            tracing::error!(%reason, "escalating");
            me.stop(Some(reason));
        }
    }
}

/// The public way to the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
}

impl SupervisorHandle {
    /// Wraps a running supervisor.
    pub fn new(actor: ActorRef<SupervisorMsg>) -> SupervisorHandle {
        SupervisorHandle { actor }
    }

    /// Its children, or none once it has stopped.
    pub async fn children(&self) -> Vec<ChildStatus> {
        match self.actor.call(SupervisorMsg::Status, None).await {
            Ok(ractor::rpc::CallResult::Success(s)) => s,
            _ => Vec::new(),
        }
    }

    /// The supervisor actor (to link children to, or unlink them from).
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Stops it and its children.
    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
