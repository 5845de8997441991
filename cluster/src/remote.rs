//! The caller's side of a peer's model server: asking what it serves,
//! starting a request on it, and relaying the request's events into a
//! local [`GenerationStream`].

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;
use troupe_inference::backend::{
    GenerateError, GenerateRequest, GenerationEvent, GenerationSender, GenerationStream,
};

use crate::node::PeerInfo;
use crate::serve::{ServeMsg, LONG_POLL};
use crate::wire::{
    decode, encode, WireEvent, WirePollReply, WireRequest, WireServerInfo, WireStart,
    WireStartReply,
};

/// Longest wait for a peer to describe itself or accept a request.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a poll beyond the peer's own long-poll: a live peer
/// always answers within `LONG_POLL`, so missing this means it is gone.
const POLL_GRACE: Duration = Duration::from_secs(10);

/// A peer's model server and what it said about itself.
pub(crate) struct RemoteServer {
    pub(crate) info: PeerInfo,
    actor: ActorRef<ServeMsg>,
}

/// One RPC to a peer's server (model or work server), flattened to bytes
/// or a reason.
pub(crate) async fn call<M: ractor::Message>(
    actor: &ActorRef<M>,
    build: impl FnOnce(ractor::RpcReplyPort<Vec<u8>>) -> M,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(bytes)) => Ok(bytes),
        Ok(CallResult::Timeout) => Err(format!("no answer within {}s", timeout.as_secs())),
        Ok(CallResult::SenderError) => Err("the peer went away".into()),
        Err(error) => Err(format!("cannot reach the peer: {error}")),
    }
}

/// Asks a peer's model server who it is and what it serves; `None` when it
/// does not answer.
pub(crate) async fn describe(actor: ActorRef<ServeMsg>) -> Option<RemoteServer> {
    let bytes = call(&actor, ServeMsg::Info, CALL_TIMEOUT).await.ok()?;
    let info: WireServerInfo = decode(&bytes, "server info").ok()?;
    Some(RemoteServer {
        info: PeerInfo {
            node: info.node,
            addr: info.addr,
            models: info.models,
        },
        actor,
    })
}

/// Longest wait for a peer to read a model's context length (it may load
/// the model first).
const INFO_TIMEOUT: Duration = Duration::from_secs(300);

/// The context length of `model` on the peer.
pub(crate) async fn context_length(server: &RemoteServer, model: &str) -> Result<u32, String> {
    let payload = encode(&model);
    let bytes = call(
        &server.actor,
        |reply| ServeMsg::ContextLength(payload, reply),
        INFO_TIMEOUT,
    )
    .await?;
    decode::<Result<u32, String>>(&bytes, "context length")?
}

/// Starts `request` on the peer and waits for its first event. Returns the
/// stream once that event is not an error; else why the peer failed.
pub(crate) async fn start(
    server: &RemoteServer,
    model: &str,
    request: &GenerateRequest,
) -> Result<GenerationStream, String> {
    let start = WireStart {
        model: model.to_owned(),
        request: WireRequest::from(request),
    };
    let payload = encode(&start);
    let bytes = call(
        &server.actor,
        |reply| ServeMsg::Start(payload, reply),
        CALL_TIMEOUT,
    )
    .await?;
    let id = decode::<WireStartReply>(&bytes, "start reply")??;
    let relay = Relay {
        actor: server.actor.clone(),
        node: server.info.node.clone(),
        id,
    };
    // Polls until the first event: loading the model may take a while, and
    // every empty answer shows the peer is still there.
    let events = loop {
        match relay.poll().await {
            Ok(events) if events.is_empty() => continue,
            Ok(events) => break events,
            Err(reason) => {
                relay.cancel();
                return Err(reason);
            }
        }
    };
    if let Some(WireEvent::Error(error)) = events.first() {
        return Err(error.clone().into_error(&relay.node).to_string());
    }
    let (tx, stream) = GenerationStream::channel();
    let ended = relay.deliver(&tx, events);
    if !ended {
        tokio::spawn(relay.run(tx));
    }
    Ok(stream)
}

/// Carries one remote request's events to the local stream.
struct Relay {
    actor: ActorRef<ServeMsg>,
    node: String,
    id: u64,
}

impl Relay {
    async fn poll(&self) -> Result<Vec<WireEvent>, String> {
        let payload = encode(&self.id);
        let bytes = call(
            &self.actor,
            |reply| ServeMsg::Poll(payload, reply),
            LONG_POLL + POLL_GRACE,
        )
        .await?;
        match decode::<WirePollReply>(&bytes, "poll reply")? {
            WirePollReply::Events(events) => Ok(events),
            WirePollReply::Unknown => Err("the peer no longer knows the request".into()),
        }
    }

    fn cancel(&self) {
        let _ = self.actor.cast(ServeMsg::Cancel(encode(&self.id)));
    }

    /// Sends `events` on; true once the last one went (or nobody listens).
    fn deliver(&self, tx: &GenerationSender, events: Vec<WireEvent>) -> bool {
        for event in events {
            let last = event.is_last();
            if !tx.send(event.into_event(&self.node)) {
                self.cancel();
                return true;
            }
            if last {
                return true;
            }
        }
        false
    }

    /// Polls until the request ends, the caller drops the stream, or the
    /// peer is lost (then the stream ends with `EngineStopped`).
    async fn run(self, tx: GenerationSender) {
        loop {
            if tx.is_cancelled() {
                self.cancel();
                return;
            }
            match self.poll().await {
                Ok(events) => {
                    if self.deliver(&tx, events) {
                        return;
                    }
                }
                Err(reason) => {
                    tracing::warn!(peer = %self.node, %reason,
                        "cluster: lost the peer mid-request");
                    tx.send(GenerationEvent::Error(GenerateError::EngineStopped));
                    return;
                }
            }
        }
    }
}
