//! Remote OpenAI-compatible providers: OpenAI, OpenRouter, Groq, Mistral,
//! Ollama, llama-server, or another troupe, reached over
//! `POST {base_url}/chat/completions`.
//!
//! # Layout
//! - [`client`]: [`RemoteProvider`]: the request, its retries before the
//!   first token, the relay task that streams pieces into a
//!   [`crate::backend::GenerationStream`], the token and cost counters.
//! - [`breaker`]: [`CircuitBreaker`], one per provider: open after N failed
//!   requests, one trial after T.
//! - [`error`]: [`RemoteError`] and which errors are worth a retry.
//! - `wire`: [`crate::backend::GenerateRequest`] → the OpenAI body, and the
//!   chunks and completions read back.
//! - `answer`: reading a 2xx body, event stream or plain JSON.
//! - [`sse`]: the server-sent-events parser.
//!
//! The API key is read from the environment variable the configuration
//! names, sent only as `Authorization: Bearer`, and never formatted:
//! `Debug` shows `<redacted>`, and error texts taken from a server's body
//! have the key cut out.

pub mod breaker;
pub mod client;
pub mod error;
pub mod sse;

mod answer;
mod wire;

pub use breaker::{BreakerState, CircuitBreaker, Clock, ManualClock, SystemClock};
pub use client::{ProviderStats, RemoteProvider};
pub use error::RemoteError;
