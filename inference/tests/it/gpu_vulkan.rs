//! The llama.cpp engine with every layer offloaded to a Vulkan device, on
//! synthetic models. Built only with `--features vulkan`;
//! `benches/vulkan.sh` runs it on Mesa's lavapipe (a Vulkan device that
//! runs on the CPU), which ggml-vulkan only uses when told to with
//! `GGML_VK_VISIBLE_DEVICES=0`.
//!
//! Without a Vulkan device these tests fail rather than skip: a vulkan build
//! that quietly ran on the CPU would pass them and prove nothing.

#![cfg(feature = "vulkan")]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use troupe_inference::backend::{
    Backend, Constraint, FinishReason, GenerateRequest, GenerationResult, LoadOptions, LoadedModel,
    Prompt,
};
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;
use troupe_inference::{device, schema};
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// More layers than any synthetic model has: llama.cpp offloads them all.
const ALL_LAYERS: u32 = 999;

const NO_DEVICE: &str = "llama.cpp found no Vulkan device. Install a Vulkan driver \
    (on a machine without a GPU: apt-get install mesa-vulkan-drivers, then run with \
    GGML_VK_VISIBLE_DEVICES=0, since ggml-vulkan skips CPU devices unless told); \
    benches/vulkan.sh does both";

// ---------------------------------------------------------------------------
// llama.cpp's log, read back through `tracing` (the engine forwards every
// line to the `llama_cpp` target): it is the only place llama.cpp says where
// the layers went.

#[derive(Default)]
struct LlamaLog {
    lines: Mutex<Vec<String>>,
}

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for &'static LlamaLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "llama_cpp"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(&mut Message(&mut line));
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn llama_log() -> &'static LlamaLog {
    static LOG: OnceLock<&'static LlamaLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static LlamaLog = Box::leak(Box::default());
        tracing::subscriber::set_global_default(log).expect("no other subscriber in this binary");
        log
    })
}

/// Loads one model at a time, so the log lines returned are this load's own.
async fn load_logged(path: &Path, options: LoadOptions) -> (Arc<dyn LoadedModel>, Vec<String>) {
    static ONE_LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_LOAD.lock().await;
    let log = llama_log();
    log.lines.lock().expect("log lock").clear();
    let model = LlamaEngine::new()
        .load(path, options)
        .await
        .unwrap_or_else(|e| panic!("model loads: {e}. {NO_DEVICE}"));
    let lines = std::mem::take(&mut *log.lines.lock().expect("log lock"));
    (model, lines)
}

/// `(offloaded, offloadable)` from llama.cpp's "offloaded N/M layers to GPU".
fn offloaded_layers(lines: &[String]) -> Option<(u32, u32)> {
    let line = lines
        .iter()
        .find(|l| l.contains("offloaded ") && l.contains(" layers to GPU"))?;
    let (_, counts) = line.split_once("offloaded ")?;
    let (done, rest) = counts.split_once('/')?;
    let total = rest.split_whitespace().next()?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

// ---------------------------------------------------------------------------

struct Models {
    _dir: tempfile::TempDir,
    tiny: PathBuf,
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let tiny = dir.path().join("tiny-f32.gguf");
        let spec = SynthSpec {
            shape: SynthShape::Tiny,
            quant: SynthQuant::F32,
            seed: 7,
        };
        write_synthetic(&tiny, &spec).expect("write tiny model");
        Models { _dir: dir, tiny }
    })
}

fn opts(context_length: u32, parallel_slots: u32, gpu_layers: u32) -> LoadOptions {
    LoadOptions {
        context_length,
        parallel_slots,
        threads: Some(1),
        gpu_layers,
        ..LoadOptions::default()
    }
}

fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens,
        ..GenerateRequest::text(prompt)
    }
}

async fn result_of(model: &dyn LoadedModel, req: GenerateRequest) -> GenerationResult {
    let stream = model.generate(req).expect("request accepted");
    stream.into_result().await.expect("generation succeeds")
}

/// Tiny with every layer on the Vulkan device; checks that llama.cpp put
/// them there.
async fn offloaded_tiny(context_length: u32, parallel_slots: u32) -> Arc<dyn LoadedModel> {
    let (model, lines) = load_logged(
        &models().tiny,
        opts(context_length, parallel_slots, ALL_LAYERS),
    )
    .await;
    let n_layer = model.info().n_layer;
    // llama.cpp counts the output layer as one more.
    assert_eq!(
        offloaded_layers(&lines),
        Some((n_layer + 1, n_layer + 1)),
        "every layer offloaded; llama.cpp said: {lines:#?}"
    );
    for buffer in ["Vulkan0 model buffer size", "Vulkan0 KV buffer size"] {
        assert!(
            lines.iter().any(|l| l.contains(buffer)),
            "no `{buffer}` line; llama.cpp said: {lines:#?}"
        );
    }
    model
}

