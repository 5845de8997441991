//! The scripted backend: rule matching, streaming, request limits,
//! constraints, cancellation, unloading and determinism.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tempfile::TempDir;
use troupe_inference::backend::{
    Backend, Constraint, FinishReason, GenerateError, GenerateRequest, GenerationEvent,
    GenerationResult, LoadError, LoadOptions, LoadedModel,
};
use troupe_inference::chat::ChatMessage;
use troupe_inference::scripted::{Rule, Script, ScriptError, ScriptedBackend, ScriptedCall};

/// A directory holding empty "model files" with the given stems.
fn model_files(stems: &[&str]) -> (TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = stems
        .iter()
        .map(|stem| {
            let path = dir.path().join(format!("{stem}.gguf"));
            std::fs::write(&path, b"GGUF").expect("write model file");
            path
        })
        .collect();
    (dir, paths)
}

fn script(rules: Vec<Rule>, default: Option<&str>) -> Script {
    Script {
        rules,
        default: default.map(str::to_owned),
        ..Script::default()
    }
}

async fn load(backend: &ScriptedBackend, path: &Path) -> Arc<dyn LoadedModel> {
    backend
        .load(path, LoadOptions::default())
        .await
        .expect("load scripted model")
}

async fn answer(model: &dyn LoadedModel, req: GenerateRequest) -> GenerationResult {
    model
        .generate(req)
        .expect("request accepted")
        .into_result()
        .await
        .expect("request succeeded")
}

async fn chat_text(model: &dyn LoadedModel, messages: Vec<ChatMessage>) -> String {
    answer(model, GenerateRequest::chat(messages)).await.text
}

#[tokio::test]
async fn first_matching_rule_answers_and_is_recorded() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![
            Rule::reply("weather")
                .when_contains("rain")
                .when_contains("today"),
            Rule::reply("rain in general").when_contains("rain"),
            Rule::reply("catch-all"),
        ],
        None,
    ));
    let model = load(&backend, &paths[0]).await;

    let both = chat_text(&*model, vec![ChatMessage::user("rain today?")]).await;
    let one = chat_text(&*model, vec![ChatMessage::user("rain tomorrow?")]).await;
    let none = chat_text(&*model, vec![ChatMessage::user("sunny?")]).await;

    assert_eq!(
        (both.as_str(), one.as_str(), none.as_str()),
        ("weather", "rain in general", "catch-all")
    );
    let rules: Vec<_> = backend.calls().iter().map(|call| call.rule).collect();
    assert_eq!(rules, [Some(0), Some(1), Some(2)]);
    assert_eq!(
        backend.calls()[0],
        ScriptedCall {
            model_stem: "general".to_owned(),
            last_message: "rain today?".to_owned(),
            rule: Some(0),
        }
    );
}

#[tokio::test]
async fn not_contains_skips_a_rule() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![
            Rule::reply("write code")
                .when_contains("write")
                .unless_contains("test"),
            Rule::reply("write tests").when_contains("write"),
        ],
        None,
    ));
    let model = load(&backend, &paths[0]).await;

    assert_eq!(
        chat_text(&*model, vec![ChatMessage::user("write a parser")]).await,
        "write code"
    );
    assert_eq!(
        chat_text(&*model, vec![ChatMessage::user("write a test")]).await,
        "write tests"
    );
}

#[tokio::test]
async fn model_filter_matches_part_of_the_file_stem() {
    let (_dir, paths) = model_files(&["qwen-coder-1.5b-q4", "planner-small"]);
    let backend = ScriptedBackend::new(script(
        vec![Rule::reply("from the coder").for_model("coder")],
        Some("from anyone else"),
    ));
    let coder = load(&backend, &paths[0]).await;
    let planner = load(&backend, &paths[1]).await;

    assert_eq!(
        chat_text(&*coder, vec![ChatMessage::user("hi")]).await,
        "from the coder"
    );
    assert_eq!(
        chat_text(&*planner, vec![ChatMessage::user("hi")]).await,
        "from anyone else"
    );
    let calls = backend.calls();
    assert_eq!(calls[1].model_stem, "planner-small");
    assert_eq!(calls[1].rule, None);
}

