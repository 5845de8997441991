//! The registry: the tools a worker may call, argument validation, approval,
//! output truncation, and the tool list rendered for prompts.

use crate::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest};
use crate::observation::Observation;
use crate::schema;
use crate::tool::{Tool, ToolContext, ToolError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// What a call through the registry came to.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// The call ran (or was refused); here is what the model sees.
    Done(Observation),
    /// The policy says to ask the person; the runtime asks and, on yes,
    /// calls [`ToolRegistry::call_approved`], on no
    /// [`ToolRegistry::rejected`].
    NeedsApproval(ApprovalRequest),
}

/// Why a tool could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two tools share a name.
    #[error("a tool named `{0}` is already registered")]
    Duplicate(String),
    /// A tool's schema is not an object schema.
    #[error("the schema of tool `{0}` is not a JSON Schema of type object")]
    BadSchema(String),
}

/// Tools that are not all known when the registry is built, or that come
/// and go while it is in use (an MCP server's tools while it restarts).
/// Asked afresh at every listing and call.
pub trait ToolSource: Send + Sync {
    /// The tools callable now; prompts and the action schema list these.
    fn available(&self) -> Vec<Arc<dyn Tool>>;
    /// A tool by name: `None` when the source has no such tool, `Err` with
    /// the reason (shown to the model) when it has one that cannot be
    /// called now.
    fn lookup(&self, name: &str) -> Option<Result<Arc<dyn Tool>, String>>;
}

/// The tools a worker may call.
pub struct ToolRegistry {
    tools: Vec<Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
    by_name: HashMap<String, usize>,
    policy: ApprovalPolicy,
    output_max_bytes: usize,
    // A std Mutex: held only to insert or remove, never across an await.
    pending: Mutex<HashMap<String, ApprovalRequest>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.names())
            .field("policy", &self.policy)
            .field("output_max_bytes", &self.output_max_bytes)
            .finish()
    }
}

impl ToolRegistry {
    /// An empty registry deciding approval by `policy` and cutting each
    /// observation's text to `output_max_bytes`.
    pub fn new(policy: ApprovalPolicy, output_max_bytes: usize) -> ToolRegistry {
        ToolRegistry {
            tools: Vec::new(),
            sources: Vec::new(),
            by_name: HashMap::new(),
            policy,
            output_max_bytes,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a tool.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), RegistryError> {
        let name = tool.name().to_string();
        if self.by_name.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        if tool.schema().get("type").and_then(Value::as_str) != Some("object") {
            return Err(RegistryError::BadSchema(name));
        }
        self.by_name.insert(name, self.tools.len());
        self.tools.push(tool);
        Ok(())
    }

    /// Adds a source of tools that may change after this (see [`ToolSource`]).
    /// A source's tool named like a registered one is ignored.
    pub fn add_source(&mut self, source: Arc<dyn ToolSource>) {
        self.sources.push(source);
    }

    /// Every tool callable now: the registered ones, then the sources'.
    pub fn available_tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut all = self.tools.clone();
        for source in &self.sources {
            for tool in source.available() {
                if !self.by_name.contains_key(tool.name()) {
                    all.push(tool);
                }
            }
        }
        all
    }

    fn lookup(&self, name: &str) -> Option<Result<Arc<dyn Tool>, String>> {
        if let Some(tool) = self.get(name) {
            return Some(Ok(Arc::clone(tool)));
        }
        self.sources.iter().find_map(|s| s.lookup(name))
    }

    /// Logs a warning for each per-tool approval override that names no
    /// registered tool (usually a typo in `[approval.tools]`); returns them.
    pub fn unknown_overrides(&self) -> Vec<String> {
        let unknown: Vec<String> = self
            .policy
            .overridden_tools()
            .filter(|t| !self.by_name.contains_key(*t))
            .map(str::to_string)
            .collect();
        for name in &unknown {
            tracing::warn!(tool = %name, "[approval.tools] names a tool that is not registered");
        }
        unknown
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The registered tools' names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name()).collect()
    }

    /// The registered tools, in registration order (not the sources'; see
    /// [`ToolRegistry::available_tools`]).
    pub fn tools(&self) -> &[Arc<dyn Tool>] {
        &self.tools
    }

    /// The approval policy.
    pub fn policy(&self) -> &ApprovalPolicy {
        &self.policy
    }

    /// The tools callable now, narrowed to `only` when it names any (in
    /// the registry's order; names it does not know are left out).
    pub fn offered(&self, only: &[String]) -> Vec<Arc<dyn Tool>> {
        let all = self.available_tools();
        if only.is_empty() {
            return all;
        }
        let narrowed: Vec<Arc<dyn Tool>> = all
            .into_iter()
            .filter(|t| only.iter().any(|name| name == t.name()))
            .collect();
        if narrowed.is_empty() {
            tracing::warn!(
                ?only,
                "none of the tools asked for is registered; offering every tool"
            );
            return self.available_tools();
        }
        narrowed
    }

    /// The tool list for a prompt: name, risk, description and arguments.
    pub fn render_for_prompt(&self) -> String {
        render_tools(&self.available_tools())
    }

