//! troupe as an MCP server: `troupe mcp serve` (stdio) and `/mcp` under
//! `troupe serve` (streamable HTTP).
//!
//! A client sees every tool of troupe's registry (built-in tools and those of
//! the MCP servers troupe itself uses) under the same approval policy as the
//! workers: a call the policy allows runs in a shared `mcp` workspace under
//! the data dir, one it denies or would ask a person about answers with an
//! error saying so. Besides them, three tools reach the running troupe:
//! `submit_task`, `task_status` and `ask` (see [`agent_tools`]).
//!
//! # Layout
//! - this file: [`TroupeMcp`], the `rmcp` server handler, and
//!   [`TroupeAccess`], how it reaches a troupe (owned by `troupe mcp serve`,
//!   or shared with the HTTP routes).
//! - [`agent_tools`]: the three troupe tools: schemas and calls.
//! - `logging`: `logging/setLevel` and the log messages a client asked for.

pub mod agent_tools;
mod logging;

use std::future::Future;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use troupe_tools::{Observation, ToolContext, ToolOutcome, Workspace};

use troupe_supervision::Troupe;

/// The workspace MCP clients' tool calls run in (`<data_dir>/workspaces/mcp`).
pub const MCP_WORKSPACE: &str = "mcp";

/// How the MCP server reaches a troupe.
pub trait TroupeAccess: Clone + Send + Sync + 'static {
    /// A borrow of the troupe for the length of one call.
    type Guard<'a>: Deref<Target = Troupe> + Send + Sync
    where
        Self: 'a;
    /// The troupe, or `None` once it is shutting down.
    fn troupe(&self) -> impl Future<Output = Option<Self::Guard<'_>>> + Send;
}

impl TroupeAccess for Arc<Troupe> {
    type Guard<'a> = &'a Troupe;

    fn troupe(&self) -> impl Future<Output = Option<&Troupe>> + Send {
        std::future::ready(Some(self.as_ref()))
    }
}

/// The MCP server handler: one per connection (stdio) or session (HTTP);
/// they share the troupe and the workspace.
#[derive(Clone)]
pub struct TroupeMcp<A: TroupeAccess> {
    access: A,
    workspace: Arc<OnceCell<Arc<Workspace>>>,
    /// What this client asked to hear (`logging/setLevel`).
    log: logging::ClientLog,
}

impl<A: TroupeAccess> std::fmt::Debug for TroupeMcp<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TroupeMcp").finish_non_exhaustive()
    }
}

impl<A: TroupeAccess> TroupeMcp<A> {
    /// A handler over `access`; registry tools run in the [`MCP_WORKSPACE`]
    /// workspace of the troupe's data dir, created at the first call.
    pub fn new(access: A) -> TroupeMcp<A> {
        TroupeMcp {
            access,
            workspace: Arc::new(OnceCell::new()),
            log: logging::ClientLog::default(),
        }
    }

    async fn troupe(&self) -> Result<A::Guard<'_>, ErrorData> {
        self.access
            .troupe()
            .await
            .ok_or_else(|| ErrorData::internal_error("troupe is shutting down", None))
    }

    async fn workspace(&self, troupe: &Troupe) -> Result<Arc<Workspace>, ErrorData> {
        // The store's file sits in the data dir.
        let data_dir: PathBuf = match troupe.store().path().parent() {
            Some(dir) => dir.to_path_buf(),
            None => {
                return Err(ErrorData::internal_error(
                    "troupe's data dir is unknown",
                    None,
                ))
            }
        };
        self.workspace
            .get_or_try_init(|| async move {
                let ws = tokio::task::spawn_blocking(move || {
                    Workspace::open(&data_dir, MCP_WORKSPACE)
                        .or_else(|_| Workspace::create(&data_dir, MCP_WORKSPACE))
                })
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
                .map_err(|e| {
                    ErrorData::internal_error(format!("cannot open the mcp workspace: {e}"), None)
                })?;
                Ok(Arc::new(ws))
            })
            .await
            .cloned()
    }

    async fn list(&self) -> Result<Vec<Tool>, ErrorData> {
        let troupe = self.troupe().await?;
        let mut tools = agent_tools::definitions();
        for tool in troupe.tools().available_tools() {
            if tools.iter().any(|t| t.name == tool.name()) {
                continue;
            }
            let schema: JsonObject = match tool.schema() {
                Value::Object(map) => map,
                _ => JsonObject::new(),
            };
            let description = format!("{} [risk: {}]", tool.description(), tool.risk());
            tools.push(Tool::new(tool.name().to_string(), description, schema));
        }
        Ok(tools)
    }

    async fn call(&self, request: CallToolRequestParams) -> Result<CallToolResult, ErrorData> {
        let args = request.arguments.map(Value::Object).unwrap_or(json!({}));
        let troupe = self.troupe().await?;
        if let Some(result) = agent_tools::call(&troupe, &request.name, &args).await {
            return Ok(result);
        }
        let ctx = ToolContext::new(self.workspace(&troupe).await?);
        let registry = troupe.tools();
        match registry.call(&ctx, &request.name, args).await {
            Ok(ToolOutcome::Done(obs)) => Ok(result_of(obs)),
            Ok(ToolOutcome::NeedsApproval(approval)) => {
                // An MCP client is not the person approvals are asked of:
                // the call is refused, and the refusal says how to allow it.
                registry.rejected(&approval, None);
                let risk = approval.risk;
                Ok(error_result(
                    format!(
                        "`{}` needs a person's approval under troupe's policy ([approval] {risk} = \"ask\"), \
                         and MCP clients cannot give it. To let MCP clients call it, set \
                         [approval.tools] {} = \"allow\" (or [approval] {risk} = \"allow\") in troupe.toml.",
                        approval.tool, approval.tool
                    ),
                    json!({ "needs_approval": true, "tool": approval.tool, "risk": risk }),
                ))
            }
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        }
    }
}

impl<A: TroupeAccess> ServerHandler for TroupeMcp<A> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(logging::capabilities())
            .with_server_info(Implementation::new("troupe", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "troupe is a local agent system. `submit_task` starts a job the agents plan and \
                 do; poll `task_status` for its answer. `ask` talks with troupe's UX agent. The \
                 other tools act on a shared workspace and follow troupe's approval policy.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.list().await?))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let result = self.call(request).await;
        let (severity, data) = match &result {
            Ok(r) if r.is_error == Some(true) => (
                logging::Severity::Warning,
                json!({ "tool": name, "outcome": "error", "text": text_of(r) }),
            ),
            Ok(_) => (
                logging::Severity::Info,
                json!({ "tool": name, "outcome": "ok" }),
            ),
            Err(e) => (
                logging::Severity::Error,
                json!({ "tool": name, "outcome": "failed", "error": e.message }),
            ),
        };
        self.log.send(&context, severity, data).await;
        result.map(CallToolResponse::from)
    }

    #[allow(deprecated)] // See `logging`.
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.log.set(&context, request.level).await;
        Ok(())
    }
}

/// The text content of a tool result.
fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tool's observation as an MCP result: the text as content, the data as
/// structured content when it is an object.
fn result_of(obs: Observation) -> CallToolResult {
    let mut result = if obs.is_error {
        CallToolResult::error(vec![ContentBlock::text(obs.text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(obs.text)])
    };
    if obs.data.is_object() {
        result.structured_content = Some(obs.data);
    }
    result
}

pub(crate) fn error_result(text: String, data: Value) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(data);
    result
}

pub(crate) fn ok_result(text: String, data: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(data);
    result
}
