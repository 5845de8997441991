//! The router's chains against real HTTP servers on loopback that answer
//! well, 500, 429, garbage, nothing at all, or half an answer: requests fail
//! over in chain order, breakers open and half-open, and every attempt is
//! recorded per provider with its tokens and cost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use troupe_agents::router::{Call, Route, Router};
use troupe_config::{ChainEntry, ProviderConfig, ProvidersConfig};
use troupe_host::{ModelHostConfig, ModelHostHandle};
use troupe_inference::backend::{GenerateRequest, LoadOptions};
use troupe_inference::scripted::{Script, ScriptedBackend};
use troupe_models::catalog::CatalogSources;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};
use troupe_store::Store;

/// How a fake server answers every request.
#[derive(Clone, Copy)]
enum Mode {
    /// A complete chat completion.
    Good(&'static str),
    /// HTTP 500.
    Error500,
    /// HTTP 200 with a body that is not a completion.
    Garbage,
    /// Reads the request and never answers.
    Silent,
    /// Starts a streamed answer and hangs up half-way.
    Cut,
}

struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let hits = Arc::clone(&counted);
            tokio::spawn(async move { answer(socket, mode, &hits).await });
        }
    });
    Server { url, hits }
}

async fn answer(mut socket: TcpStream, mode: Mode, hits: &AtomicUsize) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let body_start = loop {
        let Ok(n) = socket.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        let Ok(n) = socket.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let reply = |status: &str, kind: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let text = match mode {
        Mode::Good(text) => {
            let body = serde_json::json!({
                "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}
            });
            reply("200 OK", "application/json", &body.to_string())
        }
        Mode::Error500 => reply(
            "500 Internal Server Error",
            "application/json",
            r#"{"error":"boom"}"#,
        ),
        Mode::Garbage => reply("200 OK", "text/html", "<html>not an API</html>"),
        Mode::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        Mode::Cut => {
            let chunk = r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"half an ans"}}]}"#;
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{chunk}\n\n")
        }
    };
    let _ = socket.write_all(text.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn provider(name: &str, server: &Server) -> ProviderConfig {
    let mut p = ProviderConfig::new(name, &server.url, &format!("{name}-model"));
    p.timeout = Duration::from_millis(700);
    p.max_retries = 1;
    p.backoff = Duration::from_millis(10);
    p.backoff_max = Duration::from_millis(20);
    p.breaker_failures = 2;
    p.breaker_reset = Duration::from_millis(400);
    p
}

/// A host with one model, `small`, on the scripted backend (which answers
/// "local answer"), and a store.
struct Rig {
    _dir: tempfile::TempDir,
    host: ModelHostHandle,
    store: Store,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::F32,
        seed: 1,
    };
    write_synthetic(&models.join("small.gguf"), &spec).expect("synthetic model");
    let backend = ScriptedBackend::new(Script {
        default: Some("local answer".to_owned()),
        ..Script::default()
    });
    let config = ModelHostConfig {
        budget_bytes: 1 << 32,
        pinned: Vec::new(),
        default_keep_alive: Duration::from_secs(600),
        load: LoadOptions {
            context_length: 512,
            threads: Some(1),
            ..LoadOptions::default()
        },
        catalog: CatalogSources {
            model_dirs: vec![models],
            hf_cache: None,
            ollama_models: None,
        },
    };
    let (host, _join) = troupe_host::spawn(config, Arc::new(backend))
        .await
        .expect("host starts");
    let store = Store::open(&dir.path().join("data")).expect("store");
    Rig {
        _dir: dir,
        host,
        store,
    }
}

fn router(rig: &Rig, providers: Vec<ProviderConfig>, chain: &[&str]) -> Router {
    let mut config = ProvidersConfig::default();
    config.providers = providers;
    let chain: Vec<ChainEntry> = chain
        .iter()
        .map(|name| match *name {
            "local" => ChainEntry::Local,
            "cluster" => ChainEntry::Cluster,
            other => ChainEntry::Provider(other.to_owned()),
        })
        .collect();
    config.routing.ux = chain.clone();
    config.routing.director = chain.clone();
    config.routing.worker = chain;
    let (router, left_out) = Router::new(rig.host.clone(), Some(rig.store.clone()), &config);
    assert!(left_out.is_empty(), "{left_out:?}");
    router
}

