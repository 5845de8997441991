//! The [`Tool`] trait every tool implements, the risk levels approval is
//! decided by, the context a call runs in and the errors that are faults of
//! troupe rather than of the model's request.

use crate::observation::Observation;
use crate::workspace::Workspace;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// How much harm a tool can do; approval policies are set per level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// Only reads the workspace.
    Read,
    /// Changes files in the workspace.
    Write,
    /// Runs programs.
    Execute,
    /// Reaches other machines.
    Network,
}

impl RiskLevel {
    /// The word used in config and prompts.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Read => "read",
            RiskLevel::Write => "write",
            RiskLevel::Execute => "execute",
            RiskLevel::Network => "network",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call runs against: the task's workspace.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The task's workspace; every path a tool touches is inside it.
    pub workspace: Arc<Workspace>,
    /// The agent calling (a Worker's specialist name), for tools that keep
    /// something per agent (the memory tools' own namespace).
    pub agent: Option<String>,
}

impl ToolContext {
    /// A context for calls in `workspace`.
    pub fn new(workspace: Arc<Workspace>) -> ToolContext {
        ToolContext {
            workspace,
            agent: None,
        }
    }

    /// The same context, for calls made by `agent`.
    pub fn with_agent(mut self, agent: impl Into<String>) -> ToolContext {
        self.agent = Some(agent.into());
        self
    }
}

/// A fault in troupe itself (not a bad request from the model) that stops a
/// tool call. Everything the model should react to is an [`Observation`]
/// with `is_error` set instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// A file operation failed for a reason other than the request itself.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// libgit2 failed on the workspace repository.
    #[error("git {op} in {path}: {source}")]
    Git {
        /// The git operation.
        op: &'static str,
        /// The repository.
        path: std::path::PathBuf,
        /// libgit2's error.
        source: git2::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("the background task for tool `{tool}` failed: {reason}")]
    Join {
        /// The tool.
        tool: String,
        /// Why.
        reason: String,
    },
    /// An approval was presented that this registry did not issue (or that
    /// was already used).
    #[error("no pending approval with id {id} for tool `{tool}`")]
    UnknownApproval {
        /// The request id.
        id: String,
        /// The tool it named.
        tool: String,
    },
}

/// A tool the workers can call.
///
/// `schema` is the JSON Schema of the arguments: the registry validates calls
/// against it, and the Worker constrains the model's output to it.
#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by, `snake_case`.
    fn name(&self) -> &str;
    /// One or two sentences for the prompt.
    fn description(&self) -> &str;
    /// The JSON Schema of the arguments (an object).
    fn schema(&self) -> Value;
    /// How much harm it can do.
    fn risk(&self) -> RiskLevel;
    /// Runs the call with arguments already validated against `schema`.
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Observation, ToolError>;
}

/// Runs blocking work (file walks, libgit2) off the async runtime.
pub(crate) async fn blocking<T, F>(tool: &str, f: F) -> Result<T, ToolError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ToolError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::Join {
            tool: tool.to_string(),
            reason: e.to_string(),
        })?
}

/// Argument accessors for validated arguments. Validation has already
/// checked the types, so a missing optional argument is the only case left.
pub(crate) mod args {
    use serde_json::Value;

    pub(crate) fn str<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
        args.get(name).and_then(Value::as_str)
    }

    pub(crate) fn string(args: &Value, name: &str) -> String {
        str(args, name).unwrap_or_default().to_string()
    }

    pub(crate) fn u64(args: &Value, name: &str) -> Option<u64> {
        args.get(name).and_then(Value::as_u64)
    }

    pub(crate) fn bool(args: &Value, name: &str) -> bool {
        args.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    pub(crate) fn strings(args: &Value, name: &str) -> Vec<String> {
        args.get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}
