//! The agents' long-term memory: troupe-memory's store behind the candle
//! sentence embedder, opened at boot from `[memory]`.
//!
//! Memory is an aid, not a requirement: when the configured embedder is the
//! default one and it is not in the Hugging Face cache, troupe runs without
//! memory and says so once. An embedder the person pointed at explicitly
//! (`embedder_path`) that fails to load is an error.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use troupe_config::memory::MemoryConfig;
use troupe_inference::embedder::{EmbedError, EmbedderSource, SentenceEmbedder};
use troupe_memory::{EmbedFailure, Embedder, Memory, MemoryError, MemoryOptions};

/// The file the memory store lives in, inside the data directory.
pub const MEMORY_FILE: &str = "memory.redb";

/// The candle sentence embedder as troupe-memory's [`Embedder`].
#[derive(Debug, Clone)]
pub struct SentenceEmbedding(pub Arc<SentenceEmbedder>);

impl Embedder for SentenceEmbedding {
    fn model_id(&self) -> &str {
        self.0.model_id()
    }

    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        self.0
            .embed(texts)
            .map_err(|e| EmbedFailure::new(e.to_string()))
    }
}

/// Why memory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryOpenError {
    /// The embedder named by `[memory] embedder_path` failed to load.
    #[error("[memory] embedder_path: {0}")]
    Embedder(#[from] EmbedError),
    /// The store could not be opened.
    #[error("the memory store: {0}")]
    Store(#[from] MemoryError),
    /// The blocking open was cancelled.
    #[error("opening memory was interrupted: {0}")]
    Interrupted(String),
}

/// An open memory and the embedder behind it (shared with `/v1/embeddings`).
#[derive(Clone)]
pub struct AgentMemory {
    /// The store and its embedder.
    pub memory: Arc<Memory>,
    /// The sentence embedder itself.
    pub embedder: Arc<SentenceEmbedder>,
}

impl std::fmt::Debug for AgentMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMemory")
            .field("embedder", &self.embedder.model_id())
            .field("entries", &self.memory.store().len())
            .finish()
    }
}

/// Where `[memory]` says the embedder is: `embedder_path` when set, else
/// `embedder` in the hub cache at `hf_cache` (`[models] hf_cache`).
pub fn embedder_source(memory: &MemoryConfig, hf_cache: &Path) -> EmbedderSource {
    match &memory.embedder_path {
        Some(dir) => EmbedderSource::Dir(dir.clone()),
        None => EmbedderSource::hub_in(memory.embedder.clone(), hf_cache),
    }
}

/// The store's options from `[memory]`.
pub fn memory_options(memory: &MemoryConfig) -> MemoryOptions {
    MemoryOptions {
        exact_threshold: memory.exact_threshold,
        decay_half_life: Duration::from_secs_f64(memory.decay_half_life_days * 86_400.0),
        ..MemoryOptions::default()
    }
}

/// Opens memory in `data_dir`, or `None` when it is disabled or the default
/// embedder is not installed.
///
/// # Errors
/// [`MemoryOpenError`]: an explicitly configured embedder fails to load, or
/// the store is unreadable.
pub async fn open(
    memory: &MemoryConfig,
    hf_cache: &Path,
    data_dir: &Path,
) -> Result<Option<AgentMemory>, MemoryOpenError> {
    if !memory.enabled {
        return Ok(None);
    }
    let source = embedder_source(memory, hf_cache);
    let explicit = memory.embedder_path.is_some();
    let path = data_dir.join(MEMORY_FILE);
    let options = memory_options(memory);
    let opened = tokio::task::spawn_blocking(move || {
        let embedder = match SentenceEmbedder::load(&source) {
            Ok(e) => Arc::new(e),
            Err(error) if !explicit => {
                tracing::warn!(
                    %error,
                    "long-term memory is off: the sentence embedder is not installed \
                     (scripts/fetch-minilm.sh installs all-MiniLM-L6-v2; or set [memory] embedder_path)"
                );
                return Ok(None);
            }
            Err(error) => return Err(MemoryOpenError::Embedder(error)),
        };
        let adapter: Arc<dyn Embedder> = Arc::new(SentenceEmbedding(Arc::clone(&embedder)));
        let memory = Memory::open(&path, options, adapter)?;
        Ok(Some(AgentMemory {
            memory: Arc::new(memory),
            embedder,
        }))
    })
    .await
    .map_err(|e| MemoryOpenError::Interrupted(e.to_string()))??;
    Ok(opened)
}
