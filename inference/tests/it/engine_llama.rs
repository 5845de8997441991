//! The llama.cpp engine end to end, on synthetic models written to a
//! temporary directory. One test binary, because llama.cpp's backend is
//! initialised once per process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::json;
use troupe_inference::backend::{
    Backend, Constraint, FinishReason, GenerateError, GenerateRequest, GenerationEvent,
    GenerationResult, LoadError, LoadOptions, LoadedModel,
};
use troupe_inference::chat::tool_calls::{CallRules, ToolFunction, ToolSyntax};
use troupe_inference::chat::{render_chatml, ChatMessage};
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;
use troupe_inference::{device, schema};
use troupe_models::gguf::GgufFile;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// A grammar that never completes, so the model can never end on its own.
const ENDLESS: &str = "root ::= [a-z] root\n";

struct Models {
    _dir: tempfile::TempDir,
    tiny: PathBuf,
    no_template: PathBuf,
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
        // Same model with the chat template key renamed (same length, so the
        // file stays valid): llama.cpp sees no template.
        let mut bytes = std::fs::read(&tiny).expect("read tiny model");
        let key = b"tokenizer.chat_template";
        let at = bytes
            .windows(key.len())
            .position(|w| w == key)
            .expect("template key present");
        bytes[at + key.len() - 1] = b'X';
        let no_template = dir.path().join("tiny-no-template.gguf");
        std::fs::write(&no_template, bytes).expect("write model without template");
        Models {
            _dir: dir,
            tiny,
            no_template,
        }
    })
}

fn opts(context_length: u32, parallel_slots: u32) -> LoadOptions {
    LoadOptions {
        context_length,
        parallel_slots,
        threads: Some(1),
        ..LoadOptions::default()
    }
}

async fn load(path: &Path, options: LoadOptions) -> Arc<dyn LoadedModel> {
    LlamaEngine::new()
        .load(path, options)
        .await
        .expect("model loads")
}

fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens,
        ..GenerateRequest::text(prompt)
    }
}

/// Runs a request to its end; returns the streamed pieces and the result.
async fn run(model: &dyn LoadedModel, req: GenerateRequest) -> (Vec<String>, GenerationResult) {
    let mut stream = model.generate(req).expect("request accepted");
    let mut pieces = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token(piece) => pieces.push(piece),
            GenerationEvent::Done(result) => return (pieces, result),
            GenerationEvent::Error(error) => panic!("generation failed: {error}"),
        }
    }
    panic!("stream ended without a result");
}

async fn text_of(model: &dyn LoadedModel, req: GenerateRequest) -> String {
    run(model, req).await.1.text
}

#[tokio::test]
async fn streamed_pieces_add_up_to_the_result_with_counts_timings_and_memory() {
    let model = load(&models().tiny, opts(512, 1)).await;
    let prompt = "Once upon a time";
    let (pieces, result) = run(&*model, greedy(prompt, 24)).await;
    assert_eq!(pieces.concat(), result.text);
    assert!(!result.text.is_empty());
    let prompt_tokens = model.count_tokens(prompt).expect("tokenize");
    assert_eq!(result.usage.prompt_tokens as usize, prompt_tokens);
    assert_eq!(result.usage.cached_prompt_tokens, 0);
    match result.finish {
        FinishReason::Length => assert_eq!(result.usage.completion_tokens, 24),
        FinishReason::Stop => assert!((1..=24).contains(&result.usage.completion_tokens)),
        other => panic!("unexpected finish {other:?}"),
    }
    let t = result.timings;
    assert!(t.time_to_first_token_ms > 0.0 && t.prompt_ms > 0.0 && t.prompt_tokens_per_s > 0.0);
    if result.usage.completion_tokens > 1 {
        assert!(t.generation_ms > 0.0 && t.generation_tokens_per_s > 0.0);
    }

    let memory = model.memory();
    let gguf = GgufFile::open(&models().tiny).expect("open gguf");
    assert_eq!(memory.weights, gguf.tensor_bytes());
    assert!(memory.measured, "llama.cpp's buffer sizes were captured");
    // Tiny: 2 layers × (K + V) × 32 wide × f16 per token, 512 tokens;
    // llama.cpp logs sizes to 0.01 MiB.
    let expected_kv: u64 = 512 * 2 * 2 * 32 * 2;
    assert!(
        memory.kv_cache.abs_diff(expected_kv) <= 10 * 1024,
        "kv {} vs {expected_kv}",
        memory.kv_cache
    );
    assert!(memory.compute > 0);
    let info = model.info();
    assert_eq!(
        (info.context_length, info.parallel_slots, info.n_vocab),
        (512, 1, 320)
    );
}

