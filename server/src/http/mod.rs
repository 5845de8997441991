//! `troupe serve` over HTTP: OpenAI-compatible routes, Ollama's listing
//! routes, health and Prometheus metrics in front of one
//! [`ModelHostHandle`], and, when the state holds a [`RunningTroupe`], the
//! agent API (tasks, their event streams, approvals, chat, agents).
//!
//! # Layout
//! - `openai`: the OpenAI wire types.
//! - `chat`: `POST /v1/chat/completions`; `tools`: function calling through
//!   a JSON Schema constraint.
//! - `completions`: `POST /v1/completions`; `embeddings`: `POST /v1/embeddings`.
//! - `generation`: one request on the host, whole or as server-sent events.
//! - `models`: `GET /v1/models`; `ollama`: `GET /api/tags`, `GET /api/ps`,
//!   `POST /api/show`;
//!   `ollama_gen`: Ollama's `POST /api/chat`, `/api/generate`, `/api/embed`,
//!   `/api/embeddings` and `GET /api/version`; `ollama_store`: its
//!   `POST /api/pull`, `DELETE /api/delete` and `POST /api/copy`.
//! - `metrics`: `GET /metrics` and the counters behind it.
//! - `tasks`: the agent API and [`RunningTroupe`]; `tasks_sse`: one task's
//!   journal as server-sent events.
//! - `mcp`: `/mcp`, troupe's MCP server over streamable HTTP.
//! - `auth`: the bearer-key middleware; `error`: OpenAI-style error bodies.
//! - `dashboard`: the web app at `/` (pages, assets, their JSON and SSE).
//!
//! Routes: `GET /health` (never needs the key), `GET /metrics`,
//! `GET /v1/models`, `GET /v1/models/{model}`, `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings`, `GET /api/tags`,
//! `GET /api/ps`, `POST /api/chat`, `POST /api/generate`, `POST /api/embed`,
//! `POST /api/embeddings`, `GET /api/version`, `POST /api/show`,
//! `POST /api/pull`, `DELETE /api/delete`, `POST /api/copy`; with a troupe
//! also `/api/tasks...`, `/api/agents`, `/api/agent/chat` and
//! `/api/approvals...` (listed in `tasks`). Every route but
//! `/health` sits behind the same key and body limit.

mod auth;
mod chat;
mod completions;
mod conn;
mod dashboard;
mod embeddings;
mod error;
mod generation;
mod guard;
mod logprobs;
mod mcp;
mod metrics;
mod models;
mod ollama;
mod ollama_gen;
mod ollama_store;
mod openai;
mod session;
mod tasks;
mod tasks_sse;
mod tool_stream;
mod tools;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpListener;
use troupe_host::ModelHostHandle;

pub use embeddings::SentenceEmbedderSlot;
pub use error::ApiError;
pub use metrics::Metrics;
pub use ollama_store::ModelStore;
pub use tasks::{RunningTroupe, DEFAULT_CONVERSATION};

/// Largest request body accepted unless configured otherwise: 4 MiB, room
/// for a prompt filling a 128K-token context several times over.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

/// What every route shares.
#[derive(Clone)]
pub struct AppState {
    /// The ModelHost that serves the models.
    pub host: ModelHostHandle,
    /// When set, every route but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The troupe behind the agent API; without one only the model host's
    /// routes are served.
    pub troupe: Option<RunningTroupe>,
    /// The sentence embedder `/v1/embeddings` serves besides the host's
    /// models, loaded at its first request.
    pub sentence_embedder: Arc<SentenceEmbedderSlot>,
    /// Host names besides loopback ones that requests may name without a
    /// key (`[serve] allowed_hosts`; see `guard`).
    pub allowed_hosts: Vec<String>,
    /// The address the server is bound to, as a host name (set by
    /// [`serve`] when it is not a wildcard).
    pub bound_hosts: Vec<String>,
    /// The dashboard's sessions and the login's rate limit.
    pub sessions: Arc<session::Sessions>,
    /// Where `/api/pull` and `/api/copy` put models; without one they are
    /// refused.
    pub store: Option<ModelStore>,
    /// What a generation request gets for each sampling field it does not
    /// set (`[serve.sampling]`; unset fields keep llama.cpp's defaults).
    pub sampling: troupe_config::SamplingDefaults,
}

