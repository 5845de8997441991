//! The validated configuration the rest of troupe sees: defaults filled in,
//! paths absolute, ranges checked. Built once by [`crate::load`].

use crate::load::{ConfigError, ConfigSource};
use crate::raw::{RawConfig, RawInference, RawModels};
use std::path::{Path, PathBuf};

/// The default context length a model is loaded with.
pub const DEFAULT_CONTEXT_LENGTH: u32 = 4096;
/// The default llama.cpp batch size, llama.cpp's own default.
pub const DEFAULT_BATCH_SIZE: u32 = 512;
/// The default number of concurrent sequences per loaded model.
pub const DEFAULT_PARALLEL_SLOTS: u32 = 4;
/// Where `troupe models pull` downloads from unless told otherwise.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// troupe's resolved configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where troupe keeps its database, workspaces and downloads.
    pub data_dir: PathBuf,
    /// A `tracing` filter directive.
    pub log: String,
    /// Where models are found.
    pub models: ModelsConfig,
    /// How models are run.
    pub inference: InferenceConfig,
    /// How `troupe serve` listens and what its ModelHost may hold.
    pub serve: crate::serve::ServeConfig,
    /// What the workers' tools may do.
    pub tools: crate::tools::ToolsConfig,
    /// Which tool calls need a person's approval.
    pub approval: crate::tools::ApprovalConfig,
    /// Which model each actor uses, the specialists, the model rules.
    pub agents: crate::agents::AgentsConfig,
    /// The supervisors' restart policy.
    pub supervision: crate::agents::SupervisionConfig,
    /// How the Learner picks models and token budgets.
    pub learner: crate::learner::LearnerConfig,
    /// MCP servers whose tools join the registry.
    pub mcp: crate::mcp::McpConfig,
    /// Long-term memory and its sentence embedder.
    pub memory: crate::memory::MemoryConfig,
    /// Remote providers and each role's chain (`[[providers]]`, `[routing]`).
    pub providers: crate::providers::ProvidersConfig,
    /// This process as a cluster node (`[cluster]`).
    pub cluster: crate::cluster::ClusterConfig,
    /// Where this configuration came from.
    pub source: ConfigSource,
}

/// Where models are found and downloaded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelsConfig {
    /// Directories scanned for `*.gguf` files.
    pub dirs: Vec<PathBuf>,
    /// The Hugging Face hub cache; `troupe models pull` downloads into it.
    pub hf_cache: PathBuf,
    /// Ollama's model store.
    pub ollama: PathBuf,
    /// The Hugging Face endpoint to download from.
    pub hf_endpoint: String,
}

/// Which engine runs models.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendChoice {
    /// llama.cpp, in process.
    Llama,
    /// Replays the model outputs of a script file: deterministic runs for
    /// tests and demos (see `troupe_inference::scripted`).
    Scripted(PathBuf),
}

/// How models are run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InferenceConfig {
    /// CPU threads for decoding; `None` lets the engine use one per physical
    /// core, llama.cpp's own default.
    pub threads: Option<u32>,
    /// Context length a model is loaded with.
    pub context_length: u32,
    /// Largest number of tokens decoded in one batch.
    pub batch_size: u32,
    /// Concurrent sequences one loaded model serves.
    pub parallel_slots: u32,
    /// Layers offloaded to a GPU.
    pub gpu_layers: u32,
    /// ggml may repack the weights kept on the CPU into its extra buffer
    /// types (AMX tiles on Intel Sapphire Rapids and later, interleaved
    /// Q4_0 blocks, …); `false` keeps them as the file has them, as
    /// llama.cpp's `--no-repack` does.
    pub repack: bool,
    /// The engine.
    pub backend: BackendChoice,
}

impl Config {
    /// The configuration with every default and no file, as `troupe` runs
    /// when nothing is configured.
    pub fn defaults() -> Config {
        resolve(RawConfig::default(), ConfigSource::default())
            .expect("the built-in defaults are valid")
    }
}

