//! The router: where a model request goes when the local ModelHost cannot
//! serve it.
//!
//! Each route (the UX, the Director, the Workers) has an ordered chain of
//! links from `[routing]`: `local` (this process's ModelHost), `cluster`
//! (a peer node's ModelHost that serves the model) and remote
//! OpenAI-compatible providers from `[[providers]]`. A request goes to the
//! first link; when that link fails (the model is not in the catalog, does
//! not fit the memory budget, the host is busy, the server answers 5xx or
//! garbage or nothing, the peer dies mid-answer), it goes to the next. A
//! request is always read to its end here, so a failure half-way through
//! an answer is retried whole on the next link and the caller never sees a
//! half answer.
//!
//! Remote providers retry 429 and 5xx with backoff themselves; the router
//! asks each provider's circuit breaker first, so a provider that keeps
//! failing is skipped until its breaker half-opens. The cluster link has
//! its own breaker. Every attempt, served or failed, is recorded as a
//! [`ProviderCall`] in the store: tokens and cost per provider. Records are
//! committed by a background task, so a request never waits on the disk;
//! [`Router::flush_records`] waits for them.

mod link;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use troupe_config::{ChainEntry, ProvidersConfig};
use troupe_inference::backend::{
    BoxFuture, GenerateError, GenerateRequest, GenerationResult, GenerationStream,
};
use troupe_inference::remote::{CircuitBreaker, RemoteProvider};
use troupe_store::{now_ms, ProviderCall, Store, TaskId};

use troupe_host::{HostError, ModelHostHandle};

use link::Link;

/// Failures that open the cluster link's breaker, and how long it stays
/// open: a peer that died is not asked again for every request.
const CLUSTER_BREAKER_FAILURES: u32 = 3;
const CLUSTER_BREAKER_RESET: Duration = Duration::from_secs(30);

/// Context assumed for a remote model whose `[[providers]]` entry sets no
/// `context_length` (and for a cluster peer that does not say).
pub const DEFAULT_REMOTE_CONTEXT: u32 = 8192;

/// Who is asking: each has its own chain (the store's
/// [`troupe_store::Route`], the role of a provider call's record).
pub use troupe_store::Route;

/// Models served by other nodes of a cluster (implemented by
/// troupe-cluster; the router only needs these two calls).
pub trait ClusterPeers: Send + Sync + 'static {
    /// The peer node that would serve `model`, if any does now.
    fn serves(&self, model: &str) -> BoxFuture<Option<String>>;
    /// Starts `request` on a peer that serves `model`. The stream ends with
    /// an error event (never hangs) when the peer goes away mid-answer.
    fn generate(
        &self,
        model: &str,
        request: GenerateRequest,
    ) -> BoxFuture<Result<GenerationStream, String>>;
    /// The context per slot a peer serves `model` with, when known.
    fn context_length(&self, model: &str) -> BoxFuture<Option<u32>> {
        let _ = model;
        Box::pin(async { None })
    }
}

/// One request of a route.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Who asks.
    pub route: Route,
    /// The model asked for (a catalog name of the local host or a peer).
    pub model: &'a str,
    /// The task it serves, if any (for the records).
    pub task_id: Option<&'a str>,
}

/// A finished request and where it was served.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The answer.
    pub result: GenerationResult,
    /// `local`, `cluster:<node>` or the provider's name.
    pub provider: String,
    /// The model that answered, in the provider's own naming.
    pub model: String,
    /// Price × tokens for a priced provider; 0 for local and cluster.
    pub cost: f64,
    /// The links tried before it, each with why it failed.
    pub failovers: Vec<(String, String)>,
}

impl Completion {
    /// Whether a link other than the first one answered.
    pub fn failed_over(&self) -> bool {
        !self.failovers.is_empty()
    }
}

impl Completion {
    /// The journal entry of a request that failed over.
    pub fn failover_event(&self, subtask: Option<&str>) -> troupe_store::TaskEvent {
        troupe_store::TaskEvent::FailedOver {
            subtask: subtask.map(troupe_store::SubtaskId::from),
            failed: self.failovers.clone(),
            served_by: self.provider.clone(),
            model: self.model.clone(),
        }
    }
}

