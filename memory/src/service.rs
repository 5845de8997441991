//! [`Memory`]: the store with an embedder, so callers remember and recall
//! text; and the two calls the Director makes around a task.

use crate::embedder::Embedder;
use crate::error::MemoryError;
use crate::store::MemoryStore;
use crate::types::{Hit, Kind, MemoryId, MemoryOptions, Namespace, NewMemory, Query};
use std::path::Path;
use std::sync::Arc;

/// A [`MemoryStore`] and the [`Embedder`] its vectors come from.
///
/// Blocking, like the store (an embedding and a redb commit per
/// `remember`): from async code, hold it in an `Arc` and call it inside
/// `tokio::task::spawn_blocking`.
pub struct Memory {
    store: MemoryStore,
    embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("store", &self.store)
            .field("embedder", &self.embedder.model_id())
            .finish()
    }
}

/// A finished task as the Director remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedTask {
    /// The task's id.
    pub task_id: String,
    /// What was asked.
    pub request: String,
    /// The plan, as text (the subtasks, one per line, say).
    pub plan: String,
    /// What came of it.
    pub outcome: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// What the Director learned, one lesson each.
    pub lessons: Vec<String>,
    /// Labels for the task memory and its lessons.
    pub tags: Vec<String>,
}

impl Memory {
    /// `store` searched with `embedder`. Refuses an embedder whose model or
    /// dimension differs from the vectors already stored.
    pub fn new(store: MemoryStore, embedder: Arc<dyn Embedder>) -> Result<Memory, MemoryError> {
        store.check_space(embedder.model_id(), embedder.dim())?;
        Ok(Memory { store, embedder })
    }

    /// Opens the memory file at `path` (see [`MemoryStore::open`]) for
    /// `embedder`.
    pub fn open(
        path: &Path,
        options: MemoryOptions,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Memory, MemoryError> {
        Memory::new(MemoryStore::open(path, options)?, embedder)
    }

    /// The store underneath.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Embeds `texts`, checking what the embedder gives back.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let vectors = self.embedder.embed(texts)?;
        if vectors.len() != texts.len() {
            return Err(MemoryError::EmbedCount {
                asked: texts.len(),
                got: vectors.len(),
            });
        }
        if let Some(bad) = vectors.iter().find(|v| v.len() != self.embedder.dim()) {
            return Err(MemoryError::WrongDimension {
                expected: self.embedder.dim(),
                got: bad.len(),
            });
        }
        Ok(vectors)
    }

    /// Stores `memory`, embedding its [`NewMemory::text_to_embed`].
    pub fn remember(&self, memory: NewMemory) -> Result<MemoryId, MemoryError> {
        let mut ids = self.remember_many(vec![memory])?;
        ids.pop()
            .ok_or_else(|| MemoryError::Index("an insert gave no id".to_string()))
    }

    /// Stores several memories: one embedding call, one commit.
    pub fn remember_many(&self, memories: Vec<NewMemory>) -> Result<Vec<MemoryId>, MemoryError> {
        let texts: Vec<&str> = memories.iter().map(NewMemory::text_to_embed).collect();
        let vectors = self.embed(&texts)?;
        let items = memories.into_iter().zip(vectors).collect();
        self.store.insert_batch(self.embedder.model_id(), items)
    }

    /// Stores `memory` with a vector the caller already has (from this
    /// memory's embedder).
    pub fn remember_vector(
        &self,
        memory: NewMemory,
        vector: &[f32],
    ) -> Result<MemoryId, MemoryError> {
        self.check_dim(vector)?;
        self.store.insert(self.embedder.model_id(), memory, vector)
    }

    /// The memories most relevant to `text` under `query`, best first.
    /// Nothing is marked used: call [`Self::mark_used`] for the hits that
    /// were put to use.
    pub fn recall(&self, text: &str, query: &Query) -> Result<Vec<Hit>, MemoryError> {
        let vector = self.embed(&[text])?.pop().unwrap_or_default();
        self.recall_vector(&vector, query)
    }

    /// [`Self::recall`] with the query's vector.
    pub fn recall_vector(&self, vector: &[f32], query: &Query) -> Result<Vec<Hit>, MemoryError> {
        self.check_dim(vector)?;
        self.store.search(self.embedder.model_id(), vector, query)
    }

    /// Records that these memories were used now, so that they stop
    /// decaying for a while.
    pub fn mark_used(&self, ids: &[MemoryId]) -> Result<usize, MemoryError> {
        self.store.mark_used(ids)
    }

    /// Deletes a memory; whether it was there.
    pub fn forget(&self, id: MemoryId) -> Result<bool, MemoryError> {
        self.store.delete(id)
    }

    /// Remembers a finished task in the shared namespace: one
    /// [`Kind::Task`] memory holding request, plan, outcome and lessons
    /// (found by its request), and one [`Kind::Lesson`] per lesson (found
    /// by request and lesson). Returns the task memory's id first.
    pub fn remember_task(&self, task: &FinishedTask) -> Result<Vec<MemoryId>, MemoryError> {
        let mut content = format!(
            "Request: {}\nPlan:\n{}\nOutcome ({}): {}",
            task.request.trim(),
            task.plan.trim(),
            if task.succeeded {
                "succeeded"
            } else {
                "failed"
            },
            task.outcome.trim()
        );
        if !task.lessons.is_empty() {
            content.push_str("\nLessons:");
            for lesson in &task.lessons {
                content.push_str("\n- ");
                content.push_str(lesson.trim());
            }
        }
        let mut memories = vec![NewMemory {
            embed_text: Some(task.request.clone()),
            ..NewMemory::new(Namespace::Shared, Kind::Task, content)
                .with_tags(task.tags.iter().cloned())
                .from_task(&task.task_id)
        }];
        for lesson in task.lessons.iter().filter(|l| !l.trim().is_empty()) {
            memories.push(NewMemory {
                embed_text: Some(format!("{}\n{}", task.request.trim(), lesson.trim())),
                ..NewMemory::new(Namespace::Shared, Kind::Lesson, lesson.trim())
                    .with_tags(task.tags.iter().cloned())
                    .from_task(&task.task_id)
            });
        }
        self.remember_many(memories)
    }

    /// The `k` past tasks and lessons most relevant to planning `request`,
    /// best first. They are marked used: the Director puts them in its
    /// planning prompt.
    pub fn similar_tasks(&self, request: &str, k: usize) -> Result<Vec<Hit>, MemoryError> {
        let query = Query::top(k)
            .in_namespaces([Namespace::Shared])
            .of_kinds([Kind::Task, Kind::Lesson]);
        let hits = self.recall(request, &query)?;
        let ids: Vec<MemoryId> = hits.iter().map(|h| h.record.id).collect();
        self.mark_used(&ids)?;
        Ok(hits)
    }

    fn check_dim(&self, vector: &[f32]) -> Result<(), MemoryError> {
        if vector.len() != self.embedder.dim() {
            return Err(MemoryError::WrongDimension {
                expected: self.embedder.dim(),
                got: vector.len(),
            });
        }
        Ok(())
    }
}
