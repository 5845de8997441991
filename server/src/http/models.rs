//! `GET /v1/models` and `GET /v1/models/{model}`: the catalog as OpenAI
//! clients list it. Every model the host can load is listed, loaded or not.

use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Path as UrlPath, State};
use axum::Json;
use serde_json::{json, Value};
use troupe_models::catalog::ModelEntry;

use super::error::ApiError;
use super::openai::ModelObject;
use super::AppState;

/// `GET /v1/models`.
pub(super) async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let catalog = state.host.catalog().await?;
    let data: Vec<ModelObject> = catalog.iter().map(model_object).collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/models/{model}`.
pub(super) async fn retrieve(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let catalog = state.host.catalog().await?;
    catalog
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| Json(model_object(entry)))
        .ok_or_else(|| ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            message: format!("no model named {name:?}"),
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        })
}

fn model_object(entry: &ModelEntry) -> ModelObject {
    ModelObject {
        id: entry.name.clone(),
        object: "model",
        created: modified_unix(&entry.path),
        owned_by: "troupe",
    }
}

/// When the file was last modified, in seconds since the Unix epoch (0 when
/// the file system does not say).
pub(super) fn modified_unix(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}