#[tokio::test]
async fn the_same_prompt_and_seed_give_the_same_text() {
    let model = load(&models().tiny, opts(512, 1)).await;
    let a = text_of(&*model, greedy("The weather today", 20)).await;
    let b = text_of(&*model, greedy("The weather today", 20)).await;
    assert_eq!(a, b);
    let seeded = |seed| GenerateRequest {
        sampling: SamplingOptions {
            seed: Some(seed),
            ..SamplingOptions::default()
        },
        max_tokens: 20,
        ..GenerateRequest::text("The weather today")
    };
    assert_eq!(
        text_of(&*model, seeded(11)).await,
        text_of(&*model, seeded(11)).await
    );
}

#[tokio::test]
async fn concurrent_streams_equal_their_lone_runs() {
    let model = load(&models().tiny, opts(256, 4)).await;
    let prompts = [
        "alpha beta",
        "The quick brown fox",
        "1 2 3 4 5",
        "Hello, world",
    ];
    let mut lone = Vec::new();
    for prompt in prompts {
        lone.push(text_of(&*model, greedy(prompt, 16)).await);
    }
    // Four streams of one prompt at once.
    let same: Vec<_> = (0..4)
        .map(|_| model.generate(greedy(prompts[1], 16)).expect("accepted"))
        .collect();
    for stream in same {
        assert_eq!(stream.into_result().await.expect("result").text, lone[1]);
    }
    // Four different prompts at once: each as if it ran alone.
    let mixed: Vec<_> = prompts
        .iter()
        .map(|prompt| model.generate(greedy(prompt, 16)).expect("accepted"))
        .collect();
    for (stream, expected) in mixed.into_iter().zip(&lone) {
        assert_eq!(&stream.into_result().await.expect("result").text, expected);
    }
}

#[tokio::test]
async fn prompts_longer_than_a_batch_are_chunked_to_the_same_output() {
    let prompt = "The history of the river begins in the mountains, where snow melts each spring. "
        .repeat(3);
    let whole = load(&models().tiny, opts(512, 1)).await;
    let expected = text_of(&*whole, greedy(&prompt, 12)).await;
    assert!(whole.count_tokens(&prompt).expect("tokenize") > 3 * 16);
    let chunked = load(
        &models().tiny,
        LoadOptions {
            batch_size: 16,
            ..opts(512, 2)
        },
    )
    .await;
    assert_eq!(chunked.info().batch_size, 16);
    // Two long prompts at once share each 16-token batch with each other's
    // generated tokens.
    let a = chunked.generate(greedy(&prompt, 12)).expect("accepted");
    let b = chunked.generate(greedy(&prompt, 12)).expect("accepted");
    assert_eq!(a.into_result().await.expect("result").text, expected);
    assert_eq!(b.into_result().await.expect("result").text, expected);
}

