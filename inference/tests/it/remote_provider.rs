//! The remote provider against fake OpenAI-compatible servers on
//! 127.0.0.1:0: streaming and plain answers, retries on 5xx and 429, the
//! errors for garbage, silence, refused connections and 4xx, the circuit
//! breaker, cancellation, and the API key kept out of everything printed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use troupe_config::ProviderConfig;
use troupe_inference::backend::{
    Constraint, FinishReason, GenerateError, GenerateRequest, GenerationEvent, Prompt, Usage,
};
use troupe_inference::remote::{BreakerState, RemoteError, RemoteProvider};

use crate::remote_support;
use remote_support::{
    chunk, collect, config, hello, json_reply, provider, stream_of, FakeServer, Reply,
};

// ---------------------------------------------------------------- answers

#[tokio::test]
async fn a_streamed_answer_arrives_in_pieces_with_the_servers_usage() {
    let server = FakeServer::start(|_, _| stream_of(&["Hel", "lo", " world"], Some((12, 3)))).await;
    let provider = provider(&config(&server.base));
    let (pieces, last) = collect(&provider, hello()).await.unwrap();
    assert_eq!(pieces, ["Hel", "lo", " world"]);
    let GenerationEvent::Done(result) = last else {
        panic!("expected Done, got {last:?}");
    };
    assert_eq!(result.text, "Hello world");
    assert_eq!(result.finish, FinishReason::Stop);
    assert_eq!(
        result.usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 3,
            cached_prompt_tokens: 0
        }
    );

    let [request] = &server.requests()[..] else {
        panic!("one request expected");
    };
    assert_eq!(request.path, "/v1/chat/completions");
    let body = &request.body;
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["max_tokens"], 16);
    assert_eq!(
        body["messages"],
        json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Say hello." },
        ])
    );
    assert_eq!(request.header("authorization"), None, "no key configured");

    let stats = provider.stats();
    assert_eq!((stats.requests, stats.attempts, stats.failures), (1, 1, 0));
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (12, 3));
}

#[tokio::test]
async fn a_server_that_ignores_stream_and_answers_json_is_read() {
    let server = FakeServer::start(|_, _| {
        json_reply(
            200,
            json!({
                "id": "x", "object": "chat.completion",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": "plain answer" }, "finish_reason": "length" }],
                "usage": { "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7 },
            }),
        )
    })
    .await;
    let mut config = config(&server.base);
    config.prompt_price = 0.5;
    config.completion_price = 2.0;
    let provider = provider(&config);
    let (pieces, last) = collect(&provider, GenerateRequest::text("hi"))
        .await
        .unwrap();
    assert_eq!(pieces, ["plain answer"]);
    let GenerationEvent::Done(result) = last else {
        panic!("expected Done, got {last:?}");
    };
    assert_eq!(result.finish, FinishReason::Length);
    assert_eq!(result.usage.prompt_tokens, 5);
    assert_eq!(provider.stats().cost, 5.0 * 0.5 + 2.0 * 2.0);
    // A text prompt goes as one user message.
    assert_eq!(
        server.requests()[0].body["messages"],
        json!([{ "role": "user", "content": "hi" }])
    );
}

#[tokio::test]
async fn without_server_usage_tokens_are_counted_from_the_pieces() {
    let server = FakeServer::start(|_, _| stream_of(&["a", "b", "c", "d"], None)).await;
    let provider = provider(&config(&server.base));
    let (_, last) = collect(&provider, GenerateRequest::text("12345678"))
        .await
        .unwrap();
    let GenerationEvent::Done(result) = last else {
        panic!("expected Done, got {last:?}");
    };
    assert_eq!(result.usage.completion_tokens, 4, "one per streamed piece");
    assert_eq!(result.usage.prompt_tokens, 2, "prompt bytes / 4");
}

#[tokio::test]
async fn a_json_schema_constraint_becomes_response_format() {
    let server = FakeServer::start(|_, _| stream_of(&["{}"], None)).await;
    let provider = provider(&config(&server.base));
    let schema = json!({ "type": "object", "properties": { "a": { "type": "integer" } } });
    let mut request = hello();
    request.constraint = Some(Constraint::JsonSchema(schema.clone()));
    request.sampling.seed = Some(7);
    request.sampling.temperature = 0.0;
    request.stop = vec!["END".into()];
    collect(&provider, request).await.unwrap();
    let body = &server.requests()[0].body;
    assert_eq!(
        body["response_format"],
        json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": schema, "strict": true } })
    );
    assert_eq!(body["seed"], 7);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["stop"], json!(["END"]));
    assert!(
        body.get("top_k").is_none(),
        "llama.cpp-only options are not sent"
    );
}

