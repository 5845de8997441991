//! The ModelHost actor: its messages and what each one does.
//!
//! The handler never waits on a model. A load is spawned onto the runtime
//! (the engine loads on the model's own thread) and comes back as
//! [`HostMsg::LoadFinished`]; an unload likewise comes back as
//! [`HostMsg::UnloadFinished`]. Requests for a model being loaded wait in
//! that model's queue inside the state, so requests to models already
//! loaded are answered while any load or unload is under way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use troupe_inference::backend::{GenerateError, LoadError, LoadedModel};
use troupe_models::catalog::{Catalog, CatalogError, ModelEntry};

use super::state::{Model, Phase, State, Waiter};
use super::stream::RequestSummary;
use super::types::{HostError, HostEvent, HostStatus, UnloadReason};
use super::{lifecycle, Arguments};

/// A request for a model: generate, embed, load or describe it.
pub(crate) struct Request {
    pub(crate) model: String,
    pub(crate) keep_alive: KeepAlive,
    pub(crate) waiter: Waiter,
    /// Whether the catalog was already rescanned for this request.
    pub(crate) rescanned: bool,
}

/// What a request does to its model's keep-alive.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeepAlive {
    /// Leave it (a model-info query is no use of the model).
    Unchanged,
    /// Set it to the host's default.
    Default,
    /// Set it to this.
    Set(Duration),
}

impl From<Option<Duration>> for KeepAlive {
    fn from(value: Option<Duration>) -> Self {
        value.map_or(KeepAlive::Default, KeepAlive::Set)
    }
}

// Local only; ractor's `cluster` feature (on for the workspace, see the
// root Cargo.toml) has no blanket impl.
impl ractor::Message for HostMsg {}

/// The ModelHost's messages. Callers use [`super::ModelHostHandle`].
pub(crate) enum HostMsg {
    /// Generate, embed, load or describe a model, loading it if needed.
    Request(Box<Request>),
    /// Unload a model; answered once its memory is free.
    Unload {
        model: String,
        reply: RpcReplyPort<Result<(), HostError>>,
    },
    /// The host's status.
    Status { reply: RpcReplyPort<HostStatus> },
    /// Rescan the catalog and list it.
    Catalog {
        reply: RpcReplyPort<Vec<ModelEntry>>,
    },
    /// A catalog scan finished off the actor.
    Rescanned { catalog: Catalog, then: Rescan },
    /// Unload everything and stop.
    Shutdown { reply: RpcReplyPort<()> },
    /// Learned reload costs (mean load time) by model name, for the
    /// eviction order.
    ReloadCosts(std::collections::HashMap<String, std::time::Duration>),
    /// A load spawned by the host finished.
    LoadFinished(LoadOutcome),
    /// An unload spawned by the host finished.
    UnloadFinished { id: u64 },
    /// A [`super::HostStream`] ended.
    RequestEnded {
        path: PathBuf,
        instance: u64,
        summary: Option<RequestSummary>,
    },
    /// A generation reserved on a model was refused while it was prepared
    /// (a bad request, the model busy): the reservation ends, and no
    /// request was started.
    RequestRefused { path: PathBuf, instance: u64 },
    /// A keep-alive timer ran out.
    KeepAliveExpired {
        path: PathBuf,
        instance: u64,
        generation: u64,
    },
}

/// How a load spawned by the host ended.
pub(crate) struct LoadOutcome {
    pub(crate) path: PathBuf,
    /// The load's id, to tell it from other loads of the same file.
    pub(crate) instance: u64,
    pub(crate) result: Result<Arc<dyn LoadedModel>, LoadError>,
    pub(crate) duration: Duration,
}

/// What to do once a rescan lands.
pub(crate) enum Rescan {
    /// Retry a request whose model was not found.
    Retry(Box<Request>),
    /// Answer a catalog listing.
    List(RpcReplyPort<Vec<ModelEntry>>),
}

/// The actor. All it holds is in [`State`].
pub(crate) struct ModelHost;

