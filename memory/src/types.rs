//! What is remembered and how it is asked for: namespaces, kinds, records,
//! queries, hits and the store's options.

use crate::error::MemoryError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A memory's id: unique within its store, never reused after a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemoryId(pub u64);

impl fmt::Display for MemoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Whose a memory is: every agent's (`shared`) or one agent's
/// (`agent:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Namespace {
    /// Seen by every agent.
    Shared,
    /// One agent's own (a Worker specialist, the Director, ...).
    Agent(String),
}

impl Namespace {
    /// The namespace of agent `name`; the name must be non-empty and free of
    /// whitespace and control characters.
    pub fn agent(name: &str) -> Result<Namespace, MemoryError> {
        let bad = name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(MemoryError::InvalidNamespace(format!("agent:{name}")));
        }
        Ok(Namespace::Agent(name.to_string()))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Shared => f.write_str("shared"),
            Namespace::Agent(name) => write!(f, "agent:{name}"),
        }
    }
}

impl FromStr for Namespace {
    type Err = MemoryError;

    fn from_str(s: &str) -> Result<Namespace, MemoryError> {
        if s == "shared" {
            return Ok(Namespace::Shared);
        }
        match s.strip_prefix("agent:") {
            Some(name) => Namespace::agent(name),
            None => Err(MemoryError::InvalidNamespace(s.to_string())),
        }
    }
}

impl TryFrom<String> for Namespace {
    type Error = MemoryError;

    fn try_from(s: String) -> Result<Namespace, MemoryError> {
        s.parse()
    }
}

impl From<Namespace> for String {
    fn from(ns: Namespace) -> String {
        ns.to_string()
    }
}

/// What a memory is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A finished task: request, plan and outcome.
    Task,
    /// A conversation's summary.
    Conversation,
    /// A document a Worker chose to keep.
    Document,
    /// A lesson the Director drew from a task.
    Lesson,
}

impl Kind {
    /// The word used on disk and in tool arguments.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Conversation => "conversation",
            Kind::Document => "document",
            Kind::Lesson => "lesson",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A memory to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMemory {
    /// Whose it is.
    pub namespace: Namespace,
    /// What it is of.
    pub kind: Kind,
    /// The text remembered (what a search returns).
    pub content: String,
    /// Labels a search can require. Trimmed and lowercased; empty ones are
    /// dropped.
    pub tags: Vec<String>,
    /// The task it came from.
    pub source_task: Option<String>,
    /// The text that is embedded, when it should differ from `content`: a
    /// finished task is found by its request, but its content also holds
    /// the plan and outcome. `None`: `content` is embedded.
    pub embed_text: Option<String>,
    /// When it was made (ms since the Unix epoch); `None`: now. Set when
    /// importing older memories.
    pub created_ms: Option<u64>,
}

impl NewMemory {
    /// A memory of `kind` in `namespace` with `content` and nothing else.
    pub fn new(namespace: Namespace, kind: Kind, content: impl Into<String>) -> NewMemory {
        NewMemory {
            namespace,
            kind,
            content: content.into(),
            tags: Vec::new(),
            source_task: None,
            embed_text: None,
            created_ms: None,
        }
    }

    /// The same with `tags`.
    pub fn with_tags<I, S>(mut self, tags: I) -> NewMemory
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The same, remembered as coming from task `task_id`.
    pub fn from_task(mut self, task_id: impl Into<String>) -> NewMemory {
        self.source_task = Some(task_id.into());
        self
    }

    /// The text to embed: `embed_text`, or else `content`.
    pub fn text_to_embed(&self) -> &str {
        self.embed_text.as_deref().unwrap_or(&self.content)
    }
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// Its id.
    pub id: MemoryId,
    /// Whose it is.
    pub namespace: Namespace,
    /// What it is of.
    pub kind: Kind,
    /// The text remembered.
    pub content: String,
    /// Its labels (lowercase).
    pub tags: Vec<String>,
    /// When it was stored (ms since the Unix epoch).
    pub created_ms: u64,
    /// When it was last used (or stored); decay counts from here.
    pub last_used_ms: u64,
    /// How many times it was marked used.
    pub use_count: u64,
    /// The task it came from.
    pub source_task: Option<String>,
}

/// What to search among. Every condition given must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only these namespaces; empty: every namespace.
    pub namespaces: Vec<Namespace>,
    /// Only these kinds; empty: every kind.
    pub kinds: Vec<Kind>,
    /// Only memories carrying every one of these tags (case-insensitive).
    pub tags: Vec<String>,
    /// How many hits at most.
    pub k: usize,
    /// Leave out hits less similar than this (cosine, -1 to 1).
    pub min_similarity: Option<f32>,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            namespaces: Vec::new(),
            kinds: Vec::new(),
            tags: Vec::new(),
            k: 5,
            min_similarity: None,
        }
    }
}

