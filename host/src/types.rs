//! What the ModelHost answers with: its status, its events and its errors.
//!
//! These are the types the HTTP layer prints, so they serialise; durations
//! and times are written as seconds (floats) rather than serde's
//! `{secs, nanos}` pairs, and memory as its parts plus the total.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use troupe_inference::backend::{GenerateError, LoadError, MemoryUsage};
use troupe_models::catalog::CatalogError;
use troupe_models::estimate::EstimateError;

use super::budget::format_bytes;

/// The host's memory and the models it holds.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The memory budget.
    pub budget_bytes: u64,
    /// Memory measured as held by loaded models (and by models still being
    /// unloaded), as llama.cpp allocated it.
    pub used_bytes: u64,
    /// `used_bytes` plus the estimates of models being loaded: what the
    /// host plans against.
    pub reserved_bytes: u64,
    /// Loaded models, by name.
    pub models: Vec<LoadedModelStatus>,
    /// Loads waiting for memory to become free.
    pub queued_loads: usize,
    /// Models being loaded now, by name.
    pub loading: Vec<String>,
}

/// One loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModelStatus {
    /// Its catalog name.
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Memory it holds, measured after the load.
    #[serde(serialize_with = "ser_memory")]
    pub memory: MemoryUsage,
    /// Requests it decodes at once.
    pub slots: u32,
    /// Slots running a request now.
    pub slots_in_use: u32,
    /// Requests waiting for a slot.
    pub queued_requests: u32,
    /// Whether it is pinned (loaded at start, never evicted).
    pub pinned: bool,
    /// When it will be unloaded if no request comes; `None` while busy, for
    /// pinned models and for an unbounded keep-alive.
    #[serde(serialize_with = "ser_optional_time")]
    pub expires_at: Option<SystemTime>,
    /// Tokens each slot holds.
    pub context_length: u32,
    /// When the load finished.
    #[serde(serialize_with = "ser_time")]
    pub loaded_at: SystemTime,
}

/// Why a model was unloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UnloadReason {
    /// To make room for another model.
    Evicted {
        /// The model being loaded.
        for_model: String,
    },
    /// No request came within its keep-alive.
    KeepAliveExpired,
    /// Someone asked for it.
    Requested,
    /// The host is shutting down.
    Shutdown,
    /// It turned out larger than its estimate and no idle model could make
    /// room; its load is retried when memory frees up.
    OverBudget,
}

/// Something the host did, published to every [`super::ModelHostHandle::events`] receiver.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HostEvent {
    /// A load began on the model's own thread.
    LoadStarted {
        /// Catalog name.
        model: String,
        /// Memory planned for it.
        estimate_bytes: u64,
    },
    /// A load is waiting: busy models hold the memory it needs.
    LoadWaiting {
        /// Catalog name.
        model: String,
        /// Memory it needs.
        needed_bytes: u64,
        /// Memory free now.
        free_bytes: u64,
    },
    /// A load finished.
    Loaded {
        /// Catalog name.
        model: String,
        /// How long it took.
        #[serde(serialize_with = "ser_seconds")]
        duration: Duration,
        /// Memory it holds, measured.
        #[serde(serialize_with = "ser_memory")]
        memory: MemoryUsage,
    },
    /// A load failed.
    LoadFailed {
        /// Catalog name.
        model: String,
        /// Why.
        error: String,
    },
    /// A model's memory was freed.
    Unloaded {
        /// Catalog name.
        model: String,
        /// Why it was unloaded.
        reason: UnloadReason,
        /// How long freeing took.
        #[serde(serialize_with = "ser_seconds")]
        duration: Duration,
    },
    /// A request was handed to a loaded model.
    RequestStarted {
        /// Catalog name.
        model: String,
    },
    /// A request ended (finished, failed or was dropped; the counts are 0
    /// when it produced no result).
    RequestFinished {
        /// Catalog name.
        model: String,
        /// Tokens generated.
        completion_tokens: u32,
        /// Time to the first token, in milliseconds.
        ttft_ms: f64,
        /// Generation speed.
        tokens_per_s: f64,
    },
}

/// Why the host could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No model has this name (nor is it a model file).
    #[error("no model named {name:?} (`troupe models` lists them)")]
    ModelNotFound {
        /// The name asked for.
        name: String,
    },
    /// The name matches several models, or names a file that is not a usable model.
    #[error(transparent)]
    Catalog(CatalogError),
    /// The model's memory could not be estimated (it is not a language model).
    #[error("cannot plan loading {model}: {source}")]
    Estimate {
        /// Catalog name.
        model: String,
        /// Why.
        #[source]
        source: EstimateError,
    },
    /// The model is larger than the whole budget.
    #[error("model {model} needs {needed} bytes ({}) but the whole memory budget is {budget} bytes ({}); raise --memory-budget or use a smaller context or fewer slots", format_bytes(*.needed), format_bytes(*.budget))]
    TooLarge {
        /// Catalog name.
        model: String,
        /// Bytes it needs.
        needed: u64,
        /// The budget.
        budget: u64,
    },
    /// The model fits the budget, but not beside the pinned models, which are never evicted.
    #[error("model {model} needs {needed} bytes ({}) but pinned models leave only {available} bytes ({}) of the {budget}-byte budget", format_bytes(*.needed), format_bytes(*.available))]
    DoesNotFitBesidePinned {
        /// Catalog name.
        model: String,
        /// Bytes it needs.
        needed: u64,
        /// Budget left beside the pinned models.
        available: u64,
        /// The budget.
        budget: u64,
    },
    /// Every slot of the model is busy and its queue is full.
    #[error("model {model} is busy: all slots are in use and its request queue is full")]
    Busy {
        /// Catalog name.
        model: String,
    },
    /// A pinned model cannot be unloaded while the host runs.
    #[error("model {model} is pinned and is not unloaded while the host runs")]
    Pinned {
        /// Catalog name.
        model: String,
    },
    /// Loading failed.
    #[error(transparent)]
    Load(LoadError),
    /// Loading failed (for requests that waited on a load another request
    /// started; the first one gets [`HostError::Load`]).
    #[error("loading {model} failed: {reason}")]
    LoadFailed {
        /// Catalog name.
        model: String,
        /// The load error, as text.
        reason: String,
    },
    /// The request was refused or failed.
    #[error(transparent)]
    Generate(GenerateError),
    /// The host could not be started.
    #[error("the model host could not start: {reason}")]
    Start {
        /// Why.
        reason: String,
    },
    /// The host has stopped (or is shutting down).
    #[error("the model host has stopped")]
    Stopped,
}

fn ser_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Seconds since the Unix epoch.
fn ser_time<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    serializer.serialize_f64(since.as_secs_f64())
}

fn ser_optional_time<S: Serializer>(
    value: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(t) => ser_time(t, serializer),
        None => serializer.serialize_none(),
    }
}

fn ser_memory<S: Serializer>(memory: &MemoryUsage, serializer: S) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_struct("MemoryUsage", 5)?;
    s.serialize_field("weights", &memory.weights)?;
    s.serialize_field("kv_cache", &memory.kv_cache)?;
    s.serialize_field("compute", &memory.compute)?;
    s.serialize_field("total", &memory.total())?;
    s.serialize_field("measured", &memory.measured)?;
    s.end()
}