#[tokio::test]
async fn llama_cpp_finds_a_vulkan_device() {
    // Loading initialises llama.cpp's backends, which list the devices.
    let _model = offloaded_tiny(256, 1).await;
    assert_eq!(device::require_gpu("vulkan"), Ok(()));
    let devices = llama_cpp_2::list_llama_ggml_backend_devices();
    let vulkan: Vec<_> = devices.iter().filter(|d| d.backend == "Vulkan").collect();
    for d in &vulkan {
        eprintln!(
            "{}: {} ({} MiB)",
            d.name,
            d.description,
            d.memory_total >> 20
        );
    }
    assert!(!vulkan.is_empty(), "{NO_DEVICE}; devices: {devices:?}");
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum::<f64>()
    };
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

const PROMPTS: [&str; 4] = [
    "Once upon a time",
    "The quick brown fox",
    "1 2 3 4 5",
    "Hello, world",
];

/// The offloaded forward pass computes what the CPU computes, up to
/// rounding: the last hidden states (embeddings) of the same model agree.
/// Greedy text is compared too, but only reported: on a random-weight model
/// the top logits are often nearly tied, and Vulkan's kernels (f16
/// activations in some matrix products, other summation orders) legitimately
/// flip such ties, after which the texts part.
#[tokio::test]
async fn offloaded_forward_pass_matches_the_cpu_and_memory_is_measured() {
    let cpu = load_logged(&models().tiny, opts(512, 1, 0)).await.0;
    let gpu = offloaded_tiny(512, 1).await;
    assert_eq!(gpu.info().gpu_layers, ALL_LAYERS);
    // The KV cache lives in a Vulkan buffer and is still accounted (before
    // `embed` adds its own context):
    // Tiny: 2 layers × (K + V) × 32 wide × f16 per token, 512 tokens.
    let memory = gpu.memory();
    assert!(memory.measured, "llama.cpp's buffer sizes were captured");
    let expected_kv: u64 = 512 * 2 * 2 * 32 * 2;
    assert!(
        memory.kv_cache.abs_diff(expected_kv) <= 10 * 1024,
        "kv {} vs {expected_kv}",
        memory.kv_cache
    );
    assert!(memory.compute > 0);

    let inputs: Vec<String> = PROMPTS.iter().map(|p| (*p).to_owned()).collect();
    let on_cpu = cpu.embed(inputs.clone()).await.expect("cpu embeddings");
    let on_gpu = gpu.embed(inputs).await.expect("vulkan embeddings");
    assert_eq!(on_gpu.prompt_tokens, on_cpu.prompt_tokens);
    for ((prompt, c), g) in PROMPTS.iter().zip(&on_cpu.vectors).zip(&on_gpu.vectors) {
        let similarity = cosine(c, g);
        let largest = c
            .iter()
            .zip(g)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        eprintln!(
            "{prompt:?}: cosine(cpu, vulkan) = {similarity:.8}, largest difference {largest:e}"
        );
        assert!(similarity > 0.9999, "{prompt:?}: cosine {similarity}");
    }

    let mut same_text = 0;
    for prompt in PROMPTS {
        let c = result_of(&*cpu, greedy(prompt, 24)).await;
        let g = result_of(&*gpu, greedy(prompt, 24)).await;
        assert!(!g.text.is_empty());
        assert_eq!(g.usage.prompt_tokens, c.usage.prompt_tokens);
        // Same device, same request: the same text, bit for bit.
        let again = result_of(&*gpu, greedy(prompt, 24)).await;
        assert_eq!(again.text, g.text, "{prompt:?}: vulkan is deterministic");
        if g.text == c.text {
            same_text += 1;
        } else {
            eprintln!("{prompt:?}: cpu {:?} vs vulkan {:?}", c.text, g.text);
        }
    }
    eprintln!(
        "greedy text identical to the cpu's for {same_text} of {} prompts",
        PROMPTS.len()
    );
}