#[tokio::test]
async fn cancelling_stops_the_request_and_frees_the_slot() {
    let model = load(&models().tiny, opts(512, 1)).await;
    let endless = || GenerateRequest {
        constraint: Some(Constraint::Grammar(ENDLESS.into())),
        ..greedy("abc", 400)
    };
    // cancel(): the stream ends with a Cancelled result.
    let mut stream = model.generate(endless()).expect("accepted");
    for _ in 0..3 {
        assert!(matches!(
            stream.next().await,
            Some(GenerationEvent::Token(_))
        ));
    }
    stream.cancel();
    let result = stream.into_result().await.expect("result");
    assert_eq!(result.finish, FinishReason::Cancelled);
    assert!(result.usage.completion_tokens < 400);

    // Dropping the stream frees the only slot for the next request.
    let mut stream = model.generate(endless()).expect("accepted");
    assert!(matches!(
        stream.next().await,
        Some(GenerationEvent::Token(_))
    ));
    drop(stream);
    let (_, next) = run(&*model, greedy("next", 4)).await;
    assert!(next.usage.completion_tokens >= 1);
}

#[tokio::test]
async fn max_tokens_and_stop_strings_end_generation() {
    let model = load(&models().tiny, opts(512, 1)).await;
    let req = GenerateRequest {
        constraint: Some(Constraint::Grammar(ENDLESS.into())),
        ..greedy("count", 9)
    };
    let (pieces, result) = run(&*model, req).await;
    assert_eq!(result.finish, FinishReason::Length);
    assert_eq!(result.usage.completion_tokens, 9);
    assert_eq!(pieces.concat(), result.text);

    let full = text_of(&*model, greedy("A stop string test", 40)).await;
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 8, "need some output to cut: {full:?}");
    let stop: String = chars[5..7].iter().collect();
    let cut = full.find(&stop).expect("stop string occurs");
    let req = GenerateRequest {
        stop: vec![stop.clone()],
        ..greedy("A stop string test", 40)
    };
    let (pieces, result) = run(&*model, req).await;
    assert_eq!(
        result.finish,
        FinishReason::StopString,
        "stop {stop:?} in {full:?}"
    );
    assert_eq!(result.text, full[..cut]);
    assert_eq!(pieces.concat(), result.text);
}

#[tokio::test]
async fn json_schema_output_parses_and_validates_for_several_seeds() {
    let model = load(&models().tiny, opts(1024, 1)).await;
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "kind": {"enum": ["cat", "dog", "bird"]},
            "tags": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
            "owner": {
                "type": "object",
                "properties": {"age": {"type": "integer"}, "vip": {"type": "boolean"}},
                "required": ["age", "vip"]
            }
        },
        "required": ["name", "kind", "tags", "owner"]
    });
    for seed in 1..=6 {
        let req = GenerateRequest {
            sampling: SamplingOptions {
                seed: Some(seed),
                ..SamplingOptions::default()
            },
            max_tokens: 600,
            constraint: Some(Constraint::JsonSchema(schema.clone())),
            ..GenerateRequest::text("Describe a pet as JSON:")
        };
        let (pieces, result) = run(&*model, req).await;
        assert_eq!(
            result.finish,
            FinishReason::Stop,
            "seed {seed}: {:?}",
            result.text
        );
        eprintln!("seed {seed}: {pieces:?} {:?}", result.usage);
        let value: serde_json::Value = serde_json::from_str(&result.text).expect("output is JSON");
        schema::validate(&schema, &value)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", result.text));
    }
    let req = GenerateRequest {
        constraint: Some(Constraint::Json),
        max_tokens: 300,
        ..greedy("JSON:", 300)
    };
    let (_, result) = run(&*model, req).await;
    if result.finish == FinishReason::Stop {
        serde_json::from_str::<serde_json::Value>(&result.text).expect("generic JSON parses");
    }
}

