//! `POST /v1/embeddings`: OpenAI's embeddings endpoint on the ModelHost.
//!
//! Every input is embedded by the model's engine (mean of the last hidden
//! states, L2-normalised, as OpenAI's vectors are unit length) and returned
//! in input order. Token-id inputs are refused with a 400: the engine embeds
//! text, and turning ids back into text would not give the same tokens.
//! `dimensions` is accepted only when it equals the model's width, since
//! truncating a mean-pooled vector is not what clients asking for fewer
//! dimensions expect (Matryoshka-trained models are).
//!
//! The configured sentence embedder (`[memory] embedder`,
//! all-MiniLM-L6-v2 by default) is served here too, under its repository id
//! or the last part of it (`all-MiniLM-L6-v2`): such requests skip the
//! ModelHost and run [`SentenceEmbedder`] on a blocking thread, loaded once
//! at its first request and kept ([`SentenceEmbedderSlot`]). Its vectors
//! are unit length when the model normalises (MiniLM does), and inputs past
//! its `max_seq_length` tokens are truncated, as sentence-transformers does.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use troupe_config::memory::MemoryConfig;
use troupe_inference::backend::Embeddings;
use troupe_inference::embedder::{EmbedError, EmbedderSource, SentenceEmbedder, DEFAULT_EMBEDDER};

use super::error::ApiError;
use super::{AppState, JsonBody};

/// An embeddings request.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct EmbeddingRequest {
    /// The catalog name of the model.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (the default) or `base64`.
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Width asked for; must equal the model's.
    pub dimensions: Option<u32>,
}

/// The `input` of an embeddings request.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts, one vector each.
    Texts(Vec<String>),
    /// Token ids of one input (refused).
    Tokens(Vec<i32>),
    /// Token ids of several inputs (refused).
    TokenLists(Vec<Vec<i32>>),
}

/// How vectors are written in the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// The little-endian `f32` bytes, base64-encoded.
    Base64,
}

/// The answer: `{object: "list", data, model, usage}`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct EmbeddingList {
    /// Always `list`.
    pub object: &'static str,
    /// One entry per input, in input order.
    pub data: Vec<EmbeddingData>,
    /// The model as named in the request.
    pub model: String,
    /// Tokens embedded.
    pub usage: EmbeddingUsage,
}

/// One vector of the answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct EmbeddingData {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position of the input.
    pub index: usize,
    /// The vector, as numbers or as base64.
    pub embedding: EmbeddingVector,
}

/// A vector in the encoding the request asked for.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Token counts of an embeddings answer (nothing is generated, so the total
/// equals the prompt tokens).
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct EmbeddingUsage {
    /// Tokens of all inputs.
    pub prompt_tokens: u32,
    /// The same.
    pub total_tokens: u32,
}

/// `POST /v1/embeddings`.
pub(super) async fn embeddings(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<EmbeddingRequest>,
) -> Result<Json<EmbeddingList>, ApiError> {
    if state.sentence_embedder.answers_to(&body.model) {
        return sentence_embeddings(&state.sentence_embedder, body).await;
    }
    let inputs = match body.input {
        EmbeddingInput::Text(text) => vec![text],
        EmbeddingInput::Texts(texts) => texts,
        EmbeddingInput::Tokens(ids) => {
            let what = format!("token-id input ({} ids; send the text)", ids.len());
            return Err(ApiError::unsupported("input", &what));
        }
        EmbeddingInput::TokenLists(lists) => {
            let what = format!(
                "token-id input ({} lists of ids; send the texts)",
                lists.len()
            );
            return Err(ApiError::unsupported("input", &what));
        }
    };
    if let Some(dimensions) = body.dimensions {
        let n_embd = state.host.model_info(&body.model).await?.n_embd;
        if dimensions != n_embd {
            return Err(ApiError::invalid(
                Some("dimensions"),
                format!(
                    "dimensions is {dimensions} but model {} gives {n_embd}-dimensional \
                     embeddings; omit dimensions or send {n_embd}",
                    body.model
                ),
            )
            .with_code("unsupported_parameter"));
        }
    }
    let embeddings = state.host.embed(&body.model, inputs).await?;
    Ok(Json(answer(embeddings, body.model, body.encoding_format)))
}

/// The sentence embedder of `troupe serve`: which name it answers to,
/// where it is, and the model once loaded.
#[derive(Debug)]
pub struct SentenceEmbedderSlot {
    name: String,
    source: EmbedderSource,
    loaded: OnceCell<Arc<SentenceEmbedder>>,
}

impl Default for SentenceEmbedderSlot {
    /// [`DEFAULT_EMBEDDER`] from hf-hub's default cache (`$HF_HUB_CACHE`,
    /// `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
    fn default() -> Self {
        Self::new(DEFAULT_EMBEDDER, EmbedderSource::hub(DEFAULT_EMBEDDER))
    }
}

impl SentenceEmbedderSlot {
    /// A slot answering to `name` (a repository id) that loads from
    /// `source` at its first request.
    pub fn new(name: impl Into<String>, source: EmbedderSource) -> Self {
        Self {
            name: name.into(),
            source,
            loaded: OnceCell::new(),
        }
    }

