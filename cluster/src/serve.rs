//! [`ModelServer`]: the actor that serves this node's ModelHost to peers.
//!
//! It sits in the process group [`MODEL_SERVERS_GROUP`], which
//! ractor_cluster mirrors to every connected node, so a peer finds it as a
//! remote actor as soon as the session is ready. Its messages are all
//! byte payloads (JSON, see [`crate::wire`]) so that decoding a peer's
//! message can fail without a panic.
//!
//! A generation is pulled, not pushed: `Start` answers with an id at once
//! (loading the model may take long), then the peer long-polls `Poll(id)`
//! for the events queued since. Pulling keeps every reply an RPC answer, so
//! a dead peer on either side shows up as a failed call rather than as
//! silence. A request nobody polls for [`ABANDONED_AFTER`] is cancelled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use troupe_host::ModelHostHandle;
use troupe_inference::backend::{GenerateError, GenerateRequest, GenerationEvent};

use crate::wire::{
    decode, encode, WireError, WireEvent, WirePollReply, WireServerInfo, WireStart, WireStartReply,
};

/// The process group every node's model server joins.
pub const MODEL_SERVERS_GROUP: &str = "troupe.model_hosts";

/// How long a poll waits for an event before answering with none.
pub(crate) const LONG_POLL: Duration = Duration::from_millis(300);

/// A request whose caller stopped polling this long is cancelled.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// How long the catalog's names are reused before the host is asked again.
const CATALOG_TTL: Duration = Duration::from_secs(5);

/// Most events one poll answer carries (keeps frames small).
const EVENTS_PER_POLL: usize = 512;

