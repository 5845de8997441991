//! The `[[providers]]` and `[routing]` sections: remote OpenAI-compatible
//! providers (OpenAI, OpenRouter, Groq, Mistral, Ollama, llama-server,
//! another troupe) and, per role, the ordered chain of places a request is
//! tried.
//!
//! ```toml
//! [[providers]]
//! name = "groq"                                # [A-Za-z0-9_.-]+, not `local` or `cluster`
//! base_url = "https://api.groq.com/openai/v1"  # requests go to {base_url}/chat/completions
//! model = "llama-3.1-8b-instant"
//! api_key_env = "GROQ_API_KEY"                 # the key is read from this variable at start
//! timeout_s = 60                               # longest silence: before the answer starts, and between pieces
//! max_retries = 2                              # after the first attempt: 429, 5xx, connect errors, timeouts
//! backoff_ms = 500                             # first backoff, doubled per retry…
//! backoff_max_ms = 8000                        # …up to this (Retry-After too)
//! breaker_failures = 3                         # consecutive failed requests that open the breaker
//! breaker_reset_s = 30                         # open → half-open (one trial request) after this
//! prompt_price = 0.0                           # per prompt token, in the unit of [learner.prices]
//! completion_price = 0.0
//! context_length = 131072                      # tokens per request (prompt + answer); 8192 unless given
//! enabled = true
//!
//! [routing]
//! # "local": this process's ModelHost; "cluster": models of cluster peers;
//! # any other name: a [[providers]] entry.
//! ux = ["local", "groq"]
//! director = ["local", "cluster", "groq"]
//! worker = ["local", "cluster", "groq"]
//! ```
//!
//! The key itself is never part of the configuration: only the name of the
//! variable holding it. A variable that is not set is not a configuration
//! error (the provider is reported unavailable when it is started), so one
//! file serves machines with and without the key.
//!
//! Raw and resolved types sit together here, as in [`crate::mcp`].

use crate::backoff::resolve_backoff;
use crate::load::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::time::Duration;

/// Longest silence unless configured, seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 60.0;
/// Retries after the first attempt unless configured.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// First backoff unless configured, ms.
pub const DEFAULT_BACKOFF_MS: u64 = 500;
/// Largest backoff (and largest honoured `Retry-After`) unless configured, ms.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 8_000;
/// Consecutive failed requests that open the breaker unless configured.
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// Seconds an open breaker waits before a trial request unless configured.
pub const DEFAULT_BREAKER_RESET_S: f64 = 30.0;

/// The smallest `context_length` accepted: less would not hold the system
/// prompt and tool descriptions a Worker sends before any task text.
pub const MIN_CONTEXT_LENGTH: u32 = 256;

/// The chain entry naming this process's ModelHost.
pub const LOCAL: &str = "local";
/// The chain entry naming the models served by cluster peers.
pub const CLUSTER: &str = "cluster";

/// `[[providers]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name, used in `[routing]` chains.
    pub name: Option<String>,
    /// The OpenAI-compatible API root (`…/v1`).
    pub base_url: Option<String>,
    /// The model asked for.
    pub model: Option<String>,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Longest silence (before the answer and between pieces), seconds.
    pub timeout_s: Option<f64>,
    /// Retries after the first attempt.
    pub max_retries: Option<u32>,
    /// First backoff, ms.
    pub backoff_ms: Option<u64>,
    /// Largest backoff, ms.
    pub backoff_max_ms: Option<u64>,
    /// Consecutive failed requests that open the breaker.
    pub breaker_failures: Option<u32>,
    /// Seconds before an open breaker lets a trial request through.
    pub breaker_reset_s: Option<f64>,
    /// Price of one prompt token.
    pub prompt_price: Option<f64>,
    /// Price of one completion token.
    pub completion_price: Option<f64>,
    /// Tokens one request may use, prompt and answer together.
    pub context_length: Option<u32>,
    /// `false` keeps the entry but leaves it out of every chain.
    pub enabled: Option<bool>,
}

/// `[routing]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// The UX's chain.
    pub ux: Option<Vec<String>>,
    /// The Director's chain.
    pub director: Option<Vec<String>>,
    /// The Workers' chain.
    pub worker: Option<Vec<String>>,
}

/// `[[providers]]` and `[routing]`, resolved.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ProvidersConfig {
    /// Every provider, enabled or not, in file order.
    pub providers: Vec<ProviderConfig>,
    /// Each role's chain.
    pub routing: RoutingConfig,
}

impl ProvidersConfig {
    /// The providers that may be used.
    pub fn enabled(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.iter().filter(|p| p.enabled)
    }

    /// The provider called `name`, enabled or not.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// One place a request may be sent to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChainEntry {
    /// This process's ModelHost.
    Local,
    /// Models served by cluster peers.
    Cluster,
    /// The `[[providers]]` entry of this name (always an enabled one).
    Provider(String),
}