impl Query {
    /// The `k` best hits over everything.
    pub fn top(k: usize) -> Query {
        Query {
            k,
            ..Query::default()
        }
    }

    /// The same, only in `namespaces`.
    pub fn in_namespaces(mut self, namespaces: impl IntoIterator<Item = Namespace>) -> Query {
        self.namespaces = namespaces.into_iter().collect();
        self
    }

    /// The same, only of `kinds`.
    pub fn of_kinds(mut self, kinds: impl IntoIterator<Item = Kind>) -> Query {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// The same, only memories with all of `tags`.
    pub fn with_tags<I, S>(mut self, tags: I) -> Query
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The memory.
    pub record: MemoryRecord,
    /// Cosine similarity of its vector to the query's.
    pub similarity: f32,
    /// What hits are ranked by: `similarity` × the decay since it was last
    /// used.
    pub score: f32,
}

/// The approximate index's parameters (see the HNSW paper; hnsw_rs's
/// names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node and layer, `M` (`max_nb_connection`); 1..=255.
    pub max_connections: usize,
    /// Candidates kept while inserting (`ef_construction`).
    pub ef_construction: usize,
    /// Candidates kept while searching (`ef`); raised to the number of
    /// candidates asked for when that is more.
    pub ef_search: usize,
}

impl Default for HnswParams {
    /// Tuned in `benches/memory_search.rs` (see benches/results): recall@10
    /// ≥ 0.95 on 100k clustered 384-dimensional vectors (what sentence
    /// embeddings look like) while a build stays affordable on two cores.
    fn default() -> HnswParams {
        HnswParams {
            max_connections: 16,
            ef_construction: 100,
            ef_search: 64,
        }
    }
}

/// How a [`crate::MemoryStore`] searches and ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryOptions {
    /// Searches over at most this many (matching) memories compare the query
    /// with each of them; past it the approximate index answers, unless a
    /// filter keeps so small a share that scanning what it keeps is cheaper.
    pub exact_threshold: usize,
    /// A memory's score halves for each `decay_half_life` since it was last
    /// used (or stored).
    pub decay_half_life: Duration,
    /// The approximate index.
    pub hnsw: HnswParams,
    /// Build the approximate index on a background thread (searches are
    /// exact meanwhile) rather than inside `open`/`insert`.
    pub background_index: bool,
}

impl Default for MemoryOptions {
    fn default() -> MemoryOptions {
        MemoryOptions {
            exact_threshold: 2000,
            decay_half_life: Duration::from_secs(30 * 24 * 3600),
            hnsw: HnswParams::default(),
            background_index: true,
        }
    }
}

impl MemoryOptions {
    /// Checks the ranges hnsw_rs and the decay need.
    pub fn validate(&self) -> Result<(), MemoryError> {
        let bad = |m: &str| Err(MemoryError::InvalidOptions(m.to_string()));
        if self.decay_half_life.is_zero() {
            return bad("decay_half_life must be more than zero");
        }
        if !(1..=255).contains(&self.hnsw.max_connections) {
            return bad("hnsw.max_connections must be between 1 and 255");
        }
        if self.hnsw.ef_construction == 0 || self.hnsw.ef_search == 0 {
            return bad("hnsw.ef_construction and hnsw.ef_search must be more than zero");
        }
        Ok(())
    }

    /// The factor a score is multiplied by `age_ms` after last use.
    pub fn decay(&self, age_ms: u64) -> f32 {
        let half_life_ms = self.decay_half_life.as_millis() as f64;
        0.5f64.powf(age_ms as f64 / half_life_ms) as f32
    }
}

/// Cleans tags: trimmed, lowercased, no empties, no repeats, sorted.
pub(crate) fn clean_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}