impl Actor for ModelHost {
    type Msg = HostMsg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<HostMsg>,
        args: Arguments,
    ) -> Result<State, ActorProcessingErr> {
        Ok(State {
            config: args.config,
            backend: args.backend,
            catalog: args.catalog,
            events: args.events,
            models: Default::default(),
            load_queue: Default::default(),
            unloading: Default::default(),
            estimates: Default::default(),
            measured: Default::default(),
            reload_costs: Default::default(),
            pinned: args.pinned,
            next_id: 0,
            shutdown: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg>,
        message: HostMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HostMsg::Request(request) => on_request(&myself, state, *request),
            HostMsg::Unload { model, reply } => on_unload(&myself, state, &model, reply),
            HostMsg::Status { reply } => {
                let _ = reply.send(state.status());
            }
            HostMsg::Catalog { reply } => rescan(&myself, state, Rescan::List(reply)),
            HostMsg::Rescanned { catalog, then } => on_rescanned(&myself, state, catalog, then),
            HostMsg::Shutdown { reply } => lifecycle::on_shutdown(&myself, state, reply),
            HostMsg::ReloadCosts(costs) => state.reload_costs = costs,
            HostMsg::LoadFinished(outcome) => lifecycle::on_load_finished(&myself, state, outcome),
            HostMsg::UnloadFinished { id } => lifecycle::on_unload_finished(&myself, state, id),
            HostMsg::RequestEnded {
                path,
                instance,
                summary,
            } => on_request_ended(&myself, state, path, instance, summary),
            HostMsg::RequestRefused { path, instance } => {
                on_request_refused(&myself, state, path, instance)
            }
            HostMsg::KeepAliveExpired {
                path,
                instance,
                generation,
            } => on_keep_alive_expired(&myself, state, path, instance, generation),
        }
        Ok(())
    }
}

/// Scans the catalog on a blocking thread (it opens every model file's
/// header) and comes back as [`HostMsg::Rescanned`].
fn rescan(myself: &ActorRef<HostMsg>, state: &State, then: Rescan) {
    let sources = state.config.catalog.clone();
    let host = myself.clone();
    tokio::spawn(async move {
        let catalog = tokio::task::spawn_blocking(move || Catalog::scan(&sources))
            .await
            .unwrap_or_default();
        let _ = host.cast(HostMsg::Rescanned { catalog, then });
    });
}

fn on_rescanned(myself: &ActorRef<HostMsg>, state: &mut State, catalog: Catalog, then: Rescan) {
    state.catalog = catalog;
    match then {
        Rescan::Retry(request) => on_request(myself, state, *request),
        Rescan::List(reply) => {
            let _ = reply.send(state.catalog.entries.clone());
        }
    }
}

fn resolve(state: &State, name: &str) -> Result<ModelEntry, HostError> {
    state.catalog.resolve(name).map_err(|error| match error {
        CatalogError::NotFound { name, .. } => HostError::ModelNotFound { name },
        other => HostError::Catalog(other),
    })
}

fn on_request(myself: &ActorRef<HostMsg>, state: &mut State, request: Request) {
    if state.shutdown.is_some() {
        request.waiter.fail(HostError::Stopped);
        return;
    }
    let entry = match resolve(state, &request.model) {
        Ok(entry) => entry,
        // The model may have been added since the last scan: look once more.
        Err(HostError::ModelNotFound { .. }) if !request.rescanned => {
            let retry = Request {
                rescanned: true,
                ..request
            };
            rescan(myself, state, Rescan::Retry(Box::new(retry)));
            return;
        }
        Err(error) => {
            request.waiter.fail(error);
            return;
        }
    };
    let default_keep_alive = state.config.default_keep_alive;
    if let Some(model) = state.models.get_mut(&entry.path) {
        match request.keep_alive {
            KeepAlive::Unchanged => {}
            KeepAlive::Default => model.keep_alive = default_keep_alive,
            KeepAlive::Set(keep_alive) => model.keep_alive = keep_alive,
        }
        match &mut model.phase {
            Phase::Queued { waiters, .. } | Phase::Loading { waiters, .. } => {
                waiters.push(request.waiter);
            }
            Phase::Loaded(_) => {
                let path = entry.path;
                // Describing a model is no use of it: its keep-alive runs on.
                let used = !matches!(request.waiter, Waiter::Info { .. });
                serve(myself, state, &path, request.waiter);
                if used {
                    arm_keep_alive(myself, state, &path);
                }
            }
        }
        return;
    }
    let planned = match plan(state, &entry) {
        Ok(planned) => planned,
        Err(error) => {
            request.waiter.fail(error);
            return;
        }
    };
    let pinned = state.pinned.contains(&entry.path);
    let path = entry.path.clone();
    state.models.insert(
        path.clone(),
        Model {
            entry,
            pinned,
            keep_alive: match request.keep_alive {
                KeepAlive::Set(keep_alive) => keep_alive,
                KeepAlive::Unchanged | KeepAlive::Default => default_keep_alive,
            },
            phase: Phase::Queued {
                planned,
                waiters: vec![request.waiter],
                announced: false,
            },
        },
    );
    state.load_queue.push_back(path);
    lifecycle::pump(myself, state);
}