fn call(model: &str) -> Call<'_> {
    Call {
        route: Route::Worker,
        model,
        task_id: Some("t1"),
    }
}

fn request() -> GenerateRequest {
    let mut request = GenerateRequest::text("Say hello.");
    request.max_tokens = 16;
    request
}

#[tokio::test]
async fn the_local_model_answers_first_and_no_provider_is_asked() {
    let rig = rig().await;
    let good = server(Mode::Good("remote answer")).await;
    let router = router(&rig, vec![provider("good", &good)], &["local", "good"]);
    let done = router
        .complete(call("small"), request())
        .await
        .expect("answered");
    assert_eq!(done.provider, "local");
    assert!(
        done.result.text.starts_with("local"),
        "{}",
        done.result.text
    );
    assert!(!done.failed_over());
    assert_eq!(good.hits(), 0);
}

#[tokio::test]
async fn a_missing_local_model_fails_over_past_500_garbage_and_silence() {
    let rig = rig().await;
    let (e500, garbage, silent, good) = (
        server(Mode::Error500).await,
        server(Mode::Garbage).await,
        server(Mode::Silent).await,
        server(Mode::Good("remote answer")).await,
    );
    let mut priced = provider("good", &good);
    priced.prompt_price = 0.001;
    priced.completion_price = 0.002;
    let providers = vec![
        provider("e500", &e500),
        provider("garbage", &garbage),
        provider("silent", &silent),
        priced,
    ];
    let chain = ["local", "e500", "garbage", "silent", "good"];
    let router = router(&rig, providers, &chain);
    let done = router
        .complete(call("absent"), request())
        .await
        .expect("answered through the chain");
    assert_eq!(done.provider, "good");
    assert_eq!(done.model, "good-model");
    assert_eq!(done.result.text, "remote answer");
    let tried: Vec<&str> = done.failovers.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(tried, ["local", "e500", "garbage", "silent"]);
    assert!(
        done.failovers[0].1.contains("absent"),
        "{:?}",
        done.failovers
    );
    assert!(done.failovers[1].1.contains("500"), "{:?}", done.failovers);
    // 500 is retried (max_retries = 1) before the next link is tried.
    assert_eq!(e500.hits(), 2);
    assert_eq!(good.hits(), 1);
    assert!((done.cost - (40.0 * 0.001 + 10.0 * 0.002)).abs() < 1e-9);

    // Records are committed off the request's path; wait for them.
    router.flush_records().await;
    let calls = rig.store.provider_calls().await.expect("provider calls");
    let names: Vec<(&str, bool)> = calls.iter().map(|c| (c.provider.as_str(), c.ok)).collect();
    assert_eq!(
        names,
        [
            ("local", false),
            ("e500", false),
            ("garbage", false),
            ("silent", false),
            ("good", true)
        ]
    );
    let served = calls.last().expect("the served call");
    assert_eq!((served.prompt_tokens, served.completion_tokens), (40, 10));
    assert_eq!(served.task_id.as_deref(), Some("t1"));
    assert_eq!(served.role, Route::Worker);
    assert!((served.cost - done.cost).abs() < 1e-12);
}

#[tokio::test]
async fn a_model_too_large_for_the_local_budget_goes_to_the_next_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::F32,
        seed: 1,
    };
    write_synthetic(&models.join("small.gguf"), &spec).expect("synthetic model");
    let config = ModelHostConfig {
        budget_bytes: 1024,
        pinned: Vec::new(),
        default_keep_alive: Duration::from_secs(600),
        load: LoadOptions::default(),
        catalog: CatalogSources {
            model_dirs: vec![models],
            hf_cache: None,
            ollama_models: None,
        },
    };
    let (host, _join) =
        troupe_host::spawn(config, Arc::new(ScriptedBackend::new(Script::default())))
            .await
            .expect("host starts");
    let good = server(Mode::Good("remote answer")).await;
    let mut providers = ProvidersConfig::default();
    providers.providers = vec![provider("good", &good)];
    providers.routing.worker = vec![ChainEntry::Local, ChainEntry::Provider("good".into())];
    let (router, _) = Router::new(host, None, &providers);
    let done = router
        .complete(call("small"), request())
        .await
        .expect("answered remotely");
    assert_eq!(done.provider, "good");
    assert!(
        done.failovers[0].1.contains("budget"),
        "the local failure says why: {:?}",
        done.failovers
    );
}

