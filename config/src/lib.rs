//! troupe-config: what troupe reads from `troupe.toml` and `TROUPE_*`
//! environment variables, validated once into a resolved [`Config`].
//!
//! # Layout
//! - [`cluster`]: the `[cluster]` section: this process as a node of a
//!   cluster (listen, join, node name, where the secret comes from).
//! - [`mcp`]: the `[mcp]` section: MCP servers whose tools join the registry.
//! - [`memory`]: the `[memory]` section: long-term memory and its sentence
//!   embedder (also behind `/v1/embeddings`).
//! - [`providers`]: the `[[providers]]` and `[routing]` sections: remote
//!   OpenAI-compatible providers and each role's chain (local, cluster, remote).
//! - [`raw`]: the serde types exactly as they are on disk. Every struct denies
//!   unknown keys, so a typo is an error that names the key and the file rather
//!   than a setting silently ignored.
//! - [`agents`]: the `[agents]` and `[supervision]` sections: each actor's
//!   model, the specialists, the Learner's first rules, restart policy.
//! - [`learner`]: the `[learner]` section: exploration, cost penalty,
//!   token-budget quantile, remote models' prices.
//! - [`load`]: finding the file (`--config`, `$TROUPE_CONFIG`, then the
//!   platform config dir), layering environment overrides on it, and turning a
//!   deserialisation failure into an error that names the key.
//! - [`resolved`]: the validated types the rest of troupe sees, with every
//!   default filled in and every path made absolute.
//! - [`serve`]: the `[serve]` section (address, API key, memory budget,
//!   pinned models, keep-alive, body cap) read by `troupe serve`.
//! - [`size`]: byte sizes as people write them (`4GiB`) and as troupe prints them.
//! - [`tools`]: the `[tools]` and `[approval]` sections (raw and resolved),
//!   read by troupe-tools.
//!
//! Environment overrides use `TROUPE_` + the key path in upper case with `__`
//! between sections: `TROUPE_DATA_DIR`, `TROUPE_INFERENCE__THREADS=4`,
//! `TROUPE_MODELS__DIRS='["/srv/models"]'`. Values are read as TOML literals
//! (numbers, booleans, arrays) and fall back to plain strings.

pub mod agents;
mod backoff;
pub mod cluster;
pub mod learner;
pub mod load;
pub mod mcp;
pub mod memory;
pub mod providers;
pub mod raw;
pub mod resolved;
pub mod serve;
pub mod size;
pub mod tools;

pub use agents::{
    AgentsConfig, ModelRule, SpecialistConfig, SupervisionConfig, TaskKind, UnknownKind,
};
pub use cluster::ClusterConfig;
pub use learner::{LearnerConfig, RemotePrice};
pub use load::{load, ConfigError, ConfigSource, LoadOptions};
pub use memory::MemoryConfig;
pub use providers::{ChainEntry, ProviderConfig, ProvidersConfig, RoutingConfig};
pub use resolved::{BackendChoice, Config, InferenceConfig, ModelsConfig};
pub use serve::{SamplingDefaults, ServeConfig};
pub use tools::{ApprovalConfig, Policy, ToolsConfig};