impl ChainEntry {
    /// The name as written in `[routing]`.
    pub fn name(&self) -> &str {
        match self {
            ChainEntry::Local => LOCAL,
            ChainEntry::Cluster => CLUSTER,
            ChainEntry::Provider(name) => name,
        }
    }
}

/// The ordered chain of each role: a request goes to the first entry that
/// can take it, then to the next on failure.
///
/// Disabled providers are left out of the chains when the configuration is
/// resolved, so that turning a provider off is one line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// The UX's chain.
    pub ux: Vec<ChainEntry>,
    /// The Director's chain.
    pub director: Vec<ChainEntry>,
    /// The Workers' chain.
    pub worker: Vec<ChainEntry>,
}

/// One remote OpenAI-compatible provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// Unique name, used in chains, logs and metrics.
    pub name: String,
    /// The API root without a trailing `/`; requests go to
    /// `{base_url}/chat/completions`.
    pub base_url: String,
    /// The model asked for.
    pub model: String,
    /// The environment variable the API key is read from at start; `None`:
    /// no `Authorization` header (Ollama, llama-server).
    pub api_key_env: Option<String>,
    /// The longest silence: until the answer starts, and between two of
    /// its pieces (a long answer that keeps coming is not cut).
    pub timeout: Duration,
    /// Retries after the first attempt, on 429, 5xx, connect errors and timeouts.
    pub max_retries: u32,
    /// First backoff, doubled each retry.
    pub backoff: Duration,
    /// Largest backoff, and largest `Retry-After` honoured.
    pub backoff_max: Duration,
    /// Consecutive failed requests (each after its retries) that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses requests before it lets one trial through.
    pub breaker_reset: Duration,
    /// Price of one prompt token, in the unit of `[learner.prices]`.
    pub prompt_price: f64,
    /// Price of one completion token.
    pub completion_price: f64,
    /// Tokens one request may use, prompt and answer together; `None`: not
    /// given, and the router assumes a default.
    pub context_length: Option<u32>,
    /// Whether it may be used.
    pub enabled: bool,
}

impl ProviderConfig {
    /// A provider with every default and no API key (for tests and embedding).
    pub fn new(name: &str, base_url: &str, model: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key_env: None,
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_S),
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: Duration::from_millis(DEFAULT_BACKOFF_MS),
            backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_reset: Duration::from_secs_f64(DEFAULT_BREAKER_RESET_S),
            prompt_price: 0.0,
            completion_price: 0.0,
            context_length: None,
            enabled: true,
        }
    }

    /// `{base_url}/chat/completions`.
    pub fn chat_completions_url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }
}

pub(crate) fn resolve_providers(
    raw: Vec<RawProvider>,
    routing: RawRouting,
    source: &ConfigSource,
) -> Result<ProvidersConfig, ConfigError> {
    let mut providers: Vec<ProviderConfig> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let provider = resolve_provider(raw, i, source)?;
        if providers.iter().any(|p| p.name == provider.name) {
            return Err(source.invalid(
                &format!("providers[{i}].name"),
                &format!("`{}` names two providers", provider.name),
            ));
        }
        providers.push(provider);
    }
    let chain = |role: &str, raw: Option<Vec<String>>| match raw {
        Some(names) => resolve_chain(role, names, &providers, source),
        None => Ok(default_chain(&providers)),
    };
    let routing = RoutingConfig {
        ux: chain("ux", routing.ux)?,
        director: chain("director", routing.director)?,
        worker: chain("worker", routing.worker)?,
    };
    Ok(ProvidersConfig { providers, routing })
}

/// `local`, `cluster`, then every enabled provider in file order.
fn default_chain(providers: &[ProviderConfig]) -> Vec<ChainEntry> {
    [ChainEntry::Local, ChainEntry::Cluster]
        .into_iter()
        .chain(
            providers
                .iter()
                .filter(|p| p.enabled)
                .map(|p| ChainEntry::Provider(p.name.clone())),
        )
        .collect()
}

