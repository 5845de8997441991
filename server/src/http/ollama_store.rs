//! Ollama's model-store routes over troupe's stores: `POST /api/pull`
//! (a GGUF from Hugging Face through the same hf-hub path as `troupe
//! models pull`, progress as NDJSON), `DELETE /api/delete` and
//! `POST /api/copy` (an alias: a link in the first model directory).
//!
//! Ollama's own registry is not reachable from troupe: a pull names a
//! Hugging Face repository as Ollama does for one, `hf.co/OWNER/REPO`,
//! with an optional tag that is a quantization (`:Q4_K_M`) or a file
//! (`:model-q8_0.gguf`). Models in Ollama's store are Ollama's to delete.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use troupe_models::catalog::{self, ModelEntry, ModelSource};
use troupe_models::pull::{self, PullError, PullProgress, PullRequest};

use super::error::ApiError;
use super::ollama_gen::{OllamaBody, OllamaError};
use super::AppState;

/// Where pulled and copied models go: `[models]` of the configuration.
#[derive(Debug, Clone)]
pub struct ModelStore {
    /// The Hugging Face hub cache pulls write into.
    pub hf_cache: PathBuf,
    /// The hub's base URL.
    pub hf_endpoint: String,
    /// The model directories; a copy is linked into the first.
    pub dirs: Vec<PathBuf>,
}

/// A model name as Ollama clients send it: `NAME:latest` is `NAME`.
pub(super) fn untagged(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

fn store(state: &AppState) -> Result<&ModelStore, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::invalid(None, "this server has no model store configured ([models])")
    })
}

/// `POST /api/pull`.
#[derive(Debug, Deserialize)]
pub(super) struct PullBody {
    /// `hf.co/OWNER/REPO[:TAG]` (`name` in older clients).
    #[serde(alias = "name")]
    model: String,
    /// Ollama's flag for registries without TLS; the hub endpoint is
    /// configured, so it changes nothing.
    #[serde(default)]
    #[allow(dead_code)]
    insecure: bool,
    #[serde(default)]
    stream: Option<bool>,
}

/// Parses an Ollama model name that points at Hugging Face.
fn pull_request(name: &str, store: &ModelStore) -> Result<PullRequest, ApiError> {
    let bare = ["hf.co/", "huggingface.co/", "https://huggingface.co/"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    let (repo, tag) = match bare.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (bare, None),
    };
    if !repo.contains('/') {
        return Err(ApiError::invalid(
            Some("model"),
            format!(
                "cannot pull {name:?}: troupe pulls GGUF models from Hugging Face, named as \
                 hf.co/OWNER/REPO[:QUANT] (Ollama's library is not reachable from troupe)"
            ),
        ));
    }
    let invalid = |error: PullError| ApiError::invalid(Some("model"), error.to_string());
    let mut request = PullRequest::parse_spec(repo, store.hf_cache.clone()).map_err(invalid)?;
    match tag {
        None | Some("latest") => {}
        Some(tag) if tag.to_ascii_lowercase().ends_with(".gguf") => {
            request = PullRequest::parse_spec(&format!("{repo}:{tag}"), store.hf_cache.clone())
                .map_err(invalid)?;
        }
        Some(quant) => request.quant = Some(quant.to_owned()),
    }
    request.endpoint = Some(store.hf_endpoint.clone());
    Ok(request)
}

/// A pull's failure with the status a client can act on.
fn pull_error(error: &PullError) -> ApiError {
    let status = match error {
        PullError::InvalidSpec { .. }
        | PullError::NoGguf { .. }
        | PullError::SeveralGguf { .. } => StatusCode::BAD_REQUEST,
        PullError::NotFound { .. } => StatusCode::NOT_FOUND,
        PullError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError {
        status,
        message: format!("pull failed: {error}"),
        kind: if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        },
        param: None,
        code: None,
    }
}

/// Progress as Ollama's NDJSON objects, at most about a hundred per file.
struct NdjsonProgress {
    lines: mpsc::UnboundedSender<Value>,
    file: Mutex<FileProgress>,
}

#[derive(Default)]
struct FileProgress {
    name: String,
    total: u64,
    completed: u64,
    sent: u64,
}

impl FileProgress {
    fn line(&self) -> Value {
        json!({
            "status": format!("pulling {}", self.name),
            "digest": self.name,
            "total": self.total,
            "completed": self.completed,
        })
    }
}

