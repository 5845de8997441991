//! troupe-models: everything troupe knows about model files before llama.cpp
//! sees them.
//!
//! # Layout
//! - [`gguf`]: a bounded GGUF (v2/v3) reader and validator. Every file goes
//!   through it before it reaches llama.cpp, because llama.cpp aborts the
//!   process on some malformed input.
//! - [`arch`]: the architectures the vendored llama.cpp can load.
//! - [`synth`]: writes llama-architecture GGUF files with random weights and a
//!   byte-level BPE vocabulary, so tests and benches need no download.
//! - [`estimate`]: memory a model will need at a context length (weights + KV
//!   cache + compute buffers), for planning loads.
//! - [`catalog`]: finds models in model directories, the Hugging Face cache and
//!   Ollama's store.
//! - [`pull`]: downloads from a Hugging Face endpoint through hf-hub.

pub mod arch;
pub mod catalog;
pub mod estimate;
pub mod gguf;
pub mod pull;
pub mod synth;
