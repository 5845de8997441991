//! `troupe serve`: the whole troupe as a server. Boots the actors, the
//! store and the ModelHost (`troupe::Troupe`) and serves them over HTTP
//! (OpenAI-compatible routes and the agent API, see `troupe::http`) until
//! Ctrl-C or SIGTERM; then it stops the troupe, so models unload and
//! unfinished tasks resume at the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use troupe::actors::model_host::{default_budget_bytes, format_bytes, parse_size};
use troupe::http::{AppState, RunningTroupe, SentenceEmbedderSlot};
use troupe::supervision::BootOptions;
use troupe::Troupe;
use troupe_config::Config;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (default: `[serve] addr`, else 127.0.0.1:8080).
    /// Set an API key before listening on other interfaces.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Another directory of GGUF models, besides the configured ones (repeatable).
    #[arg(long, value_name = "DIR")]
    models_dir: Vec<PathBuf>,
    /// Memory the loaded models may hold together, e.g. `8GiB` (default:
    /// half of the machine's memory).
    #[arg(long, value_name = "SIZE")]
    memory_budget: Option<String>,
    /// Load this model at start and never evict it (repeatable).
    #[arg(long, value_name = "NAME")]
    pin: Vec<String>,
    /// Require `Authorization: Bearer KEY` on every route but /health
    /// (default: `[serve] api_key`, or TROUPE_SERVE__API_KEY). Every user
    /// of the machine sees it in `ps`: prefer --api-key-file or the
    /// environment.
    #[arg(long, value_name = "KEY", conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// Read the API key from this file (its first line).
    #[arg(long, value_name = "PATH")]
    api_key_file: Option<std::path::PathBuf>,
    /// Largest request body, e.g. `4MiB`; larger ones get 413.
    #[arg(long, value_name = "SIZE")]
    max_body: Option<String>,
    /// Seconds an idle model stays loaded (default 300).
    #[arg(long, value_name = "SECONDS")]
    keep_alive: Option<u64>,
    /// Tokens each request slot holds (default: the configured context length).
    #[arg(long)]
    ctx: Option<u32>,
    /// Requests each model decodes at once (default: configured parallel_slots).
    #[arg(long)]
    slots: Option<u32>,
    /// CPU threads per model (default: configured, else one per physical core).
    #[arg(short, long)]
    threads: Option<u32>,
    /// Where the store and the task workspaces live (default: `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Make this process a cluster node that peers join at ADDR (IP:port;
    /// default: `[cluster] listen`). Needs the cluster secret.
    #[arg(long, value_name = "ADDR")]
    cluster_listen: Option<SocketAddr>,
    /// The secret every node of the cluster shares (default: the variable
    /// named by `[cluster] secret_env`, CLUSTER_SECRET).
    #[arg(long, value_name = "SECRET")]
    cluster_secret: Option<String>,
    /// Join the cluster node at ADDR (IP:port, repeatable; default:
    /// `[cluster] join`). Needs the cluster secret.
    #[arg(long, value_name = "ADDR")]
    join: Vec<SocketAddr>,
    /// This node's name in the cluster (default: `[cluster] node_name`,
    /// else troupe-<pid>).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
}