impl PullProgress for NdjsonProgress {
    fn start(&self, file: &str, total: u64) {
        let mut progress = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *progress = FileProgress {
            name: file.to_owned(),
            total,
            ..FileProgress::default()
        };
        let _ = self.lines.send(progress.line());
    }

    fn advance(&self, bytes: u64) {
        let mut progress = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        progress.completed += bytes;
        let step = (progress.total / 100).max(1 << 20);
        if progress.completed - progress.sent >= step {
            progress.sent = progress.completed;
            let _ = self.lines.send(progress.line());
        }
    }

    fn finish(&self) {
        let progress = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self.lines.send(progress.line());
    }
}

/// `POST /api/pull`: NDJSON progress (`pulling manifest`, `pulling FILE`
/// with `total`/`completed`, `verifying model`, `success`), or one
/// `{"status": "success"}` with `"stream": false`. A failure is an
/// `{"error": ...}` line in a stream, else its status.
pub(super) async fn pull(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<PullBody>,
) -> Result<Response, OllamaError> {
    let request = pull_request(&body.model, store(&state)?)?;
    let (lines, mut received) = mpsc::unbounded_channel();
    let progress = Arc::new(NdjsonProgress {
        lines: lines.clone(),
        file: Mutex::new(FileProgress::default()),
    });
    let _ = lines.send(json!({ "status": "pulling manifest" }));
    let task = tokio::spawn(async move {
        let pulled = pull::pull(&request, progress).await;
        if let Ok(path) = &pulled {
            tracing::info!(path = %path.display(), "pulled through /api/pull");
        }
        pulled
    });
    if body.stream == Some(false) {
        return match task.await {
            Ok(Ok(_)) => Ok(Json(json!({ "status": "success" })).into_response()),
            Ok(Err(error)) => Err(OllamaError::from(pull_error(&error))),
            Err(join) => Err(OllamaError::from(ApiError::internal(format!(
                "the pull stopped: {join}"
            )))),
        };
    }
    tokio::spawn(async move {
        let last = match task.await {
            Ok(Ok(_)) => vec![
                json!({ "status": "verifying model" }),
                json!({ "status": "success" }),
            ],
            Ok(Err(error)) => vec![json!({ "error": pull_error(&error).message })],
            Err(join) => vec![json!({ "error": format!("the pull stopped: {join}") })],
        };
        for line in last {
            let _ = lines.send(line);
        }
    });
    let body = stream::poll_fn(move |cx| received.poll_recv(cx))
        .map(|object| Ok::<_, Infallible>(format!("{object}\n")));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// The catalog entry `name` names exactly ([`catalog::names`]: its name,
/// `:latest`, `hf.co/`, a pull's tag): showing, deleting or copying by a
/// partial match would act on a model nobody named. Several such entries
/// (the same file name in two model directories) are a 400 listing them.
pub(super) async fn exact_entry(
    state: &AppState,
    name: &str,
    field: &'static str,
) -> Result<ModelEntry, ApiError> {
    let catalog = state.host.catalog().await?;
    let mut found: Vec<ModelEntry> = catalog
        .into_iter()
        .filter(|entry| catalog::names(entry, name))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("model {name:?} not found"),
            kind: "not_found_error",
            param: Some(field),
            code: Some("model_not_found"),
        }),
        _ => Err(ApiError::invalid(
            Some(field),
            format!(
                "{name:?} names several models: {}",
                found
                    .iter()
                    .map(|e| format!("{} ({})", e.name, e.path.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `DELETE /api/delete`.
#[derive(Debug, Deserialize)]
pub(super) struct DeleteBody {
    #[serde(alias = "name")]
    model: String,
}

/// `DELETE /api/delete`: unloads the model, then removes its file (a link
/// only, for a link) or, for a pulled one, its Hugging Face cache entry.
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<DeleteBody>,
) -> Result<StatusCode, OllamaError> {
    let entry = exact_entry(&state, &body.model, "model").await?;
    // The hub-cache repository holding it; `None` for a model directory's file.
    let cached_in = match &entry.source {
        ModelSource::Directory => None,
        ModelSource::HuggingFace { repo, .. } => Some(repo.clone()),
        ModelSource::Ollama { .. } => {
            return Err(OllamaError::from(ApiError::invalid(
                Some("model"),
                format!(
                    "{} is in Ollama's store, which troupe only reads: remove it with `ollama rm`",
                    entry.name
                ),
            )))
        }
    };
    let loaded = state.host.status().await?;
    if loaded.models.iter().any(|m| m.name == entry.name) {
        state.host.unload(&entry.name).await?;
    }
    let removed = match cached_in {
        None => std::fs::remove_file(&entry.path),
        Some(repo) => pull::remove_cached(&store(&state)?.hf_cache, &repo, &entry.path),
    };
    removed.map_err(|error| {
        ApiError::internal(format!("cannot delete {}: {error}", entry.path.display()))
    })?;
    tracing::info!(model = %entry.name, path = %entry.path.display(), "model deleted");
    Ok(StatusCode::OK)
}

/// `POST /api/copy`.
#[derive(Debug, Deserialize)]
pub(super) struct CopyBody {
    source: String,
    destination: String,
}

/// A name a copy may take: a plain file stem, nothing that reaches out of
/// the model directory.
fn destination_name(name: &str) -> Result<&str, ApiError> {
    let name = untagged(name);
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if plain {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            Some("destination"),
            format!(
                "destination {name:?} is not a model name troupe can store: letters, digits, \
                 '-', '_', '.' and ':' only, not starting with '.'"
            ),
        ))
    }
}

/// `POST /api/copy`: the source under a second name, as a link in the first
/// model directory to the source's file.
pub(super) async fn copy(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<CopyBody>,
) -> Result<StatusCode, OllamaError> {
    let destination = destination_name(&body.destination)?;
    let source = exact_entry(&state, &body.source, "source").await?;
    let catalog = state.host.catalog().await?;
    if catalog.iter().any(|entry| entry.name == destination) {
        return Err(OllamaError::from(ApiError::invalid(
            Some("destination"),
            format!("a model called {destination:?} exists already"),
        )));
    }
    let dir = store(&state)?.dirs.first().ok_or_else(|| {
        ApiError::invalid(
            Some("destination"),
            "no model directory is configured ([models] dirs) to hold the copy",
        )
    })?;
    let target = std::fs::canonicalize(&source.path).map_err(|error| {
        ApiError::internal(format!("cannot read {}: {error}", source.path.display()))
    })?;
    link(&target, &dir.join(format!("{destination}.gguf")))?;
    tracing::info!(source = %source.name, %destination, "model copied");
    Ok(StatusCode::OK)
}

/// A hard link where the file system allows one (the copy then outlives
/// the source's deletion, as an Ollama copy does), else a symbolic link.
fn link(target: &Path, path: &Path) -> Result<(), ApiError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| {
            ApiError::internal(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    let linked = std::fs::hard_link(target, path).or_else(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            Err(error)
        } else {
            std::os::unix::fs::symlink(target, path)
        }
    });
    linked.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            ApiError::invalid(
                Some("destination"),
                format!("{} exists already", path.display()),
            )
        } else {
            ApiError::internal(format!("cannot write {}: {error}", path.display()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ModelStore {
        ModelStore {
            hf_cache: PathBuf::from("/cache"),
            hf_endpoint: "http://hub".to_owned(),
            dirs: vec![],
        }
    }

    #[test]
    fn an_ollama_name_for_hugging_face_becomes_a_pull_request() {
        let request = pull_request("hf.co/owner/repo-GGUF:Q4_K_M", &store()).unwrap();
        assert_eq!(request.repo, "owner/repo-GGUF");
        assert_eq!(request.file, None);
        assert_eq!(request.quant.as_deref(), Some("Q4_K_M"));
        assert_eq!(request.endpoint.as_deref(), Some("http://hub"));

        let request = pull_request("owner/repo:model-q8_0.gguf", &store()).unwrap();
        assert_eq!(request.file.as_deref(), Some("model-q8_0.gguf"));
        assert_eq!(request.quant, None);

        let request = pull_request("huggingface.co/owner/repo:latest", &store()).unwrap();
        assert_eq!((request.file, request.quant), (None, None));
    }

    #[test]
    fn a_name_from_ollamas_library_is_refused_naming_the_form_troupe_takes() {
        let error = pull_request("llama3.2", &store()).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error.message.contains("hf.co/OWNER/REPO"),
            "{}",
            error.message
        );
        let error = pull_request("hf.co/a/b/c", &store()).unwrap_err();
        assert_eq!(error.param, Some("model"));
    }

    #[test]
    fn a_copy_cannot_be_named_out_of_the_model_directory() {
        for bad in ["../x", "a/b", ".hidden", "", "a b"] {
            assert!(destination_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(destination_name("my-model:latest").unwrap(), "my-model");
        assert_eq!(destination_name("my-model:v2").unwrap(), "my-model:v2");
    }
}