#[tokio::test]
async fn anywhere_rules_see_every_message_others_only_the_last() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![
            Rule::reply("last only").when_contains("You are the planner"),
            Rule::reply("a plan")
                .when_contains("You are the planner")
                .anywhere(),
        ],
        None,
    ));
    let model = load(&backend, &paths[0]).await;

    let planned = chat_text(
        &*model,
        vec![
            ChatMessage::system("You are the planner."),
            ChatMessage::user("build a site"),
        ],
    )
    .await;
    // The last message counts whatever its role.
    let last_is_system = chat_text(
        &*model,
        vec![
            ChatMessage::user("build a site"),
            ChatMessage::system("You are the planner."),
        ],
    )
    .await;

    assert_eq!(planned, "a plan");
    assert_eq!(last_is_system, "last only");
}

#[tokio::test]
async fn text_prompts_are_matched_whole() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![Rule::reply("yes").when_contains("needle")],
        None,
    ));
    let model = load(&backend, &paths[0]).await;

    let result = answer(&*model, GenerateRequest::text("hay hay needle hay")).await;

    assert_eq!(result.text, "yes");
}

#[tokio::test]
async fn no_match_and_no_default_fails_quoting_the_last_message() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(vec![Rule::reply("x").when_contains("never")], None));
    let model = load(&backend, &paths[0]).await;
    let long = format!("please do this {}", "z".repeat(500));

    let error = model
        .generate(GenerateRequest::chat(vec![ChatMessage::user(long.clone())]))
        .expect_err("no rule matches");

    let message = error.to_string();
    assert!(message.contains("no scripted rule matched"), "{message}");
    assert!(message.contains(&long[..200]), "{message}");
    assert!(
        !message.contains(&long[..201]),
        "quotes at most 200 characters: {message}"
    );
    assert_eq!(backend.calls()[0].rule, None);
}

#[tokio::test]
async fn streamed_pieces_concatenate_to_the_result() {
    let (_dir, paths) = model_files(&["general"]);
    let reply = "The quick brown fox jumps over the lazy dog — ünïcödé too.";
    let backend = ScriptedBackend::new(Script {
        token_delay_ms: 1,
        ..script(vec![Rule::reply(reply)], None)
    });
    let model = load(&backend, &paths[0]).await;

    let mut stream = model
        .generate(GenerateRequest::text("go"))
        .expect("request accepted");
    let mut pieces = Vec::new();
    let result = loop {
        match stream.next().await.expect("stream ends with Done") {
            GenerationEvent::Token(piece) => pieces.push(piece),
            GenerationEvent::Done(result) => break result,
            GenerationEvent::Error(error) => panic!("request failed: {error}"),
        }
    };

    assert!(pieces.len() > 1, "streamed in several pieces");
    assert_eq!(pieces.concat(), reply);
    assert_eq!(result.text, reply);
    assert_eq!(result.finish, FinishReason::Stop);
    assert_eq!(result.usage.completion_tokens as usize, pieces.len());
    assert_eq!(result.usage.prompt_tokens, 1, "\"go\" is one token");
}

#[tokio::test]
async fn output_is_cut_at_the_earliest_stop_string() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![Rule::reply("Thought: hmm\nAction: ls\nObservation: files")],
        None,
    ));
    let model = load(&backend, &paths[0]).await;
    let mut req = GenerateRequest::text("go");
    req.stop = vec!["Observation:".to_owned(), "\nAction".to_owned()];

    let result = answer(&*model, req).await;

    assert_eq!(result.text, "Thought: hmm");
    assert_eq!(result.finish, FinishReason::StopString);
}

#[tokio::test]
async fn max_tokens_cuts_the_output() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![Rule::reply("abcdefghijklmnopqrstuvwxyz")],
        None,
    ));
    let model = load(&backend, &paths[0]).await;
    let mut req = GenerateRequest::text("go");
    req.max_tokens = 3;

    let result = answer(&*model, req).await;

    assert_eq!(result.text, "abcdefghijkl");
    assert_eq!(result.finish, FinishReason::Length);
    assert_eq!(result.usage.completion_tokens, 3);
}

