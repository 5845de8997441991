//! The ModelHost: owns every loaded model under a memory budget.
//!
//! It loads models on demand, each on its own engine thread; when a new
//! model does not fit it evicts idle, unpinned models (cheapest to reload
//! first, then least recently used), and a model with requests in flight is
//! never evicted: the load waits. Pinned models are loaded at start and
//! never evicted; other models are unloaded when their keep-alive runs out.
//! What counts against the budget is what llama.cpp actually allocated
//! (weights, KV cache, compute buffers), measured after each load; the
//! estimate from `troupe_models::estimate` only plans.
//!
//! # Layout
//! - `actor`: the ractor actor, its messages and request handling.
//! - `lifecycle`: loading, evicting, unloading and shutting down.
//! - `state`: the state and the memory accounting.
//! - [`budget`]: budget sizes (`parse_size`, `default_budget_bytes`) and the
//!   eviction order.
//! - `stream`: [`HostStream`], which reports the end of each request.
//! - `types`: status, events and errors.
//!
//! [`ModelHostHandle`] is the public way in.

mod actor;
pub mod budget;
mod incarnations;
mod lifecycle;
mod state;
mod stream;
mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use troupe_inference::backend::{Backend, Embeddings, GenerateRequest, LoadOptions, ModelInfo};
use troupe_models::catalog::{Catalog, CatalogSources, ModelEntry};

pub use budget::{
    default_budget_bytes, estimate_load_bytes, format_bytes, parse_size, ParseSizeError,
};
pub use incarnations::{Incarnations, RESTART_WAIT};
pub use stream::HostStream;
pub use types::{HostError, HostEvent, HostStatus, LoadedModelStatus, UnloadReason};

use actor::{HostMsg, KeepAlive, ModelHost, Request};
use state::Waiter;

/// How long an idle model stays loaded unless a request says otherwise
/// (Ollama's default).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);

/// Events buffered per subscriber before the slowest one starts missing some.
const EVENT_CAPACITY: usize = 4096;

/// Longest wait for the host to answer a question that needs no model.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the host runs.
#[derive(Debug, Clone)]
pub struct ModelHostConfig {
    /// Memory the loaded models may hold together, in bytes.
    pub budget_bytes: u64,
    /// Models (catalog names or paths) loaded at start and never evicted.
    pub pinned: Vec<String>,
    /// Idle time before a model is unloaded, unless a request gives its own.
    pub default_keep_alive: Duration,
    /// How every model is loaded (context per slot, slots, batch, threads,
    /// GPU layers, queue length).
    pub load: LoadOptions,
    /// Where model names are looked up.
    pub catalog: CatalogSources,
}

impl ModelHostConfig {
    /// The host configuration from troupe's: its model directories,
    /// Hugging Face cache and Ollama store, and its inference settings.
    pub fn from_config(
        cfg: &troupe_config::Config,
        budget_bytes: u64,
        pinned: Vec<String>,
    ) -> Self {
        let inference = &cfg.inference;
        Self {
            budget_bytes,
            pinned,
            default_keep_alive: DEFAULT_KEEP_ALIVE,
            load: LoadOptions {
                context_length: inference.context_length,
                parallel_slots: inference.parallel_slots,
                batch_size: inference.batch_size,
                threads: inference.threads,
                gpu_layers: inference.gpu_layers,
                repack: inference.repack,
                ..LoadOptions::default()
            },
            catalog: CatalogSources {
                model_dirs: cfg.models.dirs.clone(),
                hf_cache: Some(cfg.models.hf_cache.clone()),
                ollama_models: Some(cfg.models.ollama.clone()),
            },
        }
    }
}

/// What the actor starts from.
pub(crate) struct Arguments {
    config: ModelHostConfig,
    backend: Arc<dyn Backend>,
    catalog: Catalog,
    events: broadcast::Sender<HostEvent>,
    /// The pinned models' files.
    pinned: Vec<PathBuf>,
}

/// Starts the host and loads the pinned models; returns once they are
/// loaded. The join handle ends when this first actor has stopped (a
/// supervisor that links it may start another with
/// [`ModelHostHandle::restart_linked`]).
///
/// # Errors
/// [`HostError::Load`] for invalid load options or a pinned model that
/// fails to load, [`HostError::ModelNotFound`] (or `Catalog`) for a pinned
/// name that does not resolve, [`HostError::TooLarge`] or
/// [`HostError::DoesNotFitBesidePinned`] when the pinned models exceed the
/// budget, [`HostError::Start`] when the actor cannot start.
pub async fn spawn(
    config: ModelHostConfig,
    backend: Arc<dyn Backend>,
) -> Result<(ModelHostHandle, JoinHandle<()>), HostError> {
    config.load.validate().map_err(HostError::Load)?;
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let start = Arc::new(StartWith { config, backend });
    let args = start.arguments(&events).await?;
    let (actor, join) = ModelHost::spawn(None, ModelHost, args)
        .await
        .map_err(|error| HostError::Start {
            reason: error.to_string(),
        })?;
    let handle = ModelHostHandle {
        actor: Incarnations::new(actor),
        events,
        start,
    };
    handle.load_pinned().await?;
    Ok((handle, join))
}

