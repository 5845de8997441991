//! troupe: a local-first autonomous agent system. A supervised troupe of
//! actors (UX, Director, Workers, ModelHost, Learner) does multi-step jobs with
//! GGUF models run in-process through llama.cpp.
//!
//! This crate is the facade: it re-exports the workspace crates so that an
//! embedding program depends on `troupe` alone.
//!
//! # Layout
//! - [`config`]: `troupe.toml` + `TROUPE_*` overrides → a validated `Config`.
//! - [`models`]: GGUF reading and validation, the model catalog, downloads,
//!   memory estimates, synthetic test models.
//! - [`inference`]: the `Backend` trait and its llama.cpp engine, sampling,
//!   chat templates, JSON-Schema-constrained output.
//! - [`actors`]: the actors: ModelHost, Learner, Director, Workers, UX.
//! - [`store`]: the redb store (tasks, journal, outcomes, conversations).
//! - [`supervision`]: the supervisor tree and the boot that assembles it.
//! - [`tools`]: the workers' tools and the task workspace.
//! - [`Troupe`]: the whole system as one handle (`src/troupe.rs`).
//! - [`http`]: the headless model host over HTTP (`troupe serve`):
//!   OpenAI-compatible routes, Ollama's listings, health and metrics.
//! - [`mcp`]: troupe as an MCP server (`troupe mcp serve`, `/mcp` under
//!   `troupe serve`).
//! - `src/main.rs` + `src/cli/`: the `troupe` binary, one file per subcommand.

pub mod http;
pub mod mcp;
mod troupe;

pub use crate::troupe::{task_view, TaskSpec, TaskView, Troupe};
pub use troupe_store as store;
pub use troupe_supervision as supervision;
pub use troupe_tools as tools;

pub use troupe_actors as actors;
pub use troupe_config as config;
pub use troupe_inference as inference;
pub use troupe_memory as memory;
pub use troupe_models as models;