#[tokio::test]
async fn requests_are_checked_like_the_real_engine() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(vec![Rule::reply("ok")], None));
    let model = load(&backend, &paths[0]).await;

    let empty = model
        .generate(GenerateRequest::text(""))
        .expect_err("empty prompt");
    let mut zero = GenerateRequest::text("go");
    zero.max_tokens = 0;
    let zero = model.generate(zero).expect_err("zero max_tokens");
    let mut empty_stop = GenerateRequest::text("go");
    empty_stop.stop = vec![String::new()];
    let empty_stop = model.generate(empty_stop).expect_err("empty stop string");

    assert!(matches!(empty, GenerateError::EmptyPrompt), "{empty}");
    assert!(matches!(zero, GenerateError::ZeroMaxTokens), "{zero}");
    assert!(
        matches!(empty_stop, GenerateError::EmptyStopString { index: 0 }),
        "{empty_stop}"
    );
    assert!(
        backend.calls().is_empty(),
        "refused requests are not recorded"
    );
}

fn plan_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": { "subtasks": { "type": "array", "items": { "type": "string" } } },
        "required": ["subtasks"],
        "additionalProperties": false
    })
}

#[tokio::test]
async fn a_reply_matching_the_schema_streams() {
    let (_dir, paths) = model_files(&["general"]);
    let reply = r#"{"subtasks": ["read", "write"]}"#;
    let backend = ScriptedBackend::new(script(vec![Rule::reply(reply)], None));
    let model = load(&backend, &paths[0]).await;
    let mut req = GenerateRequest::text("plan");
    req.constraint = Some(Constraint::JsonSchema(plan_schema()));

    assert_eq!(answer(&*model, req).await.text, reply);
}

#[tokio::test]
async fn a_reply_breaking_the_schema_fails_naming_the_rule() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(
        vec![
            Rule::reply("unused").when_contains("never"),
            Rule::reply(r#"{"subtasks": "read"}"#),
        ],
        None,
    ));
    let model = load(&backend, &paths[0]).await;
    let mut req = GenerateRequest::text("plan");
    req.constraint = Some(Constraint::JsonSchema(plan_schema()));

    let error = model
        .generate(req)
        .expect("request accepted")
        .into_result()
        .await
        .expect_err("reply breaks the schema");

    let message = error.to_string();
    assert!(message.contains("rules[1]"), "{message}");
    assert!(message.contains("#/subtasks"), "names where: {message}");
    assert!(message.contains("expected array"), "names what: {message}");
}

#[tokio::test]
async fn a_json_constraint_needs_a_json_reply() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(script(Vec::new(), Some("not json")));
    let model = load(&backend, &paths[0]).await;
    let mut req = GenerateRequest::text("anything");
    req.constraint = Some(Constraint::Json);

    let error = model
        .generate(req)
        .expect("request accepted")
        .into_result()
        .await
        .expect_err("reply is not JSON");

    let message = error.to_string();
    assert!(
        message.contains("default reply") && message.contains("not JSON"),
        "{message}"
    );
}

#[tokio::test]
async fn cancelling_stops_the_stream_between_pieces() {
    let (_dir, paths) = model_files(&["general"]);
    let reply = "word ".repeat(1000);
    let backend = ScriptedBackend::new(Script {
        token_delay_ms: 20,
        ..script(vec![Rule::reply(reply.clone())], None)
    });
    let model = load(&backend, &paths[0]).await;
    let mut stream = model
        .generate(GenerateRequest::text("go"))
        .expect("request accepted");

    let mut received = String::new();
    for _ in 0..2 {
        match stream.next().await {
            Some(GenerationEvent::Token(piece)) => received.push_str(&piece),
            other => panic!("expected a piece, got {other:?}"),
        }
    }
    stream.cancel();
    let result = loop {
        match stream.next().await.expect("stream ends with Done") {
            GenerationEvent::Token(piece) => received.push_str(&piece),
            GenerationEvent::Done(result) => break result,
            GenerationEvent::Error(error) => panic!("request failed: {error}"),
        }
    };

    assert_eq!(result.finish, FinishReason::Cancelled);
    assert_eq!(result.text, received);
    assert!(result.text.len() < reply.len());
}