/// One line for the person: which links failed and which answered.
pub fn failover_note(done: &Completion) -> String {
    format!(
        "{} failed ({}); served by {} ({})",
        done.failovers
            .iter()
            .map(|(link, _)| link.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        summary(&done.failovers),
        done.provider,
        done.model
    )
}

/// Why no link of a chain answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Every link was tried (or skipped) and none answered.
    #[error("no provider of the {route} chain could serve {model}: {}", summary(.attempts))]
    Exhausted {
        /// The route.
        route: &'static str,
        /// The model asked for.
        model: String,
        /// Each link tried, with why it failed or was skipped.
        attempts: Vec<(String, String)>,
        /// Whether the local host refused the prompt as too long for its
        /// context (the caller may prune the prompt and try again).
        prompt_too_long: bool,
    },
}

impl RouteError {
    /// Whether the local host refused the prompt as too long for its
    /// context, or `max_tokens` as too large for it.
    pub fn prompt_too_long(&self) -> bool {
        match self {
            RouteError::Exhausted {
                prompt_too_long, ..
            } => *prompt_too_long,
        }
    }
}

fn too_long(error: &GenerateError) -> bool {
    matches!(
        error,
        GenerateError::PromptTooLong { .. } | GenerateError::MaxTokensTooLarge { .. }
    )
}