/// Issue 17: each call syntax's grammar is one llama.cpp takes, a required
/// call of a random-weight model reads back as calls whose arguments match
/// the schema, and a lazy grammar leaves text free until its trigger.
#[tokio::test]
async fn every_tool_call_syntax_forces_calls_that_read_back() {
    let model = load(&models().tiny, opts(1024, 1)).await;
    let weather = ToolFunction {
        name: "get_weather".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 8}},
            "required": ["city"],
        }),
    };
    for syntax in [
        ToolSyntax::Hermes,
        ToolSyntax::MistralNemo,
        ToolSyntax::Llama3,
    ] {
        let mut read = 0;
        for seed in 1..=3 {
            let rules = CallRules {
                required: true,
                parallel: seed == 2,
            };
            let req = GenerateRequest {
                sampling: SamplingOptions {
                    seed: Some(seed),
                    ..SamplingOptions::default()
                },
                max_tokens: 400,
                constraint: Some(
                    syntax
                        .constraint(std::slice::from_ref(&weather), rules)
                        .unwrap(),
                ),
                ..GenerateRequest::text("Call a tool:")
            };
            let (_, result) = run(&*model, req).await;
            if result.finish == FinishReason::Length {
                // A random model may wander in a string until the limit.
                continue;
            }
            let answer = syntax
                .parse(&result.text)
                .unwrap_or_else(|e| panic!("{syntax:?} seed {seed}: {e}: {:?}", result.text))
                .unwrap_or_else(|| panic!("{syntax:?} seed {seed}: no call: {:?}", result.text));
            assert_eq!(answer.content, "");
            assert!(!answer.calls.is_empty());
            for call in answer.calls {
                assert_eq!(call.name, "get_weather");
                schema::validate(&weather.parameters, &call.arguments)
                    .unwrap_or_else(|e| panic!("{syntax:?} seed {seed}: {e}"));
            }
            read += 1;
        }
        assert!(
            read > 0,
            "{syntax:?}: every forced call ran to the length limit"
        );
        // Lazy: llama.cpp takes the grammar and its trigger; the random
        // model's text is free (it need not ever open a call).
        let rules = CallRules {
            required: false,
            parallel: true,
        };
        let req = GenerateRequest {
            constraint: Some(
                syntax
                    .constraint(std::slice::from_ref(&weather), rules)
                    .unwrap(),
            ),
            ..greedy("Say something:", 24)
        };
        let (_, result) = run(&*model, req).await;
        let (_, unconstrained) = run(&*model, greedy("Say something:", 24)).await;
        // Up to the first malformed character (which the grammar's guard
        // refuses even before the trigger), the text is the free one.
        let valid = unconstrained
            .text
            .find('\u{FFFD}')
            .unwrap_or(unconstrained.text.len());
        if !result.text.contains(syntax.opener()) {
            assert!(
                result.text.starts_with(&unconstrained.text[..valid]),
                "{syntax:?}: text before a call is free: {:?} / {:?}",
                result.text,
                unconstrained.text
            );
        }
    }
}

/// The tool-call syntax a loaded model reports is its template's, and only
/// when the Jinja engine renders with it (llama.cpp's fallback matcher,
/// used for a template it cannot compile, knows no tools).
#[tokio::test]
async fn a_model_reports_its_templates_tool_syntax_only_when_jinja_renders_it() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools.gguf");
    troupe_testkit::models::with_chat_template(
        &models().tiny,
        &tools,
        troupe_testkit::models::CHATML_TOOLS_TEMPLATE,
    );
    let broken = dir.path().join("broken.gguf");
    troupe_testkit::models::with_chat_template(
        &models().tiny,
        &broken,
        "{% if tools %}<tool_call>{% for %}",
    );
    let syntax = |model: Arc<dyn LoadedModel>| model.info().tool_syntax;
    assert_eq!(
        syntax(load(&tools, opts(256, 1)).await),
        Some(ToolSyntax::Hermes)
    );
    assert_eq!(syntax(load(&models().tiny, opts(256, 1)).await), None);
    assert_eq!(syntax(load(&broken, opts(256, 1)).await), None);
}