impl AppState {
    /// State for `host` with no API key, the default body limit and fresh
    /// counters.
    pub fn new(host: ModelHostHandle) -> Self {
        Self {
            host,
            api_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            metrics: Arc::new(Metrics::new()),
            troupe: None,
            sentence_embedder: Arc::new(SentenceEmbedderSlot::default()),
            allowed_hosts: Vec::new(),
            bound_hosts: Vec::new(),
            sessions: Arc::new(session::Sessions::default()),
            store: None,
            sampling: troupe_config::SamplingDefaults::default(),
        }
    }

    /// State for a whole troupe: its ModelHost behind the model routes and
    /// the troupe behind the agent API.
    pub fn with_troupe(troupe: RunningTroupe) -> Self {
        Self {
            troupe: Some(troupe.clone()),
            ..Self::new(troupe.model_host().clone())
        }
    }
}

/// The routes (see the module documentation) with authentication, the body
/// limit and request counting.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let agents = state.troupe.is_some();
    let state = Arc::new(state);
    let routes = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::retrieve))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        // llama-server answers these without the /v1 prefix too (`/models`
        // is the dashboard's, which answers API clients with the list).
        .route("/chat/completions", post(chat::chat_completions))
        .route("/completions", post(completions::completions))
        .route("/api/tags", get(ollama::tags))
        .route("/api/chat", post(ollama_gen::chat))
        .route("/api/generate", post(ollama_gen::generate))
        .route("/api/embed", post(ollama_gen::embed))
        .route("/api/embeddings", post(ollama_gen::embeddings))
        .route("/api/version", get(ollama_gen::version))
        .route("/api/show", post(ollama::show))
        .route("/api/ps", get(ollama::ps))
        .route("/api/pull", post(ollama_store::pull))
        .route("/api/delete", delete(ollama_store::delete))
        .route("/api/copy", post(ollama_store::copy))
        .merge(dashboard::routes(&state));
    let routes = if agents {
        routes.merge(tasks::routes())
    } else {
        routes
    };
    // troupe's MCP server over streamable HTTP (see `mcp`).
    let routes = match &state.troupe {
        Some(running) => routes.nest_service(
            "/mcp",
            mcp::service(running.clone(), state.api_key.is_some()),
        ),
        None => routes,
    };
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_api_key,
        ))
        // Before the key: a cross-site or rebound request is refused
        // whatever it carries.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            guard::check_site,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then stops
/// accepting connections and waits for open ones (streams included) to end.
///
/// The host's load and unload events feed `/metrics` while it runs.
///
/// With a troupe in `state`, `shutdown` resolving also stops it
/// ([`RunningTroupe::stop`]): its event streams end, so that the graceful
/// shutdown does not wait on them, the models unload, and unfinished tasks
/// resume at the next start.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let follower = tokio::spawn(Arc::clone(&state.metrics).follow_host(state.host.events()));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, auth = state.api_key.is_some(), agents = state.troupe.is_some(), "serving over HTTP");
        if !addr.ip().is_unspecified() {
            let ip = match addr.ip() {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            };
            state.bound_hosts.push(ip);
        }
    }
    let troupe = state.troupe.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(troupe) = troupe {
            tracing::info!("stopping the troupe");
            troupe.stop().await;
        }
    };
    let result = conn::serve_connections(listener, router(state), shutdown).await;
    follower.abort();
    result
}

/// `GET /health`: 200 while the host answers, 503 once it has stopped.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.host.status().await {
        Ok(status) => Json(json!({
            "status": "ok",
            "models_loaded": status.models.len(),
        }))
        .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route {} {path}", request.method()),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
    .into_response_for(path)
}

/// A JSON body whose failures are OpenAI error objects: 413 over the body
/// limit, 400 for malformed JSON or a wrong shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        message: format!(
                            "the request body is larger than this server's limit of {} bytes",
                            state.max_body_bytes
                        ),
                        kind: "invalid_request_error",
                        param: None,
                        code: Some("request_too_large"),
                    }
                } else {
                    ApiError::invalid(None, rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(None, format!("the request body is not valid: {e}")))
    }
}
