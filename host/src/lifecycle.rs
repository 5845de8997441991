//! Loading, evicting and unloading: the part of the ModelHost that keeps
//! memory in use within the budget.
//!
//! [`pump`] runs whenever memory may have become free (a load or unload
//! finished, a request ended) and starts the queued loads that now fit, in
//! arrival order. When the next load does not fit it evicts idle, unpinned
//! models (cheapest to reload first, then least recently used) if that
//! frees enough; if it cannot, because the memory is held by models with
//! requests in flight, the load waits for them.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use ractor::{ActorRef, RpcReplyPort};
use troupe_inference::backend::LoadError;

use super::actor::{arm_keep_alive, serve, HostMsg, LoadOutcome};
use super::budget::{choose_evictions, format_bytes};
use super::state::{Measured, Model, Phase, Resident, State, Unloading, Waiter};
use super::types::{HostError, HostEvent, UnloadReason};

/// Starts every queued load that fits, evicting idle models to make room.
pub(crate) fn pump(myself: &ActorRef<HostMsg>, state: &mut State) {
    if state.shutdown.is_some() {
        return;
    }
    let budget = state.config.budget_bytes;
    while let Some(path) = state.load_queue.front().cloned() {
        let Some(Model {
            entry,
            phase: Phase::Queued { planned, .. },
            ..
        }) = state.models.get(&path)
        else {
            state.load_queue.pop_front();
            continue;
        };
        let (planned, name) = (*planned, entry.name.clone());
        let reserved = state.reserved_bytes();
        if reserved.saturating_add(planned) <= budget {
            state.load_queue.pop_front();
            start_load(myself, state, &path);
            continue;
        }
        // Models being unloaded free their memory soon: wait for them
        // before evicting more.
        let unloading: u64 = state.unloading.values().map(|u| u.bytes).sum();
        let after_unloads = reserved.saturating_sub(unloading);
        if after_unloads.saturating_add(planned) <= budget {
            break;
        }
        let needed = after_unloads + planned - budget;
        match choose_evictions(state.eviction_candidates(None), needed) {
            Some(evict) => {
                for victim in evict {
                    let reason = UnloadReason::Evicted {
                        for_model: name.clone(),
                    };
                    start_unload(myself, state, &victim, reason, Vec::new());
                }
            }
            None => announce_waiting(state, &path, planned, budget.saturating_sub(reserved)),
        }
        break;
    }
}

/// Publishes `LoadWaiting` once per queued load.
fn announce_waiting(state: &mut State, path: &PathBuf, planned: u64, free: u64) {
    let Some(model) = state.models.get_mut(path) else {
        return;
    };
    if let Phase::Queued { announced, .. } = &mut model.phase {
        if *announced {
            return;
        }
        *announced = true;
        tracing::info!(model = %model.entry.name, needed = planned, free,
            "load waits for busy models to finish their requests");
        let event = HostEvent::LoadWaiting {
            model: model.entry.name.clone(),
            needed_bytes: planned,
            free_bytes: free,
        };
        state.emit(event);
    }
}

/// Turns the queued model at `path` into a load running on its own thread.
fn start_load(myself: &ActorRef<HostMsg>, state: &mut State, path: &PathBuf) {
    let instance = state.next_id();
    let Some(model) = state.models.get_mut(path) else {
        return;
    };
    let Phase::Queued {
        planned, waiters, ..
    } = model.phase.take()
    else {
        return;
    };
    model.phase = Phase::Loading {
        instance,
        planned,
        waiters,
        unload_after: Vec::new(),
    };
    let name = model.entry.name.clone();
    tracing::info!(model = %name, planned = %format_bytes(planned), "loading");
    state.emit(HostEvent::LoadStarted {
        model: name,
        estimate_bytes: planned,
    });
    let load = state.backend.load(path, state.config.load.clone());
    let host = myself.clone();
    let path = path.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = load.await;
        let _ = host.cast(HostMsg::LoadFinished(LoadOutcome {
            path,
            instance,
            result,
            duration: started.elapsed(),
        }));
    });
}

