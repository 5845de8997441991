//! Why a remote request failed, in terms a router can act on: try again
//! later (rate limit, server error, unreachable), try elsewhere (breaker
//! open, unsupported request), or fix the configuration (missing or refused
//! key).
//!
//! No variant holds the API key, and body excerpts have any occurrence of
//! it cut out before they are stored (a server may echo the request's
//! headers in an error page).

use std::time::Duration;

/// Why a [`super::RemoteProvider`] could not be built or a request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The variable named by `api_key_env` is not set (or not valid UTF-8).
    #[error("provider `{provider}` is unavailable: its API key variable {var} is not set")]
    MissingKey {
        /// The provider.
        provider: String,
        /// The variable's name (never its value).
        var: String,
    },
    /// The key holds characters an HTTP header cannot carry.
    #[error("provider `{provider}`: the API key in {var} is not a valid header value")]
    InvalidKey {
        /// The provider.
        provider: String,
        /// The variable's name.
        var: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("provider `{provider}`: cannot build the HTTP client: {reason}")]
    Setup {
        /// The provider.
        provider: String,
        /// The client's error.
        reason: String,
    },
    /// The request cannot be expressed for an OpenAI-compatible API.
    #[error("provider `{provider}` cannot take {what}")]
    Unsupported {
        /// The provider.
        provider: String,
        /// What is not supported (`token prompts`, `grammar constraints`).
        what: String,
    },
    /// The request itself is not valid (empty prompt, `max_tokens` 0).
    #[error("invalid request for provider `{provider}`: {reason}")]
    InvalidRequest {
        /// The provider.
        provider: String,
        /// What is wrong.
        reason: String,
    },
    /// The server answered a 5xx status (after the retries).
    #[error("provider `{provider}` answered HTTP {status}: {body_excerpt}")]
    Http {
        /// The provider.
        provider: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body_excerpt: String,
    },
    /// The server answered 429 (after the retries).
    #[error("provider `{provider}` is rate limiting (HTTP 429){}: {body_excerpt}", retry_after.map(|d| format!(", retry after {} s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// The provider.
        provider: String,
        /// The last `Retry-After` the server sent, if any.
        retry_after: Option<Duration>,
        /// The start of the body.
        body_excerpt: String,
    },
    /// The server refused the key (401 or 403): fix the key, not retried.
    #[error("provider `{provider}` refused the API key (HTTP {status}): {message}")]
    Unauthorized {
        /// The provider.
        provider: String,
        /// 401 or 403.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server refused the request with another 4xx status: not retried.
    #[error("provider `{provider}` refused the request (HTTP {status}): {message}")]
    Refused {
        /// The provider.
        provider: String,
        /// The status code.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// No connection could be made, or it broke before an answer.
    #[error("provider `{provider}` is unreachable: {reason}")]
    Unreachable {
        /// The provider.
        provider: String,
        /// What the connection attempt ran into.
        reason: String,
    },
    /// The provider said nothing for longer than its timeout (before the
    /// answer started, or between two of its pieces).
    #[error("provider `{provider}` said nothing for {} s", after.as_secs_f64())]
    Timeout {
        /// The provider.
        provider: String,
        /// The timeout.
        after: Duration,
    },
    /// The answer is not an OpenAI chat completion (not JSON, no `choices`,
    /// a broken event stream, an error event).
    #[error("provider `{provider}` sent an invalid answer: {reason}")]
    InvalidResponse {
        /// The provider.
        provider: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider's circuit breaker is open: recent requests failed.
    #[error("provider `{provider}` is paused after repeated failures; next trial in {} s", retry_in.as_secs_f64())]
    BreakerOpen {
        /// The provider.
        provider: String,
        /// When a trial request will be let through (zero: one is in flight).
        retry_in: Duration,
    },
}

impl RemoteError {
    /// Whether the same request may succeed if sent again soon: 429, 5xx,
    /// connection errors and timeouts.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RemoteError::Http { .. }
                | RemoteError::RateLimited { .. }
                | RemoteError::Unreachable { .. }
                | RemoteError::Timeout { .. }
        )
    }

    /// Whether the failure says something about the provider (and so counts
    /// towards opening its breaker) rather than about the request: a 400 for
    /// an option the provider does not take leaves the provider healthy.
    pub fn counts_against_provider(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                RemoteError::InvalidResponse { .. } | RemoteError::Unauthorized { .. }
            )
            || matches!(self, RemoteError::Refused { status: 404, .. })
    }

    /// The provider the error is about.
    pub fn provider(&self) -> &str {
        match self {
            RemoteError::MissingKey { provider, .. }
            | RemoteError::InvalidKey { provider, .. }
            | RemoteError::Setup { provider, .. }
            | RemoteError::Unsupported { provider, .. }
            | RemoteError::InvalidRequest { provider, .. }
            | RemoteError::Http { provider, .. }
            | RemoteError::RateLimited { provider, .. }
            | RemoteError::Unauthorized { provider, .. }
            | RemoteError::Refused { provider, .. }
            | RemoteError::Unreachable { provider, .. }
            | RemoteError::Timeout { provider, .. }
            | RemoteError::InvalidResponse { provider, .. }
            | RemoteError::BreakerOpen { provider, .. } => provider,
        }
    }
}
