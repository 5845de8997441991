//! `troupe mcp serve`: troupe as an MCP server on stdin/stdout, for MCP
//! clients (editors, assistants) that start their servers as programs.
//! stdout carries the protocol only; logs go to stderr.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use rmcp::ServiceExt;
use troupe::config::Config;
use troupe::mcp::TroupeMcp;
use troupe::supervision::BootOptions;

use super::live;

#[derive(Debug, Subcommand)]
pub(super) enum McpCommand {
    /// Serve troupe's tools, `submit_task`, `task_status` and `ask` over
    /// MCP on stdio until the client closes it.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Where troupe keeps its database and workspaces (default: the
    /// configured `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub(super) async fn run(command: McpCommand, config: Config) -> anyhow::Result<()> {
    match command {
        McpCommand::Serve(args) => serve(args, config).await,
    }
}

async fn serve(args: ServeArgs, mut config: Config) -> anyhow::Result<()> {
    live::override_data_dir(&mut config, args.data_dir);
    let data_dir = config.data_dir.clone();
    let troupe = Arc::new(live::start(config, BootOptions::default()).await?);
    tracing::info!(data_dir = %data_dir.display(), "serving MCP on stdio");
    let served = TroupeMcp::new(Arc::clone(&troupe))
        .serve(rmcp::transport::stdio())
        .await;
    let result = match served {
        Ok(service) => {
            tokio::select! {
                quit = service.waiting() => {
                    tracing::info!(?quit, "the MCP client closed the connection");
                    Ok(())
                }
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        Err(error) => Err(error).context("the MCP handshake on stdio failed"),
    };
    // Calls still running hold the troupe a moment longer; unfinished tasks
    // resume at the next start either way.
    match Arc::try_unwrap(troupe) {
        Ok(troupe) => troupe.shutdown().await,
        Err(_) => tracing::debug!("calls still running; leaving the troupe to process exit"),
    }
    result
}