/// A load landed: account its measured memory, keep the budget, and answer
/// the requests that waited for it.
pub(crate) fn on_load_finished(
    myself: &ActorRef<HostMsg>,
    state: &mut State,
    outcome: LoadOutcome,
) {
    let LoadOutcome {
        path,
        instance,
        result,
        duration,
    } = outcome;
    let current = state
        .models
        .get(&path)
        .is_some_and(|m| matches!(m.phase, Phase::Loading { instance: i, .. } if i == instance));
    let Some(mut model) = current.then(|| state.models.remove(&path)).flatten() else {
        // Nothing waits for it any more; dropping the handle stops its engine.
        return;
    };
    let Phase::Loading {
        planned,
        waiters,
        unload_after,
        ..
    } = model.phase.take()
    else {
        return;
    };
    let name = model.entry.name.clone();
    let loaded = match result {
        Ok(loaded) => loaded,
        Err(error) => {
            load_failed(state, &name, error, waiters, unload_after);
            pump(myself, state);
            check_shutdown(myself, state);
            return;
        }
    };
    let memory = loaded.memory();
    let measured = memory.total();
    state.measured.insert(
        path.clone(),
        Measured {
            bytes: measured,
            load_time: duration,
        },
    );
    if measured > planned {
        tracing::warn!(model = %name, measured, planned,
            "the model holds more memory than planned");
    }
    let now = Instant::now();
    model.phase = Phase::Loaded(Box::new(Resident {
        instance,
        model: loaded,
        memory,
        in_flight: 0,
        last_used: now,
        loaded_at: SystemTime::now(),
        expires_at: None,
        timer_generation: 0,
    }));
    state.models.insert(path.clone(), model);
    tracing::info!(model = %name, seconds = duration.as_secs_f64(), memory = %format_bytes(measured), "loaded");
    state.emit(HostEvent::Loaded {
        model: name.clone(),
        duration,
        memory,
    });
    if state.shutdown.is_some() {
        fail_all(waiters, || HostError::Stopped);
        start_unload(myself, state, &path, UnloadReason::Shutdown, unload_after);
        return;
    }
    if !keep_within_budget(myself, state, &path, &name, waiters) {
        return;
    }
    if !unload_after.is_empty() {
        start_unload(myself, state, &path, UnloadReason::Requested, unload_after);
    } else {
        arm_keep_alive(myself, state, &path);
    }
    pump(myself, state);
}

/// After a load measured more than planned: evicts idle models until the
/// budget holds again, or unloads the new model and queues its load again
/// (at its measured size) when they cannot make room. Serves `waiters`
/// when the model stays; returns whether it stayed.
fn keep_within_budget(
    myself: &ActorRef<HostMsg>,
    state: &mut State,
    path: &PathBuf,
    name: &str,
    waiters: Vec<Waiter>,
) -> bool {
    let budget = state.config.budget_bytes;
    let reserved = state.reserved_bytes();
    let measured = state.measured.get(path).map_or(0, |m| m.bytes);
    if reserved > budget {
        let over = reserved - budget;
        let evict = (measured <= budget)
            .then(|| choose_evictions(state.eviction_candidates(Some(path)), over))
            .flatten();
        match evict {
            Some(victims) => {
                for victim in victims {
                    let reason = UnloadReason::Evicted {
                        for_model: name.to_owned(),
                    };
                    start_unload(myself, state, &victim, reason, Vec::new());
                }
            }
            None => {
                let entry = state
                    .models
                    .get(path)
                    .map(|m| (m.entry.clone(), m.pinned, m.keep_alive));
                start_unload(myself, state, path, UnloadReason::OverBudget, Vec::new());
                if measured > budget {
                    fail_all(waiters, || HostError::TooLarge {
                        model: name.to_owned(),
                        needed: measured,
                        budget,
                    });
                } else if let Some((entry, pinned, keep_alive)) = entry {
                    state.models.insert(
                        path.clone(),
                        Model {
                            entry,
                            pinned,
                            keep_alive,
                            phase: Phase::Queued {
                                planned: measured,
                                waiters,
                                announced: false,
                            },
                        },
                    );
                    state.load_queue.push_front(path.clone());
                }
                pump(myself, state);
                return false;
            }
        }
    }
    for waiter in waiters {
        serve(myself, state, path, waiter);
    }
    true
}

