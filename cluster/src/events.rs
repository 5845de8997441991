//! Session events of the node server, turned into a broadcast that `join`
//! waits on and a log of who came, who went and who was refused.

use std::collections::HashSet;
use std::sync::Mutex;

use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::NodeEventSubscription;
use tokio::sync::broadcast;

/// A session's change, as this crate needs it.
#[derive(Debug, Clone)]
pub(crate) enum NodeEvent {
    /// The handshake finished and the peer's process groups are synced.
    Ready {
        peer_addr: String,
        is_server: bool,
        peer: String,
    },
    /// The session closed; `authenticated` is false when it never got past
    /// the handshake (a wrong secret, or a peer that is not a troupe node).
    Disconnected {
        peer_addr: String,
        is_server: bool,
        authenticated: bool,
        peer: String,
    },
}

impl NodeEvent {
    /// Whether this is about the connection this node opened to `addr`.
    pub(crate) fn is_client_session_to(&self, addr: &str) -> bool {
        match self {
            Self::Ready {
                peer_addr,
                is_server,
                ..
            }
            | Self::Disconnected {
                peer_addr,
                is_server,
                ..
            } => !is_server && peer_addr == addr,
        }
    }
}

/// The subscription handed to the node server.
pub(crate) struct SessionEvents {
    tx: broadcast::Sender<NodeEvent>,
    /// Sessions past the handshake, by session id. A std Mutex: the
    /// callbacks are synchronous.
    authenticated: Mutex<HashSet<u64>>,
}

impl SessionEvents {
    pub(crate) fn new(tx: broadcast::Sender<NodeEvent>) -> Self {
        Self {
            tx,
            authenticated: Mutex::new(HashSet::new()),
        }
    }

    fn authenticated(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.authenticated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn peer_name(ses: &NodeServerSessionInformation) -> String {
    ses.peer_name
        .as_ref()
        .map(|name| name.name.clone())
        .unwrap_or_default()
}

impl NodeEventSubscription for SessionEvents {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.authenticated().insert(ses.node_id);
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.tx.send(NodeEvent::Ready {
            peer: peer_name(&ses),
            peer_addr: ses.peer_addr,
            is_server: ses.is_server,
        });
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let authenticated = self.authenticated().remove(&ses.node_id);
        let _ = self.tx.send(NodeEvent::Disconnected {
            peer: peer_name(&ses),
            peer_addr: ses.peer_addr,
            is_server: ses.is_server,
            authenticated,
        });
    }
}

/// Logs every session change until the node stops.
pub(crate) async fn log_sessions(mut events: broadcast::Receiver<NodeEvent>) {
    loop {
        match events.recv().await {
            Ok(NodeEvent::Ready {
                peer, peer_addr, ..
            }) => tracing::info!(%peer, %peer_addr, "cluster: peer connected"),
            Ok(NodeEvent::Disconnected {
                peer,
                peer_addr,
                authenticated: true,
                ..
            }) => tracing::warn!(%peer, %peer_addr, "cluster: peer disconnected"),
            Ok(NodeEvent::Disconnected {
                peer_addr,
                is_server: true,
                ..
            }) => tracing::warn!(
                %peer_addr,
                "cluster: refused a node from {peer_addr}: it failed the handshake \
                 (wrong cluster secret?)"
            ),
            // A join this node made; `join` reports it to its caller.
            Ok(NodeEvent::Disconnected { .. }) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
