//! troupe-mcp: the MCP servers in `[[mcp.servers]]` as troupe tools.
//!
//! Each configured server is started (a child process speaking MCP on stdio)
//! or connected to (a streamable HTTP endpoint) at boot. Its tools join the
//! workers' registry as `<server>__<tool>`, with the server's input schema as
//! their arguments schema and the configured risk level, so the registry's
//! approval policy applies to them as to any built-in tool. A supervisor task
//! per server restarts it with exponential backoff when it dies; meanwhile
//! its tools are left out of prompts and calls to them answer that the
//! server is restarting.
//!
//! # Layout
//! - [`server`]: connecting, the per-server state ([`ServerStatus`]) and the
//!   supervisor loop with its backoff.
//! - [`tool`]: [`McpTool`], one server tool as a troupe `Tool`, and how an
//!   MCP call result becomes an `Observation`.
//! - this file: [`McpTools`], every server of a configuration, and the
//!   registry's [`ToolSource`] over them; [`attach`], what boot calls.

use troupe_schema::sanitize as schema;
pub mod server;
pub mod tool;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use troupe_config::mcp::{McpConfig, McpServerConfig};
use troupe_tools::registry::ToolSource;
use troupe_tools::{Tool, ToolRegistry};

pub use server::{ConnectError, Launch, ServerPhase, ServerStatus};
pub use tool::{tool_name, McpTool, NAME_SEPARATOR};

use server::ServerShared;

/// The configured MCP servers, each kept running by its own task. Dropping
/// it (with the registry that holds it) stops them.
pub struct McpTools {
    servers: Vec<Arc<ServerShared>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTools")
            .field("servers", &self.statuses())
            .finish()
    }
}

impl McpTools {
    /// Starts a supervisor task per server and returns at once; the servers
    /// come up in the background. Must be called inside a tokio runtime.
    pub fn spawn(
        servers: impl IntoIterator<Item = McpServerConfig>,
        launch: &Launch,
    ) -> Arc<McpTools> {
        let servers: Vec<Arc<ServerShared>> = servers
            .into_iter()
            .map(|config| ServerShared::new(config, launch.clone()))
            .collect();
        let tasks = servers
            .iter()
            .map(|s| tokio::spawn(server::supervise(Arc::clone(s))))
            .collect();
        Arc::new(McpTools { servers, tasks })
    }

    /// The enabled servers of `config`, started, after each one's first
    /// attempt has connected or failed (or its `startup_timeout_s` passed),
    /// so that the tools of servers that work are there for the first task.
    /// A server that fails keeps being retried in the background.
    pub async fn start(config: &McpConfig, launch: &Launch) -> Arc<McpTools> {
        let mcp = McpTools::spawn(config.enabled().cloned(), launch);
        mcp.wait_started().await;
        mcp
    }

    /// Waits until every server has left [`ServerPhase::Starting`], each at
    /// most its startup timeout (plus a little for the listing).
    pub async fn wait_started(&self) {
        let waits = self.servers.iter().map(|s| {
            let mut rx = s.subscribe();
            let limit = s.config.startup_timeout.saturating_mul(2);
            async move {
                let started = rx.wait_for(|st| st.phase != ServerPhase::Starting);
                let _ = tokio::time::timeout(limit, started).await;
            }
        });
        futures::future::join_all(waits).await;
    }

    /// Every server's status, in configuration order.
    pub fn statuses(&self) -> Vec<ServerStatus> {
        self.servers.iter().map(|s| s.status()).collect()
    }

    /// One server's status.
    pub fn status(&self, name: &str) -> Option<ServerStatus> {
        self.server(name).map(|s| s.status())
    }

    /// A receiver that sees every change of a server's status (tests and the
    /// UX wait on it).
    pub fn subscribe(&self, name: &str) -> Option<watch::Receiver<ServerStatus>> {
        self.server(name).map(|s| s.subscribe())
    }

    /// Stops every server (their tools then answer that it was stopped).
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        for server in &self.servers {
            server.stop();
        }
    }

    fn server(&self, name: &str) -> Option<&Arc<ServerShared>> {
        self.servers.iter().find(|s| s.config.name == name)
    }
}

impl Drop for McpTools {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl ToolSource for McpTools {
    fn available(&self) -> Vec<Arc<dyn Tool>> {
        self.servers
            .iter()
            .flat_map(|s| s.available())
            .map(|t| t as Arc<dyn Tool>)
            .collect()
    }

    fn lookup(&self, name: &str) -> Option<Result<Arc<dyn Tool>, String>> {
        self.servers
            .iter()
            .find_map(|s| s.lookup(name))
            .map(|found| found.map(|t| t as Arc<dyn Tool>))
    }
}

/// Starts the enabled servers of `config` (see [`McpTools::start`]), stdio
/// ones sandboxed as `launch` says, and adds their tools to `registry`.
/// `None`, and nothing added, when no server is enabled.
pub async fn attach(
    config: &McpConfig,
    launch: &Launch,
    registry: &mut ToolRegistry,
) -> Option<Arc<McpTools>> {
    config.enabled().next()?;
    let mcp = McpTools::start(config, launch).await;
    registry.add_source(Arc::clone(&mcp) as Arc<dyn ToolSource>);
    Some(mcp)
}
