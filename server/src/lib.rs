//! troupe-server: troupe over HTTP and MCP, and [`run`], the whole of
//! `troupe serve` as one call.
//!
//! # Layout
//! - [`http`]: the headless model host over HTTP: OpenAI-compatible routes,
//!   Ollama's listings, health and metrics, the agent API (tasks, their
//!   event streams, approvals, chat) and the web dashboard.
//! - [`mcp`]: troupe as an MCP server (stdio for `troupe mcp serve`, and
//!   `/mcp` under `troupe serve`).
//! - [`run`] / [`Server`]: boot a [`Troupe`](troupe_supervision::Troupe)
//!   from a config, join its cluster, listen, serve until `shutdown`
//!   resolves, then stop everything in one place.

pub mod http;
pub mod mcp;
mod run;

pub use run::{run, ServeError, ServeOptions, Server};
