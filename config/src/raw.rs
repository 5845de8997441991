//! The configuration as it is written on disk. Every field is optional so that
//! an empty file is valid; [`crate::resolved`] fills in the defaults.

use serde::Deserialize;
use std::path::PathBuf;

/// The whole `troupe.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where troupe keeps its database, workspaces and downloads.
    pub data_dir: Option<PathBuf>,
    /// A `tracing` filter, e.g. `info` or `troupe=debug,llama=warn`.
    pub log: Option<String>,
    /// Where models are found and downloaded.
    #[serde(default)]
    pub models: RawModels,
    /// How models are run.
    #[serde(default)]
    pub inference: RawInference,
    /// How `troupe serve` listens and what its ModelHost may hold.
    #[serde(default)]
    pub serve: crate::serve::RawServe,
    /// What the workers' tools may do.
    #[serde(default)]
    pub tools: crate::tools::RawTools,
    /// Which tool calls need a person's approval.
    #[serde(default)]
    pub approval: crate::tools::RawApproval,
    /// Which model each actor uses, the specialists, the model rules.
    #[serde(default)]
    pub agents: crate::agents::RawAgents,
    /// The supervisors' restart policy.
    #[serde(default)]
    pub supervision: crate::agents::RawSupervision,
    /// How the Learner picks models and token budgets.
    #[serde(default)]
    pub learner: crate::learner::RawLearner,
    /// MCP servers whose tools join the registry.
    #[serde(default)]
    pub mcp: crate::mcp::RawMcp,
    /// Long-term memory and its sentence embedder.
    #[serde(default)]
    pub memory: crate::memory::RawMemory,
    /// Remote OpenAI-compatible providers (`[[providers]]`).
    #[serde(default)]
    pub providers: Vec<crate::providers::RawProvider>,
    /// Each role's chain of local, cluster and remote models.
    #[serde(default)]
    pub routing: crate::providers::RawRouting,
    /// This process as a node of a troupe cluster.
    #[serde(default)]
    pub cluster: crate::cluster::RawCluster,
}

/// `[models]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    /// Directories scanned for `*.gguf` files.
    pub dirs: Option<Vec<PathBuf>>,
    /// The Hugging Face hub cache (`models--org--name/...`).
    pub hf_cache: Option<PathBuf>,
    /// Ollama's model store (holding `manifests/` and `blobs/`).
    pub ollama: Option<PathBuf>,
    /// The Hugging Face endpoint `troupe models pull` downloads from.
    pub hf_endpoint: Option<String>,
}

/// `[inference]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInference {
    /// CPU threads for decoding; 0 or absent means one per physical core.
    pub threads: Option<u32>,
    /// Context length (tokens) a model is loaded with, capped to what it was
    /// trained for.
    pub context_length: Option<u32>,
    /// Largest number of tokens decoded in one llama.cpp batch.
    pub batch_size: Option<u32>,
    /// Concurrent sequences one loaded model serves.
    pub parallel_slots: Option<u32>,
    /// Layers offloaded to a GPU (needs a build with a GPU feature).
    pub gpu_layers: Option<u32>,
    /// Let ggml repack CPU weights into its faster layouts (AMX tiles, …);
    /// `false` is llama.cpp's `--no-repack`.
    pub repack: Option<bool>,
    /// `llama` (the default) or `scripted` (replays `script`; for tests and demos).
    pub backend: Option<String>,
    /// The replay script of the `scripted` backend.
    pub script: Option<PathBuf>,
}
