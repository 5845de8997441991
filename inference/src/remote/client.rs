//! [`RemoteProvider`]: one OpenAI-compatible endpoint, its key, its retry
//! policy, its circuit breaker and its token and cost counters.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use troupe_config::ProviderConfig;

use crate::backend::{
    GenerateError, GenerateRequest, GenerationEvent, GenerationResult, GenerationSender,
    GenerationStream, Timings, Usage,
};

use super::answer::{AnswerReader, ReadError, Step};
use super::breaker::CircuitBreaker;
use super::wire::{self, excerpt};
use super::RemoteError;

/// Bytes of an error body read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;
/// How often the relay looks at the stream's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// The longest connect phase, whatever the silence timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The API key. Neither `Debug` nor any error shows it.
struct ApiKey {
    secret: String,
    header: HeaderValue,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What one provider has done since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProviderStats {
    /// Requests started (`generate` calls that passed the breaker).
    pub requests: u64,
    /// Of those, requests that failed (after their retries, or mid-stream).
    pub failures: u64,
    /// HTTP requests sent, retries included.
    pub attempts: u64,
    /// Prompt tokens of finished requests.
    pub prompt_tokens: u64,
    /// Completion tokens of finished requests.
    pub completion_tokens: u64,
    /// Their cost: tokens × the configured prices.
    pub cost: f64,
}

struct Inner {
    config: ProviderConfig,
    url: String,
    key: Option<ApiKey>,
    http: reqwest::Client,
    breaker: CircuitBreaker,
    stats: Mutex<ProviderStats>,
}

/// One remote OpenAI-compatible provider. Cloning is cheap and clones share
/// the breaker, the connection pool and the counters.
#[derive(Clone)]
pub struct RemoteProvider {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("RemoteProvider")
            .field("name", &c.name)
            .field("url", &self.inner.url)
            .field("model", &c.model)
            .field("api_key_env", &c.api_key_env)
            .field("api_key", &self.inner.key)
            .field("breaker", &self.inner.breaker.state())
            .finish()
    }
}

/// The first part of a successful answer, read before `generate` returns.
struct Started {
    reader: AnswerReader,
    first: Step,
    first_at: Instant,
}