/// What the host is started from, kept to start it again.
struct StartWith {
    config: ModelHostConfig,
    backend: Arc<dyn Backend>,
}

impl StartWith {
    /// The actor's arguments: the catalog scanned now and the pinned
    /// models' files.
    async fn arguments(
        &self,
        events: &broadcast::Sender<HostEvent>,
    ) -> Result<Arguments, HostError> {
        let sources = self.config.catalog.clone();
        let catalog = tokio::task::spawn_blocking(move || Catalog::scan(&sources))
            .await
            .map_err(|error| HostError::Start {
                reason: format!("the catalog scan failed: {error}"),
            })?;
        let mut pinned = Vec::with_capacity(self.config.pinned.len());
        for name in &self.config.pinned {
            let entry = catalog.resolve(name).map_err(|error| match error {
                troupe_models::catalog::CatalogError::NotFound { name, .. } => {
                    HostError::ModelNotFound { name }
                }
                other => HostError::Catalog(other),
            })?;
            pinned.push(entry.path);
        }
        Ok(Arguments {
            config: self.config.clone(),
            backend: Arc::clone(&self.backend),
            catalog,
            events: events.clone(),
            pinned,
        })
    }
}

/// The public way to talk to the host. Cheap to clone; every clone follows
/// the host across restarts.
#[derive(Clone)]
pub struct ModelHostHandle {
    /// The running actor; a restart puts the new one here. Retired by
    /// [`ModelHostHandle::shutdown`].
    actor: Incarnations<ActorRef<HostMsg>>,
    /// Outlives restarts, so subscribers keep their stream.
    events: broadcast::Sender<HostEvent>,
    start: Arc<StartWith>,
}

impl std::fmt::Debug for ModelHostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHostHandle")
            .field("actor", &self.actor().get_id())
            .finish()
    }
}

impl ModelHostHandle {
    /// The actor running now.
    fn actor(&self) -> ActorRef<HostMsg> {
        self.actor.current()
    }

    /// The actor to send a request to: the one running now, or, when it
    /// has died and a supervisor restarts it, the next one (see
    /// [`Incarnations::live`]).
    async fn live_actor(&self) -> ActorRef<HostMsg> {
        self.actor
            .live(|actor| actor.get_status() >= ractor::ActorStatus::Stopping)
            .await
    }

    /// Tokens each slot of a model trained on `trained` tokens of context
    /// holds here: the configured context length, capped to the training
    /// context as the engine caps it.
    pub fn slot_context(&self, trained: Option<u64>) -> u32 {
        let configured = self.start.config.load.context_length;
        match trained.map(|t| u32::try_from(t).unwrap_or(u32::MAX)) {
            None | Some(0) => configured,
            Some(trained) => configured.min(trained),
        }
    }

    /// The actor running now, for linking it under a supervisor.
    pub fn actor_cell(&self) -> ActorCell {
        self.actor().get_cell()
    }

    /// Starts the host again, linked to `supervisor`, after its actor died:
    /// the catalog is scanned again and the pinned models are loaded; the
    /// models the dead actor held were freed with it. Every clone of this
    /// handle then talks to the new actor, and event subscribers keep
    /// their stream.
    ///
    /// # Errors
    /// As [`spawn`].
    pub async fn restart_linked(&self, supervisor: ActorCell) -> Result<ActorCell, HostError> {
        let args = self.start.arguments(&self.events).await?;
        let (actor, _join) = ModelHost::spawn_linked(None, ModelHost, args, supervisor.clone())
            .await
            .map_err(|error| HostError::Start {
                reason: error.to_string(),
            })?;
        self.actor.replace(actor.clone());
        for name in &self.start.config.pinned {
            if let Err(error) = self.load(name, None).await {
                // Stopped by its failed start, not failed: not the
                // supervisor's to restart again.
                actor.get_cell().unlink(supervisor);
                self.stop_actor().await;
                return Err(error);
            }
        }
        Ok(actor.get_cell())
    }