/// A control token named in `preserved` (a tool-call marker such as
/// Mistral's `[TOOL_CALLS]`) may be generated under a grammar and is
/// written into the text; without it the grammar's guard refuses it and the
/// marker can only be spelled out in ordinary tokens.
#[tokio::test]
async fn a_preserved_control_token_is_generated_and_written_as_text() {
    let model = load(&models().tiny, opts(1024, 1)).await;
    // Tokenizing as a prompt adds BOS first.
    let marker = model.tokenize("<|im_start|>").unwrap();
    let [_, marker] = marker[..] else {
        panic!("<|im_start|> is one token: {marker:?}");
    };
    // A flat distribution over what the grammar allows: the marker token,
    // when allowed, is picked for some seeds.
    let request = |preserved: Vec<String>, seed: u32| GenerateRequest {
        constraint: Some(Constraint::Grammar("root ::= \"<|im_start|>\"".into())),
        preserved,
        sampling: SamplingOptions {
            temperature: 50.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(seed),
            ..SamplingOptions::default()
        },
        max_tokens: 16,
        ..GenerateRequest::text("Open a turn:")
    };
    let (mut kept, mut spelled) = (0, 0);
    for seed in 1..=12 {
        let (_, with) = run(&*model, request(vec!["<|im_start|>".into()], seed)).await;
        assert_eq!(with.text, "<|im_start|>", "seed {seed}: {:?}", with.tokens);
        kept += usize::from(with.tokens.contains(&marker));
        let (_, without) = run(&*model, request(Vec::new(), seed)).await;
        assert_eq!(without.text, "<|im_start|>", "seed {seed}");
        spelled += usize::from(without.tokens.contains(&marker));
    }
    assert!(kept > 0, "the marker token was never picked where allowed");
    assert_eq!(
        spelled, 0,
        "a control token the request did not name is refused"
    );
}

#[tokio::test]
async fn chats_render_with_the_model_template_or_the_chatml_fallback() {
    let messages = vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Hi there"),
    ];
    let model = load(&models().tiny, opts(512, 1)).await;
    assert!(model.info().chat_template.is_some());
    let rendered = model.render_chat(&messages).expect("render");
    assert!(
        rendered.contains("<|im_start|>user\nHi there<|im_end|>"),
        "{rendered}"
    );
    assert!(rendered.ends_with("<|im_start|>assistant\n"));
    // The template's markers are single control tokens, not their letters.
    let marker = model.tokenize("<|im_start|>").expect("tokenize");
    let letter = model.tokenize("x").expect("tokenize");
    assert_eq!(marker.len(), letter.len());

    let bare = load(&models().no_template, opts(512, 1)).await;
    assert_eq!(bare.info().chat_template, None);
    assert_eq!(
        bare.render_chat(&messages).expect("render"),
        render_chatml(&messages)
    );
    let (_, result) = run(
        &*bare,
        GenerateRequest {
            sampling: SamplingOptions::greedy(),
            max_tokens: 4,
            ..GenerateRequest::chat(messages)
        },
    )
    .await;
    assert!(result.usage.prompt_tokens > 5);
}

