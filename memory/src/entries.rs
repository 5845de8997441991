//! The in-memory mirror of the store that searches run on: every vector in
//! one flat array, and per memory just what filters and ranking need
//! (namespace, kind, tags, last use). Contents stay in redb and are read only
//! for the hits.

use crate::ann::{AnnIndex, Neighbour};
use crate::types::{Kind, MemoryOptions, Query};
use std::collections::HashMap;

/// What the filters and ranking need of one memory.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub id: u64,
    pub namespace: u32,
    pub kind: Kind,
    pub tags: Vec<u32>,
    pub last_used_ms: u64,
    /// False once deleted. The slot and its vector stay (the approximate
    /// index cannot drop a node) until the next open compacts them away.
    pub live: bool,
}

/// Strings as small numbers, so that filters compare integers.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(s.to_string()).or_insert(next)
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// A [`Query`]'s conditions in interned form.
pub(crate) struct Filter {
    namespaces: Option<Vec<u32>>,
    kinds: Vec<Kind>,
    tags: Vec<u32>,
}

impl Filter {
    fn is_trivial(&self) -> bool {
        self.namespaces.is_none() && self.kinds.is_empty() && self.tags.is_empty()
    }

    fn matches(&self, slot: &Slot) -> bool {
        slot.live
            && self
                .namespaces
                .as_ref()
                .is_none_or(|ns| ns.contains(&slot.namespace))
            && (self.kinds.is_empty() || self.kinds.contains(&slot.kind))
            && self.tags.iter().all(|t| slot.tags.contains(t))
    }
}

/// A search result before its record is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub slot: usize,
    pub similarity: f32,
    pub score: f32,
}

/// What ranking a search needs besides the query: the decay, the index's
/// breadth and the time now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranking<'a> {
    pub opts: &'a MemoryOptions,
    pub ef_search: usize,
    pub now_ms: u64,
}

/// How a search is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Exact while the memories that match are at most `exact_threshold`,
    /// while a filter keeps too small a share of them for the index to pay,
    /// or while the index is not built yet; the approximate index otherwise.
    #[default]
    Auto,
    /// Compare the query with every matching memory.
    Exact,
    /// The approximate index whenever it is built, however few match.
    Approximate,
}

/// Everything searches run on.
#[derive(Default)]
pub(crate) struct Entries {
    /// The vectors' length; 0 until the first one.
    pub dim: usize,
    pub slots: Vec<Slot>,
    /// `slots.len() * dim` floats, slot `i` at `i * dim`.
    pub vectors: Vec<f32>,
    pub by_id: HashMap<u64, usize>,
    /// Slots with `live` set.
    pub live: usize,
    namespaces: Interner,
    tags: Interner,
    /// The approximate index over every slot, once built.
    pub ann: Option<AnnIndex>,
    /// Whether a build of `ann` is under way.
    pub building: bool,
}

/// What a new slot is made of.
pub(crate) struct SlotParts<'a> {
    pub id: u64,
    pub namespace: String,
    pub kind: Kind,
    pub tags: &'a [String],
    pub last_used_ms: u64,
}