fn load_failed(
    state: &mut State,
    name: &str,
    error: LoadError,
    waiters: Vec<Waiter>,
    unload_after: Vec<RpcReplyPort<Result<(), HostError>>>,
) {
    let reason = error.to_string();
    tracing::warn!(model = %name, %reason, "load failed");
    state.emit(HostEvent::LoadFailed {
        model: name.to_owned(),
        error: reason.clone(),
    });
    let mut waiters = waiters.into_iter();
    if let Some(first) = waiters.next() {
        first.fail(HostError::Load(error));
    }
    fail_all(waiters, || HostError::LoadFailed {
        model: name.to_owned(),
        reason: reason.clone(),
    });
    for reply in unload_after {
        let _ = reply.send(Ok(()));
    }
}

fn fail_all(waiters: impl IntoIterator<Item = Waiter>, error: impl Fn() -> HostError) {
    for waiter in waiters {
        waiter.fail(error());
    }
}

/// Unloads the loaded model at `path` on the runtime; its memory counts
/// until the engine has freed it ([`HostMsg::UnloadFinished`]), and
/// `replies` are answered then.
pub(crate) fn start_unload(
    myself: &ActorRef<HostMsg>,
    state: &mut State,
    path: &PathBuf,
    reason: UnloadReason,
    replies: Vec<RpcReplyPort<Result<(), HostError>>>,
) {
    if !matches!(
        state.models.get(path).map(|m| &m.phase),
        Some(Phase::Loaded(_))
    ) {
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
        return;
    }
    let Some(Model {
        entry,
        phase: Phase::Loaded(resident),
        ..
    }) = state.models.remove(path)
    else {
        return;
    };
    let id = state.next_id();
    tracing::info!(model = %entry.name, ?reason, "unloading");
    state.unloading.insert(
        id,
        Unloading {
            name: entry.name,
            bytes: resident.memory.total(),
            reason,
            started: Instant::now(),
            replies,
        },
    );
    let host = myself.clone();
    let model = resident.model;
    tokio::spawn(async move {
        model.unload().await;
        drop(model);
        let _ = host.cast(HostMsg::UnloadFinished { id });
    });
}

/// An engine has freed its memory.
pub(crate) fn on_unload_finished(myself: &ActorRef<HostMsg>, state: &mut State, id: u64) {
    let Some(unloading) = state.unloading.remove(&id) else {
        return;
    };
    state.emit(HostEvent::Unloaded {
        model: unloading.name,
        reason: unloading.reason,
        duration: unloading.started.elapsed(),
    });
    for reply in unloading.replies {
        let _ = reply.send(Ok(()));
    }
    pump(myself, state);
    check_shutdown(myself, state);
}

/// Refuses queued loads, unloads every model (pinned ones too) and stops
/// the actor once all memory is free.
pub(crate) fn on_shutdown(myself: &ActorRef<HostMsg>, state: &mut State, reply: RpcReplyPort<()>) {
    if let Some(replies) = &mut state.shutdown {
        replies.push(reply);
        return;
    }
    state.shutdown = Some(vec![reply]);
    let queued: Vec<PathBuf> = state.load_queue.drain(..).collect();
    for path in queued {
        if let Some(Model {
            phase: Phase::Queued { waiters, .. },
            ..
        }) = state.models.remove(&path)
        {
            fail_all(waiters, || HostError::Stopped);
        }
    }
    let loaded: Vec<PathBuf> = state
        .models
        .iter()
        .filter(|(_, m)| matches!(m.phase, Phase::Loaded(_)))
        .map(|(p, _)| p.clone())
        .collect();
    for path in loaded {
        start_unload(myself, state, &path, UnloadReason::Shutdown, Vec::new());
    }
    check_shutdown(myself, state);
}

fn check_shutdown(myself: &ActorRef<HostMsg>, state: &mut State) {
    if state.models.is_empty() && state.unloading.is_empty() {
        if let Some(replies) = state.shutdown.take() {
            for reply in replies {
                let _ = reply.send(());
            }
            myself.stop(None);
        }
    }
}
