//! `troupe serve`: the whole troupe as a server. The flags are folded into
//! the config, and `troupe::server::Server` does the rest: boots the troupe,
//! joins its cluster, serves it over HTTP (OpenAI-compatible routes and the
//! agent API, see `troupe::http`) until Ctrl-C or SIGTERM, then stops it,
//! so models unload and unfinished tasks resume at the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use troupe::host::{format_bytes, parse_size};
use troupe::server::{ServeOptions, Server};
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
    if args.api_key.is_some() {
        tracing::warn!("--api-key on the command line is visible to every user of this machine in `ps`; use --api-key-file or TROUPE_SERVE__API_KEY");
    }
    let config = with_flags(config, &args)?;
    if !config.serve.addr.ip().is_loopback() && config.serve.api_key.is_none() {
        tracing::warn!(addr = %config.serve.addr, "listening beyond loopback without an API key: anyone who can reach this address can use the models and start tasks");
    }
    let pinned = config.serve.pin.len();
    let data_dir = config.data_dir.clone();
    let cluster_listen = config.cluster.listen;
    let options = ServeOptions {
        cluster_secret: args.cluster_secret.clone(),
        ..ServeOptions::default()
    };
    let server = Server::bind(config, options).await?;
    if let Some(node) = server.cluster() {
        print_cluster(node, cluster_listen).await;
    }
    eprintln!(
        "troupe serve: http://{} (memory budget {}, {pinned} pinned, data in {})",
        server.local_addr(),
        format_bytes(server.budget_bytes()),
        data_dir.display()
    );
    Ok(server.run(stop_signal()).await?)
}

/// Says which cluster node this process is and what its peers serve.
async fn print_cluster(node: &troupe_cluster::ClusterNode, listen: Option<SocketAddr>) {
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
}

/// `config` with the command line's overrides applied.
fn with_flags(config: &Config, args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = config.clone();
    if let Some(text) = &args.memory_budget {
        config.serve.memory_budget = Some(parse_size(text).context("invalid --memory-budget")?);
    }
    if let Some(text) = &args.max_body {
        config.serve.max_body_bytes = parse_size(text).context("invalid --max-body")?;
    }
    if let Some(addr) = args.addr {
        config.serve.addr = addr;
    }
    if let Some(key) = api_key(args)? {
        config.serve.api_key = Some(key);
    }
    if args.cluster_listen.is_some() {
        config.cluster.listen = args.cluster_listen;
    }
    if !args.join.is_empty() {
        config.cluster.join.clone_from(&args.join);
    }
    if args.node_name.is_some() {
        config.cluster.node_name.clone_from(&args.node_name);
    }
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
    Ok(config)
}

/// The key of `--api-key`, else the first line of `--api-key-file`.
fn api_key(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    if let Some(key) = &args.api_key {
        return Ok(Some(key.clone()));
    }
    let Some(path) = &args.api_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API key file {}", path.display()))?;
    let key = text.lines().next().unwrap_or("").trim().to_string();
    if key.is_empty() {
        anyhow::bail!("the API key file {} is empty", path.display());
    }
    Ok(Some(key))
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