/// Checks a raw configuration and fills in defaults. `base` is the directory
/// relative paths in the file are taken from.
pub(crate) fn resolve(raw: RawConfig, source: ConfigSource) -> Result<Config, ConfigError> {
    let base = source.base_dir();
    let data_dir = match raw.data_dir {
        Some(p) => absolute(&base, &p),
        None => dirs::data_dir()
            .unwrap_or_else(|| base.clone())
            .join("troupe"),
    };
    let log = raw.log.unwrap_or_else(|| "info".to_string());
    if log.trim().is_empty() {
        return Err(source.invalid("log", "must not be empty"));
    }
    let models = resolve_models(raw.models, &base, &data_dir, &source)?;
    let inference = resolve_inference(raw.inference, &base, &source)?;
    let serve = crate::serve::resolve_serve(raw.serve, &source)?;
    let tools = crate::tools::resolve_tools(raw.tools, &source)?;
    let approval = crate::tools::resolve_approval(raw.approval, &source)?;
    let agents = crate::agents::resolve_agents(raw.agents, &source)?;
    let supervision = crate::agents::resolve_supervision(raw.supervision, &source)?;
    let learner = crate::learner::resolve_learner(raw.learner, &source)?;
    let mcp = crate::mcp::resolve_mcp(raw.mcp, &base, &source)?;
    let memory = crate::memory::resolve_memory(raw.memory, &base, &source)?;
    let providers = crate::providers::resolve_providers(raw.providers, raw.routing, &source)?;
    let cluster = crate::cluster::resolve_cluster(raw.cluster, &source)?;
    Ok(Config {
        data_dir,
        log,
        models,
        inference,
        serve,
        tools,
        approval,
        agents,
        supervision,
        learner,
        mcp,
        memory,
        providers,
        cluster,
        source,
    })
}

fn resolve_models(
    raw: RawModels,
    base: &Path,
    data_dir: &Path,
    source: &ConfigSource,
) -> Result<ModelsConfig, ConfigError> {
    let dirs = match raw.dirs {
        Some(dirs) => dirs.iter().map(|d| absolute(base, d)).collect(),
        None => vec![data_dir.join("models")],
    };
    let hf_cache = match raw.hf_cache {
        Some(p) => absolute(base, &p),
        None => default_hf_cache(),
    };
    let ollama = match raw.ollama {
        Some(p) => absolute(base, &p),
        None => std::env::var_os("OLLAMA_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".ollama").join("models")),
    };
    let hf_endpoint = raw
        .hf_endpoint
        .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_string());
    if !(hf_endpoint.starts_with("http://") || hf_endpoint.starts_with("https://")) {
        return Err(source.invalid(
            "models.hf_endpoint",
            &format!("`{hf_endpoint}` is not an http:// or https:// URL"),
        ));
    }
    Ok(ModelsConfig {
        dirs,
        hf_cache,
        ollama,
        hf_endpoint: hf_endpoint.trim_end_matches('/').to_string(),
    })
}

fn resolve_inference(
    raw: RawInference,
    base: &Path,
    source: &ConfigSource,
) -> Result<InferenceConfig, ConfigError> {
    let backend = match (raw.backend.as_deref(), raw.script) {
        (None | Some("llama"), None) => BackendChoice::Llama,
        (None | Some("llama"), Some(_)) => {
            return Err(source.invalid(
                "inference.script",
                "is only read by the `scripted` backend; set inference.backend = \"scripted\"",
            ))
        }
        (Some("scripted"), Some(script)) => BackendChoice::Scripted(absolute(base, &script)),
        (Some("scripted"), None) => {
            return Err(source.invalid(
                "inference.script",
                "the `scripted` backend needs a script file",
            ))
        }
        (Some(other), _) => {
            return Err(source.invalid(
                "inference.backend",
                &format!("`{other}` is not `llama` or `scripted`"),
            ))
        }
    };
    let threads = match raw.threads {
        None | Some(0) => None,
        Some(n) if n > 1024 => {
            return Err(source.invalid("inference.threads", &format!("{n} is more than 1024")))
        }
        Some(n) => Some(n),
    };
    let context_length = raw.context_length.unwrap_or(DEFAULT_CONTEXT_LENGTH);
    if !(64..=1 << 21).contains(&context_length) {
        return Err(source.invalid(
            "inference.context_length",
            &format!("{context_length} is outside 64..=2097152"),
        ));
    }
    let batch_size = raw.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 || batch_size > 65536 {
        return Err(source.invalid(
            "inference.batch_size",
            &format!("{batch_size} is outside 1..=65536"),
        ));
    }
    let parallel_slots = raw.parallel_slots.unwrap_or(DEFAULT_PARALLEL_SLOTS);
    if parallel_slots == 0 || parallel_slots > 256 {
        return Err(source.invalid(
            "inference.parallel_slots",
            &format!("{parallel_slots} is outside 1..=256"),
        ));
    }
    Ok(InferenceConfig {
        threads,
        context_length,
        batch_size,
        parallel_slots,
        gpu_layers: raw.gpu_layers.unwrap_or(0),
        repack: raw.repack.unwrap_or(true),
        backend,
    })
}

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, `$HF_HOME/hub`, then
/// `~/.cache/huggingface/hub`, the order huggingface_hub itself uses.
pub fn default_hf_cache() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    home().join(".cache").join("huggingface").join("hub")
}

fn home() -> PathBuf {
    dirs::home_dir().unwrap_or_else(|| PathBuf::from("."))
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    let expanded = match p.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => p.to_path_buf(),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}