#[tokio::test]
async fn log_probabilities_are_asked_for_and_read_from_the_chunks() {
    let entry = |token: &str, logprob: f64, top: Vec<serde_json::Value>| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes(), "top_logprobs": top});
    let alt =
        |token: &str, logprob: f64| json!({"token": token, "logprob": logprob, "bytes": null});
    let chunks = vec![
        chunk(json!({ "role": "assistant" }), None),
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null,
                "logprobs": {"content": [entry("Hi", -0.25, vec![alt("Hi", -0.25), alt("Yo", -1.75)])]}}]})
        ),
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": "\u{e9}"}, "finish_reason": null,
                "logprobs": {"content": [entry("\u{e9}", -0.5, vec![])]}}]})
        ),
        chunk(json!({}), Some("stop")),
        "data: [DONE]\n\n".into(),
    ];
    let server = FakeServer::start(move |_, _| Reply::Events {
        chunks: chunks.clone(),
        hold: false,
    })
    .await;
    let asked = provider(&config(&server.base));
    let mut request = hello();
    request.logprobs = Some(2);
    let (_, last) = collect(&asked, request).await.unwrap();
    let GenerationEvent::Done(result) = last else {
        panic!("expected Done, got {last:?}");
    };
    let body = &server.requests()[0].body;
    assert_eq!(
        (&body["logprobs"], &body["top_logprobs"]),
        (&json!(true), &json!(2))
    );
    assert_eq!(result.logprobs.len(), 2);
    let first = &result.logprobs[0];
    assert_eq!(
        (
            first.chosen.token,
            &first.chosen.bytes[..],
            first.chosen.logprob
        ),
        (None, &b"Hi"[..], -0.25)
    );
    assert_eq!(first.top[1].bytes, b"Yo");
    assert_eq!(result.logprobs[1].chosen.bytes, "\u{e9}".as_bytes());
    // Not asked for: not sent.
    let server = FakeServer::start(|_, _| stream_of(&["ok"], None)).await;
    collect(&provider(&config(&server.base)), hello())
        .await
        .unwrap();
    assert!(server.requests()[0].body.get("logprobs").is_none());
}

#[tokio::test]
async fn grammar_constraints_and_token_prompts_are_refused_before_sending() {
    let server = FakeServer::start(|_, _| stream_of(&["x"], None)).await;
    let provider = provider(&config(&server.base));
    let mut request = hello();
    request.constraint = Some(Constraint::Grammar("root ::= \"a\"".into()));
    let err = provider.generate(request).await.unwrap_err();
    assert!(matches!(err, RemoteError::Unsupported { .. }), "{err}");
    let err = provider
        .generate(GenerateRequest::new(Prompt::Tokens(vec![1, 2])))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unsupported { .. }), "{err}");
    assert_eq!(server.count(), 0);
    assert_eq!(provider.breaker().state(), BreakerState::Closed);
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn server_errors_are_retried_until_an_answer_comes() {
    let server = FakeServer::start(|i, _| {
        if i < 2 {
            json_reply(500, json!({ "error": { "message": "overloaded" } }))
        } else {
            stream_of(&["ok"], None)
        }
    })
    .await;
    let provider = provider(&config(&server.base));
    let (pieces, last) = collect(&provider, hello()).await.unwrap();
    assert_eq!(pieces, ["ok"]);
    assert!(matches!(last, GenerationEvent::Done(_)));
    assert_eq!(server.count(), 3, "two failures, then the answer");
    assert_eq!(provider.stats().attempts, 3);
    assert_eq!(provider.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_429_retry_after_is_honoured() {
    let server = FakeServer::start(|i, _| {
        if i == 0 {
            Reply::Full {
                status: 429,
                headers: vec![("Retry-After", "1".into())],
                body: "slow down".into(),
            }
        } else {
            stream_of(&["ok"], None)
        }
    })
    .await;
    let mut config = config(&server.base);
    config.backoff_max = Duration::from_secs(5);
    let provider = provider(&config);
    collect(&provider, hello()).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].at.duration_since(requests[0].at) >= Duration::from_millis(950),
        "the retry waited for Retry-After"
    );
}

