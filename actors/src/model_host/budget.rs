//! The memory budget: how big it is by default, how a user writes it, and
//! which idle models to evict when a load needs room.
//!
//! Eviction order is a pure function so it can be tested without models:
//! cheapest to reload first (reload cost is the load time measured the last
//! time the model was loaded), then least recently used.

use std::path::Path;
use std::time::{Duration, Instant};

use troupe_inference::backend::LoadOptions;
use troupe_models::estimate::{estimate, EstimateError, EstimateParams, KvCacheType};
use troupe_models::gguf::GgufFile;

/// Share of the machine's memory the host uses when no budget is given.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.5;

/// Budget used when the machine's memory cannot be read (not Linux).
const FALLBACK_BUDGET: u64 = 4 << 30;

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (examples: 4GiB, 512MiB, 2G, 1000000)")]
pub struct ParseSizeError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads a byte size such as `4GiB`, `512MiB`, `2G`, `1.5GiB`, `800MB` or
/// `1000000`.
///
/// Units are case-insensitive. `KiB`/`MiB`/`GiB`/`TiB` and the one-letter
/// `K`/`M`/`G`/`T` are powers of 1024 (as in Docker's `--memory`); `KB`/`MB`/
/// `GB`/`TB` are powers of 1000; `B` or no unit means bytes. Fractions are
/// allowed and rounded down to whole bytes.
///
/// # Errors
/// [`ParseSizeError`] naming the input when the number or unit is not
/// understood, or the size overflows 64 bits.
pub fn parse_size(input: &str) -> Result<u64, ParseSizeError> {
    let error = |reason: &str| ParseSizeError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(error(
                "unknown unit; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB",
            ))
        }
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| error("it is larger than 2^64 bytes"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| error("the number is not a decimal number"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(error("it is larger than 2^64 bytes"));
    }
    Ok(bytes as u64)
}

/// Writes `bytes` for people: `1.50 GiB`, `312.00 KiB`, `17 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

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

/// llama.cpp's largest micro-batch as the llama engine sets it (`n_ubatch`).
const ENGINE_MAX_UBATCH: u32 = 512;

/// The memory the host plans for loading the model file at `path` with
/// `opts`: [`troupe_models::estimate`] of weights, KV cache and compute
/// buffers for `context_length × parallel_slots` cells (each slot's context
/// capped to the training context, as the engine does).
///
/// # Errors
/// [`EstimateError`] when the file cannot be read or is not a language model.
pub fn estimate_load_bytes(path: &Path, opts: &LoadOptions) -> Result<u64, EstimateError> {
    let file = GgufFile::open(path)?;
    let per_slot = match file.context_length() {
        Some(train) if train > 0 => opts
            .context_length
            .min(u32::try_from(train).unwrap_or(u32::MAX)),
        _ => opts.context_length,
    };
    let params = EstimateParams {
        context_length: per_slot.saturating_mul(opts.parallel_slots),
        parallel_sequences: opts.parallel_slots,
        batch_size: opts.batch_size.min(ENGINE_MAX_UBATCH),
        kv_cache_type: KvCacheType::F16,
        gpu_layers: opts.gpu_layers,
    };
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

/// The models to evict to free at least `needed` bytes: cheapest to reload
/// first, then least recently used. `None` when all of them together free
/// too little (the load has to wait for busy models to become idle).
pub(crate) fn choose_evictions<K>(
    mut candidates: Vec<EvictionCandidate<K>>,
    needed: u64,
) -> Option<Vec<K>> {
    if needed == 0 {
        return Some(Vec::new());
    }
    candidates.sort_by(|a, b| {
        a.reload_cost
            .cmp(&b.reload_cost)
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
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("800MB"), Ok(800_000_000));
        assert_eq!(parse_size(" 1.5 GiB "), Ok(3 << 29));
        assert_eq!(parse_size("17B"), Ok(17));
    }

    #[test]
    fn bad_sizes_are_errors_naming_the_input() {
        for bad in ["", "GiB", "4 parsecs", "1.2.3G", "99999999999999999999T"] {
            let error = parse_size(bad).expect_err(bad);
            assert_eq!(error.input, bad);
            assert!(error.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn mem_total_is_read_from_meminfo() {
        let text = "MemTotal:       16309416 kB\nMemFree:          123 kB\n";
        assert_eq!(mem_total_bytes(text), Some(16_309_416 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert!(default_budget_bytes() > 0);
    }

    #[test]
    fn bytes_are_formatted_for_people() {
        assert_eq!(format_bytes(17), "17 B");
        assert_eq!(format_bytes(3 << 29), "1.50 GiB");
        assert_eq!(format_bytes(312 << 10), "312.00 KiB");
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
    fn eviction_takes_cheapest_reload_then_least_recently_used() {
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
}