impl Entries {
    pub(crate) fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dim..(slot + 1) * self.dim]
    }

    /// Adds a memory whose vector is already in `vectors` or is `vector`.
    pub(crate) fn push(&mut self, parts: SlotParts<'_>, vector: &[f32]) -> usize {
        let slot = self.slots.len();
        let namespace = self.namespaces.intern(&parts.namespace);
        let tags = parts.tags.iter().map(|t| self.tags.intern(t)).collect();
        self.slots.push(Slot {
            id: parts.id,
            namespace,
            kind: parts.kind,
            tags,
            last_used_ms: parts.last_used_ms,
            live: true,
        });
        self.vectors.extend_from_slice(vector);
        self.by_id.insert(parts.id, slot);
        self.live += 1;
        slot
    }

    pub(crate) fn remove(&mut self, id: u64) -> bool {
        match self.by_id.remove(&id) {
            Some(slot) => {
                self.slots[slot].live = false;
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    /// The query's conditions, or `None` when they name a namespace or tag
    /// no memory has, so nothing can match.
    pub(crate) fn filter(&self, q: &Query) -> Option<Filter> {
        let namespaces = if q.namespaces.is_empty() {
            None
        } else {
            let ids: Vec<u32> = q
                .namespaces
                .iter()
                .filter_map(|ns| self.namespaces.get(&ns.to_string()))
                .collect();
            if ids.is_empty() {
                return None;
            }
            Some(ids)
        };
        let mut tags = Vec::with_capacity(q.tags.len());
        for tag in crate::types::clean_tags(&q.tags) {
            tags.push(self.tags.get(&tag)?);
        }
        Some(Filter {
            namespaces,
            kinds: q.kinds.clone(),
            tags,
        })
    }

    /// The `q.k` best memories for `query` (a unit vector of `dim`) at time
    /// `now_ms`, best first.
    pub(crate) fn search(
        &self,
        query: &[f32],
        q: &Query,
        mode: SearchMode,
        rank: Ranking<'_>,
    ) -> Vec<Candidate> {
        if q.k == 0 || self.live == 0 {
            return Vec::new();
        }
        let Some(filter) = self.filter(q) else {
            return Vec::new();
        };
        let approximate = match (mode, &self.ann) {
            (_, None) | (SearchMode::Exact, _) => None,
            (SearchMode::Approximate, Some(ann)) => Some(ann),
            (SearchMode::Auto, Some(ann)) => {
                let matching = if filter.is_trivial() {
                    self.live
                } else {
                    self.slots.iter().filter(|s| filter.matches(s)).count()
                };
                (matching > rank.opts.exact_threshold && ann_pays(matching, self.live, rank))
                    .then_some(ann)
            }
        };
        let mut found = match approximate {
            Some(ann) => self.approximate(ann, query, q.k, &filter, rank),
            None => self.exact(query, &filter, rank),
        };
        if let Some(min) = q.min_similarity {
            found.retain(|c| c.similarity >= min);
        }
        best_first(&mut found, q.k);
        found
    }

    fn candidate(&self, slot: usize, query: &[f32], rank: Ranking<'_>) -> Candidate {
        let similarity = dot(query, self.vector(slot));
        let age = rank.now_ms.saturating_sub(self.slots[slot].last_used_ms);
        Candidate {
            slot,
            similarity,
            score: similarity * rank.opts.decay(age),
        }
    }

    fn exact(&self, query: &[f32], filter: &Filter, rank: Ranking<'_>) -> Vec<Candidate> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| filter.matches(s))
            .map(|(i, _)| self.candidate(i, query, rank))
            .collect()
    }

    /// The index finds the most similar; decay then reorders them. Asking
    /// for several times `k` lets a recent memory that is a little less
    /// similar still outrank an old one.
    fn approximate(
        &self,
        ann: &AnnIndex,
        query: &[f32],
        k: usize,
        filter: &Filter,
        rank: Ranking<'_>,
    ) -> Vec<Candidate> {
        let wanted = (k * 4).max(40);
        let all_live = self.live == self.slots.len();
        let neighbours: Vec<Neighbour> = if filter.is_trivial() && all_live {
            ann.search(query, wanted, rank.ef_search, None)
        } else {
            let keep = |slot: &usize| filter.matches(&self.slots[*slot]);
            ann.search(query, wanted, rank.ef_search, Some(&keep))
        };
        neighbours
            .into_iter()
            .filter(|n| n.slot < self.slots.len())
            .map(|n| self.candidate(n.slot, query, rank))
            .collect()
    }
}

/// Whether the index beats comparing the query with each of `matching`
/// memories out of `live`. A filtered HNSW search walks past the memories
/// the filter rejects, so its cost (about `ef × M × 4` distances unfiltered)
/// grows as the filter keeps fewer: with 2.5% kept of 100k it measured 50
/// times slower than the exact scan of those 2,500 (benches/results).
fn ann_pays(matching: usize, live: usize, rank: Ranking<'_>) -> bool {
    let unfiltered = (rank.ef_search.max(40) * rank.opts.hnsw.max_connections * 4) as f64;
    let ann_cost = unfiltered * live as f64 / matching.max(1) as f64;
    ann_cost < matching as f64
}

/// Keeps the `k` highest scores in `found`, best first.
fn best_first(found: &mut Vec<Candidate>, k: usize) {
    let order =
        |a: &Candidate, b: &Candidate| b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot));
    if found.len() > k {
        found.select_nth_unstable_by(k - 1, order);
        found.truncate(k);
    }
    found.sort_by(order);
}

/// The dot product, in eight lanes so that the compiler vectorises it (a
/// plain fold must keep the additions in order and cannot).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `v` scaled to length 1; refuses zero, NaN and infinite vectors.
pub(crate) fn normalised(v: &[f32]) -> Result<Vec<f32>, String> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("it holds NaN or infinity".to_string());
    }
    let norm = dot(v, v).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("it is all zeros".to_string());
    }
    Ok(v.iter().map(|x| x / norm).collect())
}