/// Continuous batching on the device: requests decoded together each get a
/// whole, deterministic answer. (Rows of a batch go through other Vulkan
/// kernels than a lone row, so a batched text may part from its lone run
/// at a near-tie, unlike on the CPU.)
#[tokio::test]
async fn offloaded_concurrent_streams_complete_and_agree_with_each_other() {
    let model = offloaded_tiny(256, 4).await;
    let same: Vec<_> = (0..4)
        .map(|_| model.generate(greedy(PROMPTS[1], 16)).expect("accepted"))
        .collect();
    let mut texts = Vec::new();
    for stream in same {
        texts.push(stream.into_result().await.expect("result").text);
    }
    assert!(!texts[0].is_empty());
    assert!(texts.iter().all(|t| *t == texts[0]), "{texts:?}");

    let mixed: Vec<_> = PROMPTS
        .iter()
        .map(|prompt| model.generate(greedy(prompt, 16)).expect("accepted"))
        .collect();
    for (stream, prompt) in mixed.into_iter().zip(PROMPTS) {
        let result = stream.into_result().await.expect("result");
        let prompt_tokens = model.count_tokens(prompt).expect("tokenize");
        assert_eq!(result.usage.prompt_tokens as usize, prompt_tokens);
        match result.finish {
            FinishReason::Length => assert_eq!(result.usage.completion_tokens, 16),
            FinishReason::Stop => assert!((1..=16).contains(&result.usage.completion_tokens)),
            other => panic!("{prompt:?}: unexpected finish {other:?}"),
        }
    }
}

#[tokio::test]
async fn offloaded_json_schema_output_parses_and_validates() {
    let model = offloaded_tiny(1024, 1).await;
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "kind": {"enum": ["cat", "dog", "bird"]},
            "tags": {"type": "array", "items": {"type": "integer"}, "maxItems": 3}
        },
        "required": ["name", "kind", "tags"]
    });
    for seed in 1..=3 {
        let req = GenerateRequest {
            sampling: SamplingOptions {
                seed: Some(seed),
                ..SamplingOptions::default()
            },
            max_tokens: 400,
            constraint: Some(Constraint::JsonSchema(schema.clone())),
            ..GenerateRequest::text("Describe a pet as JSON:")
        };
        let result = result_of(&*model, req).await;
        assert_eq!(result.finish, FinishReason::Stop, "seed {seed}: {result:?}");
        let value: serde_json::Value = serde_json::from_str(&result.text).expect("output is JSON");
        schema::validate(&schema, &value)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", result.text));
    }
}

/// Prompt and generation speed on the "small" synthetic model (Q8_0), like
/// llama-bench's pp512 and tg128; prints one markdown table row. Layers
/// offloaded: `TROUPE_BENCH_GPU_LAYERS` (default all). Run by
/// `benches/vulkan.sh` with `--ignored --nocapture`; speed is printed, never
/// asserted.
#[tokio::test]
#[ignore = "writes a 40 MB model; prints throughput"]
async fn speed_on_small_q8_0() {
    let gpu_layers = std::env::var("TROUPE_BENCH_GPU_LAYERS")
        .ok()
        .map(|v| {
            v.parse::<u32>()
                .expect("TROUPE_BENCH_GPU_LAYERS is a number")
        })
        .unwrap_or(ALL_LAYERS);
    let label = std::env::var("TROUPE_BENCH_LABEL").unwrap_or_else(|_| "vulkan".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("small-q8_0.gguf");
    let spec = SynthSpec {
        shape: SynthShape::Small,
        quant: SynthQuant::Q8_0,
        seed: 1,
    };
    write_synthetic(&path, &spec).expect("write small model");
    let options = LoadOptions {
        context_length: 1024,
        threads: Some(2),
        gpu_layers,
        ..LoadOptions::default()
    };
    let (model, lines) = load_logged(&path, options).await;
    let offloaded = offloaded_layers(&lines).unwrap_or((0, model.info().n_layer + 1));
    let n_vocab = i32::try_from(model.info().n_vocab).expect("vocab fits i32");
    // 512 prompt tokens spread over the vocabulary, decoded in one batch.
    let prompt: Vec<i32> = (0..512).map(|i| 1 + (i * 131) % (n_vocab - 1)).collect();
    let request = || GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens: 128,
        ignore_eos: true,
        ..GenerateRequest::new(Prompt::Tokens(prompt.clone()))
    };
    // One warm-up run (shader pipelines, first-touch pages), then three.
    result_of(&*model, request()).await;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let result = result_of(&*model, request()).await;
        assert_eq!(result.usage.completion_tokens, 128);
        pp.push(result.timings.prompt_tokens_per_s);
        tg.push(result.timings.generation_tokens_per_s);
    }
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        format!("{mean:.2} ± {:.2}", var.sqrt())
    };
    println!(
        "| {label} | {}/{} | {} | {} |",
        offloaded.0,
        offloaded.1,
        stats(&pp),
        stats(&tg)
    );
}
