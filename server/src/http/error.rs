//! Errors as OpenAI-compatible clients expect them: an HTTP status and a body
//! `{"error": {"message", "type", "param", "code"}}`.
//!
//! Every failure of every route goes through [`ApiError`], so a client library
//! (which raises on the status and reads `error.message`) always gets a
//! readable reason, whatever went wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use troupe_host::HostError;
use troupe_inference::backend::GenerateError;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's error class: `invalid_request_error`, `authentication_error`,
    /// `not_found_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    /// A 400 for a request field troupe understands but does not implement.
    pub fn unsupported(param: &'static str, what: &str) -> Self {
        Self::invalid(Some(param), format!("{what} is not supported by troupe"))
            .with_code("unsupported_parameter")
    }

    /// A 401 for a missing or wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// A 500 for a failure that is not the client's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The same error with `code` set.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body clients read.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// Ollama's documented routes (`/api/NAME...`): their errors are Ollama's
/// `{"error": "..."}`, those of refused, unknown and unauthorized requests
/// included. (troupe serves all but create, push and blobs, which answer
/// 404 in that shape.)
const OLLAMA_ROUTES: &[&str] = &[
    "tags",
    "ps",
    "chat",
    "generate",
    "embed",
    "embeddings",
    "version",
    "show",
    "pull",
    "delete",
    "copy",
    "create",
    "push",
    "blobs",
];

/// Whether `path` is one of Ollama's routes.
pub(super) fn is_ollama_path(path: &str) -> bool {
    path.strip_prefix("/api/")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|first| OLLAMA_ROUTES.contains(&first))
}

impl ApiError {
    /// The error as the route at `path` writes errors: Ollama's shape on
    /// Ollama's routes, OpenAI's elsewhere.
    pub(super) fn into_response_for(self, path: &str) -> Response {
        if is_ollama_path(path) {
            if self.status.is_server_error() {
                tracing::warn!(status = self.status.as_u16(), message = %self.message, "request failed");
            }
            (self.status, Json(json!({ "error": self.message }))).into_response()
        } else {
            self.into_response()
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), message = %self.message, "request failed");
        }
        (self.status, Json(self.body())).into_response()
    }
}

impl From<GenerateError> for ApiError {
    fn from(error: GenerateError) -> Self {
        let message = error.to_string();
        let bad = |param: Option<&'static str>| ApiError::invalid(param, message.clone());
        match &error {
            GenerateError::MaxTokensTooLarge { .. } => {
                bad(Some("max_tokens")).with_code("context_length_exceeded")
            }
            GenerateError::PromptTooLong { .. } => {
                bad(Some("messages")).with_code("context_length_exceeded")
            }
            GenerateError::ZeroMaxTokens => bad(Some("max_tokens")),
            GenerateError::NoEmbeddingInputs | GenerateError::EmptyEmbeddingInput { .. } => {
                bad(Some("input"))
            }
            GenerateError::EmbeddingInputTooLong { .. } => {
                bad(Some("input")).with_code("context_length_exceeded")
            }
            GenerateError::EmptyPrompt
            | GenerateError::TokenOutOfRange { .. }
            | GenerateError::ChatTemplate(_)
            | GenerateError::Tokenize(_) => bad(Some("messages")),
            GenerateError::InvalidSampling { .. } => bad(None),
            GenerateError::EmptyStopString { .. } => bad(Some("stop")),
            GenerateError::InvalidSchema(_) | GenerateError::InvalidGrammar { .. } => {
                bad(Some("response_format"))
            }
            GenerateError::Busy { .. } => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
                kind: "server_error",
                param: None,
                code: Some("model_busy"),
            },
            _ => ApiError::internal(message),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(error: HostError) -> Self {
        let message = error.to_string();
        match error {
            HostError::ModelNotFound { .. } => ApiError {
                status: StatusCode::NOT_FOUND,
                message,
                kind: "invalid_request_error",
                param: Some("model"),
                code: Some("model_not_found"),
            },
            // The server lacks the memory: the same request can succeed on a
            // host with a larger budget, so it is not a 400.
            HostError::TooLarge { .. } | HostError::DoesNotFitBesidePinned { .. } => ApiError {
                status: StatusCode::INSUFFICIENT_STORAGE,
                message,
                kind: "server_error",
                param: Some("model"),
                code: Some("model_too_large"),
            },
            HostError::Busy { .. } => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
                kind: "server_error",
                param: None,
                code: Some("model_busy"),
            },
            HostError::Generate(inner) => ApiError::from(inner),
            // An ambiguous name, or a file that is not a usable model.
            HostError::Catalog(_) | HostError::Estimate { .. } => {
                ApiError::invalid(Some("model"), message)
            }
            HostError::Stopped => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
                kind: "server_error",
                param: None,
                code: Some("host_stopped"),
            },
            _ => ApiError::internal(message),
        }
    }
}
