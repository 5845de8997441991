//! `backoff_ms` / `backoff_max_ms`, read the same way wherever a section
//! retries or restarts something (`[[providers]]`, `[[mcp.servers]]`), so
//! both sections refuse the same mistakes with the same words.

use crate::load::{ConfigError, ConfigSource};
use std::time::Duration;

/// The first backoff and the largest one, defaults filled in and checked:
/// the first is at least 1 ms (a zero backoff would retry in a busy loop)
/// and not more than the largest (doubling could never reach it).
///
/// `key` turns a field name into the full key path named in errors
/// (`providers[0].backoff_ms`).
pub(crate) fn resolve_backoff(
    backoff_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    defaults: (u64, u64),
    key: impl Fn(&str) -> String,
    source: &ConfigSource,
) -> Result<(Duration, Duration), ConfigError> {
    let backoff = Duration::from_millis(backoff_ms.unwrap_or(defaults.0));
    let backoff_max = Duration::from_millis(backoff_max_ms.unwrap_or(defaults.1));
    if backoff.is_zero() {
        return Err(source.invalid(&key("backoff_ms"), "must be at least 1"));
    }
    if backoff > backoff_max {
        return Err(source.invalid(
            &key("backoff_ms"),
            &format!(
                "{} ms is more than backoff_max_ms ({} ms)",
                backoff.as_millis(),
                backoff_max.as_millis()
            ),
        ));
    }
    Ok((backoff, backoff_max))
}