    /// Loads the pinned models; on a failure the host is shut down.
    async fn load_pinned(&self) -> Result<(), HostError> {
        for name in &self.start.config.pinned {
            if let Err(error) = self.load(name, None).await {
                self.stop_actor().await;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Loads `model` if needed (evicting idle unpinned models to fit), then
    /// starts the request. `keep_alive`: `None` means the default;
    /// `Some(ZERO)` unloads the model as soon as it is idle.
    ///
    /// # Errors
    /// [`HostError::ModelNotFound`], [`HostError::TooLarge`], a load error,
    /// [`HostError::Busy`] when every slot and the queue are taken,
    /// [`HostError::Generate`] for a request the model refuses.
    pub async fn generate(
        &self,
        model: &str,
        request: GenerateRequest,
        keep_alive: Option<Duration>,
    ) -> Result<HostStream, HostError> {
        let waiter = |reply| Waiter::Generate {
            request: Box::new(request),
            reply,
        };
        self.request(model, KeepAlive::from(keep_alive), waiter)
            .await
    }

    /// Loads `model` if needed (as [`ModelHostHandle::generate`] does), then
    /// embeds each of `inputs` (one unit vector per input, in order). The
    /// request counts as in flight until the vectors are back, so the model
    /// is not evicted meanwhile; then its keep-alive (the host's default)
    /// starts.
    ///
    /// # Errors
    /// As [`ModelHostHandle::generate`]; [`HostError::Generate`] for an
    /// empty list, an empty input or one longer than the embedding context.
    pub async fn embed(&self, model: &str, inputs: Vec<String>) -> Result<Embeddings, HostError> {
        self.embed_keeping(model, inputs, None).await
    }

    /// [`ModelHostHandle::embed`], keeping the model loaded for
    /// `keep_alive` after it (`None`: the default).
    ///
    /// # Errors
    /// As [`ModelHostHandle::embed`].
    pub async fn embed_keeping(
        &self,
        model: &str,
        inputs: Vec<String>,
        keep_alive: Option<Duration>,
    ) -> Result<Embeddings, HostError> {
        self.request(model, KeepAlive::from(keep_alive), |reply| Waiter::Embed {
            inputs,
            reply,
        })
        .await
    }

    /// Loads `model` if needed and describes it; the keep-alive starts now.
    ///
    /// # Errors
    /// As [`ModelHostHandle::generate`], less the request's own errors.
    pub async fn load(
        &self,
        model: &str,
        keep_alive: Option<Duration>,
    ) -> Result<LoadedModelStatus, HostError> {
        self.request(model, KeepAlive::from(keep_alive), |reply| Waiter::Load {
            reply,
        })
        .await
    }

    /// Unloads `model`, answering once its memory is free. A model that is
    /// not loaded is no error; a pinned one is ([`HostError::Pinned`]).
    ///
    /// # Errors
    /// [`HostError::ModelNotFound`], [`HostError::Pinned`], [`HostError::Stopped`].
    pub async fn unload(&self, model: &str) -> Result<(), HostError> {
        let model = model.to_owned();
        flatten(
            self.actor()
                .call(|reply| HostMsg::Unload { model, reply }, None)
                .await,
        )?
    }

    /// Loaded models, memory in use and queued loads.
    ///
    /// # Errors
    /// [`HostError::Stopped`].
    pub async fn status(&self) -> Result<HostStatus, HostError> {
        flatten(
            self.actor()
                .call(|reply| HostMsg::Status { reply }, Some(QUERY_TIMEOUT))
                .await,
        )
    }

    /// The catalog as the host sees it, scanned afresh.
    ///
    /// # Errors
    /// [`HostError::Stopped`].
    pub async fn catalog(&self) -> Result<Vec<ModelEntry>, HostError> {
        flatten(
            self.actor()
                .call(|reply| HostMsg::Catalog { reply }, None)
                .await,
        )
    }

    /// What `model` is as loaded (context length per slot, slots, ...);
    /// loads it if needed, without changing its keep-alive.
    ///
    /// # Errors
    /// As [`ModelHostHandle::load`].
    pub async fn model_info(&self, model: &str) -> Result<ModelInfo, HostError> {
        self.request(model, KeepAlive::Unchanged, |reply| Waiter::Info { reply })
            .await
    }

    /// Tells the host how long each model takes to load, on average over
    /// the loads the Learner has seen (by catalog name); eviction prefers
    /// models that are cheap to load again. Models not named keep the time
    /// of their latest load in this process.
    pub fn set_reload_costs(&self, costs: std::collections::HashMap<String, Duration>) {
        let _ = self.actor().cast(HostMsg::ReloadCosts(costs));
    }

    /// Every event the host publishes from now on.
    pub fn events(&self) -> broadcast::Receiver<HostEvent> {
        self.events.subscribe()
    }

    /// Unloads every model and stops the host; returns once memory is free.
    pub async fn shutdown(&self) {
        self.actor.retire();
        self.stop_actor().await;
    }

    /// Unloads every model and stops the actor running now (a start that
    /// failed; the handle may see a restart after it).
    async fn stop_actor(&self) {
        let _ = self
            .actor()
            .call(|reply| HostMsg::Shutdown { reply }, None)
            .await;
    }

    async fn request<T>(
        &self,
        model: &str,
        keep_alive: KeepAlive,
        waiter: impl FnOnce(RpcReplyPort<Result<T, HostError>>) -> Waiter,
    ) -> Result<T, HostError>
    where
        T: Send + 'static,
    {
        let model = model.to_owned();
        let build = |reply| {
            HostMsg::Request(Box::new(Request {
                model,
                keep_alive,
                waiter: waiter(reply),
                rescanned: false,
            }))
        };
        flatten(self.live_actor().await.call(build, None).await)?
    }
}

fn flatten<T, E>(result: Result<CallResult<T>, E>) -> Result<T, HostError> {
    match result {
        Ok(CallResult::Success(value)) => Ok(value),
        _ => Err(HostError::Stopped),
    }
}
