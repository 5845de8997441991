//! The llama.cpp engine: [`LlamaEngine`] loads GGUF files, each into a
//! [`LlamaModelHandle`] backed by its own engine thread.
//!
//! # Layout
//! - `engine`: the engine thread — loading, the command loop and
//!   continuous batching (one decode per step for all slots).
//! - `embed`: embeddings in a second, lazily created context with mean
//!   pooling, run by the engine thread between generation steps.
//! - `slot`: a sequence of the shared context, the request in it, and how
//!   a request picks its slot (session, then longest cached prefix).
//! - `model`: the handle callers hold; validates requests before they reach
//!   the thread.
//! - `text`: UTF-8-safe streaming and stop strings.
//! - `memory`: llama.cpp's log routed to `tracing`, and the KV/compute
//!   buffer sizes read from it.
//!
//! The llama.cpp backend is initialised once per process, on first load.

mod embed;
mod engine;
mod memory;
mod model;
mod slot;
mod text;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::LlamaCppError;
use tokio::sync::{oneshot, watch};

pub use model::LlamaModelHandle;

use crate::backend::{Backend, BoxFuture, LoadError, LoadOptions, LoadedModel};

/// Loads GGUF models into llama.cpp (see the module documentation).
#[derive(Debug, Default, Clone)]
pub struct LlamaEngine {}

impl LlamaEngine {
    /// An engine; the llama.cpp backend itself is initialised on first load.
    pub fn new() -> Self {
        Self {}
    }

    /// Loads `path` and returns the concrete handle.
    ///
    /// # Errors
    /// See [`LoadError`]: an invalid file or option, no GPU for
    /// `gpu_layers > 0`, or llama.cpp refusing the model or context.
    pub async fn load_model(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> Result<LlamaModelHandle, LoadError> {
        opts.validate()?;
        let threads = opts.threads.unwrap_or_else(physical_cores);
        let (reply, loaded) = oneshot::channel();
        let (command_tx, commands) = crossbeam_channel::unbounded();
        let (finished, finished_rx) = watch::channel(false);
        let max_queued = opts.max_queued;
        let start = engine::EngineStart {
            path: path.to_path_buf(),
            opts,
            threads,
            reply,
            commands,
            finished,
        };
        std::thread::Builder::new()
            .name(thread_name(path))
            .spawn(move || engine::run(start))
            .map_err(LoadError::Thread)?;
        let loaded = loaded.await.map_err(|_| LoadError::EngineStopped {
            path: path.to_path_buf(),
        })??;
        Ok(LlamaModelHandle::new(
            loaded,
            max_queued,
            command_tx,
            finished_rx,
        ))
    }
}

impl Backend for LlamaEngine {
    fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> BoxFuture<Result<Arc<dyn LoadedModel>, LoadError>> {
        let engine = self.clone();
        let path = path.to_path_buf();
        Box::pin(async move {
            let handle = engine.load_model(&path, opts).await?;
            Ok(Arc::new(handle) as Arc<dyn LoadedModel>)
        })
    }
}

/// The process-wide llama.cpp backend, initialised on first use with
/// llama.cpp's log routed to `tracing`.
pub(crate) fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            memory::install_log_callback();
            #[cfg(feature = "portable")]
            crate::device::load_backend_modules();
            crate::device::init_gpu_devices();
            match LlamaBackend::init() {
                Ok(backend) => Ok(backend),
                // Another library in the process initialised it; the value
                // is only a token proving initialisation.
                Err(LlamaCppError::BackendAlreadyInitialized) => Ok(LlamaBackend {}),
                Err(error) => Err(error.to_string()),
            }
        })
        .as_ref()
        .map_err(|error| LoadError::Backend(error.clone()))
}

/// Physical cores available to this process (llama.cpp's and llama-bench's
/// default thread count): distinct (package, core) pairs in /proc/cpuinfo,
/// at most the CPUs this process may use.
fn physical_cores() -> u32 {
    let available =
        std::thread::available_parallelism().map_or(4, |n| u32::try_from(n.get()).unwrap_or(4));
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return available;
    };
    let mut package = String::new();
    let mut cores = HashSet::new();
    for line in cpuinfo.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "physical id" => value.trim().clone_into(&mut package),
                "core id" => {
                    cores.insert((package.clone(), value.trim().to_owned()));
                }
                _ => {}
            }
        }
    }
    match u32::try_from(cores.len()) {
        Ok(0) | Err(_) => available,
        Ok(physical) => physical.min(available),
    }
}

fn thread_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    format!("llama {stem}")
}
