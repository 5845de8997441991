//! The `[cluster]` section: this process as a node of a troupe cluster,
//! serving its models to peers and using theirs.
//!
//! ```toml
//! [cluster]
//! listen = "0.0.0.0:7420"             # where peers connect (IP:port)
//! join = ["10.0.0.2:7420"]            # nodes to connect to at start
//! node_name = "gpu-box"               # unique in the cluster; default troupe-<pid>
//! secret_env = "CLUSTER_SECRET"       # the variable holding the shared secret
//! send_work = true                    # run subtasks on peers' workers when this
//!                                     # node lacks the model or a free worker
//! take_work = true                    # run peers' subtasks on this node's workers
//! ```
//!
//! The secret itself never sits in the file: it comes from the environment
//! variable named by `secret_env` (default `CLUSTER_SECRET`; not a
//! `TROUPE_*` name, which would be read as a config key) or from
//! `troupe serve --cluster-secret`. `troupe serve --cluster-listen` and
//! `--join` override `listen` and `join`.
//!
//! Raw and resolved types sit together here, as in [`crate::mcp`].

use crate::load::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::net::SocketAddr;

/// The environment variable read for the secret unless `secret_env` names another.
pub const DEFAULT_SECRET_ENV: &str = "CLUSTER_SECRET";

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Where peers connect, `IP:port`.
    pub listen: Option<String>,
    /// Nodes to connect to at start, each `IP:port`.
    pub join: Option<Vec<String>>,
    /// This node's name in the cluster.
    pub node_name: Option<String>,
    /// The environment variable holding the cluster secret.
    pub secret_env: Option<String>,
    /// Refused: read only to say where the secret belongs instead.
    pub secret: Option<String>,
    /// Send subtasks to peers' workers.
    pub send_work: Option<bool>,
    /// Take peers' subtasks.
    pub take_work: Option<bool>,
}

/// `[cluster]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Where peers connect; `None`: this node does not listen.
    pub listen: Option<SocketAddr>,
    /// Nodes to connect to at start.
    pub join: Vec<SocketAddr>,
    /// This node's name; `None`: `troupe-<pid>`.
    pub node_name: Option<String>,
    /// The environment variable holding the cluster secret.
    pub secret_env: String,
    /// Run subtasks on peers' workers when this node lacks the model or a
    /// free worker of the specialist.
    pub send_work: bool,
    /// Run peers' subtasks on this node's workers.
    pub take_work: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen: None,
            join: Vec::new(),
            node_name: None,
            secret_env: DEFAULT_SECRET_ENV.to_string(),
            send_work: true,
            take_work: true,
        }
    }
}

impl ClusterConfig {
    /// Whether this process is a cluster node (it listens or joins).
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || !self.join.is_empty()
    }
}

/// Parses one node address, `IP:port`.
pub fn parse_node_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("`{text}` is not an IP address and port, e.g. 127.0.0.1:7420 or [::1]:7420")
    })
}

pub(crate) fn resolve_cluster(
    raw: RawCluster,
    source: &ConfigSource,
) -> Result<ClusterConfig, ConfigError> {
    if raw.secret.is_some() {
        return Err(source.invalid(
            "cluster.secret",
            "the cluster secret does not belong in the configuration; put it in the \
             environment variable named by `cluster.secret_env` (default CLUSTER_SECRET) \
             or pass --cluster-secret",
        ));
    }
    let listen = raw
        .listen
        .map(|text| parse_node_addr(&text))
        .transpose()
        .map_err(|reason| source.invalid("cluster.listen", &reason))?;
    let mut join = Vec::new();
    for (i, text) in raw.join.unwrap_or_default().iter().enumerate() {
        join.push(
            parse_node_addr(text)
                .map_err(|reason| source.invalid(&format!("cluster.join[{i}]"), &reason))?,
        );
    }
    let node_name = match raw.node_name {
        None => None,
        Some(name) => {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(source.invalid(
                    "cluster.node_name",
                    &format!("`{name}` must be 1-64 letters, digits, `-`, `_` or `.`"),
                ));
            }
            Some(name)
        }
    };
    let secret_env = raw
        .secret_env
        .unwrap_or_else(|| DEFAULT_SECRET_ENV.to_string());
    let valid_env = !secret_env.is_empty()
        && secret_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_env {
        return Err(source.invalid(
            "cluster.secret_env",
            &format!("`{secret_env}` is not an environment variable name"),
        ));
    }
    if secret_env.starts_with("TROUPE_") {
        return Err(source.invalid(
            "cluster.secret_env",
            &format!(
                "`{secret_env}` starts with TROUPE_, which troupe reads as a config key; \
                 pick another name"
            ),
        ));
    }
    Ok(ClusterConfig {
        listen,
        join,
        node_name,
        secret_env,
        send_work: raw.send_work.unwrap_or(true),
        take_work: raw.take_work.unwrap_or(true),
    })
}