/// The memory a load of `entry` needs, or why it can never fit.
fn plan(state: &mut State, entry: &ModelEntry) -> Result<u64, HostError> {
    let planned = state.planned_bytes(entry)?;
    let budget = state.config.budget_bytes;
    if planned > budget {
        return Err(HostError::TooLarge {
            model: entry.name.clone(),
            needed: planned,
            budget,
        });
    }
    let pinned = if state.pinned.contains(&entry.path) {
        0
    } else {
        state.pinned_bytes()
    };
    let available = budget.saturating_sub(pinned);
    if planned > available {
        return Err(HostError::DoesNotFitBesidePinned {
            model: entry.name.clone(),
            needed: planned,
            available,
            budget,
        });
    }
    Ok(planned)
}

/// Answers `waiter` from the loaded model at `path`.
pub(crate) fn serve(myself: &ActorRef<HostMsg>, state: &mut State, path: &PathBuf, waiter: Waiter) {
    let Some(model) = state.models.get_mut(path) else {
        waiter.fail(HostError::Stopped);
        return;
    };
    let Phase::Loaded(resident) = &mut model.phase else {
        waiter.fail(HostError::Stopped);
        return;
    };
    let name = model.entry.name.clone();
    match waiter {
        Waiter::Generate { request, reply } => {
            // Reserved now, so that the model stays while the request is
            // prepared; rendering the template, tokenizing and compiling a
            // grammar happen on a blocking thread, not in this mailbox that
            // serves every model.
            resident.in_flight += 1;
            resident.last_used = Instant::now();
            resident.expires_at = None;
            resident.timer_generation += 1;
            let (loaded, instance) = (Arc::clone(&resident.model), resident.instance);
            let (host, events, path) = (myself.clone(), state.events.clone(), path.clone());
            tokio::spawn(async move {
                let prepared = tokio::task::spawn_blocking(move || loaded.generate(*request)).await;
                let outcome = match prepared {
                    Ok(Ok(stream)) => {
                        let _ = events.send(HostEvent::RequestStarted {
                            model: name.clone(),
                        });
                        let _ = reply.send(Ok(super::HostStream::new(
                            stream, name, host, path, instance,
                        )));
                        return;
                    }
                    Ok(Err(GenerateError::Busy { .. })) => Err(HostError::Busy { model: name }),
                    Ok(Err(error)) => Err(HostError::Generate(error)),
                    Err(_) => Err(HostError::Stopped),
                };
                // The reservation ends before the caller hears: what it asks
                // the host next is queued behind this.
                let _ = host.cast(HostMsg::RequestRefused { path, instance });
                let _ = reply.send(outcome);
            });
        }
        Waiter::Embed { inputs, reply } => {
            let answer = resident.model.embed(inputs);
            resident.in_flight += 1;
            resident.last_used = Instant::now();
            resident.expires_at = None;
            resident.timer_generation += 1;
            let _ = state.events.send(HostEvent::RequestStarted {
                model: name.clone(),
            });
            let end = HostMsg::RequestEnded {
                path: path.clone(),
                instance: resident.instance,
                summary: None,
            };
            let host = myself.clone();
            // The engine thread does the work; waiting for it here would
            // stall every other model's requests.
            tokio::spawn(async move {
                let outcome = answer.await.map_err(|error| match error {
                    GenerateError::Busy { .. } => HostError::Busy { model: name },
                    error => HostError::Generate(error),
                });
                let _ = reply.send(outcome);
                // The host may have stopped; then nobody needs the count.
                let _ = host.cast(end);
            });
        }
        Waiter::Load { reply } => {
            resident.last_used = Instant::now();
            let _ = reply.send(Ok(State::model_status(
                &model.entry,
                model.pinned,
                resident,
            )));
        }
        Waiter::Info { reply } => {
            let _ = reply.send(Ok(resident.model.info().clone()));
        }
    }
}

