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
//!
//! [serve.sampling]            # what a request that sets none gets
//! temperature = 0.8           # (llama-server's --temp, --top-k, …;
//! top_k = 40                  #  Ollama's PARAMETER lines): unset keys
//! top_p = 0.95                #  keep llama.cpp's defaults
//! min_p = 0.05
//! repeat_penalty = 1.0
//! repeat_last_n = 64         # -1: the whole context
//! seed = 42                   # none: a random seed per request
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
    /// Sampling of the requests that set none.
    pub sampling: Option<RawSampling>,
}

/// `[serve.sampling]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSampling {
    /// Softmax temperature; 0 is greedy.
    pub temperature: Option<f32>,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: Option<i32>,
    /// Nucleus sampling's probability mass; 1 keeps all.
    pub top_p: Option<f32>,
    /// Drop tokens less likely than `min_p` × the most likely; 0 keeps all.
    pub min_p: Option<f32>,
    /// Penalty of recently generated tokens; 1 disables.
    pub repeat_penalty: Option<f32>,
    /// How many recent tokens the penalty looks at; -1: the whole context.
    pub repeat_last_n: Option<i32>,
    /// The seed of every request that gives none.
    pub seed: Option<u32>,
}

/// `[serve.sampling]`, resolved: the sampling options a request gets for
/// each field it does not set; `None` keeps llama.cpp's default. (Not
/// `non_exhaustive`: the server takes it apart field by field, and a field
/// added here must fail to compile there until it is used.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingDefaults {
    /// Softmax temperature; 0 is greedy.
    pub temperature: Option<f32>,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: Option<i32>,
    /// Nucleus sampling's probability mass; 1 keeps all.
    pub top_p: Option<f32>,
    /// Drop tokens less likely than `min_p` × the most likely; 0 keeps all.
    pub min_p: Option<f32>,
    /// Penalty of recently generated tokens; 1 disables.
    pub repeat_penalty: Option<f32>,
    /// How many recent tokens the penalty looks at; -1: the whole context.
    pub repeat_last_n: Option<i32>,
    /// The seed of every request that gives none; `None`: a random one.
    pub seed: Option<u32>,
}

impl SamplingDefaults {
    /// The set ones as Ollama's parameters (name, value), in the order of
    /// the fields: `("temperature", "0")`.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        let Self {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            repeat_last_n,
            seed,
        } = self;
        [
            ("temperature", temperature.map(|v| v.to_string())),
            ("top_k", top_k.map(|v| v.to_string())),
            ("top_p", top_p.map(|v| v.to_string())),
            ("min_p", min_p.map(|v| v.to_string())),
            ("repeat_penalty", repeat_penalty.map(|v| v.to_string())),
            ("repeat_last_n", repeat_last_n.map(|v| v.to_string())),
            ("seed", seed.map(|v| v.to_string())),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect()
    }
}

fn resolve_sampling(
    raw: RawSampling,
    source: &ConfigSource,
) -> Result<SamplingDefaults, ConfigError> {
    let check = |key: &str, ok: bool, value: &dyn std::fmt::Display, rule: &str| {
        if ok {
            Ok(())
        } else {
            Err(source.invalid(
                &format!("serve.sampling.{key}"),
                &format!("{value} is out of range: {rule}"),
            ))
        }
    };
    if let Some(v) = raw.temperature {
        check("temperature", v.is_finite() && v >= 0.0, &v, "0 or more")?;
    }
    if let Some(v) = raw.top_k {
        check("top_k", v >= 0, &v, "0 (off) or more")?;
    }
    if let Some(v) = raw.top_p {
        check("top_p", (0.0..=1.0).contains(&v), &v, "between 0 and 1")?;
    }
    if let Some(v) = raw.min_p {
        check("min_p", (0.0..=1.0).contains(&v), &v, "between 0 and 1")?;
    }
    if let Some(v) = raw.repeat_penalty {
        check(
            "repeat_penalty",
            v.is_finite() && v > 0.0,
            &v,
            "more than 0 (1 disables)",
        )?;
    }
    if let Some(v) = raw.repeat_last_n {
        check(
            "repeat_last_n",
            v >= -1,
            &v,
            "0 or more, or -1 (the context)",
        )?;
    }
    if let Some(v) = raw.seed {
        check(
            "seed",
            v != u32::MAX,
            &v,
            "4294967295 is llama.cpp's random seed; leave seed out for a random one",
        )?;
    }
    Ok(SamplingDefaults {
        temperature: raw.temperature,
        top_k: raw.top_k,
        top_p: raw.top_p,
        min_p: raw.min_p,
        repeat_penalty: raw.repeat_penalty,
        repeat_last_n: raw.repeat_last_n,
        seed: raw.seed,
    })
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
    /// Sampling of the requests that set none (`[serve.sampling]`).
    pub sampling: SamplingDefaults,
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
    let sampling = resolve_sampling(raw.sampling.unwrap_or_default(), source)?;
    Ok(ServeConfig {
        allowed_hosts,
        sampling,
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
