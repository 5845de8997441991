//! The workers' long-term memory: `memory_search` (read) finds what earlier
//! tasks and agents remembered, `memory_store` (write) keeps a document for
//! later tasks. Two tools rather than one with an `action` argument because
//! approval is decided per tool and storing is a write while searching is
//! only a read.
//!
//! A memory lives in the calling agent's namespace (`agent:<name>`, the
//! name from [`ToolContext::agent`]) or in `shared`. Both tools run the
//! blocking troupe-memory calls on the blocking pool.

use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, blocking, RiskLevel, Tool, ToolContext, ToolError};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;
use troupe_memory::{Hit, Kind, Memory, MemoryError, Namespace, NewMemory, Query};

/// Hits a search returns unless asked for another number.
const DEFAULT_K: u64 = 5;
/// The most hits one search returns.
const MAX_K: u64 = 20;
/// Characters of each hit's content shown; the rest is cut.
const HIT_CHARS: usize = 1500;
/// The largest document `memory_store` keeps, in bytes.
const MAX_CONTENT_BYTES: usize = 16 * 1024;

/// Which of the two memory tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryOp {
    /// `memory_search`.
    Search,
    /// `memory_store`.
    Store,
}

impl MemoryOp {
    /// Both, in the order they are listed to the model.
    pub const ALL: [MemoryOp; 2] = [MemoryOp::Search, MemoryOp::Store];
}

/// `memory_search` or `memory_store` over one [`Memory`].
#[derive(Debug, Clone)]
pub struct MemoryTool {
    op: MemoryOp,
    memory: Arc<Memory>,
}

impl MemoryTool {
    /// The tool for `op`.
    pub fn new(op: MemoryOp, memory: Arc<Memory>) -> MemoryTool {
        MemoryTool { op, memory }
    }

    /// Both tools over `memory`.
    pub fn both(memory: &Arc<Memory>) -> Vec<Arc<dyn Tool>> {
        MemoryOp::ALL
            .into_iter()
            .map(|op| Arc::new(MemoryTool::new(op, Arc::clone(memory))) as Arc<dyn Tool>)
            .collect()
    }
}

#[async_trait::async_trait]
impl Tool for MemoryTool {
    fn name(&self) -> &str {
        match self.op {
            MemoryOp::Search => "memory_search",
            MemoryOp::Store => "memory_store",
        }
    }

    fn description(&self) -> &str {
        match self.op {
            MemoryOp::Search => {
                "Search long-term memory (notes kept by earlier tasks, past tasks and lessons) \
                 for what is relevant to a query; recent and often-used memories rank higher."
            }
            MemoryOp::Store => {
                "Keep a note or document in long-term memory so that later tasks can find it \
                 with memory_search. Store facts worth reusing, not scratch work."
            }
        }
    }

    fn schema(&self) -> Value {
        let tags = json!({
            "type": "array",
            "items": { "type": "string" },
            "description": "Labels; a search returns only memories carrying all of them",
        });
        match self.op {
            MemoryOp::Search => object_schema(
                json!({
                    "query": { "type": "string", "description": "What to look for, in words" },
                    "k": {
                        "type": "integer", "minimum": 1, "maximum": MAX_K,
                        "description": "How many memories at most (default 5)",
                    },
                    "tags": tags,
                    "scope": {
                        "type": "string", "enum": ["all", "agent", "shared"],
                        "description": "Your own memories, shared ones, or both (default all)",
                    },
                }),
                &["query"],
            ),
            MemoryOp::Store => object_schema(
                json!({
                    "content": { "type": "string", "description": "The text to keep" },
                    "tags": tags,
                    "scope": {
                        "type": "string", "enum": ["agent", "shared"],
                        "description": "Keep it for yourself or for every agent (default: yourself)",
                    },
                }),
                &["content"],
            ),
        }
    }