#[tokio::test]
async fn a_provider_that_keeps_rate_limiting_fails_after_the_retries() {
    let server = FakeServer::start(|_, _| Reply::Full {
        status: 429,
        headers: vec![("Retry-After", "0".into())],
        body: "{\"error\":{\"message\":\"rate limit reached\"}}".into(),
    })
    .await;
    let mut config = config(&server.base);
    config.max_retries = 2;
    let provider = provider(&config);
    let err = provider.generate(hello()).await.unwrap_err();
    match &err {
        RemoteError::RateLimited {
            provider,
            retry_after,
            body_excerpt,
        } => {
            assert_eq!(provider, "fake");
            assert_eq!(*retry_after, Some(Duration::ZERO));
            assert!(
                body_excerpt.contains("rate limit reached"),
                "{body_excerpt}"
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(server.count(), 3, "the first attempt and two retries");
    assert_eq!(
        provider.stats().failures,
        1,
        "one failed request, not three"
    );
}

#[tokio::test]
async fn a_400_is_not_retried_and_carries_the_servers_message() {
    let server = FakeServer::start(|_, _| {
        json_reply(
            400,
            json!({ "error": { "message": "unknown field `foo`" } }),
        )
    })
    .await;
    let provider = provider(&config(&server.base));
    let err = provider.generate(hello()).await.unwrap_err();
    match &err {
        RemoteError::Refused {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "unknown field `foo`");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(server.count(), 1);
    assert_eq!(
        provider.breaker().consecutive_failures(),
        0,
        "the provider is healthy"
    );
}

// ---------------------------------------------------------------- broken servers

#[tokio::test]
async fn garbage_is_an_invalid_response_saying_what_was_wrong() {
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::Full {
                status: 200,
                headers: vec![("Content-Type", "text/html".into())],
                body: "<html>hello</html>".into(),
            },
            "neither JSON nor an event stream",
        ),
        (json_reply(200, json!({ "foo": 1 })), "no `choices`"),
        (
            Reply::Full {
                status: 200,
                headers: vec![("Content-Type", "application/json".into())],
                body: "{not json".into(),
            },
            "not JSON",
        ),
        (
            Reply::Events {
                chunks: vec!["data: {oops\n\n".into()],
                hold: false,
            },
            "an event is not JSON",
        ),
        (
            Reply::Full {
                status: 200,
                headers: vec![],
                body: String::new(),
            },
            "the body is empty",
        ),
    ];
    for (reply, want) in cases {
        let reply = Mutex::new(Some(reply));
        let server = FakeServer::start(move |_, _| {
            reply
                .lock()
                .unwrap()
                .take()
                .unwrap_or(json_reply(500, json!({})))
        })
        .await;
        let provider = provider(&config(&server.base));
        let err = provider.generate(hello()).await.unwrap_err();
        match &err {
            RemoteError::InvalidResponse { reason, .. } => {
                assert!(reason.contains(want), "{want}: {reason}")
            }
            other => panic!("{want}: expected InvalidResponse, got {other:?}"),
        }
        assert_eq!(server.count(), 1, "{want}: not retried");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = FakeServer::start(|_, _| Reply::Silence).await;
    let mut config = config(&server.base);
    config.timeout = Duration::from_millis(300);
    config.max_retries = 1;
    let provider = provider(&config);
    let err = provider.generate(hello()).await.unwrap_err();
    match &err {
        RemoteError::Timeout { provider, after } => {
            assert_eq!(provider, "fake");
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(server.count(), 2, "a timeout is retried");
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let provider = provider(&config(&base));
    let err = provider.generate(hello()).await.unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
    assert_eq!(provider.stats().attempts, 3, "connect errors are retried");
}

#[tokio::test]
async fn a_stream_cut_after_the_first_piece_ends_in_an_error_without_retry() {
    let server = FakeServer::start(|_, _| Reply::Events {
        chunks: vec![chunk(json!({ "content": "partial" }), None)],
        hold: false,
    })
    .await;
    let provider = provider(&config(&server.base));
    let (pieces, last) = collect(&provider, hello()).await.unwrap();
    assert_eq!(pieces, ["partial"]);
    match last {
        GenerationEvent::Error(GenerateError::Decode(message)) => {
            assert!(message.contains("fake"), "{message}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(server.count(), 1);
    assert_eq!(provider.stats().failures, 1);
}

#[tokio::test]
async fn the_timeout_bounds_silence_so_a_long_answer_that_keeps_coming_is_not_cut() {
    let pieces = ["a", "b", "c", "d", "e", "f"];
    let server = FakeServer::start(move |_, _| {
        let Reply::Events { chunks, .. } = stream_of(&pieces, None) else {
            unreachable!()
        };
        Reply::Paced {
            chunks,
            gap: Duration::from_millis(120),
        }
    })
    .await;
    let mut config = config(&server.base);
    // Shorter than the whole answer (about 1 s), longer than any gap.
    config.timeout = Duration::from_millis(500);
    let provider = provider(&config);
    let (got, last) = collect(&provider, hello()).await.unwrap();
    assert_eq!(got, pieces);
    assert!(matches!(last, GenerationEvent::Done(_)), "{last:?}");
}

#[tokio::test]
async fn a_stream_that_goes_silent_ends_in_a_timeout_error() {
    let server = FakeServer::start(|_, _| Reply::Events {
        chunks: vec![chunk(json!({ "content": "then nothing" }), None)],
        hold: true,
    })
    .await;
    let mut config = config(&server.base);
    config.timeout = Duration::from_millis(300);
    let provider = provider(&config);
    let (pieces, last) = collect(&provider, hello()).await.unwrap();
    assert_eq!(pieces, ["then nothing"]);
    match last {
        GenerationEvent::Error(GenerateError::Decode(message)) => {
            assert!(message.contains("said nothing"), "{message}")
        }
        other => panic!("expected a timeout error, got {other:?}"),
    }
}

#[tokio::test]
async fn cancelling_the_stream_closes_the_connection() {
    let server = FakeServer::start(|_, _| Reply::Events {
        chunks: vec![chunk(json!({ "content": "first" }), None)],
        hold: true,
    })
    .await;
    let provider = provider(&config(&server.base));
    let mut stream = provider.generate(hello()).await.unwrap();
    assert!(matches!(stream.next().await, Some(GenerationEvent::Token(p)) if p == "first"));
    stream.cancel();
    match stream.next().await {
        Some(GenerationEvent::Done(result)) => {
            assert_eq!(result.finish, FinishReason::Cancelled);
            assert_eq!(result.text, "first");
        }
        other => panic!("expected Done(Cancelled), got {other:?}"),
    }
    while server.hung_up.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- breaker

#[tokio::test]
async fn the_breaker_opens_after_failed_requests_and_closes_after_a_good_trial() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let server = FakeServer::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            stream_of(&["back"], None)
        } else {
            json_reply(503, json!({ "error": { "message": "down" } }))
        }
    })
    .await;
    let mut config = config(&server.base);
    config.max_retries = 1;
    config.breaker_failures = 2;
    config.breaker_reset = Duration::from_millis(300);
    let provider = provider(&config);

    for _ in 0..2 {
        let err = provider.generate(hello()).await.unwrap_err();
        assert!(
            matches!(err, RemoteError::Http { status: 503, .. }),
            "{err:?}"
        );
    }
    assert_eq!(server.count(), 4, "two requests of two attempts each");
    assert_eq!(provider.breaker().state(), BreakerState::Open);
    let err = provider.generate(hello()).await.unwrap_err();
    assert!(matches!(err, RemoteError::BreakerOpen { .. }), "{err:?}");
    assert_eq!(server.count(), 4, "an open breaker sends nothing");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(provider.breaker().state(), BreakerState::HalfOpen);
    healthy.store(true, Ordering::SeqCst);
    let (pieces, _) = collect(&provider, hello()).await.unwrap();
    assert_eq!(pieces, ["back"]);
    assert_eq!(provider.breaker().state(), BreakerState::Closed);
}

// ---------------------------------------------------------------- the key

const SECRET: &str = "sk-test-7f3c9a1b2d";

#[tokio::test]
async fn the_key_goes_as_bearer_and_never_into_debug_or_errors() {
    // The server echoes the Authorization header back, as some error pages do.
    let server = FakeServer::start(|i, seen| {
        let auth = seen.header("authorization").unwrap_or_default().to_string();
        match i {
            0 => stream_of(&["ok"], None),
            1 => json_reply(
                500,
                json!({ "error": { "message": format!("bad: {auth}") } }),
            ),
            _ => json_reply(
                401,
                json!({ "error": { "message": format!("invalid key {auth}") } }),
            ),
        }
    })
    .await;
    let mut config = config(&server.base);
    config.max_retries = 0;
    let provider = RemoteProvider::with_api_key(&config, Some(SECRET.into())).unwrap();
    collect(&provider, hello()).await.unwrap();
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let debug = format!("{provider:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");

    for _ in 0..2 {
        let err = provider.generate(hello()).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
    let err = provider.generate(hello()).await.unwrap_err();
    assert!(
        matches!(err, RemoteError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
}

#[test]
fn a_key_variable_that_is_not_set_makes_the_provider_unavailable() {
    let mut config = ProviderConfig::new("groq", "https://api.groq.com/openai/v1", "m");
    config.api_key_env = Some("REMOTE_PROVIDER_TEST_UNSET_KEY_4d1e".into());
    let err = RemoteProvider::new(&config).unwrap_err();
    match &err {
        RemoteError::MissingKey { provider, var } => {
            assert_eq!(provider, "groq");
            assert_eq!(var, "REMOTE_PROVIDER_TEST_UNSET_KEY_4d1e");
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains("REMOTE_PROVIDER_TEST_UNSET_KEY_4d1e"));
}