pub(super) async fn run(args: ServeArgs, config: &Config) -> anyhow::Result<()> {
    let serve = &config.serve;
    let budget = match &args.memory_budget {
        Some(text) => parse_size(text).context("invalid --memory-budget")?,
        None => serve.memory_budget.unwrap_or_else(default_budget_bytes),
    };
    let max_body = match &args.max_body {
        Some(text) => parse_size(text).context("invalid --max-body")?,
        None => serve.max_body_bytes,
    };
    let max_body_bytes =
        usize::try_from(max_body).context("the body cap does not fit this machine's memory")?;
    let addr = args.addr.unwrap_or(serve.addr);
    if args.api_key.is_some() {
        tracing::warn!("--api-key on the command line is visible to every user of this machine in `ps`; use --api-key-file or TROUPE_SERVE__API_KEY");
    }
    let key_from_file = match &args.api_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the API key file {}", path.display()))?;
            let key = text.lines().next().unwrap_or("").trim().to_string();
            if key.is_empty() {
                anyhow::bail!("the API key file {} is empty", path.display());
            }
            Some(key)
        }
        None => None,
    };
    let api_key = args
        .api_key
        .clone()
        .or(key_from_file)
        .or_else(|| serve.api_key.clone());
    let allowed_hosts = serve.allowed_hosts.clone();
    let config = with_flags(config, &args);
    if !addr.ip().is_loopback() && api_key.is_none() {
        tracing::warn!(addr = %addr, "listening beyond loopback without an API key: anyone who can reach this address can use the models and start tasks");
    }

    let pinned = config.serve.pin.len();
    let data_dir = config.data_dir.clone();
    let (memory, hf_cache) = (config.memory.clone(), config.models.hf_cache.clone());
    let cluster_config = config.cluster.clone();
    let options = BootOptions {
        budget_bytes: Some(budget),
        ..BootOptions::default()
    };
    let troupe = Troupe::start_with(config, options)
        .await
        .context("cannot start troupe")?;
    let cluster = match start_cluster(&args, &cluster_config, &troupe).await {
        Ok(cluster) => cluster,
        Err(error) => {
            troupe.shutdown().await;
            return Err(error);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            if let Some(cluster) = &cluster {
                cluster.shutdown().await;
            }
            troupe.shutdown().await;
            return Err(error).with_context(|| format!("cannot listen on {addr}"));
        }
    };
    let memory_embedder = troupe.memory().map(|m| Arc::clone(&m.embedder));
    let running = RunningTroupe::new(troupe);
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            running.stop().await;
            return Err(error).context("cannot read the listening address");
        }
    };
    eprintln!(
        "troupe serve: http://{addr} (memory budget {}, {pinned} pinned, data in {})",
        format_bytes(budget),
        data_dir.display()
    );

    let mut state = AppState::with_troupe(running.clone());
    state.api_key = api_key;
    state.allowed_hosts = allowed_hosts;
    state.max_body_bytes = max_body_bytes;
    let mut slot = SentenceEmbedderSlot::from_config(&memory, &hf_cache);
    if let Some(embedder) = memory_embedder {
        slot = slot.with_loaded(embedder);
    }
    state.sentence_embedder = Arc::new(slot);
    // `serve` stops the troupe when the signal comes: event streams end,
    // models unload (ending running generations), so the graceful shutdown
    // does not wait on open streams.
    let served = troupe::http::serve(listener, state, stop_signal()).await;
    if let Some(cluster) = &cluster {
        cluster.shutdown().await;
    }
    running.stop().await;
    served.context("the HTTP server failed")
}

/// Starts this process's cluster node when `--cluster-listen`, `--join`
/// or `[cluster]` asks for one, serving the troupe's ModelHost (and, with
/// `take_work`, its workers) to peers, giving the router's `cluster` links
/// their peers and (with `send_work`) the pools their peers' workers.
async fn start_cluster(
    args: &ServeArgs,
    cfg: &troupe_config::ClusterConfig,
    troupe: &Troupe,
) -> anyhow::Result<Option<troupe_cluster::ClusterNode>> {
    let listen = args.cluster_listen.or(cfg.listen);
    let join = if args.join.is_empty() {
        cfg.join.clone()
    } else {
        args.join.clone()
    };
    if listen.is_none() && join.is_empty() {
        return Ok(None);
    }
    let secret = args
        .cluster_secret
        .clone()
        .or_else(|| std::env::var(&cfg.secret_env).ok())
        .filter(|secret| !secret.is_empty());
    let Some(secret) = secret else {
        anyhow::bail!(
            "--cluster-secret is required with --cluster-listen or --join \
             (or set the environment variable {})",
            cfg.secret_env
        );
    };
    let options = troupe_cluster::ClusterOptions {
        listen,
        secret,
        join,
        node_name: args
            .node_name
            .clone()
            .or_else(|| cfg.node_name.clone())
            .unwrap_or_default(),
        workers: cfg.take_work.then(|| troupe.worker_host()),
    };
    let node = troupe_cluster::ClusterNode::start(options, troupe.model_host().clone())
        .await
        .context("cannot start the cluster node")?;
    troupe.router().set_cluster(Arc::new(node.clone()));
    if cfg.send_work {
        troupe.peer_workers().set(node.worker_peers());
    }
    eprintln!(
        "troupe serve: cluster node {}{}",
        node.name(),
        listen.map(|a| format!(" on {a}")).unwrap_or_default()
    );
    for peer in node.peers().await {
        eprintln!(
            "troupe serve: cluster peer {} ({}) serves {}",
            peer.node,
            peer.addr,
            peer.models.join(", ")
        );
    }
    Ok(Some(node))
}

/// `config` with the command line's overrides applied.
fn with_flags(config: &Config, args: &ServeArgs) -> Config {
    let mut config = config.clone();
    for name in &args.pin {
        if !config.serve.pin.contains(name) {
            config.serve.pin.push(name.clone());
        }
    }
    config.models.dirs.extend(args.models_dir.iter().cloned());
    if let Some(secs) = args.keep_alive {
        config.serve.keep_alive = Duration::from_secs(secs);
    }
    if let Some(ctx) = args.ctx {
        config.inference.context_length = ctx;
    }
    if let Some(slots) = args.slots {
        config.inference.parallel_slots = slots;
    }
    if let Some(threads) = args.threads {
        config.inference.threads = Some(threads);
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir.clone_from(dir);
    }
    config
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C"),
        }
    }
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}
