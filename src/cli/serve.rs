//! `troupe serve`: the headless model host. Starts a ModelHost over the
//! llama.cpp engine and serves it over HTTP (OpenAI-compatible routes, see
//! `troupe::http`) until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use troupe::actors::model_host::{
    self, default_budget_bytes, format_bytes, parse_size, ModelHostConfig,
};
use troupe::http::AppState;
use troupe_config::Config;
use troupe_inference::backend::Backend;
use troupe_inference::llama::LlamaEngine;

#[derive(Debug, Args)]
pub struct ServeArgs {
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
    /// (default: `[serve] api_key`, or TROUPE_SERVE__API_KEY).
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
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
}

pub async fn run(args: ServeArgs, config: &Config) -> anyhow::Result<()> {
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
    let api_key = args.api_key.clone().or_else(|| serve.api_key.clone());
    let mut pin = serve.pin.clone();
    pin.extend(args.pin.iter().cloned());
    let mut host_config = ModelHostConfig::from_config(config, budget, pin.clone());
    host_config.default_keep_alive = serve.keep_alive;
    host_config
        .catalog
        .model_dirs
        .extend(args.models_dir.iter().cloned());
    if let Some(ctx) = args.ctx {
        host_config.load.context_length = ctx;
    }
    if let Some(slots) = args.slots {
        host_config.load.parallel_slots = slots;
    }
    if let Some(threads) = args.threads {
        host_config.load.threads = Some(threads);
    }
    if let Some(secs) = args.keep_alive {
        host_config.default_keep_alive = Duration::from_secs(secs);
    }
    if !addr.ip().is_loopback() && api_key.is_none() {
        tracing::warn!(addr = %addr, "listening beyond loopback without an API key: anyone who can reach this address can use the models");
    }

    let backend: Arc<dyn Backend> = Arc::new(LlamaEngine::new());
    let (host, host_task) = model_host::spawn(host_config, backend)
        .await
        .context("cannot start the model host")?;
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            host.shutdown().await;
            return Err(error).with_context(|| format!("cannot listen on {addr}"));
        }
    };
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    eprintln!(
        "troupe serve: http://{addr} (memory budget {}, {} pinned)",
        format_bytes(budget),
        pin.len()
    );

    let mut state = AppState::new(host.clone());
    state.api_key = api_key;
    state.max_body_bytes = max_body_bytes;
    let stopping = host.clone();
    let shutdown = async move {
        stop_signal().await;
        tracing::info!("stopping: unloading models");
        // Unloading ends running generations, so that open streams close and
        // the server's graceful shutdown does not wait on them.
        stopping.shutdown().await;
    };
    let served = troupe::http::serve(listener, state, shutdown).await;
    host.shutdown().await;
    let _ = host_task.await;
    served.context("the HTTP server failed")
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
