//! The ModelHost end to end: synthetic models written to a temporary
//! directory, the real llama.cpp engine, and the host's public handle. One
//! test binary, because llama.cpp's backend is initialised once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{broadcast, Semaphore};
use troupe_host::{
    estimate_load_bytes, HostError, HostEvent, ModelHostConfig, ModelHostHandle, UnloadReason,
};
use troupe_inference::backend::{
    Backend, BoxFuture, Constraint, Embeddings, GenerateError, GenerateRequest, GenerationStream,
    LoadError, LoadOptions, LoadedModel, MemoryUsage, ModelInfo, TokenizeError,
};
use troupe_inference::chat::ChatMessage;
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;
use troupe_models::catalog::CatalogSources;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// A grammar that never completes, so a request runs until `max_tokens`.
const ENDLESS: &str = "root ::= [a-z] root\n";

/// Longest wait for an event that must come; a hang guard, not a timing bound.
const EVENT_WAIT: Duration = Duration::from_secs(120);

struct Models {
    dir: tempfile::TempDir,
}

/// Four models of distinct sizes: three tiny ones and a small one.
const NAMES: [&str; 4] = ["tiny-f32", "tiny-f16", "tiny-q8", "small-q8"];

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let specs = [
            (NAMES[0], SynthShape::Tiny, SynthQuant::F32),
            (NAMES[1], SynthShape::Tiny, SynthQuant::F16),
            (NAMES[2], SynthShape::Tiny, SynthQuant::Q8_0),
            (NAMES[3], SynthShape::Small, SynthQuant::Q8_0),
        ];
        for (seed, (name, shape, quant)) in specs.into_iter().enumerate() {
            let spec = SynthSpec {
                shape,
                quant,
                seed: seed as u64 + 1,
            };
            write_synthetic(&dir.path().join(format!("{name}.gguf")), &spec)
                .expect("write synthetic model");
        }
        Models { dir }
    })
}

fn path_of(name: &str) -> PathBuf {
    models().dir.path().join(format!("{name}.gguf"))
}

fn load_options(slots: u32, max_queued: u32) -> LoadOptions {
    LoadOptions {
        context_length: 256,
        parallel_slots: slots,
        batch_size: 128,
        threads: Some(2),
        gpu_layers: 0,
        repack: true,
        max_queued,
    }
}

fn config(budget_bytes: u64, pinned: &[&str], load: LoadOptions) -> ModelHostConfig {
    ModelHostConfig {
        budget_bytes,
        pinned: pinned.iter().map(|s| s.to_string()).collect(),
        default_keep_alive: Duration::from_secs(600),
        load,
        catalog: CatalogSources {
            model_dirs: vec![models().dir.path().to_path_buf()],
            hf_cache: None,
            ollama_models: None,
        },
    }
}

async fn start(config: ModelHostConfig) -> ModelHostHandle {
    start_with(config, Arc::new(LlamaEngine::new())).await
}

async fn start_with(config: ModelHostConfig, backend: Arc<dyn Backend>) -> ModelHostHandle {
    let (handle, _join) = troupe_host::spawn(config, backend)
        .await
        .expect("host starts");
    handle
}

fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens,
        ignore_eos: true,
        ..GenerateRequest::text(prompt)
    }
}

/// Collects every event the host publishes, in order.
fn record(handle: &ModelHostHandle) -> Arc<Mutex<Vec<HostEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut rx = handle.events();
    let sink = Arc::clone(&events);
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => sink.lock().expect("event log").push(event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    panic!("the test fell {n} events behind")
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    events
}

