//! troupe-inference: running models.
//!
//! # Layout
//! - [`backend`]: the `Backend` trait the ModelHost drives, and the request,
//!   result and event types that cross it.
//! - [`llama`]: the llama.cpp implementation. Each loaded model lives on its
//!   own OS thread (`llama::engine`) that owns model + context and takes
//!   commands over a crossbeam channel; tokens stream back over tokio channels.
//! - [`sampling`]: sampling options and the sampler chain built from them.
//! - [`chat`]: chat messages rendered with the model's own template, and the
//!   documented fallback when a model has none.
//! - [`schema`]: JSON Schema → GBNF grammar, refusing what it cannot enforce
//!   (the `troupe-schema` crate, re-exported).
//! - [`device`]: which GPU features this build has.
//! - [`embedder`]: sentence embeddings in process (candle BERT + tokenizers),
//!   all-MiniLM-L6-v2 by default, from the hub cache or a directory.
//! - [`remote`]: remote OpenAI-compatible providers (client, retries,
//!   circuit breaker), for chains that go past the local ModelHost.
//! - [`scripted`]: a deterministic backend that replays scripted outputs,
//!   for orchestration tests and demos.

pub mod backend;
pub mod chat;
pub mod device;
pub mod embedder;
pub mod llama;
pub mod remote;
pub mod sampling;
pub use troupe_schema as schema;
pub mod scripted;
