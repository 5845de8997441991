//! The `[memory]` section: troupe's long-term memory and the sentence
//! embedder it (and `/v1/embeddings` of `troupe serve`) uses.
//!
//! ```toml
//! [memory]
//! enabled = true                                       # false: nothing is remembered
//! embedder = "sentence-transformers/all-MiniLM-L6-v2"  # a repo id in the HF cache
//! embedder_path = "/srv/models/all-MiniLM-L6-v2"       # or a local directory (wins)
//! exact_threshold = 2000        # entries searched exactly; past it, an approximate index
//! decay_half_life_days = 30     # how fast old memories weigh less in ranking
//! ```
//!
//! The embedder is found in the Hugging Face cache of `[models] hf_cache`
//! (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`); nothing is
//! downloaded. Raw and resolved types sit together here, as in
//! [`crate::tools`].

use crate::load::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The sentence embedder used unless configured otherwise.
pub const DEFAULT_EMBEDDER: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Entries searched exactly before an approximate index takes over.
pub const DEFAULT_EXACT_THRESHOLD: usize = 2000;
/// Days after which a memory weighs half as much in ranking.
pub const DEFAULT_DECAY_HALF_LIFE_DAYS: f64 = 30.0;

/// `[memory]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    /// Whether troupe keeps a long-term memory.
    pub enabled: Option<bool>,
    /// The embedder's repository id in the Hugging Face cache.
    pub embedder: Option<String>,
    /// A local directory holding the embedder (overrides the cache lookup).
    pub embedder_path: Option<PathBuf>,
    /// Entries searched exactly before an approximate index takes over.
    pub exact_threshold: Option<usize>,
    /// Days after which a memory weighs half as much in ranking.
    pub decay_half_life_days: Option<f64>,
}

/// `[memory]`, resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Whether troupe keeps a long-term memory.
    pub enabled: bool,
    /// The embedder's repository id (also the model name `/v1/embeddings`
    /// answers to, besides its last path part, e.g. `all-MiniLM-L6-v2`).
    pub embedder: String,
    /// A local directory holding the embedder, absolute; when set it is
    /// loaded from there instead of the hub cache.
    pub embedder_path: Option<PathBuf>,
    /// Entries searched exactly before an approximate index takes over.
    pub exact_threshold: usize,
    /// Days after which a memory weighs half as much in ranking.
    pub decay_half_life_days: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            embedder: DEFAULT_EMBEDDER.to_owned(),
            embedder_path: None,
            exact_threshold: DEFAULT_EXACT_THRESHOLD,
            decay_half_life_days: DEFAULT_DECAY_HALF_LIFE_DAYS,
        }
    }
}

pub(crate) fn resolve_memory(
    raw: RawMemory,
    base: &Path,
    source: &ConfigSource,
) -> Result<MemoryConfig, ConfigError> {
    let defaults = MemoryConfig::default();
    let embedder = raw.embedder.unwrap_or(defaults.embedder);
    let trimmed = embedder.trim();
    if trimmed.is_empty() {
        return Err(source.invalid("memory.embedder", "must not be empty"));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.len() > 2
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        || trimmed.chars().any(char::is_whitespace)
    {
        return Err(source.invalid(
            "memory.embedder",
            &format!(
                "`{embedder}` is not a repository id (OWNER/NAME); \
                 set memory.embedder_path for a local directory"
            ),
        ));
    }
    let embedder_path = raw.embedder_path.map(|p| absolute(base, &p));
    let decay_half_life_days = raw
        .decay_half_life_days
        .unwrap_or(defaults.decay_half_life_days);
    if !(decay_half_life_days.is_finite() && decay_half_life_days > 0.0) {
        return Err(source.invalid(
            "memory.decay_half_life_days",
            &format!("{decay_half_life_days} is not a positive number of days"),
        ));
    }
    Ok(MemoryConfig {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        embedder: trimmed.to_owned(),
        embedder_path,
        exact_threshold: raw.exact_threshold.unwrap_or(defaults.exact_threshold),
        decay_half_life_days,
    })
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    let expanded = match (p.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}
