//! A task workspace as the task page shows it, read with libgit2:
//!
//! - `GET /api/tasks/{id}/files` → `{"data": [{"path", "size"}]}`: the files
//!   of the latest checkpoint.
//! - `GET /api/tasks/{id}/files/{path}` → that file's text.
//! - `GET /api/tasks/{id}/checkpoints` → `{"data": [{"commit", "step",
//!   "time_ms", "files_changed", "insertions", "deletions"}]}`, oldest first.
//! - `GET /api/tasks/{id}/checkpoints/{commit}/diff` → `{"commit", "step",
//!   "patch"}`: what that checkpoint changed, as a unified diff.
//!
//! Everything is read from git objects, never from the file system, so a
//! path in a request cannot reach outside the workspace. libgit2 blocks, so
//! each request runs on a blocking thread.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use git2::{Commit, DiffFormat, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use serde_json::{json, Value};
use troupe_tools::workspace::CHECKPOINT_PREFIX;
use troupe_tools::{Workspace, WorkspaceError};

use super::super::error::ApiError;
use super::super::tasks::running;
use super::super::AppState;

/// Largest file or patch sent whole; longer ones are cut, saying so.
const MAX_TEXT_BYTES: usize = 1 << 20;

/// `GET /api/tasks/{id}/files`.
pub(super) async fn files(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let data_dir = data_dir(&state).await?;
    blocking(move || {
        let repo = open(&data_dir, &id)?;
        let tree = head_commit(&repo)?.tree().map_err(git)?;
        let odb = repo.odb().map_err(git)?;
        let mut files = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                let size = odb.read_header(entry.id()).map_or(0, |(size, _)| size);
                let name = entry.name().unwrap_or("?");
                files.push(json!({ "path": format!("{dir}{name}"), "size": size }));
            }
            TreeWalkResult::Ok
        })
        .map_err(git)?;
        Ok(Json(json!({ "object": "list", "data": files })))
    })
    .await
}

/// `GET /api/tasks/{id}/files/{path}`: plain text, cut at 1 MiB.
pub(super) async fn file(
    State(state): State<Arc<AppState>>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let data_dir = data_dir(&state).await?;
    blocking(move || {
        let repo = open(&data_dir, &id)?;
        let tree = head_commit(&repo)?.tree().map_err(git)?;
        let entry = tree
            .get_path(FsPath::new(&path))
            .map_err(|_| not_found(format!("no file {path:?} in the workspace of {id}")))?;
        let blob = repo
            .find_blob(entry.id())
            .map_err(|_| not_found(format!("{path:?} is not a file")))?;
        let text = if blob.is_binary() {
            format!("({} bytes of binary data)", blob.size())
        } else {
            cut(String::from_utf8_lossy(blob.content()).into_owned())
        };
        let mut response = text.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Ok(response)
    })
    .await
}

/// `GET /api/tasks/{id}/checkpoints`.
pub(super) async fn checkpoints(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let data_dir = data_dir(&state).await?;
    blocking(move || {
        let workspace = Workspace::open(&data_dir, &id).map_err(workspace_error)?;
        let repo = open(&data_dir, &id)?;
        let mut data = Vec::new();
        for checkpoint in workspace.checkpoints().map_err(workspace_error)? {
            let oid = Oid::from_str(&checkpoint.id.0).map_err(git)?;
            let commit = repo.find_commit(oid).map_err(git)?;
            let stats = diff_of(&repo, &commit)?.stats().map_err(git)?;
            data.push(json!({
                "commit": checkpoint.id.0,
                "step": checkpoint.step,
                "time_ms": commit.time().seconds().saturating_mul(1000),
                "files_changed": stats.files_changed(),
                "insertions": stats.insertions(),
                "deletions": stats.deletions(),
            }));
        }
        Ok(Json(json!({ "object": "list", "data": data })))
    })
    .await
}

/// `GET /api/tasks/{id}/checkpoints/{commit}/diff`.
pub(super) async fn diff(
    State(state): State<Arc<AppState>>,
    Path((id, commit)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let data_dir = data_dir(&state).await?;
    blocking(move || {
        let repo = open(&data_dir, &id)?;
        let unknown = || not_found(format!("no checkpoint {commit:?} in the workspace of {id}"));
        if commit.len() < 4 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let found = repo
            .revparse_single(&commit)
            .and_then(|object| object.peel_to_commit())
            .map_err(|_| unknown())?;
        let mut patch = Vec::new();
        diff_of(&repo, &found)?
            .print(DiffFormat::Patch, |_, _, line| {
                if matches!(line.origin(), '+' | '-' | ' ') {
                    patch.push(line.origin() as u8);
                }
                patch.extend_from_slice(line.content());
                true
            })
            .map_err(git)?;
        let message = found.message().unwrap_or_default();
        Ok(Json(json!({
            "commit": found.id().to_string(),
            "step": message.strip_prefix(CHECKPOINT_PREFIX).unwrap_or(message).trim_end(),
            "patch": cut(String::from_utf8_lossy(&patch).into_owned()),
        })))
    })
    .await
}

/// What `commit` changed from its first parent (from nothing for the first).
fn diff_of<'r>(repo: &'r Repository, commit: &Commit<'_>) -> Result<git2::Diff<'r>, ApiError> {
    let tree = commit.tree().map_err(git)?;
    let parent = match commit.parent(0) {
        Ok(parent) => Some(parent.tree().map_err(git)?),
        Err(_) => None,
    };
    repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None)
        .map_err(git)
}

/// The data dir: where the store's database file lies.
async fn data_dir(state: &AppState) -> Result<PathBuf, ApiError> {
    let store = running(state)?.get().await?.store().clone();
    Ok(store
        .path()
        .parent()
        .map(FsPath::to_path_buf)
        .unwrap_or_default())
}

/// The workspace repository of task `id` (the id is checked first, so it
/// cannot name a directory elsewhere).
fn open(data_dir: &FsPath, id: &str) -> Result<Repository, ApiError> {
    let workspace = Workspace::open(data_dir, id).map_err(workspace_error)?;
    workspace.repo().map_err(workspace_error)
}

fn head_commit(repo: &Repository) -> Result<Commit<'_>, ApiError> {
    repo.head()
        .and_then(|head| head.peel_to_commit())
        .map_err(git)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the workspace reader stopped: {e}")))?
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n… (cut at 1 MiB)\n");
    }
    text
}

fn not_found(message: String) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message,
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

fn git(error: git2::Error) -> ApiError {
    ApiError::internal(format!("git: {}", error.message()))
}

fn workspace_error(error: WorkspaceError) -> ApiError {
    match error {
        WorkspaceError::InvalidTaskId { .. } => ApiError::invalid(None, error.to_string()),
        WorkspaceError::NotFound { .. } | WorkspaceError::UnknownCheckpoint { .. } => {
            not_found(error.to_string())
        }
        other => ApiError::internal(other.to_string()),
    }
}
