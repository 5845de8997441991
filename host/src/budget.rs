//! The memory budget: how big it is by default, how a user writes it, and
//! which idle models to evict when a load needs room.
//!
//! Eviction order is a pure function so it can be tested without models.
//! Evicting a model costs its reload if it is wanted again; a model idle
//! for long is less likely to be. So candidates go in order of expected
//! reload cost per byte freed: reload time (the Learner's mean load time,
//! else this process's latest) ÷ (1 + minutes idle) ÷ bytes. Among models
//! of one size and reload time the least recently used goes first; a big
//! model that is quick to reload goes before a small slow one.

use std::path::Path;
use std::time::{Duration, Instant};

use troupe_inference::backend::LoadOptions;
use troupe_models::estimate::{estimate, EstimateError, EstimateParams};
use troupe_models::gguf::GgufFile;

/// Share of the machine's memory the host uses when no budget is given.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.5;

/// Budget used when the machine's memory cannot be read (not Linux).
const FALLBACK_BUDGET: u64 = 4 << 30;

pub use troupe_config::size::{format_bytes, parse_size, ParseSizeError};

/// The budget when none is configured: [`DEFAULT_BUDGET_SHARE`] of
/// `MemTotal` in `/proc/meminfo`, or 4 GiB where that cannot be read.
pub fn default_budget_bytes() -> u64 {
    match std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text))
    {
        Some(total) => (total as f64 * DEFAULT_BUDGET_SHARE) as u64,
        None => {
            tracing::warn!(
                budget = FALLBACK_BUDGET,
                "cannot read MemTotal from /proc/meminfo; using a 4 GiB memory budget"
            );
            FALLBACK_BUDGET
        }
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes (the file says kB, meaning KiB).
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The memory the host plans for loading the model file at `path` with
/// `opts`: [`troupe_models::estimate`] of weights, KV cache and compute
/// buffers for `context_length × parallel_slots` cells (each slot's context
/// capped to the training context, as the engine does).
///
/// # Errors
/// [`EstimateError`] when the file cannot be read or is not a language model.
pub fn estimate_load_bytes(path: &Path, opts: &LoadOptions) -> Result<u64, EstimateError> {
    let file = GgufFile::open(path)?;
    let params = EstimateParams::for_slots(
        &file,
        opts.context_length,
        opts.parallel_slots,
        opts.batch_size,
        opts.gpu_layers,
    );
    estimate(&file, &params).map(|e| e.total())
}

/// A loaded model that could be evicted: idle and not pinned.
#[derive(Debug, Clone)]
pub(crate) struct EvictionCandidate<K> {
    /// Which model.
    pub(crate) key: K,
    /// Memory it frees.
    pub(crate) bytes: u64,
    /// How long it took to load last time.
    pub(crate) reload_cost: Duration,
    /// When a request last used it.
    pub(crate) last_used: Instant,
}

/// The models to evict to free at least `needed` bytes: lowest expected
/// reload cost per byte first (see the module docs), then least recently
/// used. `None` when all of them together free too little (the load has to
/// wait for busy models to become idle).
pub(crate) fn choose_evictions<K>(
    mut candidates: Vec<EvictionCandidate<K>>,
    needed: u64,
) -> Option<Vec<K>> {
    if needed == 0 {
        return Some(Vec::new());
    }
    let now = Instant::now();
    let score = |c: &EvictionCandidate<K>| {
        let idle_min = now.saturating_duration_since(c.last_used).as_secs_f64() / 60.0;
        c.reload_cost.as_secs_f64() / (1.0 + idle_min) / c.bytes.max(1) as f64
    };
    candidates.sort_by(|a, b| {
        score(a)
            .total_cmp(&score(b))
            .then_with(|| a.last_used.cmp(&b.last_used))
    });
    let mut freed = 0u64;
    let mut chosen = Vec::new();
    for candidate in candidates {
        freed = freed.saturating_add(candidate.bytes);
        chosen.push(candidate.key);
        if freed >= needed {
            return Some(chosen);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_from_meminfo() {
        let text = "MemTotal:       16309416 kB\nMemFree:          123 kB\n";
        assert_eq!(mem_total_bytes(text), Some(16_309_416 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert!(default_budget_bytes() > 0);
    }

    fn candidate(
        key: &'static str,
        bytes: u64,
        cost_ms: u64,
        used_ago: u64,
    ) -> EvictionCandidate<&'static str> {
        let now = Instant::now();
        EvictionCandidate {
            key,
            bytes,
            reload_cost: Duration::from_millis(cost_ms),
            last_used: now
                .checked_sub(Duration::from_secs(used_ago))
                .unwrap_or(now),
        }
    }

    #[test]
    fn eviction_takes_cheapest_reload_per_byte_then_least_recently_used() {
        let candidates = vec![
            candidate("slow", 100, 900, 50),
            candidate("fast-recent", 100, 10, 1),
            candidate("fast-old", 100, 10, 40),
        ];
        assert_eq!(
            choose_evictions(candidates.clone(), 150),
            Some(vec!["fast-old", "fast-recent"])
        );
        assert_eq!(
            choose_evictions(candidates.clone(), 50),
            Some(vec!["fast-old"])
        );
        assert_eq!(choose_evictions(candidates.clone(), 0), Some(vec![]));
        assert_eq!(choose_evictions(candidates, 301), None);
    }

    #[test]
    fn a_big_model_quick_to_reload_goes_before_a_small_slow_one() {
        let candidates = vec![
            candidate("small-slow", 100, 2000, 5),
            candidate("big-quick", 10_000, 2000, 5),
        ];
        assert_eq!(choose_evictions(candidates, 50), Some(vec!["big-quick"]));
        // A long idle model goes before a recent one of the same cost.
        let candidates = vec![
            candidate("recent", 100, 1000, 0),
            candidate("idle-hour", 100, 1500, 3600),
        ];
        assert_eq!(choose_evictions(candidates, 50), Some(vec!["idle-hour"]));
    }
}
