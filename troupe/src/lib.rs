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
//! - [`host`]: the ModelHost: loads, swaps and serves GGUF models within a
//!   memory budget.
//! - [`agents`]: the agents: UX, Director, Workers, the router, the Learner.
//! - [`store`]: the redb store (tasks, journal, outcomes, conversations).
//! - [`supervision`]: the supervisor tree and the boot that assembles it.
//! - [`tools`]: the workers' tools and the task workspace.
//! - [`Troupe`]: the whole system as one handle (`supervision/src/troupe.rs`).
//! - [`server`]: troupe over HTTP and MCP, and [`run`]`(config, shutdown)`,
//!   the whole of `troupe serve` as one call:
//!   - [`http`]: the headless model host over HTTP: OpenAI-compatible
//!     routes, Ollama's listings, health and metrics, the agent API and
//!     the dashboard.
//!   - [`mcp`]: troupe as an MCP server (`troupe mcp serve`, `/mcp` under
//!     `troupe serve`).
//!
//! The `troupe` binary (`src/main.rs` + `src/cli/` at the repository's
//! root, package `troupe-cli`) is a thin command line over this crate; its
//! terminal-only dependencies (clap, ratatui, plotters, indicatif) are not
//! this crate's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = troupe::config::Config::defaults();
//! let troupe = troupe::Troupe::start(config.clone()).await?;
//! let id = troupe.submit(troupe::TaskSpec::new("write hello.txt containing hello")).await?;
//! println!("{:?}", troupe.wait(&id).await?.answer);
//! troupe.shutdown().await;
//!
//! // The whole of `troupe serve`, until the future resolves.
//! troupe::run(config, async { tokio::signal::ctrl_c().await.unwrap() }).await?;
//! # Ok(()) }
//! ```

pub use troupe_server as server;
pub use troupe_server::{http, mcp, run};
pub use troupe_store as store;
pub use troupe_supervision as supervision;
pub use troupe_supervision::{task_view, TaskSpec, TaskView, Troupe};
pub use troupe_tools as tools;

pub use troupe_agents as agents;
pub use troupe_config as config;
pub use troupe_host as host;
pub use troupe_inference as inference;
pub use troupe_memory as memory;
pub use troupe_models as models;
