//! The ModelHost's state: every model it knows of (queued, loading or
//! loaded), the memory each holds, and the accounting the budget is checked
//! against.
//!
//! Memory is counted in three places: loaded models at what llama.cpp
//! measured, models being unloaded at the same (their memory is not free
//! until the engine thread has ended), and models being loaded at their
//! planned size. A load starts only when the sum stays within the budget.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ractor::RpcReplyPort;
use tokio::sync::broadcast;
use troupe_inference::backend::{
    Backend, Embeddings, GenerateRequest, LoadedModel, MemoryUsage, ModelInfo,
};
use troupe_models::catalog::{Catalog, ModelEntry};

use super::budget::{estimate_load_bytes, EvictionCandidate};
use super::stream::HostStream;
use super::types::{HostError, HostEvent, HostStatus, LoadedModelStatus, UnloadReason};
use super::ModelHostConfig;

/// A request waiting for its model to be loaded.
pub(crate) enum Waiter {
    /// Start a generation.
    Generate {
        request: Box<GenerateRequest>,
        reply: RpcReplyPort<Result<HostStream, HostError>>,
    },
    /// Embed texts.
    Embed {
        inputs: Vec<String>,
        reply: RpcReplyPort<Result<Embeddings, HostError>>,
    },
    /// Report the loaded model.
    Load {
        reply: RpcReplyPort<Result<LoadedModelStatus, HostError>>,
    },
    /// Report what the model is.
    Info {
        reply: RpcReplyPort<Result<ModelInfo, HostError>>,
    },
}

