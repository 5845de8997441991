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
//! - [`actors`]: the actors; today the ModelHost, which owns loaded models
//!   under a memory budget.
//! - [`http`]: the headless model host over HTTP (`troupe serve`):
//!   OpenAI-compatible routes, Ollama's listings, health and metrics.
//! - `src/main.rs` + `src/cli/`: the `troupe` binary, one file per subcommand.

pub mod http;

pub use troupe_actors as actors;
pub use troupe_config as config;
pub use troupe_inference as inference;
pub use troupe_models as models;