    /// A JSON Schema for one action `{"tool": name, "args": {...}}` over every
    /// registered tool (an `anyOf`, one branch per tool).
    pub fn action_schema(&self) -> Value {
        action_schema_of(&self.available_tools())
    }

    /// Validates and, if the policy allows, runs a call. Unknown tools, bad
    /// arguments and denials come back as error observations for the model.
    pub async fn call(
        &self,
        ctx: &ToolContext,
        name: &str,
        args: Value,
    ) -> Result<ToolOutcome, ToolError> {
        let tool = match self.lookup(name) {
            Some(Ok(tool)) => tool,
            Some(Err(reason)) => {
                return Ok(ToolOutcome::Done(Observation::error_with(
                    reason,
                    json!({ "unavailable": true, "tool": name }),
                )))
            }
            None => {
                let known: Vec<Arc<dyn Tool>> = self.available_tools();
                let known: Vec<&str> = known.iter().map(|t| t.name()).collect();
                return Ok(ToolOutcome::Done(Observation::error(format!(
                    "there is no tool named `{name}`; the tools are: {}",
                    known.join(", ")
                ))));
            }
        };
        let tool = &tool;
        let args = if args.is_null() { json!({}) } else { args };
        if let Err(e) = schema::validate(&tool.schema(), &args) {
            return Ok(ToolOutcome::Done(Observation::error_with(
                format!("invalid arguments for `{name}`: {e}"),
                json!({ "problems": e.problems }),
            )));
        }
        match self.policy.decide(name, tool.risk(), &args) {
            ApprovalDecision::Allowed => self.run(tool, ctx, args).await.map(ToolOutcome::Done),
            ApprovalDecision::Denied(reason) => {
                tracing::info!(tool = name, "call denied by policy");
                Ok(ToolOutcome::Done(Observation::error_with(
                    reason,
                    json!({ "denied": true, "tool": name }),
                )))
            }
            ApprovalDecision::Pending(request) => {
                if let Ok(mut pending) = self.pending.lock() {
                    pending.insert(request.id.clone(), request.clone());
                }
                Ok(ToolOutcome::NeedsApproval(request))
            }
        }
    }

    /// Runs a call the person approved. The request must be one this
    /// registry issued and not yet used.
    pub async fn call_approved(
        &self,
        ctx: &ToolContext,
        request: &ApprovalRequest,
    ) -> Result<Observation, ToolError> {
        let issued = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&request.id));
        let unknown = || ToolError::UnknownApproval {
            id: request.id.clone(),
            tool: request.tool.clone(),
        };
        let issued = issued.ok_or_else(unknown)?;
        if issued != *request {
            return Err(unknown());
        }
        let tool = match self.lookup(&issued.tool) {
            Some(Ok(tool)) => tool,
            Some(Err(reason)) => {
                return Ok(Observation::error_with(
                    reason,
                    json!({ "unavailable": true, "tool": issued.tool }),
                ))
            }
            None => return Err(unknown()),
        };
        self.run(&tool, ctx, issued.args).await
    }

    /// The observation for a call the person turned down.
    pub fn rejected(&self, request: &ApprovalRequest, reason: Option<&str>) -> Observation {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&request.id);
        }
        let why = reason
            .map(|r| format!(": {r}"))
            .unwrap_or_else(|| ".".to_string());
        Observation::error_with(
            format!(
                "the person did not approve calling `{}`{why} Do not retry the same call; find another way or ask them.",
                request.tool
            ),
            json!({ "denied": true, "tool": request.tool, "approval_id": request.id }),
        )
    }

    async fn run(
        &self,
        tool: &Arc<dyn Tool>,
        ctx: &ToolContext,
        args: Value,
    ) -> Result<Observation, ToolError> {
        tracing::debug!(tool = tool.name(), %args, "tool call");
        let obs = tool.call(ctx, args).await?;
        Ok(obs.truncated_to(self.output_max_bytes))
    }
}

/// The tool list for a prompt: name, risk, description and arguments.
pub fn render_tools(tools: &[Arc<dyn Tool>]) -> String {
    let mut out = String::new();
    for tool in tools {
        let _ = writeln!(
            out,
            "- {} [{}]: {}",
            tool.name(),
            tool.risk(),
            tool.description()
        );
        let schema = tool.schema();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (name, prop) in props {
            let ty = match prop.get("enum").and_then(Value::as_array) {
                Some(options) => options
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(" | "),
                None => prop
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("any")
                    .to_string(),
            };
            let need = if required.contains(&name.as_str()) {
                "required"
            } else {
                "optional"
            };
            let desc = prop
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let _ = writeln!(out, "    - {name} ({ty}, {need}): {desc}");
        }
    }
    out
}

/// A JSON Schema for one action `{"tool": name, "args": {...}}` over
/// `tools` (an `anyOf`, one branch per tool).
pub fn action_schema_of(tools: &[Arc<dyn Tool>]) -> Value {
    let branches: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "tool": { "type": "string", "enum": [t.name()] },
                    "args": t.schema(),
                },
                "required": ["tool", "args"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({ "anyOf": branches })
}