impl Waiter {
    /// Answers with an error, whatever was asked.
    pub(crate) fn fail(self, error: HostError) {
        // A caller that gave up no longer needs the answer.
        match self {
            Waiter::Generate { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Waiter::Embed { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Waiter::Load { reply } => {
                let _ = reply.send(Err(error));
            }
            Waiter::Info { reply } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// A model in memory.
pub(crate) struct Resident {
    /// Tells this load apart from earlier and later loads of the same file.
    pub(crate) instance: u64,
    pub(crate) model: Arc<dyn LoadedModel>,
    pub(crate) memory: MemoryUsage,
    /// Requests running or waiting for a slot.
    pub(crate) in_flight: u32,
    pub(crate) last_used: Instant,
    pub(crate) loaded_at: SystemTime,
    /// When the keep-alive runs out, if it is counting.
    pub(crate) expires_at: Option<SystemTime>,
    /// Bumped whenever the keep-alive is re-armed, so older timers are ignored.
    pub(crate) timer_generation: u64,
}

/// Where a model is in its life.
pub(crate) enum Phase {
    /// Waiting for memory.
    Queued {
        planned: u64,
        waiters: Vec<Waiter>,
        /// Whether a `LoadWaiting` event was published for it.
        announced: bool,
    },
    /// Loading on its own thread.
    Loading {
        instance: u64,
        planned: u64,
        waiters: Vec<Waiter>,
        unload_after: Vec<RpcReplyPort<Result<(), HostError>>>,
    },
    /// Ready.
    Loaded(Box<Resident>),
}

impl Phase {
    /// Moves the phase out, leaving an empty `Queued` in its place, so that
    /// its waiters can be taken by value; the caller sets the next phase.
    pub(crate) fn take(&mut self) -> Phase {
        std::mem::replace(
            self,
            Phase::Queued {
                planned: 0,
                waiters: Vec::new(),
                announced: false,
            },
        )
    }
}

/// A model the host has been asked for.
pub(crate) struct Model {
    pub(crate) entry: ModelEntry,
    pub(crate) pinned: bool,
    /// Idle time before it is unloaded (the last request's, or the default).
    pub(crate) keep_alive: Duration,
    pub(crate) phase: Phase,
}

/// A model whose engine is shutting down; its memory still counts.
pub(crate) struct Unloading {
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) reason: UnloadReason,
    pub(crate) started: Instant,
    pub(crate) replies: Vec<RpcReplyPort<Result<(), HostError>>>,
}

/// What the last load of a file measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) bytes: u64,
    pub(crate) load_time: Duration,
}

/// The actor's state (built in `pre_start`).
pub(crate) struct State {
    pub(crate) config: ModelHostConfig,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) catalog: Catalog,
    pub(crate) events: broadcast::Sender<HostEvent>,
    /// Every model queued, loading or loaded, by file.
    pub(crate) models: HashMap<PathBuf, Model>,
    /// Files whose load waits for memory, first come first served.
    pub(crate) load_queue: VecDeque<PathBuf>,
    pub(crate) unloading: HashMap<u64, Unloading>,
    /// Estimates already computed, by file (the options never change).
    pub(crate) estimates: HashMap<PathBuf, u64>,
    pub(crate) measured: HashMap<PathBuf, Measured>,
    /// Mean load times the Learner has seen, by model name; they outlive
    /// this process's own measurements, which count only the latest load.
    pub(crate) reload_costs: HashMap<String, Duration>,
    /// Files never evicted.
    pub(crate) pinned: Vec<PathBuf>,
    pub(crate) next_id: u64,
    /// Callers of `shutdown`, once it began.
    pub(crate) shutdown: Option<Vec<RpcReplyPort<()>>>,
}

impl State {
    /// Publishes an event; nobody listening is fine.
    pub(crate) fn emit(&self, event: HostEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Measured memory of loaded and unloading models.
    pub(crate) fn used_bytes(&self) -> u64 {
        let loaded: u64 = self
            .models
            .values()
            .filter_map(|m| match &m.phase {
                Phase::Loaded(r) => Some(r.memory.total()),
                _ => None,
            })
            .sum();
        let unloading: u64 = self.unloading.values().map(|u| u.bytes).sum();
        loaded + unloading
    }

    /// Used memory plus the plans of loads in progress.
    pub(crate) fn reserved_bytes(&self) -> u64 {
        let loading: u64 = self
            .models
            .values()
            .filter_map(|m| match &m.phase {
                Phase::Loading { planned, .. } => Some(*planned),
                _ => None,
            })
            .sum();
        self.used_bytes() + loading
    }

    /// Memory held or planned by pinned models, which no eviction frees.
    pub(crate) fn pinned_bytes(&self) -> u64 {
        self.models
            .values()
            .filter(|m| m.pinned)
            .filter_map(|m| match &m.phase {
                Phase::Loaded(r) => Some(r.memory.total()),
                Phase::Loading { planned, .. } => Some(*planned),
                Phase::Queued { .. } => None,
            })
            .sum()
    }

    /// Memory a load of `entry` is planned at: the estimate, or what the
    /// last load of the file measured when that was more.
    pub(crate) fn planned_bytes(&mut self, entry: &ModelEntry) -> Result<u64, HostError> {
        let estimated = match self.estimates.get(&entry.path) {
            Some(&bytes) => bytes,
            None => {
                let bytes = self.estimate(entry)?;
                self.estimates.insert(entry.path.clone(), bytes);
                bytes
            }
        };
        let learned = self.measured.get(&entry.path).map_or(0, |m| m.bytes);
        Ok(estimated.max(learned))
    }

    fn estimate(&self, entry: &ModelEntry) -> Result<u64, HostError> {
        estimate_load_bytes(&entry.path, &self.config.load).map_err(|source| HostError::Estimate {
            model: entry.name.clone(),
            source,
        })
    }

    /// Idle, unpinned loaded models, other than `except`.
    pub(crate) fn eviction_candidates(
        &self,
        except: Option<&Path>,
    ) -> Vec<EvictionCandidate<PathBuf>> {
        self.models
            .iter()
            .filter(|(path, m)| !m.pinned && Some(path.as_path()) != except)
            .filter_map(|(path, m)| match &m.phase {
                Phase::Loaded(r) if r.in_flight == 0 => Some(EvictionCandidate {
                    key: path.clone(),
                    bytes: r.memory.total(),
                    reload_cost: self
                        .reload_costs
                        .get(&m.entry.name)
                        .copied()
                        .unwrap_or_else(|| {
                            self.measured
                                .get(path)
                                .map_or(Duration::ZERO, |m| m.load_time)
                        }),
                    last_used: r.last_used,
                }),
                _ => None,
            })
            .collect()
    }

    /// The status of a loaded model.
    pub(crate) fn model_status(
        entry: &ModelEntry,
        pinned: bool,
        resident: &Resident,
    ) -> LoadedModelStatus {
        let info = resident.model.info();
        let slots = info.parallel_slots;
        LoadedModelStatus {
            name: entry.name.clone(),
            path: entry.path.clone(),
            memory: resident.memory,
            slots,
            slots_in_use: resident.in_flight.min(slots),
            queued_requests: resident.in_flight.saturating_sub(slots),
            pinned,
            expires_at: resident.expires_at,
            context_length: info.context_length,
            loaded_at: resident.loaded_at,
        }
    }

    /// The whole host's status.
    pub(crate) fn status(&self) -> HostStatus {
        let mut models: Vec<LoadedModelStatus> = self
            .models
            .values()
            .filter_map(|m| match &m.phase {
                Phase::Loaded(r) => Some(Self::model_status(&m.entry, m.pinned, r)),
                _ => None,
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        let mut loading: Vec<String> = self
            .models
            .values()
            .filter(|m| matches!(m.phase, Phase::Loading { .. }))
            .map(|m| m.entry.name.clone())
            .collect();
        loading.sort();
        HostStatus {
            budget_bytes: self.config.budget_bytes,
            used_bytes: self.used_bytes(),
            reserved_bytes: self.reserved_bytes(),
            models,
            queued_loads: self.load_queue.len(),
            loading,
        }
    }
}