fn resolve_chain(
    role: &str,
    names: Vec<String>,
    providers: &[ProviderConfig],
    source: &ConfigSource,
) -> Result<Vec<ChainEntry>, ConfigError> {
    let key = format!("routing.{role}");
    if names.is_empty() {
        return Err(source.invalid(
            &key,
            "an empty chain leaves the role without a model; name `local`, `cluster` or a provider",
        ));
    }
    let mut chain = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(source.invalid(&key, &format!("`{name}` is named twice")));
        }
        let entry = match name.as_str() {
            LOCAL => ChainEntry::Local,
            CLUSTER => ChainEntry::Cluster,
            other => match providers.iter().find(|p| p.name == other) {
                Some(p) if p.enabled => ChainEntry::Provider(p.name.clone()),
                Some(_) => continue,
                None => {
                    let known: Vec<&str> = [LOCAL, CLUSTER]
                        .into_iter()
                        .chain(providers.iter().map(|p| p.name.as_str()))
                        .collect();
                    return Err(source.invalid(
                        &key,
                        &format!("`{other}` is not a provider (known: {})", known.join(", ")),
                    ));
                }
            },
        };
        chain.push(entry);
    }
    Ok(chain)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_env_name(var: &str) -> bool {
    let mut chars = var.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `url` is not an http(s) API root, if it is not.
fn url_problem(url: &str) -> Option<&'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Some("is not an http:// or https:// URL");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Some("has no host");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains whitespace");
    }
    if url.contains(['?', '#']) {
        return Some("must not have a query or fragment (`/chat/completions` is appended)");
    }
    if host.contains('@') {
        return Some("must not hold credentials; put the key in the variable named by api_key_env");
    }
    None
}

fn resolve_provider(
    raw: RawProvider,
    i: usize,
    source: &ConfigSource,
) -> Result<ProviderConfig, ConfigError> {
    let key = |field: &str| format!("providers[{i}].{field}");
    let name = raw
        .name
        .ok_or_else(|| source.invalid(&key("name"), "is required"))?;
    if !valid_name(&name) {
        return Err(source.invalid(
            &key("name"),
            &format!("`{name}` must be 1-64 letters, digits, `_`, `.` or `-`"),
        ));
    }
    if name == LOCAL || name == CLUSTER {
        return Err(source.invalid(
            &key("name"),
            &format!("`{name}` is reserved in [routing] chains; pick another name"),
        ));
    }
    let base_url = raw
        .base_url
        .ok_or_else(|| source.invalid(&key("base_url"), "is required"))?;
    if let Some(problem) = url_problem(&base_url) {
        return Err(source.invalid(&key("base_url"), &format!("`{base_url}` {problem}")));
    }
    let model = raw
        .model
        .ok_or_else(|| source.invalid(&key("model"), "is required"))?;
    if model.trim().is_empty() {
        return Err(source.invalid(&key("model"), "must not be empty"));
    }
    if let Some(var) = &raw.api_key_env {
        if !valid_env_name(var) {
            return Err(source.invalid(
                &key("api_key_env"),
                &format!("`{var}` is not an environment variable name"),
            ));
        }
        // The loader reads every TROUPE_* variable as a config key and would
        // refuse this one as unknown.
        if var.starts_with("TROUPE_") {
            return Err(source.invalid(
                &key("api_key_env"),
                &format!("`{var}` starts with TROUPE_, which troupe reads as config keys; pick another name"),
            ));
        }
    }
    let seconds = |field: &str, v: Option<f64>, default: f64| {
        let v = v.unwrap_or(default);
        if !v.is_finite() || v <= 0.0 || v > 86_400.0 {
            return Err(source.invalid(&key(field), &format!("{v} is outside (0, 86400]")));
        }
        Ok(Duration::from_secs_f64(v))
    };
    let timeout = seconds("timeout_s", raw.timeout_s, DEFAULT_TIMEOUT_S)?;
    let breaker_reset = seconds(
        "breaker_reset_s",
        raw.breaker_reset_s,
        DEFAULT_BREAKER_RESET_S,
    )?;
    let max_retries = raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    if max_retries > 20 {
        return Err(source.invalid(
            &key("max_retries"),
            &format!("{max_retries} is more than 20"),
        ));
    }
    let (backoff, backoff_max) = resolve_backoff(
        raw.backoff_ms,
        raw.backoff_max_ms,
        (DEFAULT_BACKOFF_MS, DEFAULT_BACKOFF_MAX_MS),
        key,
        source,
    )?;
    let breaker_failures = raw.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if breaker_failures == 0 {
        return Err(source.invalid(&key("breaker_failures"), "must be at least 1"));
    }
    if let Some(n) = raw.context_length {
        if n < MIN_CONTEXT_LENGTH {
            return Err(source.invalid(
                &key("context_length"),
                &format!("{n} is less than {MIN_CONTEXT_LENGTH} tokens"),
            ));
        }
    }
    let price = |field: &str, v: Option<f64>| {
        let v = v.unwrap_or(0.0);
        if !v.is_finite() || v < 0.0 {
            return Err(source.invalid(&key(field), &format!("{v} is not a price (0 or more)")));
        }
        Ok(v)
    };
    Ok(ProviderConfig {
        name,
        base_url: base_url.trim_end_matches('/').to_string(),
        model,
        api_key_env: raw.api_key_env,
        timeout,
        max_retries,
        backoff,
        backoff_max,
        breaker_failures,
        breaker_reset,
        prompt_price: price("prompt_price", raw.prompt_price)?,
        completion_price: price("completion_price", raw.completion_price)?,
        context_length: raw.context_length,
        enabled: raw.enabled.unwrap_or(true),
    })
}
