//! `POST /v1/embeddings`: OpenAI's embeddings endpoint on the ModelHost.
//!
//! Every input is embedded by the model's engine (mean of the last hidden
//! states, L2-normalised, as OpenAI's vectors are unit length) and returned
//! in input order. Token-id inputs are refused with a 400: the engine embeds
//! text, and turning ids back into text would not give the same tokens.
//! `dimensions` is accepted only when it equals the model's width, since
//! truncating a mean-pooled vector is not what clients asking for fewer
//! dimensions expect (Matryoshka-trained models are).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use troupe_inference::backend::Embeddings;

use super::error::ApiError;
use super::{AppState, JsonBody};

/// An embeddings request.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
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
pub enum EmbeddingInput {
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
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// The little-endian `f32` bytes, base64-encoded.
    Base64,
}

/// The answer: `{object: "list", data, model, usage}`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingList {
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
pub struct EmbeddingData {
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
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Token counts of an embeddings answer (nothing is generated, so the total
/// equals the prompt tokens).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EmbeddingUsage {
    /// Tokens of all inputs.
    pub prompt_tokens: u32,
    /// The same.
    pub total_tokens: u32,
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<EmbeddingRequest>,
) -> Result<Json<EmbeddingList>, ApiError> {
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
    fn base64_holds_the_little_endian_f32_bytes() {
        let EmbeddingVector::Base64(text) = encode(vec![1.0, -0.5], EncodingFormat::Base64) else {
            panic!("base64 asked for");
        };
        // 1.0 = 00 00 80 3f, -0.5 = 00 00 00 bf.
        assert_eq!(text, "AACAPwAAAL8=");
    }
}