#[tokio::test]
async fn unloading_ends_running_requests_and_refuses_new_ones() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(Script {
        token_delay_ms: 20,
        ..script(vec![Rule::reply("word ".repeat(1000))], None)
    });
    let model = load(&backend, &paths[0]).await;
    let mut stream = model
        .generate(GenerateRequest::text("go"))
        .expect("request accepted");
    assert!(matches!(
        stream.next().await,
        Some(GenerationEvent::Token(_))
    ));

    model.unload().await;

    let running = stream.into_result().await.expect_err("unloaded mid-stream");
    let later = model
        .generate(GenerateRequest::text("go"))
        .expect_err("unloaded");
    assert!(matches!(running, GenerateError::Unloaded), "{running}");
    assert!(matches!(later, GenerateError::Unloaded), "{later}");
}

#[tokio::test]
async fn loading_a_missing_file_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = ScriptedBackend::new(Script::default());

    let missing = dir.path().join("absent.gguf");
    let error = match backend.load(&missing, LoadOptions::default()).await {
        Ok(_) => panic!("loaded a missing file"),
        Err(error) => error,
    };

    assert!(matches!(error, LoadError::InvalidGguf { .. }), "{error}");
    assert!(error.to_string().contains("absent.gguf"), "{error}");
}

#[tokio::test]
async fn info_and_memory_reflect_the_options_and_script() {
    let (_dir, paths) = model_files(&["general"]);
    let backend = ScriptedBackend::new(Script {
        memory_bytes: 123_456,
        ..Script::default()
    });
    let opts = LoadOptions {
        context_length: 2048,
        parallel_slots: 3,
        ..LoadOptions::default()
    };

    let model = backend.load(&paths[0], opts).await.expect("load");

    let info = model.info();
    assert_eq!(info.architecture, "scripted");
    assert_eq!(info.path, paths[0]);
    assert_eq!(
        (info.context_length, info.n_ctx_train, info.parallel_slots),
        (2048, 2048, 3)
    );
    assert_eq!(model.memory().weights, 123_456);
    assert_eq!(model.memory().total(), 123_456);
    assert!(model.memory().measured);
}

#[tokio::test]
async fn from_file_names_an_unknown_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("script.json");
    std::fs::write(
        &path,
        r#"{ "rules": [ { "reply": "x", "contians": ["typo"] } ] }"#,
    )
    .expect("write script");

    let error = ScriptedBackend::from_file(&path).expect_err("unknown key");

    assert!(matches!(error, ScriptError::Parse { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("contians"), "{message}");
    assert!(message.contains("script.json"), "{message}");
}

#[tokio::test]
async fn two_backends_from_one_file_answer_alike() {
    let (dir, paths) = model_files(&["general"]);
    let path = dir.path().join("script.json");
    let file = json!({
        "rules": [
            { "contains": ["plan"], "anywhere": true, "reply": "{\"subtasks\": []}" },
            { "model": "general", "contains": ["hello"], "reply": "Hello back!" }
        ],
        "default": "fallback",
        "token_delay_ms": 0
    });
    std::fs::write(&path, file.to_string()).expect("write script");
    let prompts = [
        vec![ChatMessage::system("You plan."), ChatMessage::user("go")],
        vec![ChatMessage::user("hello there")],
        vec![ChatMessage::user("something else")],
    ];

    let mut runs = Vec::new();
    for _ in 0..2 {
        let backend = ScriptedBackend::from_file(&path).expect("valid script");
        let model = load(&backend, &paths[0]).await;
        let mut texts = Vec::new();
        for prompt in &prompts {
            texts.push(chat_text(&*model, prompt.clone()).await);
        }
        let tokens = model.tokenize("some text to count").expect("tokenize");
        let vectors = model
            .embed(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
            .await
            .expect("embed")
            .vectors;
        runs.push((texts, tokens, vectors));
    }

    assert_eq!(runs[0], runs[1]);
    let (texts, tokens, vectors) = &runs[0];
    assert_eq!(texts, &["{\"subtasks\": []}", "Hello back!", "fallback"]);
    assert_eq!(tokens.len(), 5, "one token per four characters");
    assert_eq!(vectors[0], vectors[2]);
    assert_ne!(vectors[0], vectors[1]);
    let norm: f32 = vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit length, got {norm}");
}
