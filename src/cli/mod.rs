//! Command-line parsing and dispatch. `anyhow` lives here and nowhere below:
//! the library crates return typed errors, this layer adds context.

mod bench;
mod chat;
mod generate;
mod learner;
mod live;
mod mcp;
mod models;
mod progress;
mod providers;
mod run;
mod serve;
mod summary;
mod tasks;
mod tui;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use troupe_config::{Config, LoadOptions};

/// troupe: a local-first autonomous agent system.
#[derive(Debug, Parser)]
#[command(name = "troupe", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Configuration file (else $TROUPE_CONFIG, else the platform config dir).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter for stderr, e.g. `debug` or `troupe=debug,llama_cpp=warn`.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, inspect, download and synthesise models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Generate text with a model, streaming to stdout.
    Generate(generate::GenerateArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Serve models over an OpenAI-compatible HTTP API (headless model host).
    Serve(serve::ServeArgs),
    /// Do a job with the agents: plan it, run it, print the answer.
    Run(run::RunArgs),
    /// Talk with troupe in the terminal; the jobs you ask for are started.
    Chat(chat::ChatArgs),
    /// List, inspect, resume and cancel tasks.
    Tasks(tasks::TasksArgs),
    /// troupe as an MCP server (`troupe mcp serve`, on stdio).
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// What the Learner has learned (`troupe learner stats`).
    Learner(learner::LearnerArgs),
    /// Each role's chain (local, cluster, remote providers) and what every
    /// provider served: requests, failures, tokens, cost.
    Providers(providers::ProvidersArgs),
}

/// Runs one command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let config = troupe_config::load(&LoadOptions::from_process(cli.config.clone()))
        .context("cannot load configuration")?;
    init_tracing(cli.log.as_deref().unwrap_or(&config.log));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli.command, config))
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Models(cmd) => models::run(cmd, &config).await,
        Command::Generate(args) => generate::run(args, &config).await,
        Command::Bench(cmd) => bench::run(cmd, &config).await,
        Command::Serve(args) => serve::run(args, &config).await,
        Command::Run(args) => run::run(args, config).await,
        Command::Chat(args) => chat::run(args, config).await,
        Command::Tasks(args) => tasks::run(args, config).await,
        Command::Mcp(cmd) => mcp::run(cmd, config).await,
        Command::Learner(args) => learner::run(args, config).await,
        Command::Providers(args) => providers::run(args, config).await,
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log redirected to a file or a pipe gets
    // plain text, not escape codes. NO_COLOR turns it off on a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