#[tokio::test]
async fn an_answer_cut_off_half_way_is_asked_again_whole_of_the_next_link() {
    let rig = rig().await;
    let (cut, good) = (
        server(Mode::Cut).await,
        server(Mode::Good("whole answer")).await,
    );
    let mut cut_provider = provider("cut", &cut);
    cut_provider.max_retries = 0;
    let router = router(
        &rig,
        vec![cut_provider, provider("good", &good)],
        &["cut", "good"],
    );
    let done = router
        .complete(call("absent"), request())
        .await
        .expect("answered");
    assert_eq!(done.provider, "good");
    assert_eq!(done.result.text, "whole answer", "no half answer leaks in");
    assert_eq!(cut.hits(), 1);
}

#[tokio::test]
async fn a_failing_provider_is_skipped_while_its_breaker_is_open_then_tried_again() {
    let rig = rig().await;
    let (e500, good) = (server(Mode::Error500).await, server(Mode::Good("ok")).await);
    let mut failing = provider("e500", &e500);
    failing.max_retries = 0;
    let router = router(
        &rig,
        vec![failing, provider("good", &good)],
        &["e500", "good"],
    );
    for _ in 0..4 {
        let done = router
            .complete(call("absent"), request())
            .await
            .expect("answered");
        assert_eq!(done.provider, "good");
    }
    // Two failures opened the breaker: the last two requests skipped it.
    assert_eq!(e500.hits(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Half-open: one trial request reaches it, fails, and reopens it.
    router
        .complete(call("absent"), request())
        .await
        .expect("answered");
    router
        .complete(call("absent"), request())
        .await
        .expect("answered");
    assert_eq!(e500.hits(), 3);
}

#[tokio::test]
async fn when_every_link_fails_the_error_names_each_failure() {
    let rig = rig().await;
    let e500 = server(Mode::Error500).await;
    let router = router(&rig, vec![provider("e500", &e500)], &["local", "e500"]);
    let error = router
        .complete(call("absent"), request())
        .await
        .expect_err("nothing can answer");
    let text = error.to_string();
    assert!(text.contains("worker chain"), "{text}");
    assert!(text.contains("local: no model named \"absent\""), "{text}");
    assert!(text.contains("e500:"), "{text}");
    assert!(text.contains("500"), "{text}");
}

#[tokio::test]
async fn a_provider_whose_key_variable_is_unset_is_left_out_with_a_reason() {
    let rig = rig().await;
    let good = server(Mode::Good("ok")).await;
    let mut keyed = provider("keyed", &good);
    keyed.api_key_env = Some("ROUTER_TEST_KEY_THAT_IS_NOT_SET".to_owned());
    let mut config = ProvidersConfig::default();
    config.providers = vec![keyed];
    config.routing.worker = vec![ChainEntry::Local, ChainEntry::Provider("keyed".into())];
    let (router, left_out) = Router::new(rig.host.clone(), None, &config);
    assert_eq!(router.chain(Route::Worker), ["local"]);
    assert_eq!(left_out.len(), 1);
    assert!(
        left_out[0].contains("ROUTER_TEST_KEY_THAT_IS_NOT_SET"),
        "{left_out:?}"
    );
}

#[tokio::test]
async fn a_remote_model_has_the_context_length_its_provider_entry_gives() {
    let rig = rig().await;
    let good = server(Mode::Good("ok")).await;
    let mut sized = provider("sized", &good);
    sized.context_length = Some(2048);
    let sized = router(&rig, vec![sized], &["local", "sized"]);
    let context = sized
        .context_length(Route::Worker, "absent")
        .await
        .expect("the provider serves it");
    assert_eq!(context, 2048);

    let plain = router(&rig, vec![provider("plain", &good)], &["local", "plain"]);
    let context = plain
        .context_length(Route::Worker, "absent")
        .await
        .expect("the provider serves it");
    assert_eq!(context, troupe_agents::router::DEFAULT_REMOTE_CONTEXT);
    assert_eq!(good.hits(), 0, "asking the context sends no request");
}