fn summary(attempts: &[(String, String)]) -> String {
    if attempts.is_empty() {
        return "the chain is empty".to_owned();
    }
    attempts
        .iter()
        .map(|(link, why)| format!("{link}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Routes requests along the chains. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    host: ModelHostHandle,
    store: Option<Store>,
    ux: Vec<Link>,
    director: Vec<Link>,
    worker: Vec<Link>,
    cluster: RwLock<Option<Arc<dyn ClusterPeers>>>,
    cluster_breaker: CircuitBreaker,
    /// Started with the first record, from inside the runtime (the router
    /// itself may be built outside one).
    recorder: OnceLock<mpsc::UnboundedSender<RecordJob>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("ux", &self.chain(Route::Ux))
            .field("director", &self.chain(Route::Director))
            .field("worker", &self.chain(Route::Worker))
            .finish()
    }
}

impl Router {
    /// A router whose every chain is the local host alone (tests, embedding
    /// without providers).
    pub fn local_only(host: ModelHostHandle) -> Router {
        Router::with_links(
            host,
            None,
            vec![Link::Local],
            vec![Link::Local],
            vec![Link::Local],
        )
    }

    /// The chains of `config`. A provider that cannot start (its key's
    /// environment variable is not set, say) is left out of every chain;
    /// the second value says which and why, for the log.
    pub fn new(
        host: ModelHostHandle,
        store: Option<Store>,
        config: &ProvidersConfig,
    ) -> (Router, Vec<String>) {
        let mut providers: Vec<Arc<RemoteProvider>> = Vec::new();
        let mut warnings = Vec::new();
        for p in config.providers.iter().filter(|p| p.enabled) {
            match RemoteProvider::new(p) {
                Ok(provider) => providers.push(Arc::new(provider)),
                Err(error) => warnings.push(format!(
                    "provider {} is left out of the chains: {error}",
                    p.name
                )),
            }
        }
        let links = |entries: &[ChainEntry]| -> Vec<Link> {
            entries
                .iter()
                .filter_map(|entry| match entry {
                    ChainEntry::Local => Some(Link::Local),
                    ChainEntry::Cluster => Some(Link::Cluster),
                    ChainEntry::Provider(name) => providers
                        .iter()
                        .find(|p| p.name() == name)
                        .map(|p| Link::Remote(Arc::clone(p))),
                })
                .collect()
        };
        let routing = &config.routing;
        let router = Router::with_links(
            host,
            store,
            links(&routing.ux),
            links(&routing.director),
            links(&routing.worker),
        );
        (router, warnings)
    }

    fn with_links(
        host: ModelHostHandle,
        store: Option<Store>,
        ux: Vec<Link>,
        director: Vec<Link>,
        worker: Vec<Link>,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                host,
                store,
                ux,
                director,
                worker,
                cluster: RwLock::new(None),
                cluster_breaker: CircuitBreaker::new(
                    "cluster",
                    CLUSTER_BREAKER_FAILURES,
                    CLUSTER_BREAKER_RESET,
                ),
                recorder: OnceLock::new(),
            }),
        }
    }

    /// Gives the `cluster` links their peers (the cluster starts after the
    /// host, so after the router).
    pub fn set_cluster(&self, peers: Arc<dyn ClusterPeers>) {
        if let Ok(mut slot) = self.inner.cluster.write() {
            *slot = Some(peers);
        }
    }

    /// The local ModelHost.
    pub fn host(&self) -> &ModelHostHandle {
        &self.inner.host
    }

    /// The chain of `route`, by link name.
    pub fn chain(&self, route: Route) -> Vec<String> {
        self.links(route).iter().map(Link::name).collect()
    }

    fn links(&self, route: Route) -> &[Link] {
        match route {
            Route::Ux => &self.inner.ux,
            Route::Director => &self.inner.director,
            Route::Worker => &self.inner.worker,
        }
    }

    fn cluster(&self) -> Option<Arc<dyn ClusterPeers>> {
        self.inner.cluster.read().ok().and_then(|c| c.clone())
    }

    /// Runs `request` on the first link of the chain that answers, and
    /// reads it to its end.
    ///
    /// # Errors
    /// [`RouteError::Exhausted`] with every link's failure.
    pub async fn complete(
        &self,
        call: Call<'_>,
        request: GenerateRequest,
    ) -> Result<Completion, RouteError> {
        let mut attempts: Vec<(String, String)> = Vec::new();
        let mut prompt_too_long = false;
        for link in self.links(call.route) {
            let started = Instant::now();
            let attempt = match self.start(link, call.model, request.clone()).await {
                Ok(Some((stream, provider, model))) => match stream.into_result().await {
                    Ok(result) => Ok((result, provider, model)),
                    Err(error) => {
                        prompt_too_long |= matches!(link, Link::Local) && too_long(&error);
                        Err((provider, model, error.to_string()))
                    }
                },
                Ok(None) => continue,
                Err(Failed::Host(error)) => {
                    prompt_too_long |= matches!(&error, HostError::Generate(e) if too_long(e));
                    Err(("local".to_owned(), call.model.to_owned(), error.to_string()))
                }
                Err(Failed::Other(provider, model, why)) => Err((provider, model, why)),
            };
            let latency = started.elapsed();
            match attempt {
                Ok((result, provider, model)) => {
                    link.succeeded(self);
                    let cost = link.cost(&result);
                    self.record(call, &provider, &model, Ok(&result), cost, latency);
                    if !attempts.is_empty() {
                        tracing::warn!(
                            route = call.route.as_str(),
                            model = call.model,
                            served_by = %provider,
                            failed = %summary(&attempts),
                            "failed over"
                        );
                    }
                    return Ok(Completion {
                        result,
                        provider,
                        model,
                        cost,
                        failovers: attempts,
                    });
                }
                Err((provider, model, why)) => {
                    link.failed(self);
                    self.record(call, &provider, &model, Err(&why), 0.0, latency);
                    tracing::debug!(route = call.route.as_str(), link = %provider, %why, "link failed");
                    attempts.push((provider, why));
                }
            }
        }
        Err(RouteError::Exhausted {
            route: call.route.as_str(),
            model: call.model.to_owned(),
            attempts,
            prompt_too_long,
        })
    }

    /// The context per slot (prompt + completion) a request of `route` for
    /// `model` can use: the local model's as loaded (loading it if needed),
    /// else what the first link that would serve it says.
    ///
    /// # Errors
    /// [`RouteError::Exhausted`] when no link of the chain has the model.
    pub async fn context_length(&self, route: Route, model: &str) -> Result<u32, RouteError> {
        let mut attempts = Vec::new();
        for link in self.links(route) {
            match link {
                Link::Local => match self.inner.host.model_info(model).await {
                    Ok(info) => return Ok(info.context_length),
                    Err(error) => attempts.push(("local".to_owned(), error.to_string())),
                },
                Link::Cluster => {
                    let Some(peers) = self.cluster() else {
                        continue;
                    };
                    if peers.serves(model).await.is_some() {
                        return Ok(peers
                            .context_length(model)
                            .await
                            .unwrap_or(DEFAULT_REMOTE_CONTEXT));
                    }
                    attempts.push(("cluster".to_owned(), "no peer serves it".to_owned()));
                }
                Link::Remote(provider) => match provider.breaker().allow() {
                    Ok(()) => {
                        return Ok(provider
                            .config()
                            .context_length
                            .unwrap_or(DEFAULT_REMOTE_CONTEXT))
                    }
                    Err(error) => attempts.push((provider.name().to_owned(), error.to_string())),
                },
            }
        }
        Err(RouteError::Exhausted {
            route: route.as_str(),
            model: model.to_owned(),
            attempts,
            prompt_too_long: false,
        })
    }

    /// Starts `request` on `link`: the stream with the provider and model
    /// names, `None` when the link does not apply (no cluster), or the
    /// provider and model names with why it failed to start.
    async fn start(
        &self,
        link: &Link,
        model: &str,
        request: GenerateRequest,
    ) -> Result<Option<(Stream, String, String)>, Failed> {
        match link {
            Link::Local => match self.inner.host.generate(model, request, None).await {
                Ok(stream) => Ok(Some((Stream::Host(stream), "local".into(), model.into()))),
                Err(error) => Err(Failed::Host(error)),
            },
            Link::Cluster => {
                let Some(peers) = self.cluster() else {
                    return Ok(None);
                };
                let name = "cluster".to_owned();
                if let Err(error) = self.inner.cluster_breaker.allow() {
                    return Err(Failed::Other(name, model.into(), error.to_string()));
                }
                let Some(node) = peers.serves(model).await else {
                    return Err(Failed::Other(
                        name,
                        model.into(),
                        "no peer serves it".into(),
                    ));
                };
                let provider = format!("cluster:{node}");
                match peers.generate(model, request).await {
                    Ok(stream) => Ok(Some((Stream::Plain(stream), provider, model.into()))),
                    Err(why) => Err(Failed::Other(provider, model.into(), why)),
                }
            }
            Link::Remote(provider) => {
                let name = provider.name().to_owned();
                let remote_model = provider.model().to_owned();
                match provider.generate(request).await {
                    Ok(stream) => Ok(Some((Stream::Plain(stream), name, remote_model))),
                    Err(error) => Err(Failed::Other(name, remote_model, error.to_string())),
                }
            }
        }
    }

    /// Waits until every provider call recorded so far is in the store:
    /// before the store is closed, or before the calls are read back.
    pub async fn flush_records(&self) {
        let Some(recorder) = self.inner.recorder.get() else {
            return;
        };
        let (done, flushed) = oneshot::channel();
        if recorder.send(RecordJob::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Hands the attempt to the recorder; never waits for the commit.
    fn record(
        &self,
        call: Call<'_>,
        provider: &str,
        model: &str,
        outcome: Result<&GenerationResult, &str>,
        cost: f64,
        latency: Duration,
    ) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let usage = outcome.ok().map(|r| r.usage).unwrap_or_default();
        let record = ProviderCall {
            time_ms: now_ms(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            role: call.route,
            task_id: call.task_id.map(TaskId::from),
            ok: outcome.is_ok(),
            prompt_tokens: u64::from(usage.prompt_tokens),
            completion_tokens: u64::from(usage.completion_tokens),
            cost,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            error: outcome.err().map(str::to_owned),
        };
        let recorder = self
            .inner
            .recorder
            .get_or_init(|| spawn_recorder(store.clone()));
        if recorder.send(RecordJob::Call(record)).is_err() {
            tracing::warn!("could not record a provider call: the recorder has stopped");
        }
    }
}

/// What the recorder is handed, in the order the router made it.
enum RecordJob {
    Call(ProviderCall),
    /// Answered once every call handed before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Commits provider calls one after another, off the callers' path. One
/// task in order, not a task per call, because the store numbers calls as
/// they arrive and a request's attempts must read back in the order they
/// were tried. Unbounded because a bounded queue would make a full one
/// block the caller again; a call is a few hundred bytes and every one
/// follows a whole model request, far slower than a commit.
fn spawn_recorder(store: Store) -> mpsc::UnboundedSender<RecordJob> {
    let (jobs, mut queue) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            match job {
                RecordJob::Call(record) => {
                    if let Err(error) = store.record_provider_call(record).await {
                        tracing::warn!(%error, "could not record a provider call");
                    }
                }
                RecordJob::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    jobs
}

/// Why a link could not start a request: the host's own error, or a
/// provider's and model's names with why.
enum Failed {
    Host(HostError),
    Other(String, String, String),
}

/// A started request, from the host (which must hear of its end) or from
/// any other link.
enum Stream {
    Host(troupe_host::HostStream),
    Plain(GenerationStream),
}

impl Stream {
    async fn into_result(self) -> Result<GenerationResult, GenerateError> {
        match self {
            Stream::Host(stream) => stream.into_result().await,
            Stream::Plain(stream) => stream.into_result().await,
        }
    }
}
