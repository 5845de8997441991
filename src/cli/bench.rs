//! `troupe bench`: speed measurements that line up with llama.cpp's own
//! tools, so the scripts in `benches/` can print ratios.
//!
//! # Layout
//! - `inference`: one sequence, prompt processing and generation, against
//!   llama-bench.
//! - `batched`: several concurrent sequences through the engine's continuous
//!   batching, against llama-batched-bench.
//! - `swap`: model switching through the ModelHost: a request to a resident
//!   model, a first load, a reload after eviction.
//! - `learner`: the Learner's policy on a seeded simulated workload.
//!
//! Shared here: [`Stat`] (mean and spread of repetitions) and [`TokenRng`]
//! (random prompt ids, different per repetition so no KV cache is reused).

mod batched;
mod inference;
mod learner;
mod swap;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use std::path::Path;
use troupe_config::Config;

#[derive(Debug, Subcommand)]
pub(super) enum BenchCommand {
    /// Prompt-processing and generation tokens/s, time to first token, load time.
    Inference(inference::InferenceArgs),
    /// Aggregate tokens/s of concurrent sequences (like llama-batched-bench).
    Batched(batched::BatchedArgs),
    /// Model switching: resident request, first load, reload after eviction.
    Swap(swap::SwapArgs),
    /// The Learner on a seeded simulated workload: success, cost, regret, budgets.
    Learner(learner::LearnerArgs),
}

pub(super) async fn run(cmd: BenchCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Inference(args) => inference::run(args, config).await,
        BenchCommand::Batched(args) => batched::run(args, config).await,
        BenchCommand::Swap(args) => swap::run(args, config).await,
        BenchCommand::Learner(args) => learner::run(args, config).await,
    }
}

/// Mean and spread of one test's repetitions (tokens/s or ms).
#[derive(Debug, Serialize)]
pub(super) struct Stat {
    avg: f64,
    stddev: f64,
    samples: Vec<f64>,
}

impl Stat {
    fn of(samples: Vec<f64>) -> Stat {
        let n = samples.len().max(1) as f64;
        let avg = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Stat {
            avg,
            stddev: var.sqrt(),
            samples,
        }
    }
}

/// A small seeded generator for prompt token ids (xorshift): benchmark
/// prompts must differ between repetitions so no KV cache is reused.
struct TokenRng(u64);

impl TokenRng {
    fn new(seed: u64) -> TokenRng {
        TokenRng(seed.max(1))
    }

    fn tokens(&mut self, n: usize, n_vocab: u32) -> Vec<i32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 % u64::from(n_vocab.max(1))) as i32
            })
            .collect()
    }
}

/// Writes `json` to `out` when given, then prints it or the table.
fn emit(json: &str, out: Option<&Path>, as_json: bool, table: impl FnOnce()) -> anyhow::Result<()> {
    if let Some(path) = out {
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if as_json {
        println!("{json}");
    } else {
        table();
    }
    Ok(())
}

/// The file name of a model path, for tables.
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}
