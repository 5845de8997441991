//! [`WorkServer`]: the actor through which peers run subtasks on this
//! node's workers ([`WorkerHost`]), and the caller's side of a peer's.
//!
//! It sits in the process group [`WORKERS_GROUP`]. Like the model server
//! its messages are JSON byte payloads, and a job is pulled: `Start`
//! answers with an id, then the owner long-polls for updates, so a dead
//! node on either side shows up as a failed call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use troupe_agents::runtime::{Control, Decision};
use troupe_agents::worker::remote::{RemoteJob, RemoteUpdate, WorkerHost, WorkerOffer, LONG_POLL};

use crate::remote::call;
use crate::wire::{decode, encode};

/// The process group every node's work server joins.
pub const WORKERS_GROUP: &str = "troupe.workers";

/// Longest wait for a peer to describe itself or accept a job.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a poll beyond the peer's own long-poll.
const POLL_GRACE: Duration = Duration::from_secs(10);

/// The work server's messages, as peers send them.
#[derive(RactorClusterMessage)]
pub(crate) enum WorkMsg {
    /// What this node offers ([`WorkerOffer`]).
    #[rpc]
    Offer(RpcReplyPort<Vec<u8>>),
    /// Starts a job ([`WireJob`] in, `Result<u64, String>` out).
    #[rpc]
    Start(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A job's updates (its id in, [`WireUpdates`] out).
    #[rpc]
    Poll(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// The person's answer ([`WireDecide`]).
    Decide(Vec<u8>),
    /// Pause or cancel ([`WireControl`]).
    Control(Vec<u8>),
    /// Drops a job (its id).
    Cancel(Vec<u8>),
}

/// A job and the node that sends it.
#[derive(Serialize, Deserialize)]
struct WireJob {
    origin: String,
    job: RemoteJob,
}

/// The answer to a poll.
#[derive(Serialize, Deserialize)]
enum WireUpdates {
    Updates(Vec<RemoteUpdate>),
    Unknown,
}

#[derive(Serialize, Deserialize)]
struct WireDecide {
    id: u64,
    approval: String,
    decision: Decision,
}

#[derive(Serialize, Deserialize)]
struct WireControl {
    id: u64,
    control: Control,
}

/// The actor.
pub(crate) struct WorkServer;

/// What it serves.
pub(crate) struct WorkArgs {
    pub(crate) host: WorkerHost,
    pub(crate) node: String,
}

impl Actor for WorkServer {
    type Msg = WorkMsg;
    type State = WorkArgs;
    type Arguments = WorkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WorkArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(WORKERS_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave(WORKERS_GROUP.to_string(), vec![myself.get_cell()]);
        state.host.shutdown();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let host = state.host.clone();
        match message {
            WorkMsg::Offer(reply) => {
                // Off the actor: the catalog call may take a moment.
                let node = state.node.clone();
                tokio::spawn(async move {
                    let _ = reply.send(encode(&host.offer(&node).await));
                });
            }
            WorkMsg::Start(payload, reply) => {
                let answer: Result<u64, String> = decode::<WireJob>(&payload, "job")
                    .and_then(|wire| host.start(wire.job, &wire.origin));
                let _ = reply.send(encode(&answer));
            }
            WorkMsg::Poll(payload, reply) => {
                let Ok(id) = decode::<u64>(&payload, "poll") else {
                    let _ = reply.send(encode(&WireUpdates::Unknown));
                    return Ok(());
                };
                tokio::spawn(async move {
                    let answer = match host.poll(id).await {
                        Some(updates) => WireUpdates::Updates(updates),
                        None => WireUpdates::Unknown,
                    };
                    let _ = reply.send(encode(&answer));
                });
            }
            WorkMsg::Decide(payload) => {
                if let Ok(d) = decode::<WireDecide>(&payload, "decision") {
                    host.decide(d.id, &d.approval, d.decision);
                }
            }
            WorkMsg::Control(payload) => {
                if let Ok(c) = decode::<WireControl>(&payload, "control") {
                    host.control(c.id, c.control);
                }
            }
            WorkMsg::Cancel(payload) => {
                if let Ok(id) = decode::<u64>(&payload, "cancel") {
                    host.cancel(id);
                }
            }
        }
        Ok(())
    }
}

/// Peers' work servers by node name, as last described.
#[derive(Default)]
pub(crate) struct WorkPeers {
    known: Mutex<HashMap<String, ActorRef<WorkMsg>>>,
}

impl WorkPeers {
    /// Every peer's offer (not this node's), refreshing the name map.
    pub(crate) async fn offers(&self, this_node: &str) -> Vec<WorkerOffer> {
        let members: Vec<ActorRef<WorkMsg>> = ractor::pg::get_members(&WORKERS_GROUP.to_string())
            .into_iter()
            .filter(|cell| !cell.get_id().is_local())
            .map(ActorRef::from)
            .collect();
        let asked = futures::future::join_all(members.into_iter().map(|actor| async move {
            let bytes = call(&actor, WorkMsg::Offer, CALL_TIMEOUT).await.ok()?;
            let offer: WorkerOffer = decode(&bytes, "worker offer").ok()?;
            Some((offer, actor))
        }))
        .await;
        let mut offers: Vec<WorkerOffer> = Vec::new();
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for (offer, actor) in asked.into_iter().flatten() {
            // Several nodes in one process share one group registry (tests).
            if offer.node == this_node || offers.iter().any(|o| o.node == offer.node) {
                continue;
            }
            known.insert(offer.node.clone(), actor);
            offers.push(offer);
        }
        offers
    }

    fn actor(&self, node: &str) -> Result<ActorRef<WorkMsg>, String> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .cloned()
            .ok_or_else(|| format!("no known cluster node named {node}"))
    }

    pub(crate) async fn start(
        &self,
        this_node: &str,
        node: &str,
        job: RemoteJob,
    ) -> Result<u64, String> {
        let actor = self.actor(node)?;
        let payload = encode(&WireJob {
            origin: this_node.to_owned(),
            job,
        });
        let bytes = call(&actor, |reply| WorkMsg::Start(payload, reply), CALL_TIMEOUT).await?;
        decode::<Result<u64, String>>(&bytes, "start reply")?
    }

    pub(crate) async fn poll(&self, node: &str, id: u64) -> Result<Vec<RemoteUpdate>, String> {
        let actor = self.actor(node)?;
        let payload = encode(&id);
        let bytes = call(
            &actor,
            |reply| WorkMsg::Poll(payload, reply),
            LONG_POLL + POLL_GRACE,
        )
        .await?;
        match decode::<WireUpdates>(&bytes, "updates")? {
            WireUpdates::Updates(updates) => Ok(updates),
            WireUpdates::Unknown => Err(format!("node {node} no longer knows the job")),
        }
    }

    pub(crate) fn decide(&self, node: &str, id: u64, approval: &str, decision: Decision) {
        if let Ok(actor) = self.actor(node) {
            let payload = encode(&WireDecide {
                id,
                approval: approval.to_owned(),
                decision,
            });
            let _ = actor.cast(WorkMsg::Decide(payload));
        }
    }

    pub(crate) fn control(&self, node: &str, id: u64, control: Control) {
        if let Ok(actor) = self.actor(node) {
            let _ = actor.cast(WorkMsg::Control(encode(&WireControl { id, control })));
        }
    }

    pub(crate) fn cancel(&self, node: &str, id: u64) {
        if let Ok(actor) = self.actor(node) {
            let _ = actor.cast(WorkMsg::Cancel(encode(&id)));
        }
    }
}

/// [`WorkPeers`] bound to this node's name, as the pools' `WorkerPeers`.
pub(crate) struct NodeWorkPeers {
    pub(crate) node: String,
    pub(crate) peers: Arc<WorkPeers>,
}

impl troupe_agents::worker::remote::WorkerPeers for NodeWorkPeers {
    fn offers(&self) -> troupe_inference::backend::BoxFuture<Vec<WorkerOffer>> {
        let (peers, node) = (Arc::clone(&self.peers), self.node.clone());
        Box::pin(async move { peers.offers(&node).await })
    }

    fn start(
        &self,
        node: &str,
        job: RemoteJob,
    ) -> troupe_inference::backend::BoxFuture<Result<u64, String>> {
        let (peers, this, node) = (Arc::clone(&self.peers), self.node.clone(), node.to_owned());
        Box::pin(async move { peers.start(&this, &node, job).await })
    }

    fn poll(
        &self,
        node: &str,
        id: u64,
    ) -> troupe_inference::backend::BoxFuture<Result<Vec<RemoteUpdate>, String>> {
        let (peers, node) = (Arc::clone(&self.peers), node.to_owned());
        Box::pin(async move { peers.poll(&node, id).await })
    }

    fn decide(&self, node: &str, id: u64, approval: &str, decision: Decision) {
        self.peers.decide(node, id, approval, decision);
    }

    fn control(&self, node: &str, id: u64, control: Control) {
        self.peers.control(node, id, control);
    }

    fn cancel(&self, node: &str, id: u64) {
        self.peers.cancel(node, id);
    }
}
