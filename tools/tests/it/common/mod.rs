//! Helpers shared by the tool tests.
#![allow(dead_code)]

use serde_json::Value;
use std::sync::Arc;
use troupe_tools::{
    ApprovalPolicy, Observation, Policy, Tool, ToolContext, ToolOutcome, ToolRegistry, Workspace,
};

/// A fresh workspace in a temporary data dir (kept alive by the TempDir).
pub(crate) fn workspace(task: &str) -> (tempfile::TempDir, Arc<Workspace>) {
    let data = tempfile::tempdir().unwrap();
    let ws = Workspace::create(data.path(), task).unwrap();
    (data, Arc::new(ws))
}

/// A registry allowing everything, with these tools.
pub(crate) fn registry(tools: Vec<Arc<dyn Tool>>, max_bytes: usize) -> ToolRegistry {
    let mut r = ToolRegistry::new(ApprovalPolicy::uniform(Policy::Allow), max_bytes);
    for t in tools {
        r.register(t).unwrap();
    }
    r
}

/// Calls through the registry and expects the call to run.
pub(crate) async fn call(
    r: &ToolRegistry,
    ws: &Arc<Workspace>,
    tool: &str,
    args: Value,
) -> Observation {
    let ctx = ToolContext::new(ws.clone());
    match r.call(&ctx, tool, args).await.unwrap() {
        ToolOutcome::Done(obs) => obs,
        ToolOutcome::NeedsApproval(req) => panic!("unexpected approval request {req:?}"),
    }
}