    /// The `[memory]` section's embedder: `embedder_path` when set, else
    /// `embedder` in the hub cache at `hf_cache` (`[models] hf_cache`).
    pub fn from_config(memory: &MemoryConfig, hf_cache: &Path) -> Self {
        let source = troupe_agents::memory::embedder_source(memory, hf_cache);
        Self::new(memory.embedder.clone(), source)
    }

    /// The slot holding `embedder`, already loaded: the troupe's memory
    /// embedder, so `/v1/embeddings` and memory share one model.
    pub fn with_loaded(self, embedder: Arc<SentenceEmbedder>) -> Self {
        let _ = self.loaded.set(embedder);
        self
    }

    /// The repository id it answers to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a request for `model` is for this embedder: its repository
    /// id, or the part after the owner (`all-MiniLM-L6-v2`).
    pub fn answers_to(&self, model: &str) -> bool {
        let short = self.name.rsplit('/').next().unwrap_or(&self.name);
        model == self.name || model == short
    }

    /// The embedder, loaded on a blocking thread at the first call. A
    /// failed load is not kept: the next request tries again (the files
    /// may have been installed meanwhile).
    pub async fn get(&self) -> Result<Arc<SentenceEmbedder>, ApiError> {
        self.loaded
            .get_or_try_init(|| async {
                let source = self.source.clone();
                let loaded = tokio::task::spawn_blocking(move || SentenceEmbedder::load(&source))
                    .await
                    .map_err(|e| ApiError::internal(format!("loading the embedder failed: {e}")))?;
                match loaded {
                    Ok(embedder) => {
                        tracing::info!(model = %self.name, dim = embedder.dim(), "sentence embedder loaded");
                        Ok(Arc::new(embedder))
                    }
                    Err(error) => Err(load_error(&self.name, &error)),
                }
            })
            .await
            .cloned()
    }
}

/// A configured embedder whose files are not there is a 404 like any
/// unknown model; files that are there but wrong are the server's fault.
fn load_error(name: &str, error: &EmbedError) -> ApiError {
    let message = format!("cannot load the sentence embedder {name}: {error}");
    match error {
        EmbedError::NotADirectory { .. }
        | EmbedError::NotCached { .. }
        | EmbedError::MissingFile { .. } => ApiError {
            status: StatusCode::NOT_FOUND,
            message,
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        },
        _ => ApiError::internal(message),
    }
}

/// `POST /v1/embeddings` for the sentence embedder.
async fn sentence_embeddings(
    slot: &SentenceEmbedderSlot,
    body: EmbeddingRequest,
) -> Result<Json<EmbeddingList>, ApiError> {
    let inputs = match body.input {
        EmbeddingInput::Text(text) => vec![text],
        EmbeddingInput::Texts(texts) => texts,
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
            return Err(ApiError::unsupported(
                "input",
                "token-id input to the sentence embedder (send the text)",
            ));
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid(Some("input"), "input is an empty list"));
    }
    let embedder = slot.get().await?;
    if let Some(dimensions) = body.dimensions {
        let dim = embedder.dim();
        if usize::try_from(dimensions).ok() != Some(dim) {
            return Err(ApiError::invalid(
                Some("dimensions"),
                format!(
                    "dimensions is {dimensions} but model {} gives {dim}-dimensional \
                     embeddings; omit dimensions or send {dim}",
                    body.model
                ),
            )
            .with_code("unsupported_parameter"));
        }
    }
    let embeddings = tokio::task::spawn_blocking(move || {
        let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
        embedder.embed_counting_tokens(&texts)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the embedder failed: {e}")))?
    .map_err(|e| match e {
        EmbedError::Tokenize { .. } => ApiError::invalid(Some("input"), e.to_string()),
        other => ApiError::internal(other.to_string()),
    })?;
    Ok(Json(answer(embeddings, body.model, body.encoding_format)))
}

fn answer(embeddings: Embeddings, model: String, format: EncodingFormat) -> EmbeddingList {
    let data = embeddings
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingData {
            object: "embedding",
            index,
            embedding: encode(vector, format),
        })
        .collect();
    EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: embeddings.prompt_tokens,
            total_tokens: embeddings.prompt_tokens,
        },
    }
}

/// The vector as the client asked: numbers, or base64 of its little-endian
/// `f32` bytes (what OpenAI's Python client decodes with `np.frombuffer`).
fn encode(vector: Vec<f32>, format: EncodingFormat) -> EmbeddingVector {
    match format {
        EncodingFormat::Float => EmbeddingVector::Float(vector),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_answers_to_the_repo_id_and_its_short_name() {
        let slot = SentenceEmbedderSlot::default();
        assert!(slot.answers_to("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(slot.answers_to("all-MiniLM-L6-v2"));
        assert!(!slot.answers_to("all-minilm"));
        assert!(!slot.answers_to("qwen2.5-0.5b"));
    }

    #[test]
    fn base64_holds_the_little_endian_f32_bytes() {
        let EmbeddingVector::Base64(text) = encode(vec![1.0, -0.5], EncodingFormat::Base64) else {
            panic!("base64 asked for");
        };
        // 1.0 = 00 00 80 3f, -0.5 = 00 00 00 bf.
        assert_eq!(text, "AACAPwAAAL8=");
    }
}
