//! `GET /metrics`: counters kept by the HTTP layer and the ModelHost's state,
//! in the Prometheus text format (version 0.0.4).
//!
//! No histograms: time to first token is a summary without quantiles (sum and
//! count, so a scraper gets the mean of any window) plus the latest value.
//! Counters live behind one std `Mutex` each, not atomics: every update
//! touches several numbers that must move together, and no lock is held
//! across an await.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;
use troupe_host::{HostEvent, HostStatus, UnloadReason};
use troupe_inference::backend::{FinishReason, GenerationResult};

use super::error::ApiError;
use super::AppState;

/// What the server has done since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, u16), u64>>,
    generation: Mutex<GenerationStats>,
    host: Mutex<HostStats>,
    in_flight: AtomicU64,
}

#[derive(Debug, Default)]
struct GenerationStats {
    finished: BTreeMap<&'static str, u64>,
    disconnected: u64,
    prompt_tokens: u64,
    cached_prompt_tokens: u64,
    completion_tokens: u64,
    ttft_seconds_sum: f64,
    ttft_seconds_last: f64,
    generation_seconds_sum: f64,
    tokens_per_second_last: f64,
}

#[derive(Debug, Default)]
struct HostStats {
    loads: u64,
    load_failures: u64,
    load_seconds_sum: f64,
    unloads: BTreeMap<&'static str, u64>,
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one answered HTTP request.
    pub fn record_http(&self, route: &str, status: u16) {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        *http.entry((route.to_string(), status)).or_default() += 1;
    }

