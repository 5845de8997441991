//! [`McpTool`]: one tool of an MCP server as a troupe [`Tool`], and the
//! translation of an MCP call result into an [`Observation`].

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use serde_json::{json, Value};
use troupe_config::mcp::McpRisk;
use troupe_tools::{Observation, RiskLevel, Tool, ToolContext, ToolError};

use crate::schema::sanitize_input_schema;
use crate::server::ServerShared;

/// Separates the server's name from its tool's in a troupe tool name:
/// `everything__echo`. Not a dot: tool names are also TOML keys in
/// `[approval.tools]` and OpenAI function names, where a dot is not allowed.
pub const NAME_SEPARATOR: &str = "__";

/// The troupe name of `tool` on `server`.
pub fn tool_name(server: &str, tool: &str) -> String {
    format!("{server}{NAME_SEPARATOR}{tool}")
}

/// The risk level troupe-tools uses for a configured MCP risk.
pub fn risk_level(risk: McpRisk) -> RiskLevel {
    match risk {
        McpRisk::Read => RiskLevel::Read,
        McpRisk::Write => RiskLevel::Write,
        McpRisk::Execute => RiskLevel::Execute,
        McpRisk::Network => RiskLevel::Network,
    }
}

/// One tool of an MCP server. Calls go to whichever connection the server
/// has now; while it restarts they answer with an error saying so.
pub struct McpTool {
    name: String,
    remote_name: String,
    description: String,
    schema: Value,
    risk: RiskLevel,
    server: Arc<ServerShared>,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("name", &self.name)
            .field("risk", &self.risk)
            .finish()
    }
}

impl McpTool {
    pub(crate) fn new(server: Arc<ServerShared>, remote: &rmcp::model::Tool) -> McpTool {
        let server_name = server.config.name.clone();
        let described = remote
            .description
            .as_deref()
            .or(remote.title.as_deref())
            .unwrap_or("(no description)");
        McpTool {
            name: tool_name(&server_name, &remote.name),
            remote_name: remote.name.to_string(),
            description: format!("{described} (MCP server `{server_name}`)"),
            schema: sanitize_input_schema(&remote.input_schema),
            risk: risk_level(server.config.risk),
            server,
        }
    }

    /// The tool's name on its server.
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }
}

#[async_trait::async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn schema(&self) -> Value {
        self.schema.clone()
    }

    fn risk(&self) -> RiskLevel {
        self.risk
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> Result<Observation, ToolError> {
        let peer = match self.server.peer() {
            Ok(peer) => peer,
            Err(why) => return Ok(unavailable(&self.name, why)),
        };
        let mut params = CallToolRequestParams::new(self.remote_name.clone());
        params.arguments = match args {
            Value::Object(map) => Some(map),
            _ => None,
        };
        let timeout = self.server.config.call_timeout;
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Ok(Ok(result)) => Ok(observation(result)),
            Ok(Err(error)) => {
                // A transport that failed under a call (an HTTP server gone)
                // may not end the service by itself; have it restarted.
                if matches!(
                    error,
                    rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)
                ) {
                    self.server.connection_broken();
                }
                Ok(Observation::error_with(
                    format!(
                        "the MCP server `{}` failed the call of `{}`: {error}",
                        self.server.config.name, self.remote_name
                    ),
                    json!({ "tool": self.name, "mcp_error": error.to_string() }),
                ))
            }
            Err(_) => Ok(Observation::error_with(
                format!(
                    "the MCP server `{}` did not answer the call of `{}` within {} s",
                    self.server.config.name,
                    self.remote_name,
                    timeout.as_secs()
                ),
                json!({ "tool": self.name, "timeout": true }),
            )),
        }
    }
}

fn unavailable(tool: &str, why: String) -> Observation {
    Observation::error_with(why, json!({ "unavailable": true, "tool": tool }))
}

/// The model sees the text blocks; other blocks are named, not inlined.
/// `data` keeps the structured result when the server gave one.
fn observation(result: CallToolResult) -> Observation {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        parts.push(match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image, {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio, {}]", a.mime_type),
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[binary resource {uri}]")
                }
                #[allow(unreachable_patterns)]
                _ => "[resource]".to_string(),
            },
            ContentBlock::ResourceLink(l) => format!("[resource link {}]", l.uri),
            _ => "[content of a kind troupe does not show]".to_string(),
        });
    }
    let mut text = parts.join("\n");
    if text.is_empty() {
        if let Some(structured) = &result.structured_content {
            text = structured.to_string();
        }
    }
    let data = match &result.structured_content {
        Some(v) => json!({ "structured": v }),
        None => Value::Null,
    };
    if result.is_error == Some(true) {
        Observation::error_with(text, data)
    } else {
        Observation::ok(text, data)
    }
}