/// Waits for the first event matching `wanted`.
async fn wait_for(
    rx: &mut broadcast::Receiver<HostEvent>,
    wanted: impl Fn(&HostEvent) -> bool,
) -> HostEvent {
    tokio::time::timeout(EVENT_WAIT, async {
        loop {
            let event = rx.recv().await.expect("event stream open");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the awaited event came")
}

async fn text_of(handle: &ModelHostHandle, model: &str, request: GenerateRequest) -> String {
    let stream = handle
        .generate(model, request, None)
        .await
        .expect("request accepted");
    stream.into_result().await.expect("request completes").text
}

fn name_of(event: &HostEvent) -> &str {
    match event {
        HostEvent::LoadStarted { model, .. }
        | HostEvent::LoadWaiting { model, .. }
        | HostEvent::Loaded { model, .. }
        | HostEvent::LoadFailed { model, .. }
        | HostEvent::Unloaded { model, .. }
        | HostEvent::RequestStarted { model }
        | HostEvent::RequestFinished { model, .. } => model,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_stay_within_budget_and_keep_the_pinned_model() {
    let load = load_options(4, 16);
    let planned: HashMap<&str, u64> = NAMES
        .iter()
        .map(|&n| {
            (
                n,
                estimate_load_bytes(&path_of(n), &load).expect("estimate"),
            )
        })
        .collect();
    let smallest = planned.values().copied().min().expect("models");
    // Room for the large model beside the pinned one, but not for a third:
    // every switch between the large model and the other tiny ones evicts.
    let budget = planned["small-q8"] + planned["tiny-f32"] + smallest / 2;
    assert!(planned.values().sum::<u64>() > budget);
    let host = start(config(budget, &["tiny-f32"], load)).await;
    let initial = host.status().await.expect("status");
    let events = record(&host);

    let mut rng = StdRng::seed_from_u64(42);
    let prompts = ["Once upon a time", "The answer is", "abc def", "Hello"];
    let mut answered = 0;
    for _round in 0..50 {
        let mut requests = Vec::new();
        for _ in 0..4 {
            let model = NAMES[rng.random_range(0..NAMES.len())];
            let prompt = prompts[rng.random_range(0..prompts.len())];
            let host = host.clone();
            requests.push(tokio::spawn(async move {
                let stream = host.generate(model, greedy(prompt, 4), None).await?;
                assert_eq!(stream.model(), model);
                stream.into_result().await.map_err(HostError::Generate)
            }));
        }
        for request in requests {
            let result = request
                .await
                .expect("request task")
                .expect("request answered");
            assert_eq!(result.usage.completion_tokens, 4);
            answered += 1;
        }
        let status = host.status().await.expect("status");
        assert!(
            status.used_bytes <= budget,
            "{} bytes in use over a budget of {budget}",
            status.used_bytes
        );
        let pinned = status.models.iter().find(|m| m.name == "tiny-f32");
        assert!(pinned.is_some_and(|m| m.pinned), "pinned model loaded");
    }
    assert_eq!(answered, 200);
    host.shutdown().await;

    // Replay the events: memory held never went over the budget, the
    // pinned model stayed until shutdown, and models were evicted.
    let events = events.lock().expect("event log").clone();
    let mut held: HashMap<String, u64> = initial
        .models
        .iter()
        .map(|m| (m.name.clone(), m.memory.total()))
        .collect();
    assert_eq!(held.len(), 1, "the pinned model is loaded at start");
    let (mut started, mut finished, mut evictions) = (0, 0, 0);
    for event in &events {
        match event {
            HostEvent::Loaded { model, memory, .. } => {
                held.insert(model.clone(), memory.total());
                assert!(memory.measured, "memory measured from llama.cpp");
            }
            HostEvent::Unloaded { model, reason, .. } => {
                assert!(
                    model != "tiny-f32" || *reason == UnloadReason::Shutdown,
                    "pinned model unloaded: {reason:?}"
                );
                if matches!(reason, UnloadReason::Evicted { .. }) {
                    evictions += 1;
                }
                held.remove(model);
            }
            HostEvent::RequestStarted { .. } => started += 1,
            HostEvent::RequestFinished { .. } => finished += 1,
            _ => {}
        }
        assert!(
            held.values().sum::<u64>() <= budget,
            "over budget at {event:?}"
        );
    }
    assert_eq!((started, finished), (200, 200));
    assert!(evictions > 0, "the budget forced evictions");
}

/// A backend whose loads of one file wait for a permit before reaching
/// llama.cpp, so a test can hold a load open as long as it needs.
struct GatedBackend {
    engine: LlamaEngine,
    gated: PathBuf,
    gate: Arc<Semaphore>,
}

impl Backend for GatedBackend {
    fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> BoxFuture<Result<Arc<dyn LoadedModel>, LoadError>> {
        let load = self.engine.load(path, opts);
        let gate = (path == self.gated).then(|| Arc::clone(&self.gate));
        Box::pin(async move {
            if let Some(gate) = gate {
                let _permit = gate.acquire().await;
            }
            load.await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_loaded_model_are_answered_while_another_loads() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = GatedBackend {
        engine: LlamaEngine::new(),
        gated: path_of("small-q8"),
        gate: Arc::clone(&gate),
    };
    let host = start_with(config(1 << 30, &[], load_options(1, 4)), Arc::new(backend)).await;
    host.load("tiny-f16", None).await.expect("tiny loads");
    let events = record(&host);
    let mut rx = host.events();

    let loading = {
        let host = host.clone();
        tokio::spawn(async move { host.load("small-q8", None).await })
    };
    wait_for(
        &mut rx,
        |e| matches!(e, HostEvent::LoadStarted { model, .. } if model == "small-q8"),
    )
    .await;
    for prompt in ["one", "two", "three"] {
        // A host that waited on the held load would never answer: the
        // timeout turns that hang into a failure.
        let text = tokio::time::timeout(EVENT_WAIT, text_of(&host, "tiny-f16", greedy(prompt, 4)))
            .await
            .expect("answered while the other model loads");
        assert!(!text.is_empty());
    }
    let status = host.status().await.expect("status while loading");
    assert_eq!(status.loading, vec!["small-q8".to_string()]);
    gate.add_permits(1);
    let small = loading.await.expect("load task").expect("small loads");
    assert_eq!(small.name, "small-q8");
    assert!(small.memory.total() > 0);
    host.shutdown().await;

    let events = events.lock().expect("event log").clone();
    let position = |wanted: &dyn Fn(&HostEvent) -> bool| {
        events.iter().position(wanted).expect("event present")
    };
    let load_started =
        position(&|e| matches!(e, HostEvent::LoadStarted { model, .. } if model == "small-q8"));
    let loaded = position(&|e| matches!(e, HostEvent::Loaded { model, .. } if model == "small-q8"));
    let finished_between = events[load_started..loaded]
        .iter()
        .filter(|e| matches!(e, HostEvent::RequestFinished { model, .. } if model == "tiny-f16"))
        .count();
    assert_eq!(finished_between, 3, "events: {events:?}");
}

/// A loaded model whose request preparation (`generate`, which renders,
/// tokenizes and compiles a grammar before any token) waits until the test
/// opens its gate, as a huge schema or prompt would take its time.
struct SlowToPrepare {
    inner: Arc<dyn LoadedModel>,
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    entered: Arc<Semaphore>,
}

impl LoadedModel for SlowToPrepare {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }
    fn memory(&self) -> MemoryUsage {
        self.inner.memory()
    }
    fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, GenerateError> {
        self.entered.add_permits(1);
        let (lock, opened) = &*self.open;
        let mut open = lock.lock().expect("gate");
        while !*open {
            open = opened.wait(open).expect("gate");
        }
        drop(open);
        self.inner.generate(req)
    }
    fn embed(&self, inputs: Vec<String>) -> BoxFuture<Result<Embeddings, GenerateError>> {
        self.inner.embed(inputs)
    }
    fn tokenize(&self, text: &str) -> Result<Vec<i32>, TokenizeError> {
        self.inner.tokenize(text)
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        self.inner.render_chat(messages)
    }
    fn unload(&self) -> BoxFuture<()> {
        self.inner.unload()
    }
}

/// Loads `slow` as a [`SlowToPrepare`], every other file as it is.
struct SlowBackend {
    engine: LlamaEngine,
    slow: PathBuf,
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    entered: Arc<Semaphore>,
}

impl Backend for SlowBackend {
    fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> BoxFuture<Result<Arc<dyn LoadedModel>, LoadError>> {
        let load = self.engine.load(path, opts);
        let gate = (path == self.slow).then(|| (Arc::clone(&self.open), Arc::clone(&self.entered)));
        Box::pin(async move {
            let inner = load.await?;
            Ok(match gate {
                Some((open, entered)) => Arc::new(SlowToPrepare {
                    inner,
                    open,
                    entered,
                }) as Arc<dyn LoadedModel>,
                None => inner,
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_being_prepared_does_not_hold_up_other_models() {
    let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let entered = Arc::new(Semaphore::new(0));
    let backend = SlowBackend {
        engine: LlamaEngine::new(),
        slow: path_of("small-q8"),
        open: Arc::clone(&open),
        entered: Arc::clone(&entered),
    };
    let host = start_with(config(1 << 30, &[], load_options(2, 4)), Arc::new(backend)).await;
    host.load("small-q8", None).await.expect("small loads");
    host.load("tiny-f16", None).await.expect("tiny loads");
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { text_of(&host, "small-q8", greedy("held", 4)).await })
    };
    // The slow request is in preparation (its model holds it) before the
    // others are sent; the host must go on answering them meanwhile. A host
    // that prepared requests in its own mailbox would never answer: the
    // timeout turns that hang into a failure.
    let _ = tokio::time::timeout(EVENT_WAIT, entered.acquire())
        .await
        .expect("the slow request reached its model");
    for prompt in ["one", "two"] {
        let text = tokio::time::timeout(EVENT_WAIT, text_of(&host, "tiny-f16", greedy(prompt, 4)))
            .await
            .expect("answered while another model's request is prepared");
        assert!(!text.is_empty());
    }
    let status = tokio::time::timeout(EVENT_WAIT, host.status())
        .await
        .expect("status answered meanwhile")
        .expect("status");
    assert!(
        !slow.is_finished(),
        "the held request ran before its gate opened"
    );
    assert!(
        status.models.iter().any(|m| m.name == "small-q8"),
        "the held request keeps its model loaded: {status:?}"
    );
    *open.0.lock().expect("gate") = true;
    open.1.notify_all();
    let text = slow.await.expect("slow request task");
    assert!(!text.is_empty());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_equal_their_lone_runs() {
    let host = start(config(1 << 30, &[], load_options(4, 4))).await;
    let prompts = [
        "Once upon a time",
        "The answer is",
        "abc def",
        "Hello there",
    ];
    let mut lone = Vec::new();
    for prompt in prompts {
        lone.push(text_of(&host, "tiny-q8", greedy(prompt, 8)).await);
    }
    // All four started before any is read: they share the batch.
    let mut streams = Vec::new();
    for prompt in prompts {
        let stream = host
            .generate("tiny-q8", greedy(prompt, 8), None)
            .await
            .expect("accepted");
        streams.push(stream);
    }
    let status = host.status().await.expect("status");
    let model = status
        .models
        .iter()
        .find(|m| m.name == "tiny-q8")
        .expect("loaded");
    assert_eq!(model.slots, 4);
    let mut together = Vec::new();
    for stream in streams {
        together.push(stream.into_result().await.expect("completes").text);
    }
    assert_eq!(together, lone);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_the_budget_is_refused_naming_both_sizes() {
    let budget = 100_000;
    let host = start(config(budget, &[], load_options(1, 4))).await;
    match host.generate("small-q8", greedy("hi", 4), None).await {
        Err(error @ HostError::TooLarge { .. }) => {
            let HostError::TooLarge {
                needed, budget: b, ..
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(*b, budget);
            assert!(*needed > budget);
            let message = error.to_string();
            assert!(message.contains(&needed.to_string()), "{message}");
            assert!(message.contains(&budget.to_string()), "{message}");
            assert!(message.contains("small-q8"), "{message}");
        }
        other => panic!(
            "expected TooLarge, got {:?}",
            other.map(|s| s.model().to_owned())
        ),
    }
    assert!(host.status().await.expect("status").models.is_empty());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_not_found() {
    let host = start(config(1 << 30, &[], load_options(1, 4))).await;
    match host.generate("no-such-model", greedy("hi", 4), None).await {
        Err(HostError::ModelNotFound { name }) => assert_eq!(name, "no-such-model"),
        other => panic!(
            "expected ModelNotFound, got {:?}",
            other.map(|s| s.model().to_owned())
        ),
    }
    let catalog = host.catalog().await.expect("catalog");
    for name in NAMES {
        assert!(
            catalog.iter().any(|e| e.name == name),
            "{name} in the catalog"
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_keep_alive_unloads_the_model_after_the_request() {
    let host = start(config(1 << 30, &[], load_options(1, 4))).await;
    let mut rx = host.events();
    let stream = host
        .generate("tiny-f16", greedy("bye", 4), Some(Duration::ZERO))
        .await
        .expect("accepted");
    stream.into_result().await.expect("completes");
    let event = wait_for(&mut rx, |e| matches!(e, HostEvent::Unloaded { .. })).await;
    match event {
        HostEvent::Unloaded { model, reason, .. } => {
            assert_eq!(model, "tiny-f16");
            assert_eq!(reason, UnloadReason::KeepAliveExpired);
        }
        other => panic!("unexpected {other:?}"),
    }
    let status = host.status().await.expect("status");
    assert!(status.models.is_empty());
    assert_eq!(status.used_bytes, 0);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_slots_and_queue_are_busy() {
    let host = start(config(1 << 30, &[], load_options(1, 1))).await;
    // Constrained never to end, these run until max_tokens.
    let long = || GenerateRequest {
        constraint: Some(Constraint::Grammar(ENDLESS.into())),
        ..greedy("run", 240)
    };
    let running = host.generate("tiny-f32", long(), None).await.expect("slot");
    let queued = host
        .generate("tiny-f32", long(), None)
        .await
        .expect("queue");
    match host.generate("tiny-f32", long(), None).await {
        Err(HostError::Busy { model }) => assert_eq!(model, "tiny-f32"),
        other => panic!(
            "expected Busy, got {:?}",
            other.map(|s| s.model().to_owned())
        ),
    }
    let status = host.status().await.expect("status");
    let model = &status.models[0];
    assert_eq!((model.slots_in_use, model.queued_requests), (1, 1));
    running.cancel();
    drop(queued);
    running.into_result().await.expect("cancelled request ends");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_models_load_at_start_and_are_not_unloaded() {
    let host = start(config(1 << 30, &["tiny-f32"], load_options(1, 4))).await;
    let status = host.status().await.expect("status");
    assert_eq!(status.models.len(), 1);
    assert!(status.models[0].pinned);
    assert!(status.models[0].expires_at.is_none());
    assert_eq!(status.used_bytes, status.models[0].memory.total());
    match host.unload("tiny-f32").await {
        Err(HostError::Pinned { model }) => assert_eq!(model, "tiny-f32"),
        other => panic!("expected Pinned, got {other:?}"),
    }
    // An unpinned one unloads on request, answered once its memory is free.
    let mut rx = host.events();
    host.load("tiny-q8", None).await.expect("loads");
    host.unload("tiny-q8").await.expect("unloads");
    let event = wait_for(&mut rx, |e| matches!(e, HostEvent::Unloaded { .. })).await;
    assert_eq!(name_of(&event), "tiny-q8");
    assert!(matches!(
        event,
        HostEvent::Unloaded {
            reason: UnloadReason::Requested,
            ..
        }
    ));
    let status = host.status().await.expect("status");
    assert_eq!(status.models.len(), 1);
    let json = serde_json::to_value(&status).expect("status serialises");
    assert_eq!(json["models"][0]["name"], "tiny-f32");
    assert!(json["models"][0]["memory"]["total"]
        .as_u64()
        .is_some_and(|t| t > 0));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_model_is_not_evicted_and_the_new_load_waits_for_it() {
    let load = load_options(1, 4);
    let small = estimate_load_bytes(&path_of("small-q8"), &load).expect("estimate");
    let tiny = estimate_load_bytes(&path_of("tiny-q8"), &load).expect("estimate");
    // The small model fits alone, never beside a tiny one.
    let host = start(config(small + tiny / 2, &[], load)).await;
    let events = record(&host);
    let mut rx = host.events();
    // A stream nobody reads keeps its model busy until it is dropped.
    let busy = host
        .generate("tiny-f16", greedy("hold", 4), None)
        .await
        .expect("accepted");
    let waiting = {
        let host = host.clone();
        tokio::spawn(async move {
            let stream = host.generate("small-q8", greedy("next", 4), None).await?;
            stream.into_result().await.map_err(HostError::Generate)
        })
    };
    wait_for(
        &mut rx,
        |e| matches!(e, HostEvent::LoadWaiting { model, .. } if model == "small-q8"),
    )
    .await;
    let status = host.status().await.expect("status");
    assert_eq!(status.queued_loads, 1);
    assert_eq!(status.models.len(), 1);
    assert_eq!(status.models[0].name, "tiny-f16");
    assert_eq!(status.models[0].slots_in_use, 1);

    drop(busy);
    let result = waiting
        .await
        .expect("task")
        .expect("answered once room was made");
    assert_eq!(result.usage.completion_tokens, 4);
    host.shutdown().await;

    let events = events.lock().expect("event log").clone();
    let evicted = events
        .iter()
        .position(|e| {
            matches!(e, HostEvent::Unloaded { model, reason: UnloadReason::Evicted { for_model }, .. }
                if model == "tiny-f16" && for_model == "small-q8")
        })
        .expect("tiny-f16 evicted for small-q8");
    let tiny_finished = events
        .iter()
        .position(|e| matches!(e, HostEvent::RequestFinished { model, .. } if model == "tiny-f16"))
        .expect("tiny request ended");
    let small_started = events
        .iter()
        .position(|e| matches!(e, HostEvent::LoadStarted { model, .. } if model == "small-q8"))
        .expect("small load started");
    assert!(
        tiny_finished < evicted && evicted < small_started,
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_load_the_model_count_as_requests_and_grow_its_memory() {
    let host = start(config(1 << 30, &[], load_options(1, 4))).await;
    let mut rx = host.events();
    let inputs = vec!["first text".to_owned(), "another one".to_owned()];
    let out = host
        .embed("tiny-q8", inputs.clone())
        .await
        .expect("loads on demand and embeds");
    assert_eq!(out.vectors.len(), 2);
    let info = host.model_info("tiny-q8").await.expect("info");
    for v in &out.vectors {
        assert_eq!(v.len(), info.n_embd as usize);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert_ne!(out.vectors[0], out.vectors[1]);
    assert!(out.prompt_tokens >= 4);
    wait_for(
        &mut rx,
        |e| matches!(e, HostEvent::RequestStarted { model } if model == "tiny-q8"),
    )
    .await;
    wait_for(
        &mut rx,
        |e| matches!(e, HostEvent::RequestFinished { model, .. } if model == "tiny-q8"),
    )
    .await;

    // The embedding context the first request created is now accounted.
    let status = host.status().await.expect("status");
    let model = &status.models[0];
    assert_eq!(model.name, "tiny-q8");
    assert_eq!(model.slots_in_use, 0);
    assert!(
        model.expires_at.is_some(),
        "keep-alive runs again once idle"
    );
    let fresh = LlamaEngine::new()
        .load(&path_of("tiny-q8"), load_options(1, 4))
        .await
        .expect("loads")
        .memory();
    assert!(
        model.memory.kv_cache > fresh.kv_cache,
        "{} vs {}",
        model.memory.kv_cache,
        fresh.kv_cache
    );
    assert_eq!(status.used_bytes, model.memory.total());

    // The same text gives the same vector through the host.
    let again = host
        .embed("tiny-q8", vec![inputs[0].clone()])
        .await
        .expect("embeds");
    let cosine: f32 = again.vectors[0]
        .iter()
        .zip(&out.vectors[0])
        .map(|(a, b)| a * b)
        .sum();
    assert!(cosine > 0.9999, "cosine {cosine}");

    match host
        .embed("tiny-q8", vec!["ok".into(), String::new()])
        .await
    {
        Err(HostError::Generate(GenerateError::EmptyEmbeddingInput { index })) => {
            assert_eq!(index, 1)
        }
        other => panic!("expected an empty-input error, got {other:?}"),
    }
    match host.embed("no-such-model", vec!["x".into()]).await {
        Err(HostError::ModelNotFound { .. }) => {}
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
    host.shutdown().await;
}