/// The model server's messages, as peers send them.
#[derive(RactorClusterMessage)]
pub(crate) enum ServeMsg {
    /// This node's name, address and models ([`WireServerInfo`]).
    #[rpc]
    Info(RpcReplyPort<Vec<u8>>),
    /// Starts a generation ([`WireStart`] in, [`WireStartReply`] out).
    #[rpc]
    Start(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Events of a request (its id as JSON in, [`WirePollReply`] out).
    #[rpc]
    Poll(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Cancels a request (its id as JSON).
    Cancel(Vec<u8>),
    /// A model's context length (its name as JSON in, `Result<u32,
    /// String>` out); the host loads the model to read it.
    #[rpc]
    ContextLength(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// The actor; stateless, its state is built in `pre_start`.
pub(crate) struct ModelServer;

/// What the server starts from.
pub(crate) struct ServerArgs {
    pub(crate) host: ModelHostHandle,
    pub(crate) node: String,
    pub(crate) addr: String,
}

/// The server's state.
pub(crate) struct ServerState {
    host: ModelHostHandle,
    node: String,
    addr: String,
    requests: Requests,
    next_id: AtomicU64,
    catalog: Option<(Instant, Vec<String>)>,
    reaper: JoinHandle<()>,
}

/// The requests in flight, shared with their pump and poll tasks. A std
/// Mutex: no await is ever held across it.
type Requests = Arc<Mutex<HashMap<u64, Slot>>>;

/// One request in flight on this node.
struct Slot {
    queue: VecDeque<WireEvent>,
    ended: bool,
    last_poll: Instant,
    wake: Arc<Notify>,
    pump: Option<JoinHandle<()>>,
}

impl Slot {
    fn cancel(&mut self) {
        // Dropping the host stream (with the pump's future) cancels it.
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
    }
}

impl Actor for ModelServer {
    type Msg = ServeMsg;
    type State = ServerState;
    type Arguments = ServerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ServerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(MODEL_SERVERS_GROUP.to_string(), vec![myself.get_cell()]);
        let requests: Requests = Arc::default();
        let reaper = tokio::spawn(reap(Arc::clone(&requests)));
        Ok(ServerState {
            host: args.host,
            node: args.node,
            addr: args.addr,
            requests,
            next_id: AtomicU64::new(1),
            catalog: None,
            reaper,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave(MODEL_SERVERS_GROUP.to_string(), vec![myself.get_cell()]);
        state.reaper.abort();
        let mut requests = lock(&state.requests);
        for slot in requests.values_mut() {
            slot.cancel();
        }
        requests.clear();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ServeMsg::Info(reply) => info(state, reply).await,
            ServeMsg::Start(payload, reply) => start(state, &payload, reply),
            ServeMsg::Poll(payload, reply) => poll(state, &payload, reply),
            ServeMsg::Cancel(payload) => cancel(state, &payload),
            ServeMsg::ContextLength(payload, reply) => {
                let host = state.host.clone();
                // Off the actor: a load can take a while.
                tokio::spawn(async move {
                    let answer: Result<u32, String> = match decode::<String>(&payload, "model") {
                        Ok(model) => host
                            .model_info(&model)
                            .await
                            .map(|info| info.context_length)
                            .map_err(|e| e.to_string()),
                        Err(error) => Err(error),
                    };
                    let _ = reply.send(encode(&answer));
                });
            }
        }
        Ok(())
    }
}

fn lock(requests: &Requests) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
    // A poisoned map only means a task panicked mid-update; the map itself
    // is still consistent enough to serve and cancel from.
    requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn info(state: &mut ServerState, reply: RpcReplyPort<Vec<u8>>) {
    let fresh = state
        .catalog
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < CATALOG_TTL);
    if !fresh {
        match state.host.catalog().await {
            Ok(entries) => {
                let names = entries.into_iter().map(|entry| entry.name).collect();
                state.catalog = Some((Instant::now(), names));
            }
            Err(error) => tracing::warn!(%error, "cluster: cannot list this node's models"),
        }
    }
    let models = state
        .catalog
        .as_ref()
        .map(|(_, names)| names.clone())
        .unwrap_or_default();
    let info = WireServerInfo {
        node: state.node.clone(),
        addr: state.addr.clone(),
        models,
    };
    let _ = reply.send(encode(&info));
}

fn start(state: &mut ServerState, payload: &[u8], reply: RpcReplyPort<Vec<u8>>) {
    let answer: WireStartReply = match decode::<WireStart>(payload, "start") {
        Err(error) => Err(error),
        Ok(start) => {
            let id = state.next_id.fetch_add(1, Ordering::Relaxed);
            let wake = Arc::new(Notify::new());
            let request = GenerateRequest::from(start.request);
            // The slot exists before its pump runs, so a fast answer has
            // somewhere to go.
            let mut requests = lock(&state.requests);
            let pump = tokio::spawn(pump(
                state.host.clone(),
                start.model,
                request,
                id,
                Arc::clone(&state.requests),
            ));
            requests.insert(
                id,
                Slot {
                    queue: VecDeque::new(),
                    ended: false,
                    last_poll: Instant::now(),
                    wake,
                    pump: Some(pump),
                },
            );
            Ok(id)
        }
    };
    let _ = reply.send(encode(&answer));
}

/// Runs one request on the host and queues its events for the poller.
async fn pump(
    host: ModelHostHandle,
    model: String,
    request: GenerateRequest,
    id: u64,
    requests: Requests,
) {
    let push = |event: WireEvent| {
        let mut requests = lock(&requests);
        if let Some(slot) = requests.get_mut(&id) {
            slot.ended |= event.is_last();
            slot.queue.push_back(event);
            slot.wake.notify_one();
        }
    };
    let mut stream = match host.generate(&model, request, None).await {
        Ok(stream) => stream,
        Err(error) => {
            push(WireEvent::Error(WireError::Other(error.to_string())));
            return;
        }
    };
    loop {
        match stream.next().await {
            Some(event) => {
                let last = !matches!(event, GenerationEvent::Token(_));
                push(WireEvent::from(event));
                if last {
                    return;
                }
            }
            None => {
                push(WireEvent::from(GenerationEvent::Error(
                    GenerateError::EngineStopped,
                )));
                return;
            }
        }
    }
}

fn poll(state: &mut ServerState, payload: &[u8], reply: RpcReplyPort<Vec<u8>>) {
    let Ok(id) = decode::<u64>(payload, "poll") else {
        let _ = reply.send(encode(&WirePollReply::Unknown));
        return;
    };
    // The wait runs off the actor so that one slow poll never delays the
    // other requests' polls.
    let requests = Arc::clone(&state.requests);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        loop {
            let wake = {
                let mut map = lock(&requests);
                let Some(slot) = map.get_mut(&id) else {
                    let _ = reply.send(encode(&WirePollReply::Unknown));
                    return;
                };
                slot.last_poll = Instant::now();
                if !slot.queue.is_empty() || tokio::time::Instant::now() >= deadline {
                    let take = slot.queue.len().min(EVENTS_PER_POLL);
                    let events: Vec<WireEvent> = slot.queue.drain(..take).collect();
                    if slot.ended && slot.queue.is_empty() {
                        map.remove(&id);
                    }
                    let _ = reply.send(encode(&WirePollReply::Events(events)));
                    return;
                }
                Arc::clone(&slot.wake)
            };
            // notify_one keeps a permit when nobody waits yet, so an event
            // pushed between the check above and this wait is not missed.
            let _ = tokio::time::timeout_at(deadline, wake.notified()).await;
        }
    });
}

fn cancel(state: &mut ServerState, payload: &[u8]) {
    if let Ok(id) = decode::<u64>(payload, "cancel") {
        if let Some(mut slot) = lock(&state.requests).remove(&id) {
            slot.cancel();
        }
    }
}

/// Cancels requests whose caller stopped polling (its node died or lost
/// interest without a word).
async fn reap(requests: Requests) {
    let mut tick = tokio::time::interval(ABANDONED_AFTER / 4);
    loop {
        tick.tick().await;
        let mut map = lock(&requests);
        map.retain(|id, slot| {
            let abandoned = slot.last_poll.elapsed() > ABANDONED_AFTER;
            if abandoned {
                tracing::info!(id, "cluster: cancelling a request nobody polls");
                slot.cancel();
            }
            !abandoned
        });
    }
}
