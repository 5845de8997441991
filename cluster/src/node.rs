//! [`ClusterNode`]: this process as a node of a troupe cluster.
//!
//! A node is a ractor_cluster `NodeServer` (the cluster secret is its magic
//! cookie: a peer that does not know it fails the handshake and is dropped)
//! plus a [`ModelServer`] that serves the local ModelHost to peers. Peers'
//! model servers appear in the process group [`MODEL_SERVERS_GROUP`] once
//! their session is ready; `peers` and `generate` read that group afresh
//! each time, so a node that leaves stops being asked at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use troupe_host::ModelHostHandle;
use troupe_inference::backend::{GenerateRequest, GenerationStream};

use crate::events::{log_sessions, NodeEvent, SessionEvents};
use crate::remote::{self, RemoteServer};
use crate::serve::{ModelServer, ServeMsg, ServerArgs, MODEL_SERVERS_GROUP};
use crate::workers::{NodeWorkPeers, WorkArgs, WorkMsg, WorkPeers, WorkServer};
use crate::ClusterError;
use troupe_agents::worker::remote::{WorkerHost, WorkerPeers};

/// Longest wait for a joined peer to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How this node starts.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where peers connect to this node; `None` for a node that only joins
    /// others (it then listens on a loopback port nobody is told about).
    pub listen: Option<SocketAddr>,
    /// The cluster secret every node shares. Required and never logged.
    pub secret: String,
    /// Nodes to connect to at start.
    pub join: Vec<SocketAddr>,
    /// This node's name as peers see it; unique in the cluster. Empty picks
    /// `troupe-<pid>`.
    pub node_name: String,
    /// Runs peers' subtasks on this node's workers; `None`: this node takes
    /// none (it may still send its own to peers).
    pub workers: Option<WorkerHost>,
}

/// A connected peer and the models it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node name.
    pub node: String,
    /// Where it listens (as it reports it; empty for a join-only node).
    pub addr: String,
    /// Its ModelHost's catalog names.
    pub models: Vec<String>,
}

/// This process's node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    listen: Option<SocketAddr>,
    node_server: ActorRef<NodeServerMessage>,
    model_server: ActorRef<ServeMsg>,
    work_server: Option<ActorRef<WorkMsg>>,
    work_peers: Arc<WorkPeers>,
    events: broadcast::Sender<NodeEvent>,
    logger: JoinHandle<()>,
    /// Rotates the first peer tried, spreading requests over the peers.
    next_peer: AtomicUsize,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("name", &self.inner.name)
            .field("listen", &self.inner.listen)
            .finish()
    }
}

