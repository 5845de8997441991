//! What can go wrong between nodes.

/// An error of starting a node, joining a peer, or running a request on one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No connected peer lists the model in its catalog.
    #[error("no cluster peer serves the model `{model}`")]
    NoPeerServes {
        /// The model asked for.
        model: String,
    },
    /// The peer at `addr` closed the connection during the handshake: the
    /// cluster secrets differ (or it refused this node for another reason).
    #[error("the cluster node at {addr} refused this node: {reason}")]
    Refused {
        /// The address joined.
        addr: String,
        /// Why, as far as this side can tell.
        reason: String,
    },
    /// Nothing answered at `addr`, or the handshake did not finish in time.
    #[error("cannot reach the cluster node at {addr}: {reason}")]
    Unreachable {
        /// The address joined.
        addr: String,
        /// The connection error.
        reason: String,
    },
    /// Every peer that serves the model failed before its first token; this
    /// is the last one tried.
    #[error("cluster node {node} failed the request: {reason}")]
    PeerFailed {
        /// The peer's node name.
        node: String,
        /// Its error.
        reason: String,
    },
    /// The options cannot start a node.
    #[error("invalid cluster options: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// This node's own actors could not start (or the listen address is taken).
    #[error("cannot start the cluster node: {reason}")]
    Start {
        /// The underlying error.
        reason: String,
    },
}