#[tokio::test]
async fn bad_requests_and_files_are_errors_not_aborts() {
    let model = load(&models().tiny, opts(64, 1)).await;
    let long = "word ".repeat(200);
    match model.generate(greedy(&long, 4)) {
        Err(e @ GenerateError::PromptTooLong { context: 64, .. }) => {
            assert!(e.to_string().contains("but the context holds 64"), "{e}");
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    match model.generate(greedy("hi", 500)) {
        Err(
            e @ GenerateError::MaxTokensTooLarge {
                max_tokens: 500,
                context: 64,
                ..
            },
        ) => {
            assert!(e
                .to_string()
                .starts_with("max_tokens 500 exceeds the context (64) minus the prompt"));
        }
        other => panic!("expected MaxTokensTooLarge, got {other:?}"),
    }
    assert!(matches!(
        model.generate(greedy("", 4)),
        Err(GenerateError::EmptyPrompt)
    ));
    assert!(matches!(
        model.generate(greedy("hi", 0)),
        Err(GenerateError::ZeroMaxTokens)
    ));
    for grammar in [
        "root ::= [a-z",
        "root ::= undefined_rule",
        "not a grammar",
        "root ::= root \"a\"",
    ] {
        let req = GenerateRequest {
            constraint: Some(Constraint::Grammar(grammar.into())),
            ..greedy("hi", 4)
        };
        assert!(
            matches!(
                model.generate(req),
                Err(GenerateError::InvalidGrammar { .. })
            ),
            "grammar {grammar:?} refused"
        );
    }
    let req = GenerateRequest {
        constraint: Some(Constraint::JsonSchema(
            json!({"type": "object", "patternProperties": {}}),
        )),
        ..greedy("hi", 4)
    };
    assert!(matches!(
        model.generate(req),
        Err(GenerateError::InvalidSchema(_))
    ));
    // The engine still works after all that.
    assert!(
        run(&*model, greedy("hi", 2))
            .await
            .1
            .usage
            .completion_tokens
            >= 1
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, b"this is not a model").expect("write");
    let bytes = std::fs::read(&models().tiny).expect("read");
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    for path in [not_gguf, truncated, dir.path().join("missing.gguf")] {
        let loaded = LlamaEngine::new().load(&path, opts(64, 1)).await;
        assert!(
            matches!(loaded, Err(LoadError::InvalidGguf { .. })),
            "{path:?}"
        );
    }
    if device::compiled_gpu_features().is_empty() {
        let gpu = LoadOptions {
            gpu_layers: 8,
            ..opts(64, 1)
        };
        let loaded = LlamaEngine::new().load(&models().tiny, gpu).await;
        match loaded {
            Err(e @ LoadError::GpuUnavailable { .. }) => {
                assert!(e.to_string().contains("--features"), "{e}")
            }
            Err(e) => panic!("expected GpuUnavailable, got {e}"),
            Ok(_) => panic!("expected GpuUnavailable, got a model"),
        }
    }
}

#[tokio::test]
async fn a_full_engine_answers_busy() {
    let options = LoadOptions {
        max_queued: 0,
        ..opts(512, 1)
    };
    let model = load(&models().tiny, options).await;
    let mut running = model
        .generate(GenerateRequest {
            constraint: Some(Constraint::Grammar(ENDLESS.into())),
            ..greedy("busy", 400)
        })
        .expect("accepted");
    assert!(matches!(
        running.next().await,
        Some(GenerationEvent::Token(_))
    ));
    match model.generate(greedy("another", 4)) {
        Err(
            e @ GenerateError::Busy {
                slots: 1,
                queued: 0,
            },
        ) => {
            assert_eq!(
                e.to_string(),
                "all 1 slots busy and 0 requests already waiting"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    running.cancel();
    assert_eq!(
        running.into_result().await.expect("result").finish,
        FinishReason::Cancelled
    );
    model.unload().await;
    assert!(matches!(
        model.generate(greedy("after", 2)),
        Err(GenerateError::Unloaded)
    ));
}

#[tokio::test]
async fn a_session_reuses_its_cached_prompt_and_matches_a_fresh_run() {
    let model = load(&models().tiny, opts(1024, 2)).await;
    let turn1 = vec![
        ChatMessage::system("You are terse."),
        ChatMessage::user("Name a colour."),
    ];
    let chat = |messages: Vec<ChatMessage>| GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens: 16,
        session: Some("conversation-1".into()),
        ..GenerateRequest::chat(messages)
    };
    let first = run(&*model, chat(turn1.clone())).await.1;
    let mut turn2 = turn1;
    turn2.push(ChatMessage::assistant(first.text.clone()));
    turn2.push(ChatMessage::user("Another one."));
    let second = run(&*model, chat(turn2.clone())).await.1;
    assert!(
        second.usage.cached_prompt_tokens >= first.usage.prompt_tokens,
        "cached {} < first prompt {}",
        second.usage.cached_prompt_tokens,
        first.usage.prompt_tokens
    );
    assert!(second.usage.cached_prompt_tokens < second.usage.prompt_tokens);

    let fresh = load(&models().tiny, opts(1024, 2)).await;
    let alone = run(&*fresh, chat(turn2)).await.1;
    assert_eq!(alone.usage.cached_prompt_tokens, 0);
    assert_eq!(alone.text, second.text);
}
