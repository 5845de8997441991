//! [`run`]: `troupe serve` as one call, as mini-redis's `server::run`:
//! the shutdown trigger is an argument, so a test or an embedding program
//! stops it with any future, and everything started is stopped in one
//! place ([`Parts::stop`]: at the end of [`Server::run`], or when a later
//! step of [`Server::bind`] fails).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use troupe_cluster::{ClusterError, ClusterNode, ClusterOptions};
use troupe_config::Config;
use troupe_host::default_budget_bytes;
use troupe_supervision::{BootError, BootOptions, Troupe};

use crate::http::{AppState, ModelStore, RunningTroupe, SentenceEmbedderSlot};

/// Why `troupe serve` could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The troupe could not boot (the data dir is in use, a pinned model
    /// failed to load, ...).
    #[error("cannot start troupe")]
    Boot(#[source] BootError),
    /// `[serve] max_body_bytes` is larger than this machine's address space.
    #[error("the body cap of {0} bytes does not fit this machine's memory")]
    BodyCap(u64),
    /// A cluster was asked for (`[cluster] listen` or `join`) without its
    /// secret.
    #[error(
        "--cluster-secret is required with --cluster-listen or --join \
         (or set the environment variable {env})"
    )]
    NoClusterSecret {
        /// The variable `[cluster] secret_env` names.
        env: String,
    },
    /// The cluster node could not start.
    #[error("cannot start the cluster node")]
    Cluster(#[source] ClusterError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// `[serve] addr`.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Accepting connections failed.
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
}

/// What [`Server::bind`] takes beyond the config.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// The cluster's shared secret; none: the variable `[cluster]
    /// secret_env` names.
    pub cluster_secret: Option<String>,
    /// Boot options (another engine, fault injection); its `budget_bytes`
    /// wins over `[serve] memory_budget`.
    pub boot: BootOptions,
}

/// Boots a troupe from `config` and serves it over HTTP on `[serve] addr`
/// (with its cluster node when `[cluster]` asks for one) until `shutdown`
/// resolves; then stops the troupe, so models unload and unfinished tasks
/// resume at the next start.
///
/// # Errors
/// [`ServeError`]: boot, cluster, bind or accept failures.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::bind(config, ServeOptions::default())
        .await?
        .run(shutdown)
        .await
}

/// A booted troupe bound to its address, not yet serving: between
/// [`Server::bind`] and [`Server::run`] its address and cluster node can
/// be read (`troupe serve` prints them).
pub struct Server {
    parts: Parts,
    listener: TcpListener,
    state: AppState,
    addr: SocketAddr,
    budget_bytes: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

/// What a server has started, stopped in reverse order by
/// [`Parts::stop`].
struct Parts {
    running: RunningTroupe,
    cluster: Option<ClusterNode>,
}

impl Parts {
    async fn stop(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        self.running.stop().await;
    }
}

impl Server {
    /// Boots the troupe, starts its cluster node and binds `[serve] addr`
    /// (what was started is stopped again when a later step fails).
    ///
    /// # Errors
    /// [`ServeError`] naming the step that failed.
    pub async fn bind(config: Config, options: ServeOptions) -> Result<Server, ServeError> {
        let serve = config.serve.clone();
        let max_body_bytes = usize::try_from(serve.max_body_bytes)
            .map_err(|_| ServeError::BodyCap(serve.max_body_bytes))?;
        let budget_bytes = options
            .boot
            .budget_bytes
            .or(serve.memory_budget)
            .unwrap_or_else(default_budget_bytes);
        let (memory, hf_cache) = (config.memory.clone(), config.models.hf_cache.clone());
        let store = ModelStore {
            hf_cache: config.models.hf_cache.clone(),
            hf_endpoint: config.models.hf_endpoint.clone(),
            dirs: config.models.dirs.clone(),
        };
        let cluster_config = config.cluster.clone();
        let boot = BootOptions {
            budget_bytes: Some(budget_bytes),
            ..options.boot
        };
        let troupe = Troupe::start_with(config, boot)
            .await
            .map_err(ServeError::Boot)?;
        let memory_embedder = troupe.memory().map(|m| Arc::clone(&m.embedder));
        let cluster = start_cluster(&cluster_config, options.cluster_secret, &troupe).await;
        let parts = Parts {
            running: RunningTroupe::new(troupe),
            cluster: None,
        };
        let cluster = match cluster {
            Ok(cluster) => cluster,
            Err(error) => {
                parts.stop().await;
                return Err(error);
            }
        };
        let parts = Parts { cluster, ..parts };
        let bound = match TcpListener::bind(serve.addr).await {
            Ok(listener) => listener.local_addr().map(|addr| (listener, addr)),
            Err(error) => Err(error),
        };
        let (listener, addr) = match bound {
            Ok(bound) => bound,
            Err(source) => {
                parts.stop().await;
                return Err(ServeError::Listen {
                    addr: serve.addr,
                    source,
                });
            }
        };
        let mut state = AppState::with_troupe(parts.running.clone());
        state.api_key = serve.api_key;
        state.allowed_hosts = serve.allowed_hosts;
        state.max_body_bytes = max_body_bytes;
        state.store = Some(store);
        state.sampling = serve.sampling;
        let mut slot = SentenceEmbedderSlot::from_config(&memory, &hf_cache);
        if let Some(embedder) = memory_embedder {
            slot = slot.with_loaded(embedder);
        }
        state.sentence_embedder = Arc::new(slot);
        Ok(Server {
            parts,
            listener,
            state,
            addr,
            budget_bytes,
        })
    }

    /// The address it listens on (the port the system chose for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ModelHost's memory budget.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// This process's cluster node, when `[cluster]` asked for one.
    pub fn cluster(&self) -> Option<&ClusterNode> {
        self.parts.cluster.as_ref()
    }

    /// Serves until `shutdown` resolves, then stops the cluster node and
    /// the troupe.
    ///
    /// # Errors
    /// [`ServeError::Http`] when accepting connections failed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        // `serve` stops the troupe when the signal comes: event streams end,
        // models unload (ending running generations), so the graceful
        // shutdown does not wait on open streams.
        let served = crate::http::serve(self.listener, self.state, shutdown).await;
        self.parts.stop().await;
        served.map_err(ServeError::Http)
    }
}

/// Starts this process's cluster node when `[cluster]` has a `listen`
/// address or peers to `join`, serving the troupe's ModelHost (and, with
/// `take_work`, its workers) to peers, giving the router's `cluster` links
/// their peers and (with `send_work`) the pools their peers' workers.
async fn start_cluster(
    cfg: &troupe_config::ClusterConfig,
    secret: Option<String>,
    troupe: &Troupe,
) -> Result<Option<ClusterNode>, ServeError> {
    if cfg.listen.is_none() && cfg.join.is_empty() {
        return Ok(None);
    }
    let secret = secret
        .or_else(|| std::env::var(&cfg.secret_env).ok())
        .filter(|secret| !secret.is_empty());
    let Some(secret) = secret else {
        return Err(ServeError::NoClusterSecret {
            env: cfg.secret_env.clone(),
        });
    };
    let options = ClusterOptions {
        listen: cfg.listen,
        secret,
        join: cfg.join.clone(),
        node_name: cfg.node_name.clone().unwrap_or_default(),
        workers: cfg.take_work.then(|| troupe.worker_host()),
    };
    let node = ClusterNode::start(options, troupe.model_host().clone())
        .await
        .map_err(ServeError::Cluster)?;
    troupe.router().set_cluster(Arc::new(node.clone()));
    if cfg.send_work {
        troupe.peer_workers().set(node.worker_peers());
    }
    Ok(Some(node))
}
