//! One `troupe serve` for the whole test binary: a real ModelHost over the
//! llama.cpp engine, synthetic models in a temporary directory, the HTTP
//! server on 127.0.0.1:0 with an API key. It runs on its own thread and
//! runtime, so that every `#[tokio::test]` (each with its own runtime) can
//! talk to it over the socket.

use std::path::Path;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use troupe::host::ModelHostConfig;
use troupe::http::{serve, AppState};
use troupe::inference::backend::LoadOptions;
use troupe::inference::llama::LlamaEngine;
use troupe::models::catalog::CatalogSources;
use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// The key every request but `/health` must carry.
pub(crate) const API_KEY: &str = "test-key-3f9a";
/// Request bodies above this get 413.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Tokens per slot.
pub(crate) const CONTEXT: u32 = 2048;
/// Slots per model.
pub(crate) const SLOTS: u32 = 2;
/// The host's memory budget.
pub(crate) const BUDGET: u64 = 1 << 30;

/// Models in the catalog. Each test that compares runs or counts slots has
/// a model of its own, so that requests of tests running in parallel are
/// never batched with its own.
pub(crate) const MODELS: [&str; 4] = ["tiny", "solo", "drop", "client"];

/// The real model in the catalog, under this name.
pub(crate) const REAL_MODEL: &str = "smollm2";
const REAL_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A real model fetched by `scripts/fetch-models.sh` (into `$REAL_MODELS_DIR`,
/// else `target/models`); a missing one fails the test that needs it.
pub(crate) fn real_model(file: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("REAL_MODELS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/models"),
        std::path::PathBuf::from,
    );
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "the real model {} is missing: run `bash scripts/fetch-models.sh` (the test command does)",
        path.display()
    );
    path
}

/// The running server.
pub(crate) struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// The models directory the server's catalog reads.
    pub(crate) fn models_dir(&self) -> &Path {
        self._dir.path()
    }
}

/// Starts the server on first use.
pub(crate) fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    for (seed, name) in MODELS.iter().enumerate() {
        write_model(dir.path(), name, seed as u64 + 1);
    }
    // The real SmolLM2-135M-Instruct (scripts/fetch-models.sh) as `smollm2`.
    let real = real_model(REAL_MODEL_FILE);
    std::os::unix::fs::symlink(&real, dir.path().join(format!("{REAL_MODEL}.gguf")))
        .expect("link the real model");
    let config = ModelHostConfig {
        budget_bytes: BUDGET,
        pinned: Vec::new(),
        default_keep_alive: Duration::from_secs(600),
        load: LoadOptions {
            context_length: CONTEXT,
            parallel_slots: SLOTS,
            batch_size: 512,
            threads: Some(2),
            gpu_layers: 0,
            repack: true,
            max_queued: 64,
        },
        catalog: CatalogSources {
            model_dirs: vec![dir.path().to_path_buf()],
            hf_cache: None,
            ollama_models: None,
        },
    };
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("troupe-serve-test".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (host, _task) = troupe::host::spawn(config, Arc::new(LlamaEngine::new()))
                    .await
                    .expect("model host starts");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                let mut state = AppState::new(host);
                state.api_key = Some(API_KEY.to_string());
                state.max_body_bytes = MAX_BODY_BYTES;
                serve(listener, state, std::future::pending())
                    .await
                    .expect("server runs");
            });
        })
        .expect("server thread");
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the server starts");
    TestServer {
        base: format!("http://{addr}"),
        _dir: dir,
    }
}

fn write_model(dir: &Path, name: &str, seed: u64) {
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::Q8_0,
        seed,
    };
    write_synthetic(&dir.join(format!("{name}.gguf")), &spec).expect("synthetic model");
}