impl RemoteProvider {
    /// A provider as configured, its key read from the variable named by
    /// `api_key_env` (no variable configured: no `Authorization` header).
    ///
    /// # Errors
    /// [`RemoteError::MissingKey`] when the variable is unset or empty (the
    /// error names the variable, never a value), [`RemoteError::InvalidKey`],
    /// [`RemoteError::Setup`].
    pub fn new(config: &ProviderConfig) -> Result<RemoteProvider, RemoteError> {
        let key = match &config.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(RemoteError::MissingKey {
                        provider: config.name.clone(),
                        var: var.clone(),
                    })
                }
            },
        };
        RemoteProvider::with_api_key(config, key)
    }

    /// A provider with `key` given directly rather than read from the
    /// environment (embedding, tests); `api_key_env` is then ignored.
    ///
    /// # Errors
    /// [`RemoteError::InvalidKey`], [`RemoteError::Setup`].
    pub fn with_api_key(
        config: &ProviderConfig,
        key: Option<String>,
    ) -> Result<RemoteProvider, RemoteError> {
        let key = match key {
            None => None,
            Some(secret) => {
                let mut header =
                    HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
                        RemoteError::InvalidKey {
                            provider: config.name.clone(),
                            var: config
                                .api_key_env
                                .clone()
                                .unwrap_or_else(|| "(given directly)".into()),
                        }
                    })?;
                // Keeps the value out of hyper's and reqwest's own Debug output.
                header.set_sensitive(true);
                Some(ApiKey { secret, header })
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(concat!("troupe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::Setup {
                provider: config.name.clone(),
                reason: error_chain(&e),
            })?;
        Ok(RemoteProvider {
            inner: Arc::new(Inner {
                url: config.chat_completions_url(),
                breaker: CircuitBreaker::new(
                    &config.name,
                    config.breaker_failures,
                    config.breaker_reset,
                ),
                config: config.clone(),
                key,
                http,
                stats: Mutex::new(ProviderStats::default()),
            }),
        })
    }

    /// The provider's configured name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The model asked for.
    pub fn model(&self) -> &str {
        &self.inner.config.model
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// Price of one prompt token and of one completion token.
    pub fn prices(&self) -> (f64, f64) {
        let c = &self.inner.config;
        (c.prompt_price, c.completion_price)
    }

    /// The provider's circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// Requests, failures, tokens and cost so far.
    pub fn stats(&self) -> ProviderStats {
        *self.inner.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` to `{base_url}/chat/completions` as a streaming chat
    /// completion and returns once the first piece of the answer is in (or
    /// the whole answer, when it has no text).
    ///
    /// Before that first piece, 429, 5xx, connection errors and timeouts are
    /// retried up to `max_retries` times with doubling backoff (a 429's
    /// `Retry-After` is honoured, capped at `backoff_max`); nothing is
    /// retried once a piece was delivered. The breaker is asked first and
    /// told the outcome once per request, not per attempt.
    ///
    /// The stream yields the pieces, then `Done` or `Error`; a failure after
    /// the first piece arrives as `Error(GenerateError::Decode)` naming the
    /// provider. `Done`'s usage is the server's when it sends one (with
    /// `include_usage`); otherwise it is estimated: completion tokens as the
    /// number of streamed pieces (one per chunk, as servers send them) or a
    /// byte count / 4 for a whole-JSON answer, prompt tokens as the
    /// prompt's bytes / 4. Timings are measured here, network included:
    /// `time_to_first_token_ms` (= `prompt_ms`) from the first attempt to
    /// the first piece, `generation_ms` from the first piece to the last.
    /// Cancelling or dropping the stream stops reading and closes the
    /// connection.
    ///
    /// # Errors
    /// [`RemoteError::BreakerOpen`], [`RemoteError::Unsupported`] (token
    /// prompts, grammar constraints), [`RemoteError::InvalidRequest`], and
    /// the last attempt's error.
    pub async fn generate(
        &self,
        request: GenerateRequest,
    ) -> Result<GenerationStream, RemoteError> {
        let name = self.name();
        let body = wire::request_body(name, self.model(), &request)?;
        let body = body.to_string().into_bytes();
        self.inner.breaker.allow()?;
        self.count(|s| s.requests += 1);
        let started_at = Instant::now();
        let started = match self.connect(&body).await {
            Ok(started) => started,
            Err(e) => {
                self.count(|s| s.failures += 1);
                if e.counts_against_provider() {
                    self.inner.breaker.record_failure();
                } else {
                    self.inner.breaker.record_success();
                }
                tracing::warn!(provider = name, error = %e, "remote request failed");
                return Err(e);
            }
        };
        let (sender, stream) = GenerationStream::channel();
        let prompt_bytes = wire::prompt_text_len(&request.prompt);
        tokio::spawn(relay(
            self.clone(),
            started,
            sender,
            started_at,
            prompt_bytes,
        ));
        Ok(stream)
    }

    fn count(&self, f: impl FnOnce(&mut ProviderStats)) {
        f(&mut self.inner.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Attempts until one gets a first piece, a non-retryable error comes
    /// back, or the retries are spent.
    async fn connect(&self, body: &[u8]) -> Result<Started, RemoteError> {
        let config = &self.inner.config;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.count(|s| s.attempts += 1);
            let error = match self.attempt(body).await {
                Ok(started) => return Ok(started),
                Err(e) => e,
            };
            if !error.is_retryable() || attempt > config.max_retries {
                return Err(error);
            }
            let delay = match &error {
                RemoteError::RateLimited {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => config.backoff.saturating_mul(1 << (attempt - 1).min(20)),
            }
            .min(config.backoff_max);
            tracing::warn!(
                provider = %config.name,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "remote request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: &[u8]) -> Result<Started, RemoteError> {
        let inner = &self.inner;
        let mut request = inner
            .http
            .post(&inner.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream, application/json")
            .body(body.to_vec());
        if let Some(key) = &inner.key {
            request = request.header(AUTHORIZATION, key.header.clone());
        }
        // `timeout` bounds silence, not the whole answer: a long answer that
        // keeps coming is not cut, a server that stops sending is.
        let silence = inner.config.timeout;
        let response = tokio::time::timeout(silence, request.send())
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.transport(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(response).await);
        }
        let mut reader = AnswerReader::new(response);
        let first = tokio::time::timeout(silence, reader.next())
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.read_error(e))?;
        Ok(Started {
            reader,
            first,
            first_at: Instant::now(),
        })
    }

    /// The error for a non-2xx answer, with the start of its body.
    async fn status_error(&self, mut response: reqwest::Response) -> RemoteError {
        let provider = self.name().to_string();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
        let mut body = Vec::new();
        // A broken error body still gives the status; what was read is enough.
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
        let text = String::from_utf8_lossy(&body);
        let body_excerpt = self.redact(excerpt(&text));
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?;
                error
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .or_else(|| error.as_str())
                    .map(|m| self.redact(excerpt(m)))
            })
            .unwrap_or_else(|| body_excerpt.clone());
        match status {
            429 => RemoteError::RateLimited {
                provider,
                retry_after,
                body_excerpt,
            },
            401 | 403 => RemoteError::Unauthorized {
                provider,
                status,
                message,
            },
            500..=599 => RemoteError::Http {
                provider,
                status,
                body_excerpt,
            },
            _ => RemoteError::Refused {
                provider,
                status,
                message,
            },
        }
    }

    /// The server said nothing for `timeout`.
    fn timed_out(&self) -> RemoteError {
        RemoteError::Timeout {
            provider: self.name().to_string(),
            after: self.inner.config.timeout,
        }
    }

    fn transport(&self, e: &reqwest::Error) -> RemoteError {
        let provider = self.name().to_string();
        // A connect timeout is the connect phase's own, shorter limit: the
        // host is unreachable rather than slow to answer.
        if e.is_timeout() && !e.is_connect() {
            RemoteError::Timeout {
                provider,
                after: self.inner.config.timeout,
            }
        } else {
            RemoteError::Unreachable {
                provider,
                reason: self.redact(error_chain(e)),
            }
        }
    }

    fn read_error(&self, e: ReadError) -> RemoteError {
        match e {
            ReadError::Transport(e) => self.transport(&e),
            ReadError::Invalid(reason) => RemoteError::InvalidResponse {
                provider: self.name().to_string(),
                reason: self.redact(reason),
            },
        }
    }

    /// `text` with the key cut out: servers may echo request headers.
    fn redact(&self, text: String) -> String {
        match &self.inner.key {
            Some(key) if text.contains(&key.secret) => text.replace(&key.secret, "[redacted]"),
            _ => text,
        }
    }
}

/// A reqwest error and its sources on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s = s.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = source.and_then(|s| s.source());
    }
    text
}

/// Resolves once the stream was cancelled or dropped. The stream only sets
/// a flag, so it is polled; 20 ms is nothing next to a network round trip.
async fn cancelled(sender: &GenerationSender) {
    while !sender.is_cancelled() {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

/// Hands the answer's pieces to the stream, then `Done` or `Error`, and tells
/// the breaker and the counters how it ended.
async fn relay(
    provider: RemoteProvider,
    started: Started,
    sender: GenerationSender,
    started_at: Instant,
    prompt_bytes: usize,
) {
    let Started {
        mut reader,
        first,
        first_at,
    } = started;
    let mut text = String::new();
    let mut pieces: u32 = 0;
    let mut last_at = first_at;
    let mut step = Ok(first);
    let outcome = loop {
        match step {
            Ok(Step::Piece(piece)) => {
                text.push_str(&piece);
                pieces += 1;
                last_at = Instant::now();
                if !sender.send(GenerationEvent::Token(piece)) {
                    break Outcome::Cancelled;
                }
            }
            Ok(Step::Finished) => break Outcome::Finished,
            Err(e) => break Outcome::Failed(provider.read_error(e)),
        }
        step = tokio::select! {
            step = tokio::time::timeout(provider.inner.config.timeout, reader.next()) => match step {
                Ok(step) => step,
                Err(_) => break Outcome::Failed(provider.timed_out()),
            },
            () = cancelled(&sender) => break Outcome::Cancelled,
        };
    };
    // Dropping the reader closes the connection, so the server stops too.
    let streamed = reader.streamed();
    let (finish_text, usage) = (reader.finish.take(), reader.usage.take());
    let logprobs = std::mem::take(&mut reader.logprobs);
    drop(reader);
    let finish = match &outcome {
        Outcome::Cancelled => crate::backend::FinishReason::Cancelled,
        _ => wire::finish_reason(finish_text.as_deref()),
    };
    let usage = usage.unwrap_or_else(|| Usage {
        prompt_tokens: wire::estimate_tokens_of_len(prompt_bytes),
        completion_tokens: if streamed {
            pieces
        } else {
            wire::estimate_tokens(&text)
        },
        cached_prompt_tokens: 0,
    });
    let (prompt_price, completion_price) = provider.prices();
    match outcome {
        Outcome::Failed(error) => {
            provider.count(|s| s.failures += 1);
            provider.inner.breaker.record_failure();
            tracing::warn!(provider = provider.name(), error = %error, "remote stream failed");
            sender.send(GenerationEvent::Error(GenerateError::Decode(
                error.to_string(),
            )));
            return;
        }
        Outcome::Finished | Outcome::Cancelled => {
            provider.inner.breaker.record_success();
            provider.count(|s| {
                s.prompt_tokens += u64::from(usage.prompt_tokens);
                s.completion_tokens += u64::from(usage.completion_tokens);
                s.cost += f64::from(usage.prompt_tokens) * prompt_price
                    + f64::from(usage.completion_tokens) * completion_price;
            });
        }
    }
    let timings = timings(started_at, first_at, last_at, usage);
    sender.send(GenerationEvent::Done(GenerationResult {
        text,
        finish,
        usage,
        timings,
        tokens: Vec::new(),
        logprobs,
    }));
}

enum Outcome {
    Finished,
    Cancelled,
    Failed(RemoteError),
}

fn timings(started_at: Instant, first_at: Instant, last_at: Instant, usage: Usage) -> Timings {
    let ttft = first_at.duration_since(started_at).as_secs_f64();
    let generation = last_at.duration_since(first_at).as_secs_f64();
    let rate = |tokens: f64, secs: f64| if secs > 0.0 { tokens / secs } else { 0.0 };
    Timings {
        time_to_first_token_ms: ttft * 1000.0,
        prompt_ms: ttft * 1000.0,
        generation_ms: generation * 1000.0,
        prompt_tokens_per_s: rate(f64::from(usage.prompt_tokens), ttft),
        generation_tokens_per_s: rate(
            f64::from(usage.completion_tokens.saturating_sub(1)),
            generation,
        ),
    }
}
