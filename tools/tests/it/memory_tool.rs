//! The memory tools: storing in the worker's namespace or `shared`,
//! searching back, approval by risk, and a registry without memory.

use crate::common;

use serde_json::json;
use std::sync::Arc;
use troupe_memory::{HashedWords, Memory, MemoryOptions, Namespace};
use troupe_tools::{
    builtin_registry, ApprovalPolicy, Builtins, Observation, Policy, RiskLevel, ToolContext,
    ToolOutcome, ToolRegistry,
};

fn memory(dir: &tempfile::TempDir) -> Arc<Memory> {
    let memory = Memory::open(
        &dir.path().join("memory.redb"),
        MemoryOptions::default(),
        Arc::new(HashedWords::new(64)),
    )
    .unwrap();
    Arc::new(memory)
}

fn registry(memory: Option<Arc<Memory>>, approval: &troupe_config::ApprovalConfig) -> ToolRegistry {
    builtin_registry(Builtins {
        tools: &troupe_config::ToolsConfig::default(),
        approval,
        user: None,
        memory,
    })
    .unwrap()
}

fn allow_all() -> troupe_config::ApprovalConfig {
    let mut a = troupe_config::ApprovalConfig::default();
    a.read = Policy::Allow;
    a.write = Policy::Allow;
    a
}

async fn call(
    r: &ToolRegistry,
    ctx: &ToolContext,
    tool: &str,
    args: serde_json::Value,
) -> Observation {
    match r.call(ctx, tool, args).await.unwrap() {
        ToolOutcome::Done(obs) => obs,
        ToolOutcome::NeedsApproval(req) => panic!("unexpected approval request {req:?}"),
    }
}

#[tokio::test]
async fn a_worker_finds_what_it_and_others_stored() {
    let dir = tempfile::tempdir().unwrap();
    let memory = memory(&dir);
    let r = registry(Some(Arc::clone(&memory)), &allow_all());
    let (_d, ws) = common::workspace("task-7");
    let coder = ToolContext::new(ws.clone()).with_agent("code");
    let researcher = ToolContext::new(ws.clone()).with_agent("research");

    let obs = call(
        &r,
        &coder,
        "memory_store",
        json!({ "content": "The staging database listens on port 5433", "tags": ["Staging"] }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(obs.data["namespace"], "agent:code");
    let obs = call(
        &r,
        &researcher,
        "memory_store",
        json!({ "content": "Staging deploys need the VPN", "scope": "shared", "tags": ["staging"] }),
    )
    .await;
    assert_eq!(obs.data["namespace"], "shared", "{}", obs.text);
    call(
        &r,
        &researcher,
        "memory_store",
        json!({ "content": "The staging database password rotates weekly" }),
    )
    .await;

    // The coder sees its own memories and the shared ones, not the
    // researcher's own.
    let obs = call(
        &r,
        &coder,
        "memory_search",
        json!({ "query": "staging database port" }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(obs.text.contains("port 5433"), "{}", obs.text);
    assert!(obs.text.contains("need the VPN"), "{}", obs.text);
    assert!(!obs.text.contains("rotates weekly"), "{}", obs.text);
    let hits = obs.data["hits"].as_array().unwrap();
    assert_eq!(hits[0]["namespace"], "agent:code");
    assert_eq!(hits[0]["source_task"], "task-7");

    let obs = call(
        &r,
        &coder,
        "memory_search",
        json!({ "query": "staging", "scope": "shared", "k": 1 }),
    )
    .await;
    assert_eq!(obs.data["hits"].as_array().unwrap().len(), 1);
    assert!(obs.text.contains("need the VPN"), "{}", obs.text);

    let obs = call(
        &r,
        &researcher,
        "memory_search",
        json!({ "query": "staging database", "tags": ["nothing-like-this"] }),
    )
    .await;
    assert!(!obs.is_error);
    assert!(obs.text.starts_with("No memories match"), "{}", obs.text);

    // Shown hits count as used.
    let used = memory
        .recall(
            "port 5433",
            &troupe_memory::Query::top(1).in_namespaces([Namespace::agent("code").unwrap()]),
        )
        .unwrap();
    assert!(used[0].record.use_count >= 1);
}

#[tokio::test]
async fn without_an_agent_name_memories_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(Some(memory(&dir)), &allow_all());
    let (_d, ws) = common::workspace("task-8");
    let ctx = ToolContext::new(ws);
    let obs = call(&r, &ctx, "memory_store", json!({ "content": "a fact" })).await;
    assert_eq!(obs.data["namespace"], "shared", "{}", obs.text);
    let obs = call(
        &r,
        &ctx,
        "memory_store",
        json!({ "content": "a fact", "scope": "agent" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("no agent name"), "{}", obs.text);
    let obs = call(&r, &ctx, "memory_store", json!({ "content": "  " })).await;
    assert!(obs.is_error, "{}", obs.text);
}

#[tokio::test]
async fn storing_asks_for_approval_as_a_write_and_searching_runs_as_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = ToolRegistry::new(
        ApprovalPolicy::uniform(Policy::Allow).with_risk(RiskLevel::Write, Policy::Ask),
        4096,
    );
    for tool in troupe_tools::memory::MemoryTool::both(&memory(&dir)) {
        r.register(tool).unwrap();
    }
    assert_eq!(r.get("memory_search").unwrap().risk(), RiskLevel::Read);
    assert_eq!(r.get("memory_store").unwrap().risk(), RiskLevel::Write);
    let (_d, ws) = common::workspace("task-9");
    let ctx = ToolContext::new(ws);
    let out = r
        .call(&ctx, "memory_store", json!({ "content": "x" }))
        .await
        .unwrap();
    assert!(matches!(out, ToolOutcome::NeedsApproval(_)), "{out:?}");
    let out = r
        .call(&ctx, "memory_search", json!({ "query": "x" }))
        .await
        .unwrap();
    assert!(matches!(out, ToolOutcome::Done(_)), "{out:?}");
    let out = r
        .call(&ctx, "memory_search", json!({ "query": "x", "k": 50 }))
        .await
        .unwrap();
    let ToolOutcome::Done(obs) = out else {
        panic!("{out:?}")
    };
    assert!(
        obs.is_error && obs.text.contains("`k` must be at most 20"),
        "{}",
        obs.text
    );
}

#[test]
fn a_registry_without_memory_has_no_memory_tools() {
    let r = registry(None, &allow_all());
    assert!(r.get("memory_search").is_none());
    assert!(r.get("memory_store").is_none());
    let dir = tempfile::tempdir().unwrap();
    let r = registry(Some(memory(&dir)), &allow_all());
    assert!(r.get("memory_search").is_some());
    assert!(r.render_for_prompt().contains("memory_store [write]"));
}