    fn risk(&self) -> RiskLevel {
        match self.op {
            MemoryOp::Search => RiskLevel::Read,
            MemoryOp::Store => RiskLevel::Write,
        }
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Observation, ToolError> {
        let memory = Arc::clone(&self.memory);
        let agent = ctx.agent.clone();
        let task = ctx.workspace.task_id().to_string();
        match self.op {
            MemoryOp::Search => {
                blocking(self.name(), move || {
                    Ok(search(&memory, agent.as_deref(), &args))
                })
                .await
            }
            MemoryOp::Store => {
                blocking(self.name(), move || {
                    Ok(store(&memory, agent.as_deref(), &task, &args))
                })
                .await
            }
        }
    }
}

/// The calling agent's namespace, or an observation saying why there is
/// none.
fn own_namespace(agent: Option<&str>) -> Result<Namespace, Observation> {
    let Some(name) = agent else {
        return Err(Observation::error(
            "this worker has no agent name, so it has no memory of its own; use scope \"shared\"",
        ));
    };
    Namespace::agent(name).map_err(|e| Observation::error(e.to_string()))
}

fn unavailable(e: MemoryError) -> Observation {
    tracing::warn!(error = %e, "memory tool call failed");
    Observation::error(format!("long-term memory is unavailable: {e}"))
}

fn search(memory: &Memory, agent: Option<&str>, args: &Value) -> Observation {
    let query_text = args::string(args, "query");
    let namespaces = match args::str(args, "scope").unwrap_or("all") {
        "shared" => vec![Namespace::Shared],
        "agent" => match own_namespace(agent) {
            Ok(ns) => vec![ns],
            Err(obs) => return obs,
        },
        _ => {
            let mut all = vec![Namespace::Shared];
            all.extend(agent.and_then(|a| Namespace::agent(a).ok()));
            all
        }
    };
    let k = args::u64(args, "k").unwrap_or(DEFAULT_K).clamp(1, MAX_K) as usize;
    let query = Query::top(k)
        .in_namespaces(namespaces)
        .with_tags(args::strings(args, "tags"));
    let hits = match memory.recall(&query_text, &query) {
        Ok(hits) => hits,
        Err(e) => return unavailable(e),
    };
    // The model reads what it is shown: that is a use, and keeps those
    // memories from fading.
    let ids: Vec<_> = hits.iter().map(|h| h.record.id).collect();
    if let Err(e) = memory.mark_used(&ids) {
        tracing::warn!(error = %e, "could not mark memories used");
    }
    let data = json!({ "hits": hits.iter().map(hit_data).collect::<Vec<_>>() });
    if hits.is_empty() {
        return Observation::ok(format!("No memories match {query_text:?}."), data);
    }
    let mut text = format!("{} memories for {query_text:?}, best first:\n", hits.len());
    for (i, hit) in hits.iter().enumerate() {
        let r = &hit.record;
        let tags = if r.tags.is_empty() {
            String::new()
        } else {
            format!(" · tags: {}", r.tags.join(", "))
        };
        let _ = writeln!(
            text,
            "{}. [{} · {} · {} · score {:.2}{tags}]\n{}",
            i + 1,
            r.id,
            r.namespace,
            r.kind,
            hit.score,
            shorten(&r.content, HIT_CHARS)
        );
    }
    Observation::ok(text, data)
}

fn hit_data(hit: &Hit) -> Value {
    json!({
        "id": hit.record.id.0,
        "namespace": hit.record.namespace.to_string(),
        "kind": hit.record.kind.as_str(),
        "tags": hit.record.tags,
        "similarity": hit.similarity,
        "score": hit.score,
        "source_task": hit.record.source_task,
    })
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}… [cut]", &text[..cut]),
        None => text.to_string(),
    }
}

fn store(memory: &Memory, agent: Option<&str>, task: &str, args: &Value) -> Observation {
    let content = args::string(args, "content");
    if content.trim().is_empty() {
        return Observation::error("`content` is empty: there is nothing to remember");
    }
    if content.len() > MAX_CONTENT_BYTES {
        return Observation::error(format!(
            "`content` is {} bytes; memory keeps at most {MAX_CONTENT_BYTES}: store a summary, \
             or the key facts in several memories",
            content.len()
        ));
    }
    let namespace = match args::str(args, "scope") {
        Some("shared") => Namespace::Shared,
        Some(_) => match own_namespace(agent) {
            Ok(ns) => ns,
            Err(obs) => return obs,
        },
        None => agent
            .and_then(|a| Namespace::agent(a).ok())
            .unwrap_or(Namespace::Shared),
    };
    let new = NewMemory::new(namespace.clone(), Kind::Document, content)
        .with_tags(args::strings(args, "tags"))
        .from_task(task);
    match memory.remember(new) {
        Ok(id) => Observation::ok(
            format!("Stored as memory {id} in {namespace}."),
            json!({ "id": id.0, "namespace": namespace.to_string() }),
        ),
        Err(e) => unavailable(e),
    }
}
