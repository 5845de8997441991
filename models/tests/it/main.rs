//! The integration tests of `troupe-models`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod support;

mod catalog_scan;
mod estimate_basic;
mod estimate_llama;
mod gguf_malformed;
mod gguf_roundtrip;
mod pull_hub;
mod synth_determinism;
mod synth_loads_in_llama;
mod synth_one_b;
