//! What the worker tests share: synthetic model files, scripted replies in
//! the step format, and a ModelHost configuration for them.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use troupe_host::ModelHostConfig;
use troupe_inference::backend::LoadOptions;
use troupe_models::catalog::CatalogSources;
use troupe_models::synth::SynthQuant;

/// A directory holding one tiny synthetic model, `<model>.gguf`.
pub(crate) fn model_dir(model: &str, seed: u64) -> tempfile::TempDir {
    troupe_testkit::models::dir_with(model, SynthQuant::F32, seed)
}

/// A reply that runs `tool`.
pub(crate) fn act(tool: &str, args: Value) -> String {
    json!({ "thought": format!("use {tool}"), "action": { "tool": tool, "args": args } })
        .to_string()
}

/// A final answer.
pub(crate) fn answer(text: &str) -> String {
    json!({ "thought": "done", "final": text }).to_string()
}

/// A host with a large budget, two slots and one thread, over `model_dir`.
pub(crate) fn host_config(model_dir: PathBuf, context_length: u32) -> ModelHostConfig {
    ModelHostConfig {
        budget_bytes: 1 << 34,
        pinned: Vec::new(),
        default_keep_alive: Duration::from_secs(600),
        load: LoadOptions {
            context_length,
            parallel_slots: 2,
            batch_size: 128,
            threads: Some(1),
            gpu_layers: 0,
            repack: true,
            max_queued: 8,
        },
        catalog: CatalogSources {
            model_dirs: vec![model_dir],
            hf_cache: None,
            ollama_models: None,
        },
    }
}