    /// Marks a generation as started; the guard records how it ended.
    pub fn start_generation(self: &Arc<Self>) -> GenerationGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        GenerationGuard {
            metrics: Arc::clone(self),
            finished: false,
        }
    }

    /// Generations running now (streams open to a client included).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn record_result(&self, result: &GenerationResult) {
        let mut g = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *g.finished.entry(finish_label(result.finish)).or_default() += 1;
        g.prompt_tokens += u64::from(result.usage.prompt_tokens);
        g.cached_prompt_tokens += u64::from(result.usage.cached_prompt_tokens);
        g.completion_tokens += u64::from(result.usage.completion_tokens);
        let ttft = result.timings.time_to_first_token_ms / 1000.0;
        g.ttft_seconds_sum += ttft;
        g.ttft_seconds_last = ttft;
        g.generation_seconds_sum += result.timings.generation_ms / 1000.0;
        g.tokens_per_second_last = result.timings.generation_tokens_per_s;
    }

    /// Follows the ModelHost's events (loads, unloads, evictions) until the
    /// host stops. Spawned by [`super::serve`].
    pub async fn follow_host(self: Arc<Self>, mut events: broadcast::Receiver<HostEvent>) {
        loop {
            match events.recv().await {
                Ok(event) => self.record_host_event(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "metrics missed ModelHost events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    fn record_host_event(&self, event: &HostEvent) {
        let mut h = self.host.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            HostEvent::Loaded { duration, .. } => {
                h.loads += 1;
                h.load_seconds_sum += duration.as_secs_f64();
            }
            HostEvent::LoadFailed { .. } => h.load_failures += 1,
            HostEvent::Unloaded { reason, .. } => {
                *h.unloads.entry(unload_label(reason)).or_default() += 1;
            }
            _ => {}
        }
    }

    /// The Prometheus text of these counters and of `status`.
    pub fn render(&self, status: &HostStatus) -> String {
        let mut out = String::new();
        Writer(&mut out).family(
            "troupe_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        {
            let http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
            for ((route, status), n) in http.iter() {
                let _ = writeln!(
                    out,
                    "troupe_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape_label(route)
                );
            }
        }
        self.render_generation(&mut out);
        self.render_host(&mut out, status);
        out
    }

    fn render_generation(&self, out: &mut String) {
        let g = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count: u64 = g.finished.values().sum();
        let mut w = Writer(out);
        w.family(
            "troupe_generations_total",
            "counter",
            "Generations finished, by finish reason.",
        );
        for reason in ["stop", "length", "stop_string", "cancelled"] {
            let n = g.finished.get(reason).copied().unwrap_or(0);
            w.line(&format!(
                "troupe_generations_total{{finish=\"{reason}\"}} {n}"
            ));
        }
        w.simple(
            "troupe_generations_disconnected_total",
            "counter",
            "Generations whose client went away before the end (the slot is freed at once).",
            g.disconnected,
        );
        w.simple(
            "troupe_generations_in_flight",
            "gauge",
            "Generations running now.",
            self.in_flight(),
        );
        w.simple(
            "troupe_prompt_tokens_total",
            "counter",
            "Prompt tokens of finished generations.",
            g.prompt_tokens,
        );
        w.simple(
            "troupe_cached_prompt_tokens_total",
            "counter",
            "Prompt tokens reused from the KV cache rather than decoded.",
            g.cached_prompt_tokens,
        );
        w.simple(
            "troupe_completion_tokens_total",
            "counter",
            "Tokens generated by finished generations.",
            g.completion_tokens,
        );
        w.simple(
            "troupe_generation_seconds_total",
            "counter",
            "Time spent generating (first to last token), summed over generations.",
            g.generation_seconds_sum,
        );
        w.simple(
            "troupe_generation_tokens_per_second",
            "gauge",
            "Generation speed of the latest finished generation.",
            g.tokens_per_second_last,
        );
        w.family(
            "troupe_time_to_first_token_seconds",
            "summary",
            "Time from a request reaching the engine to its first token.",
        );
        w.line(&format!(
            "troupe_time_to_first_token_seconds_sum {}",
            g.ttft_seconds_sum
        ));
        w.line(&format!("troupe_time_to_first_token_seconds_count {count}"));
        w.simple(
            "troupe_time_to_first_token_seconds_last",
            "gauge",
            "Time to first token of the latest finished generation.",
            g.ttft_seconds_last,
        );
    }

    fn render_host(&self, out: &mut String, status: &HostStatus) {
        let h = self.host.lock().unwrap_or_else(PoisonError::into_inner);
        let mut w = Writer(out);
        w.simple(
            "troupe_model_loads_total",
            "counter",
            "Models loaded.",
            h.loads,
        );
        w.simple(
            "troupe_model_load_failures_total",
            "counter",
            "Model loads that failed.",
            h.load_failures,
        );
        w.simple(
            "troupe_model_load_seconds_total",
            "counter",
            "Time spent loading models.",
            h.load_seconds_sum,
        );
        w.simple(
            "troupe_model_evictions_total",
            "counter",
            "Models unloaded to make room for another.",
            h.unloads.get("evicted").copied().unwrap_or(0),
        );
        w.family(
            "troupe_model_unloads_total",
            "counter",
            "Models unloaded, by reason.",
        );
        for reason in [
            "evicted",
            "keep_alive_expired",
            "requested",
            "shutdown",
            "over_budget",
        ] {
            let n = h.unloads.get(reason).copied().unwrap_or(0);
            w.line(&format!(
                "troupe_model_unloads_total{{reason=\"{reason}\"}} {n}"
            ));
        }
        w.simple(
            "troupe_memory_budget_bytes",
            "gauge",
            "Memory the ModelHost may use for models.",
            status.budget_bytes,
        );
        w.simple(
            "troupe_memory_used_bytes",
            "gauge",
            "Memory held by loaded models (weights, KV cache, compute buffers).",
            status.used_bytes,
        );
        w.simple(
            "troupe_models_loaded",
            "gauge",
            "Models loaded now.",
            status.models.len(),
        );
        let queued: u64 = status
            .models
            .iter()
            .map(|m| u64::from(m.queued_requests))
            .sum();
        w.simple(
            "troupe_queue_depth",
            "gauge",
            "Requests waiting for a free slot, all models together.",
            queued,
        );
        w.simple(
            "troupe_queued_loads",
            "gauge",
            "Model loads waiting for memory.",
            status.queued_loads,
        );
        w.family(
            "troupe_model_slots_in_use",
            "gauge",
            "Busy slots of each loaded model.",
        );
        for m in &status.models {
            w.line(&format!(
                "troupe_model_slots_in_use{{model=\"{}\"}} {}",
                escape_label(&m.name),
                m.slots_in_use
            ));
        }
        w.family(
            "troupe_model_memory_bytes",
            "gauge",
            "Memory held by each loaded model.",
        );
        for m in &status.models {
            w.line(&format!(
                "troupe_model_memory_bytes{{model=\"{}\"}} {}",
                escape_label(&m.name),
                m.memory.total()
            ));
        }
    }
}

/// Marks one generation in flight; records its result, or that the client
/// went away, when it ends.
#[derive(Debug)]
pub struct GenerationGuard {
    metrics: Arc<Metrics>,
    finished: bool,
}

impl GenerationGuard {
    /// Records a finished generation.
    pub fn finish(&mut self, result: &GenerationResult) {
        if !self.finished {
            self.finished = true;
            self.metrics.record_result(result);
        }
    }

    /// Marks the generation as ended without a result (it failed); nothing
    /// is recorded beyond the in-flight count.
    pub fn failed(&mut self) {
        self.finished = true;
    }
}

impl Drop for GenerationGuard {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            let mut g = self
                .metrics
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            g.disconnected += 1;
        }
    }
}

struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    fn simple(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn finish_label(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::StopString => "stop_string",
        FinishReason::Cancelled => "cancelled",
    }
}

fn unload_label(reason: &UnloadReason) -> &'static str {
    match reason {
        UnloadReason::Evicted { .. } => "evicted",
        UnloadReason::KeepAliveExpired => "keep_alive_expired",
        UnloadReason::Requested => "requested",
        UnloadReason::Shutdown => "shutdown",
        UnloadReason::OverBudget => "over_budget",
    }
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let status = state.host.status().await?;
    let body = state.metrics.render(&status);
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response())
}

/// Middleware counting every answered request by matched route and status.
pub(super) async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let response = next.run(request).await;
    state
        .metrics
        .record_http(&route, response.status().as_u16());
    response
}