/// Starts the keep-alive of the model at `path` if it is idle: a timer
/// that unloads it when no request came meanwhile. A zero keep-alive
/// unloads at once; pinned models never expire.
pub(crate) fn arm_keep_alive(myself: &ActorRef<HostMsg>, state: &mut State, path: &PathBuf) {
    let Some(model) = state.models.get_mut(path) else {
        return;
    };
    let keep_alive = model.keep_alive;
    let Phase::Loaded(resident) = &mut model.phase else {
        return;
    };
    if model.pinned || resident.in_flight > 0 {
        resident.expires_at = None;
        return;
    }
    resident.timer_generation += 1;
    if keep_alive.is_zero() {
        lifecycle::start_unload(
            myself,
            state,
            path,
            UnloadReason::KeepAliveExpired,
            Vec::new(),
        );
        return;
    }
    // A keep-alive too long to represent means "forever".
    resident.expires_at = SystemTime::now().checked_add(keep_alive);
    if resident.expires_at.is_none() || Instant::now().checked_add(keep_alive).is_none() {
        resident.expires_at = None;
        return;
    }
    let message = HostMsg::KeepAliveExpired {
        path: path.clone(),
        instance: resident.instance,
        generation: resident.timer_generation,
    };
    let host = myself.clone();
    tokio::spawn(async move {
        tokio::time::sleep(keep_alive).await;
        let _ = host.cast(message);
    });
}

fn on_keep_alive_expired(
    myself: &ActorRef<HostMsg>,
    state: &mut State,
    path: PathBuf,
    instance: u64,
    generation: u64,
) {
    let current = state.models.get(&path).is_some_and(|m| match &m.phase {
        Phase::Loaded(r) => {
            !m.pinned
                && r.instance == instance
                && r.timer_generation == generation
                && r.in_flight == 0
        }
        _ => false,
    });
    if current {
        lifecycle::start_unload(
            myself,
            state,
            &path,
            UnloadReason::KeepAliveExpired,
            Vec::new(),
        );
    }
}

fn on_request_ended(
    myself: &ActorRef<HostMsg>,
    state: &mut State,
    path: PathBuf,
    instance: u64,
    summary: Option<RequestSummary>,
) {
    let Some(model) = state.models.get_mut(&path) else {
        return;
    };
    let name = model.entry.name.clone();
    if let Phase::Loaded(resident) = &mut model.phase {
        if resident.instance == instance {
            resident.in_flight = resident.in_flight.saturating_sub(1);
            resident.last_used = Instant::now();
            // A request may have grown the model (the llama engine creates
            // its embedding context on the first embeddings request).
            resident.memory = resident.model.memory();
        }
    }
    let summary = summary.unwrap_or_default();
    state.emit(HostEvent::RequestFinished {
        model: name,
        completion_tokens: summary.completion_tokens,
        ttft_ms: summary.ttft_ms,
        tokens_per_s: summary.tokens_per_s,
    });
    arm_keep_alive(myself, state, &path);
    // A queued load may have been waiting for this model to become idle.
    lifecycle::pump(myself, state);
}

/// Ends the reservation of a generation that was refused while it was
/// prepared (see [`serve`]).
fn on_request_refused(myself: &ActorRef<HostMsg>, state: &mut State, path: PathBuf, instance: u64) {
    if let Some(model) = state.models.get_mut(&path) {
        if let Phase::Loaded(resident) = &mut model.phase {
            if resident.instance == instance {
                resident.in_flight = resident.in_flight.saturating_sub(1);
            }
        }
    }
    arm_keep_alive(myself, state, &path);
    lifecycle::pump(myself, state);
}

fn on_unload(
    myself: &ActorRef<HostMsg>,
    state: &mut State,
    name: &str,
    reply: RpcReplyPort<Result<(), HostError>>,
) {
    let entry = match resolve(state, name) {
        Ok(entry) => entry,
        Err(error) => {
            let _ = reply.send(Err(error));
            return;
        }
    };
    let Some(model) = state.models.get_mut(&entry.path) else {
        // Not loaded: nothing to do.
        let _ = reply.send(Ok(()));
        return;
    };
    if model.pinned && state.shutdown.is_none() {
        let _ = reply.send(Err(HostError::Pinned { model: entry.name }));
        return;
    }
    match &mut model.phase {
        Phase::Queued { .. } => {
            if let Some(Model {
                phase: Phase::Queued { waiters, .. },
                ..
            }) = state.models.remove(&entry.path)
            {
                for waiter in waiters {
                    waiter.fail(HostError::LoadFailed {
                        model: entry.name.clone(),
                        reason: "the model was unloaded on request before it was loaded".into(),
                    });
                }
            }
            state.load_queue.retain(|p| p != &entry.path);
            let _ = reply.send(Ok(()));
            lifecycle::pump(myself, state);
        }
        Phase::Loading { unload_after, .. } => unload_after.push(reply),
        Phase::Loaded(_) => {
            lifecycle::start_unload(
                myself,
                state,
                &entry.path,
                UnloadReason::Requested,
                vec![reply],
            );
        }
    }
}
