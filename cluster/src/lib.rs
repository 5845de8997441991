//! troupe-cluster: troupe processes on several machines serving each
//! other's ModelHosts, over ractor_cluster.
//!
//! A node ([`ClusterNode::start`]) listens for peers and joins others; the
//! shared cluster secret is ractor_cluster's magic cookie, so a node that
//! does not know it is refused during the handshake. Each node serves its
//! own ModelHost to its peers, and [`ClusterNode::generate`] runs a request
//! on a peer that serves the model, streaming its tokens back as a
//! [`troupe_inference::backend::GenerationStream`] that ends in an error if
//! the peer is lost, so a caller can fail over.
//!
//! # Layout
//! - `node`: [`ClusterNode`], [`ClusterOptions`], [`PeerInfo`]: start, join,
//!   peers, generate, shutdown.
//! - `serve`: the actor that serves the local ModelHost to peers, and its
//!   wire messages.
//! - `peers`: [`ClusterNode`] as the router's `cluster` link
//!   (`troupe_agents::router::ClusterPeers`).
//! - `remote`: the caller's side of a peer's server: describe, start, relay
//!   events.
//! - `events`: node-server session events (joins, refusals) and their log.
//! - `wire`: serde mirrors of the inference types that cross the wire.
//! - `workers`: the actor that runs peers' subtasks on this node's workers
//!   (`troupe_agents::worker::remote::WorkerHost`), and this node's
//!   `WorkerPeers` over the peers' ones.
//! - `error`: [`ClusterError`].
//!
//! Enabling ractor_cluster turns on ractor's `cluster` feature for the
//! whole build, which drops ractor's blanket `Message` impl: every actor
//! message type in the workspace then implements `ractor::Message` itself.

#![warn(missing_docs)]

mod error;
mod events;
mod node;
mod peers;
mod remote;
mod serve;
mod wire;
mod workers;

pub use error::ClusterError;
pub use node::{ClusterNode, ClusterOptions, PeerInfo};
pub use serve::MODEL_SERVERS_GROUP;
pub use workers::WORKERS_GROUP;
