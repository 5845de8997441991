//! `troupe bench inference`: prompt processing and generation speed, time to
//! first token and load time, measured the way llama-bench measures them
//! (a warm-up run, then `-r` repetitions; pp = one prompt of `-p` tokens,
//! tg = `-n` tokens generated one at a time) so the two can be compared
//! side by side (benches/inference-vs-llama-bench.sh).

use super::{emit, file_name, Stat, TokenRng};
use crate::cli::generate::load_options;
use crate::cli::models::resolve;
use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use troupe_config::Config;
use troupe_inference::backend::{
    Constraint, GenerateRequest, GenerationResult, LoadedModel, Prompt,
};
use troupe_inference::llama::{LlamaEngine, LlamaModelHandle};
use troupe_inference::sampling::SamplingOptions;

#[derive(Debug, Args)]
pub(crate) struct InferenceArgs {
    /// A catalog name or a path to a GGUF file.
    #[arg(short, long)]
    model: String,
    /// CPU threads (default: configured, else one per physical core).
    #[arg(short, long)]
    threads: Option<u32>,
    /// Prompt tokens for the prompt-processing test.
    #[arg(short = 'p', long, default_value_t = 512)]
    n_prompt: u32,
    /// Tokens generated in the generation test.
    #[arg(short = 'n', long, default_value_t = 128)]
    n_gen: u32,
    /// Repetitions of each test (after one warm-up run).
    #[arg(short, long, default_value_t = 5)]
    reps: u32,
    /// Batch size for prompt processing (llama-bench's -b/-ub).
    #[arg(short, long, default_value_t = 512)]
    batch_size: u32,
    /// Skip the JSON-Schema-constrained generation test.
    #[arg(long)]
    no_constrained: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The report `--json` prints.
#[derive(Debug, Serialize)]
pub(super) struct InferenceReport {
    model: String,
    threads: u32,
    n_prompt: u32,
    n_gen: u32,
    reps: u32,
    batch_size: u32,
    load_ms: f64,
    /// Prompt processing, tokens/s.
    pp_tokens_per_s: Stat,
    /// Generation, tokens/s.
    tg_tokens_per_s: Stat,
    /// Time to first token of the pp test, ms.
    ttft_ms: Stat,
    /// Generation constrained by a small JSON Schema, tokens/s.
    tg_constrained_tokens_per_s: Option<Stat>,
    /// Tokens the constrained runs produced, per run.
    constrained_tokens: Vec<u32>,
}

/// The schema of the constrained test: a small tool-call-like object whose
/// array keeps a random-weight model generating for a while.
fn bench_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "tool": {"type": "string", "enum": ["read_file", "write_file", "shell"]},
            "args": {
                "type": "array",
                "items": {"type": "string", "maxLength": 24},
                "minItems": 8,
                "maxItems": 16
            }
        },
        "required": ["tool", "args"]
    })
}

pub(super) async fn run(args: InferenceArgs, config: &Config) -> anyhow::Result<()> {
    if args.reps == 0 || args.n_gen == 0 || args.n_prompt == 0 {
        bail!("-p, -n and -r must be at least 1");
    }
    let entry = resolve(config, &args.model).await?;
    let mut opts = load_options(config, None, args.threads, 1);
    opts.batch_size = args.batch_size;
    // Room for the prompt test and the generation test, as llama-bench sizes
    // its context to n_prompt + n_gen.
    opts.context_length = (args.n_prompt + args.n_gen).max(512).next_multiple_of(256);
    let started = Instant::now();
    let model = LlamaEngine::new()
        .load_model(&entry.path, opts)
        .await
        .with_context(|| format!("cannot load {}", entry.path.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let info = model.info().clone();
    let mut rng = TokenRng::new(0x7a0b_e5eed);

    let mut pp = Vec::new();
    let mut ttft = Vec::new();
    for rep in 0..=args.reps {
        let prompt = rng.tokens(args.n_prompt as usize, info.n_vocab);
        let result = run_one(&model, Prompt::Tokens(prompt), 1, None).await?;
        if result.usage.cached_prompt_tokens > 1 {
            bail!(
                "pp run reused {} cached tokens",
                result.usage.cached_prompt_tokens
            );
        }
        if rep > 0 {
            pp.push(result.timings.prompt_tokens_per_s);
            ttft.push(result.timings.time_to_first_token_ms);
        }
    }
    let mut tg = Vec::new();
    for rep in 0..=args.reps {
        let prompt = rng.tokens(1, info.n_vocab);
        let result = run_one(&model, Prompt::Tokens(prompt), args.n_gen, None).await?;
        if result.usage.completion_tokens != args.n_gen {
            bail!(
                "tg run produced {} tokens, expected {}",
                result.usage.completion_tokens,
                args.n_gen
            );
        }
        if rep > 0 {
            tg.push(result.timings.generation_tokens_per_s);
        }
    }
    let mut constrained = Vec::new();
    let mut constrained_tokens = Vec::new();
    if !args.no_constrained {
        for rep in 0..=args.reps {
            let prompt = rng.tokens(1, info.n_vocab);
            let schema = Constraint::JsonSchema(bench_schema());
            let result = run_one(&model, Prompt::Tokens(prompt), args.n_gen, Some(schema)).await?;
            if rep > 0 {
                constrained.push(result.timings.generation_tokens_per_s);
                constrained_tokens.push(result.usage.completion_tokens);
            }
        }
    }
    model.unload().await;

    let report = InferenceReport {
        model: entry.path.display().to_string(),
        threads: info.threads,
        n_prompt: args.n_prompt,
        n_gen: args.n_gen,
        reps: args.reps,
        batch_size: args.batch_size,
        load_ms,
        pp_tokens_per_s: Stat::of(pp),
        tg_tokens_per_s: Stat::of(tg),
        ttft_ms: Stat::of(ttft),
        tg_constrained_tokens_per_s: (!constrained.is_empty()).then(|| Stat::of(constrained)),
        constrained_tokens,
    };
    let json = serde_json::to_string_pretty(&report)?;
    emit(&json, args.out.as_deref(), args.json, || {
        print_table(&report)
    })
}

async fn run_one(
    model: &LlamaModelHandle,
    prompt: Prompt,
    max_tokens: u32,
    constraint: Option<Constraint>,
) -> anyhow::Result<GenerationResult> {
    let mut request = GenerateRequest::new(prompt);
    request.max_tokens = max_tokens;
    request.sampling = SamplingOptions::greedy();
    // Random weights emit end-of-generation tokens at random; the generation
    // test must run its full length, as llama-bench's does.
    request.ignore_eos = constraint.is_none();
    request.constraint = constraint;
    let stream = model.generate(request).context("bench request refused")?;
    stream.into_result().await.context("bench request failed")
}

fn print_table(r: &InferenceReport) {
    println!("| model | threads | test | t/s |");
    println!("| --- | ---: | --- | ---: |");
    let name = file_name(&r.model);
    let row = |test: String, s: &Stat| {
        println!(
            "| {name} | {} | {test} | {:.2} ± {:.2} |",
            r.threads, s.avg, s.stddev
        );
    };
    row(format!("pp{}", r.n_prompt), &r.pp_tokens_per_s);
    row(format!("tg{}", r.n_gen), &r.tg_tokens_per_s);
    if let Some(c) = &r.tg_constrained_tokens_per_s {
        row(format!("tg{} json-schema", r.n_gen), c);
    }
    println!();
    println!(
        "load {:.0} ms | time to first token (pp{}) {:.1} ± {:.1} ms",
        r.load_ms, r.n_prompt, r.ttft_ms.avg, r.ttft_ms.stddev
    );
}