impl ClusterNode {
    /// Starts this node: the node server (listening on `options.listen`,
    /// with the secret as its magic cookie), the model server for `host`,
    /// then connects to every `options.join` address and waits for each
    /// handshake to finish.
    ///
    /// # Errors
    /// [`ClusterError::Config`] for an empty secret or nothing to listen on
    /// or join; [`ClusterError::Start`] when the listen address cannot be
    /// bound; [`ClusterError::Unreachable`] when a join address does not
    /// answer; [`ClusterError::Refused`] when a peer drops the handshake
    /// (a different secret). On error nothing keeps running.
    pub async fn start(
        options: ClusterOptions,
        host: ModelHostHandle,
    ) -> Result<ClusterNode, ClusterError> {
        if options.secret.is_empty() {
            return Err(ClusterError::Config {
                reason: "the cluster secret is empty; every node needs the same non-empty secret"
                    .into(),
            });
        }
        if options.listen.is_none() && options.join.is_empty() {
            return Err(ClusterError::Config {
                reason: "give an address to listen on or one to join".into(),
            });
        }
        let name = if options.node_name.is_empty() {
            format!("troupe-{}", std::process::id())
        } else {
            options.node_name.clone()
        };
        let bind = options
            .listen
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        // Isolated: a node talks to the nodes it joins and those that join
        // it, never to addresses a peer hands it.
        let server = NodeServer::new(
            bind.port(),
            options.secret.clone(),
            name.clone(),
            bind.ip().to_string(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(bind.ip());
        let (node_server, _) =
            Actor::spawn(None, server, ())
                .await
                .map_err(|error| ClusterError::Start {
                    reason: format!("cannot listen on {bind}: {error}"),
                })?;
        let (events, _) = broadcast::channel(256);
        let _ = node_server.cast(NodeServerMessage::SubscribeToEvents {
            id: "troupe-cluster".into(),
            subscription: Box::new(SessionEvents::new(events.clone())),
        });
        let logger = tokio::spawn(log_sessions(events.subscribe()));
        let args = ServerArgs {
            host,
            node: name.clone(),
            addr: options.listen.map(|a| a.to_string()).unwrap_or_default(),
        };
        let model_server = match Actor::spawn(None, ModelServer, args).await {
            Ok((actor, _)) => actor,
            Err(error) => {
                logger.abort();
                node_server.stop(None);
                return Err(ClusterError::Start {
                    reason: format!("cannot start the model server: {error}"),
                });
            }
        };
        let work_server = match options.workers {
            None => None,
            Some(host) => {
                let args = WorkArgs {
                    host,
                    node: name.clone(),
                };
                match Actor::spawn(None, WorkServer, args).await {
                    Ok((actor, _)) => Some(actor),
                    Err(error) => {
                        logger.abort();
                        model_server.stop(None);
                        node_server.stop(None);
                        return Err(ClusterError::Start {
                            reason: format!("cannot start the work server: {error}"),
                        });
                    }
                }
            }
        };
        let node = ClusterNode {
            inner: Arc::new(Inner {
                name,
                listen: options.listen,
                node_server,
                model_server,
                work_server,
                work_peers: Arc::default(),
                events,
                logger,
                next_peer: AtomicUsize::new(0),
            }),
        };
        if let Some(addr) = options.listen {
            tracing::info!(node = %node.inner.name, %addr, "cluster: listening");
        }
        for addr in &options.join {
            if let Err(error) = node.join(*addr).await {
                node.shutdown().await;
                return Err(error);
            }
        }
        Ok(node)
    }

    /// Connects to the node at `addr` and waits until the session is ready.
    ///
    /// # Errors
    /// [`ClusterError::Unreachable`] when nothing answers or the handshake
    /// does not finish in time, [`ClusterError::Refused`] when the peer
    /// drops it (a different secret).
    pub async fn join(&self, addr: SocketAddr) -> Result<(), ClusterError> {
        let mut events = self.inner.events.subscribe();
        ractor_cluster::client_connect(&self.inner.node_server, addr)
            .await
            .map_err(|error| ClusterError::Unreachable {
                addr: addr.to_string(),
                reason: error.to_string(),
            })?;
        let wanted = addr.to_string();
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(event) if event.is_client_session_to(&wanted) => match event {
                        NodeEvent::Ready { peer, .. } => return Ok(peer),
                        NodeEvent::Disconnected {
                            authenticated: false,
                            ..
                        } => {
                            return Err(ClusterError::Refused {
                                addr: wanted.clone(),
                                reason: "it closed the connection during the handshake \
                                         (is the cluster secret the same on both nodes?)"
                                    .into(),
                            })
                        }
                        NodeEvent::Disconnected { .. } => {
                            return Err(ClusterError::Unreachable {
                                addr: wanted.clone(),
                                reason: "the session closed before it was ready".into(),
                            })
                        }
                    },
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ClusterError::Unreachable {
                            addr: wanted.clone(),
                            reason: "this node is shutting down".into(),
                        })
                    }
                }
            }
        };
        let peer = tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .map_err(|_| ClusterError::Unreachable {
                addr: addr.to_string(),
                reason: format!(
                    "the handshake did not finish within {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ),
            })??;
        tracing::info!(node = %self.inner.name, %peer, %addr, "cluster: joined");
        Ok(())
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where this node listens, when it was told to.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.listen
    }

    /// Peers and the models each can serve (its host's catalog names), as
    /// known now. A peer that does not answer within a few seconds is left
    /// out.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.servers()
            .await
            .into_iter()
            .map(|server| server.info)
            .collect()
    }

    /// Runs `request` on a peer whose host serves `model`, streaming its
    /// events back. Peers are tried in turn until one produces its first
    /// event that is not an error; from then on the stream is that peer's.
    /// If the peer is lost mid-request the stream ends with
    /// `GenerationEvent::Error(GenerateError::EngineStopped)`, so a caller
    /// can fail over; dropping the stream cancels the request on the peer.
    ///
    /// # Errors
    /// [`ClusterError::NoPeerServes`] when no peer lists `model`;
    /// [`ClusterError::PeerFailed`] (the last peer's error) when every
    /// such peer failed before its first token.
    pub async fn generate(
        &self,
        model: &str,
        request: GenerateRequest,
    ) -> Result<GenerationStream, ClusterError> {
        let mut serving: Vec<RemoteServer> = self
            .servers()
            .await
            .into_iter()
            .filter(|server| server.info.models.iter().any(|name| name == model))
            .collect();
        if serving.is_empty() {
            return Err(ClusterError::NoPeerServes {
                model: model.to_owned(),
            });
        }
        let first = self.inner.next_peer.fetch_add(1, Ordering::Relaxed) % serving.len();
        serving.rotate_left(first);
        let mut last = None;
        for server in serving {
            match remote::start(&server, model, &request).await {
                Ok(stream) => return Ok(stream),
                Err(reason) => {
                    tracing::warn!(peer = %server.info.node, model, %reason,
                        "cluster: a peer failed the request; trying the next");
                    last = Some(ClusterError::PeerFailed {
                        node: server.info.node,
                        reason,
                    });
                }
            }
        }
        Err(last.unwrap_or(ClusterError::NoPeerServes {
            model: model.to_owned(),
        }))
    }

    /// Peers' workers, for this node's pools (`PeerWorkers::set`): its
    /// subtasks may run on them.
    pub fn worker_peers(&self) -> Arc<dyn WorkerPeers> {
        Arc::new(NodeWorkPeers {
            node: self.inner.name.clone(),
            peers: Arc::clone(&self.inner.work_peers),
        })
    }

    /// The context length of `model` on the first peer that serves it and
    /// answers; `None` when none does.
    pub async fn context_length(&self, model: &str) -> Option<u32> {
        for server in self.servers().await {
            if !server.info.models.iter().any(|name| name == model) {
                continue;
            }
            match remote::context_length(&server, model).await {
                Ok(n) => return Some(n),
                Err(reason) => tracing::warn!(peer = %server.info.node, model, %reason,
                    "cluster: a peer could not tell the model's context length"),
            }
        }
        None
    }

    /// Stops serving peers and closes every session; requests this node
    /// serves are cancelled, and its peers' streams from it end in an error.
    pub async fn shutdown(&self) {
        if let Some(work) = &self.inner.work_server {
            let _ = work.stop_and_wait(None, Some(Duration::from_secs(5))).await;
        }
        let _ = self
            .inner
            .model_server
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        let _ = self
            .inner
            .node_server
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        self.inner.logger.abort();
    }

    /// The peers' model servers (not this node's), one per node.
    async fn servers(&self) -> Vec<RemoteServer> {
        let members = ractor::pg::get_members(&MODEL_SERVERS_GROUP.to_string());
        let remote: Vec<ActorRef<ServeMsg>> = members
            .into_iter()
            .filter(|cell| !cell.get_id().is_local())
            .map(ActorRef::from)
            .collect();
        let answers = futures::future::join_all(remote.into_iter().map(remote::describe)).await;
        let mut servers: Vec<RemoteServer> = Vec::new();
        for server in answers.into_iter().flatten() {
            // Several nodes in one process share one group registry (tests),
            // so the group can hold this node, or one node twice.
            if server.info.node == self.inner.name
                || servers
                    .iter()
                    .any(|known| known.info.node == server.info.node)
            {
                continue;
            }
            servers.push(server);
        }
        servers
    }
}
