//! The `[serve]` section: how `troupe serve` listens and what its ModelHost
//! may hold. Command-line flags override it.
//!
//! ```toml
//! [serve]
//! addr = "127.0.0.1:8080"     # loopback unless told otherwise
//! api_key = "…"               # or TROUPE_SERVE__API_KEY; none: no auth
//! memory_budget = "8GiB"      # default: half of the machine's memory
//! pin = ["small-chat"]        # loaded at start, never evicted
//! keep_alive_s = 300          # idle seconds before a model unloads
//! max_body = "4MiB"           # larger request bodies get 413
//! ```

use crate::load::{ConfigError, ConfigSource};
use crate::size::parse_size;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Where `troupe serve` listens by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// The default request body cap.
pub const DEFAULT_MAX_BODY: u64 = 4 << 20;
/// How long an idle model stays loaded by default (Ollama's default).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(300);

/// `[serve]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// `host:port` to listen on.
    pub addr: Option<String>,
    /// The bearer key every route but `/health` requires.
    pub api_key: Option<String>,
    /// Memory the loaded models may hold together.
    pub memory_budget: Option<String>,
    /// Models loaded at start and never evicted.
    pub pin: Option<Vec<String>>,
    /// Idle seconds before a model unloads.
    pub keep_alive_s: Option<u64>,
    /// Largest request body.
    pub max_body: Option<String>,
    /// Host names (besides loopback ones) the server answers to without a
    /// key: `Host` is checked against them (DNS rebinding).
    pub allowed_hosts: Option<Vec<String>>,
}

/// `[serve]`, resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// The bearer key, if any.
    pub api_key: Option<String>,
    /// The memory budget in bytes; `None`: a share of the machine's memory.
    pub memory_budget: Option<u64>,
    /// Models loaded at start and never evicted.
    pub pin: Vec<String>,
    /// Idle time before a model unloads.
    pub keep_alive: Duration,
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Host names besides loopback ones that requests may name (lower case,
    /// without a port).
    pub allowed_hosts: Vec<String>,
}

pub(crate) fn resolve_serve(
    raw: RawServe,
    source: &ConfigSource,
) -> Result<ServeConfig, ConfigError> {
    let addr_text = raw.addr.unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let addr = addr_text.parse::<SocketAddr>().map_err(|e| {
        source.invalid(
            "serve.addr",
            &format!("`{addr_text}` is not host:port ({e})"),
        )
    })?;
    let api_key = raw.api_key.filter(|k| !k.is_empty());
    let memory_budget = match raw.memory_budget {
        Some(text) => {
            let bytes = parse_size(&text)
                .map_err(|e| source.invalid("serve.memory_budget", &e.to_string()))?;
            if bytes == 0 {
                return Err(source.invalid("serve.memory_budget", "must be more than 0"));
            }
            Some(bytes)
        }
        None => None,
    };
    let max_body_bytes = match raw.max_body {
        Some(text) => {
            parse_size(&text).map_err(|e| source.invalid("serve.max_body", &e.to_string()))?
        }
        None => DEFAULT_MAX_BODY,
    };
    if max_body_bytes < 1024 {
        return Err(source.invalid(
            "serve.max_body",
            &format!("{max_body_bytes} bytes is below 1 KiB"),
        ));
    }
    let mut allowed_hosts = Vec::new();
    for host in raw.allowed_hosts.unwrap_or_default() {
        let h = host.trim().to_ascii_lowercase();
        let valid = !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid {
            return Err(source.invalid(
                "serve.allowed_hosts",
                &format!("`{host}` is not a host name or address"),
            ));
        }
        allowed_hosts.push(h);
    }
    Ok(ServeConfig {
        allowed_hosts,
        addr,
        api_key,
        memory_budget,
        pin: raw.pin.unwrap_or_default(),
        keep_alive: raw
            .keep_alive_s
            .map_or(DEFAULT_KEEP_ALIVE, Duration::from_secs),
        max_body_bytes,
    })
}
