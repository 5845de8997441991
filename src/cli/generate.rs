//! `troupe generate`: one completion, streamed to stdout; usage and timings
//! to stderr.

use super::models::resolve;
use anyhow::{bail, Context};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use troupe_config::Config;
use troupe_inference::backend::{
    Constraint, GenerateRequest, GenerationEvent, LoadOptions, LoadedModel, Prompt,
};
use troupe_inference::chat::{ChatMessage, Role};
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;

#[derive(Debug, Args)]
pub(super) struct GenerateArgs {
    /// A catalog name or a path to a GGUF file.
    #[arg(short, long)]
    model: String,
    /// Constrain the output to this JSON Schema (a file).
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: u32,
    /// Sampling seed.
    #[arg(long)]
    seed: Option<u32>,
    /// Temperature; 0 picks the most likely token every time.
    #[arg(long)]
    temp: Option<f32>,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long)]
    top_k: Option<i32>,
    /// Nucleus sampling threshold.
    #[arg(long)]
    top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long)]
    min_p: Option<f32>,
    /// Penalty for repeating recent tokens (1 = off).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Send PROMPT as a user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message (implies --chat).
    #[arg(long)]
    system: Option<String>,
    /// Context length to load the model with (default: the configured one).
    #[arg(long)]
    ctx: Option<u32>,
    /// CPU threads (default: configured, else one per physical core).
    #[arg(short, long)]
    threads: Option<u32>,
    /// The prompt; `-` reads it from stdin.
    prompt: String,
}

pub(super) async fn run(args: GenerateArgs, config: &Config) -> anyhow::Result<()> {
    let prompt_text = if args.prompt == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the prompt from stdin")?;
        text
    } else {
        args.prompt.clone()
    };
    if prompt_text.is_empty() {
        bail!("the prompt is empty");
    }
    let constraint = match &args.json_schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read JSON schema {}", path.display()))?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            Some(Constraint::JsonSchema(schema))
        }
        None => None,
    };
    let entry = resolve(config, &args.model).await?;
    let opts = load_options(config, args.ctx, args.threads, 1);
    let engine = LlamaEngine::new();
    let model = engine
        .load_model(&entry.path, opts)
        .await
        .with_context(|| format!("cannot load {}", entry.path.display()))?;

    let prompt = if args.chat || args.system.is_some() {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new(Role::System, system.clone()));
        }
        messages.push(ChatMessage::new(Role::User, prompt_text));
        Prompt::Chat(messages)
    } else {
        Prompt::Text(prompt_text)
    };
    let mut request = GenerateRequest::new(prompt);
    request.max_tokens = args.max_tokens;
    request.stop = args.stop.clone();
    request.constraint = constraint;
    request.sampling = sampling(&args);

    let mut stream = model.generate(request).context("generation refused")?;
    let mut stdout = std::io::stdout().lock();
    let result = loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = tokio::signal::ctrl_c() => {
                stream.cancel();
                continue;
            }
        };
        match event {
            Some(GenerationEvent::Token(piece)) => {
                stdout.write_all(piece.as_bytes())?;
                stdout.flush()?;
            }
            Some(GenerationEvent::Done(result)) => break result,
            Some(GenerationEvent::Error(err)) => return Err(err).context("generation failed"),
            None => bail!("the engine stopped before the generation finished"),
        }
    };
    writeln!(stdout)?;
    drop(stdout);
    let t = &result.timings;
    let u = &result.usage;
    eprintln!(
        "finish: {:?} | prompt {} tokens ({} cached), completion {} tokens | ttft {:.1} ms | prompt {:.1} tok/s | generation {:.1} tok/s",
        result.finish,
        u.prompt_tokens,
        u.cached_prompt_tokens,
        u.completion_tokens,
        t.time_to_first_token_ms,
        t.prompt_tokens_per_s,
        t.generation_tokens_per_s
    );
    model.unload().await;
    Ok(())
}

fn sampling(args: &GenerateArgs) -> SamplingOptions {
    let mut s = SamplingOptions::default();
    if let Some(v) = args.temp {
        s.temperature = v;
    }
    if let Some(v) = args.top_k {
        s.top_k = v;
    }
    if let Some(v) = args.top_p {
        s.top_p = v;
    }
    if let Some(v) = args.min_p {
        s.min_p = v;
    }
    if let Some(v) = args.repeat_penalty {
        s.repeat_penalty = v;
    }
    s.seed = args.seed;
    s
}

/// Load options from the configuration, with command-line overrides.
pub(super) fn load_options(
    config: &Config,
    ctx: Option<u32>,
    threads: Option<u32>,
    slots: u32,
) -> LoadOptions {
    LoadOptions {
        context_length: ctx.unwrap_or(config.inference.context_length),
        parallel_slots: slots,
        batch_size: config.inference.batch_size,
        threads: threads.or(config.inference.threads),
        gpu_layers: config.inference.gpu_layers,
        repack: config.inference.repack,
        ..LoadOptions::default()
    }
}
