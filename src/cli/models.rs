//! `troupe models list|show|pull|synth`.

use super::progress::{spinner, DownloadBar};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use troupe_config::size::format_bytes;
use troupe_config::Config;
use troupe_models::catalog::{Catalog, CatalogSources, ModelEntry};
use troupe_models::estimate::{estimate, EstimateParams};
use troupe_models::gguf::GgufFile;
use troupe_models::pull::{pull, PullRequest};
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

#[derive(Debug, Subcommand)]
pub(super) enum ModelsCommand {
    /// Models found in the model dirs, the Hugging Face cache and Ollama's store.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One model's details and memory estimate.
    Show {
        /// A catalog name or a path to a GGUF file.
        name: String,
        /// Context length for the memory estimate (default: the configured one).
        #[arg(long)]
        ctx: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download a GGUF model from Hugging Face into the hub cache.
    Pull {
        /// `org/repo` or `org/repo:file.gguf`.
        spec: String,
        /// Revision (branch, tag or commit).
        #[arg(long)]
        revision: Option<String>,
    },
    /// Write a llama-architecture GGUF with random weights (for tests and benches).
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
pub(super) struct SynthArgs {
    /// Where to write the file.
    #[arg(long)]
    out: PathBuf,
    /// tiny | small | medium | 1b
    #[arg(long, default_value = "tiny")]
    shape: SynthShape,
    /// f32 | f16 | q8_0 | q4_0
    #[arg(long, default_value = "f16")]
    quant: SynthQuant,
    /// Seed of the random weights; the same seed writes the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub(super) async fn run(cmd: ModelsCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List { json } => list(config, json).await,
        ModelsCommand::Show { name, ctx, json } => show(config, &name, ctx, json).await,
        ModelsCommand::Pull { spec, revision } => pull_model(config, &spec, revision).await,
        ModelsCommand::Synth(args) => synth(args).await,
    }
}

/// Where the catalog looks, from the configuration.
pub(super) fn sources(config: &Config) -> CatalogSources {
    CatalogSources {
        model_dirs: config.models.dirs.clone(),
        hf_cache: Some(config.models.hf_cache.clone()),
        ollama_models: Some(config.models.ollama.clone()),
    }
}

/// Scans the catalog off the runtime: it reads every GGUF header.
pub(super) async fn scan(config: &Config) -> anyhow::Result<Catalog> {
    let sources = sources(config);
    tokio::task::spawn_blocking(move || Catalog::scan(&sources))
        .await
        .context("catalog scan panicked")
}

/// Resolves a catalog name or a path to a validated model entry.
pub(super) async fn resolve(config: &Config, name: &str) -> anyhow::Result<ModelEntry> {
    let catalog = scan(config).await?;
    catalog
        .resolve(name)
        .with_context(|| format!("cannot find model `{name}`"))
}

async fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let catalog = scan(config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&catalog.entries)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<8} {:>8} {:<8} {:>7} {:>9} {:<4} SOURCE",
        "NAME", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE", "TMPL"
    );
    for e in &catalog.entries {
        println!(
            "{:<40} {:<8} {:>8} {:<8} {:>7} {:>9} {:<4} {}",
            e.name,
            e.architecture,
            human_count(e.parameters),
            e.quantization,
            e.context_length.map(|c| c.to_string()).unwrap_or_default(),
            format_bytes(e.file_size),
            if e.has_chat_template { "yes" } else { "no" },
            e.source,
        );
    }
    for p in &catalog.problems {
        eprintln!("skipped {}: {}", p.path.display(), p.reason);
    }
    if catalog.entries.is_empty() {
        eprintln!(
            "no models found (looked in {}, {} and {})",
            config
                .models
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            config.models.hf_cache.display(),
            config.models.ollama.display()
        );
    }
    Ok(())
}

async fn show(config: &Config, name: &str, ctx: Option<u32>, json: bool) -> anyhow::Result<()> {
    let entry = resolve(config, name).await?;
    let path = entry.path.clone();
    let file = tokio::task::spawn_blocking(move || GgufFile::open(&path))
        .await?
        .with_context(|| format!("cannot read {}", entry.path.display()))?;
    // What `troupe serve` allocates: every slot gets its own context.
    let per_slot = ctx.unwrap_or(config.inference.context_length);
    let params = EstimateParams::for_slots(
        &file,
        per_slot,
        config.inference.parallel_slots,
        config.inference.batch_size,
        config.inference.gpu_layers,
    );
    let est = estimate(&file, &params).context("cannot estimate memory")?;
    if json {
        let value = serde_json::json!({
            "model": entry,
            "gguf_version": file.version,
            "tensors": file.tensors.len(),
            "memory_estimate": {
                "context_length": params.context_length / params.parallel_sequences.max(1),
                "parallel_slots": params.parallel_sequences,
                "weights": est.weights,
                "kv_cache": est.kv_cache,
                "compute": est.compute,
                "total": est.total(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("name            {}", entry.name);
    println!("path            {}", entry.path.display());
    println!("source          {}", entry.source);
    println!("architecture    {}", entry.architecture);
    println!(
        "parameters      {} ({})",
        human_count(entry.parameters),
        entry.parameters
    );
    println!("quantization    {}", entry.quantization);
    match entry.context_length {
        Some(c) => println!("context length  {c}"),
        None => println!("context length  (not in metadata)"),
    }
    println!("file size       {}", format_bytes(entry.file_size));
    println!(
        "chat template   {}",
        if entry.has_chat_template { "yes" } else { "no" }
    );
    println!(
        "gguf            v{}, {} tensors",
        file.version,
        file.tensors.len()
    );
    println!(
        "memory for {} slots of {} tokens: weights {} + KV cache {} + compute {} = {}",
        params.parallel_sequences,
        params.context_length / params.parallel_sequences.max(1),
        format_bytes(est.weights),
        format_bytes(est.kv_cache),
        format_bytes(est.compute),
        format_bytes(est.total())
    );
    Ok(())
}

async fn pull_model(config: &Config, spec: &str, revision: Option<String>) -> anyhow::Result<()> {
    let mut request = PullRequest::parse_spec(spec, config.models.hf_cache.clone())
        .with_context(|| format!("bad model spec `{spec}`"))?;
    request.revision = revision;
    request.endpoint = Some(config.models.hf_endpoint.clone());
    let bar = Arc::new(DownloadBar::new());
    let path = pull(&request, bar)
        .await
        .with_context(|| format!("cannot pull {spec}"))?;
    println!("{}", path.display());
    Ok(())
}

async fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let spec = SynthSpec {
        shape: args.shape,
        quant: args.quant,
        seed: args.seed,
    };
    let bar = spinner(format!("writing {} {} model", args.shape, args.quant));
    let out = args.out.clone();
    let report = tokio::task::spawn_blocking(move || write_synthetic(&out, &spec))
        .await?
        .with_context(|| format!("cannot write {}", args.out.display()));
    bar.finish_and_clear();
    let report = report?;
    println!(
        "{}: {} parameters, {}",
        report.path.display(),
        human_count(report.parameters),
        format_bytes(report.file_size)
    );
    Ok(())
}

/// 1234567 → "1.2M".
pub(super) fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
