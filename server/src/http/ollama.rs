//! Ollama's listing routes, so that tools written for Ollama can see what
//! troupe serves: `GET /api/tags` (models on disk) and `GET /api/ps` (models
//! loaded now, with troupe's slot and memory details under `troupe`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use troupe_models::catalog::ModelEntry;

use super::error::ApiError;
use super::models::modified_unix;
use super::ollama_gen::{OllamaBody, OllamaError};
use super::AppState;

/// `GET /api/tags`.
pub(super) async fn tags(State(state): State<Arc<AppState>>) -> Result<Json<Value>, OllamaError> {
    let catalog = state.host.catalog().await?;
    let models: Vec<Value> = catalog
        .iter()
        .map(|entry| {
            json!({
                "name": entry.name,
                "model": entry.name,
                "modified_at": rfc3339(modified_unix(&entry.path)),
                "size": entry.file_size,
                "details": details(entry),
            })
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

/// `GET /api/ps`.
pub(super) async fn ps(State(state): State<Arc<AppState>>) -> Result<Json<Value>, OllamaError> {
    let status = state.host.status().await?;
    let catalog = state.host.catalog().await?;
    let models: Vec<Value> = status
        .models
        .iter()
        .map(|m| {
            let entry = catalog.iter().find(|e| e.name == m.name);
            json!({
                "name": m.name,
                "model": m.name,
                "size": m.memory.total(),
                "details": entry.map(details),
                "expires_at": m.expires_at.map(system_time_rfc3339),
                "context_length": m.context_length,
                "troupe": m,
            })
        })
        .collect();
    Ok(Json(json!({
        "models": models,
        "budget_bytes": status.budget_bytes,
        "used_bytes": status.used_bytes,
        "queued_loads": status.queued_loads,
    })))
}

/// `POST /api/show`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ShowBody {
    /// The model (`name` in older clients).
    #[serde(alias = "name")]
    model: String,
    /// Large arrays (the vocabulary) too.
    #[serde(default)]
    verbose: bool,
}

/// `POST /api/show`: the model's GGUF metadata as `model_info` (large
/// arrays left out unless `verbose`, as Ollama does), its chat template
/// (Jinja, as the file holds it: troupe renders it with minijinja, not
/// Go templates), what it can do, and its details.
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<ShowBody>,
) -> Result<Json<Value>, OllamaError> {
    let entry = super::ollama_store::exact_entry(&state, &body.model, "model").await?;
    let path = entry.path.clone();
    let file = tokio::task::spawn_blocking(move || troupe_models::gguf::GgufFile::open(&path))
        .await
        .map_err(|e| ApiError::internal(format!("reading the model failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", entry.name)))?;
    let mut info = serde_json::Map::new();
    for (key, value) in &file.metadata {
        if key == "tokenizer.chat_template" {
            continue;
        }
        info.insert(key.clone(), gguf_json(value, body.verbose));
    }
    info.insert("general.parameter_count".into(), json!(entry.parameters));
    let template = file.chat_template().unwrap_or_default().to_string();
    let mut capabilities = vec!["completion"];
    if template.contains("tools") {
        capabilities.push("tools");
    }
    let parameters = parameters(&state, &entry);
    Ok(Json(json!({
        "license": file.get("general.license").and_then(|v| v.as_str()).unwrap_or_default(),
        "modelfile": modelfile(&entry, &parameters),
        // What a Modelfile's PARAMETER lines would say: the context each
        // request gets here (clients read num_ctx from it) and the
        // configured sampling defaults.
        "parameters": parameters_text(&parameters),
        "template": template,
        "details": details(&entry),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": rfc3339(modified_unix(&entry.path)),
    })))
}

/// A GGUF value as JSON; arrays longer than 64 elements are `null` unless
/// `verbose`.
fn gguf_json(value: &troupe_models::gguf::GgufValue, verbose: bool) -> Value {
    use troupe_models::gguf::GgufValue as V;
    match value {
        V::U8(v) => json!(v),
        V::I8(v) => json!(v),
        V::U16(v) => json!(v),
        V::I16(v) => json!(v),
        V::U32(v) => json!(v),
        V::I32(v) => json!(v),
        V::U64(v) => json!(v),
        V::I64(v) => json!(v),
        V::F32(v) => json!(v),
        V::F64(v) => json!(v),
        V::Bool(v) => json!(v),
        V::String(v) => json!(v),
        V::Array(items) if items.len() > 64 && !verbose => Value::Null,
        V::Array(items) => Value::Array(items.iter().map(|v| gguf_json(v, verbose)).collect()),
    }
}

fn details(entry: &ModelEntry) -> Value {
    json!({
        "format": "gguf",
        "family": entry.architecture,
        "families": [entry.architecture],
        "parameter_size": parameter_size(entry.parameters),
        "quantization_level": entry.quantization,
    })
}

/// A model's parameters: `num_ctx`, then `[serve.sampling]`'s set fields.
fn parameters(state: &AppState, entry: &ModelEntry) -> Vec<(&'static str, String)> {
    let context = state.host.slot_context(entry.context_length);
    let mut all = vec![("num_ctx", context.to_string())];
    all.extend(state.sampling.parameters());
    all
}

/// `/api/show`'s `parameters` as Ollama writes them (`%-30s %v`, a line
/// each).
fn parameters_text(parameters: &[(&str, String)]) -> String {
    parameters
        .iter()
        .map(|(name, value)| format!("{name:<30} {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/api/show`'s `modelfile`: `FROM` the file, a `PARAMETER` line each.
fn modelfile(entry: &ModelEntry, parameters: &[(&str, String)]) -> String {
    let mut text = format!("FROM {}\n", entry.path.display());
    for (name, value) in parameters {
        text.push_str(&format!("PARAMETER {name} {value}\n"));
    }
    text
}

/// Parameters as Ollama writes them: `8.0B`, `135.0M`, `120.3K`.
fn parameter_size(parameters: u64) -> String {
    let p = parameters as f64;
    if p >= 1e9 {
        format!("{:.1}B", p / 1e9)
    } else if p >= 1e6 {
        format!("{:.1}M", p / 1e6)
    } else if p >= 1e3 {
        format!("{:.1}K", p / 1e3)
    } else {
        parameters.to_string()
    }
}

fn system_time_rfc3339(time: SystemTime) -> String {
    rfc3339(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC).
pub(super) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn parameter_sizes_read_like_ollamas() {
        assert_eq!(parameter_size(8_030_000_000), "8.0B");
        assert_eq!(parameter_size(120_320), "120.3K");
        assert_eq!(parameter_size(12), "12");
    }
}
