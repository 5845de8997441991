//! `POST /v1/completions`: OpenAI's legacy text completion.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use troupe_inference::backend::{GenerateRequest, GenerationResult, Prompt};

use super::error::ApiError;
use super::generation::{self, finish_reason, response_id, unix_now, ChunkFormat};
use super::logprobs;
use super::openai::{Completion, CompletionChoice, CompletionPrompt, CompletionRequest, UsageOut};
use super::{AppState, JsonBody};

/// OpenAI's default `max_tokens` for this endpoint.
const DEFAULT_MAX_TOKENS: u32 = 16;

/// `POST /v1/completions`.
pub(super) async fn completions(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    generation::check_n(body.n)?;
    if body.suffix.is_some() {
        return Err(ApiError::unsupported("suffix", "suffix"));
    }
    let logprobs = logprobs::completion_request(body.logprobs)?;
    let prompt = prompt(body.prompt)?;
    let echo = match (&prompt, body.echo) {
        (Prompt::Text(text), true) => Some(text.clone()),
        (_, true) => return Err(ApiError::unsupported("echo", "echo with token-id prompts")),
        (_, false) => None,
    };
    let mut request = GenerateRequest::new(prompt);
    request.sampling = generation::sampling(
        &state.sampling,
        &body.sampling,
        state.host.slot_context(None),
    )?;
    request.stop = body.stop.map(|s| s.into_vec()).unwrap_or_default();
    request.ignore_eos = body.ignore_eos;
    request.logprobs = logprobs;
    let max_tokens = body.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let model = generation::model_or_the_loaded_one(&state, body.model).await?;
    let running = generation::start(&state, &model, request, Some(max_tokens)).await?;
    let model = running.stream.model().to_string();
    let id = response_id("cmpl-");
    let created = unix_now();
    if body.stream {
        let format = CompletionChunks {
            id,
            created,
            model,
            include_usage: body.stream_options.is_some_and(|o| o.include_usage),
            offset: echo.as_ref().map_or(0, |e| e.chars().count()),
            echo,
            logprobs: logprobs.is_some(),
        };
        return Ok(generation::sse(running, format));
    }
    let result = running.finish().await?;
    let offset = echo.as_ref().map_or(0, |e| e.chars().count());
    let text = match echo {
        Some(prompt) => prompt + &result.text,
        None => result.text,
    };
    Ok(Json(Completion {
        id,
        object: "text_completion",
        created,
        model,
        choices: vec![CompletionChoice {
            text,
            index: 0,
            logprobs: logprobs.map(|_| logprobs::completion(&result.logprobs, offset)),
            finish_reason: Some(finish_reason(result.finish)),
        }],
        usage: Some(UsageOut::from(result.usage)),
    })
    .into_response())
}

fn prompt(prompt: CompletionPrompt) -> Result<Prompt, ApiError> {
    let several =
        || ApiError::unsupported("prompt", "a list of several prompts (send one per request)");
    Ok(match prompt {
        CompletionPrompt::Text(text) => Prompt::Text(text),
        CompletionPrompt::Tokens(tokens) => Prompt::Tokens(tokens),
        CompletionPrompt::Texts(mut texts) if texts.len() == 1 => Prompt::Text(texts.remove(0)),
        CompletionPrompt::TokenLists(mut lists) if lists.len() == 1 => {
            Prompt::Tokens(lists.remove(0))
        }
        CompletionPrompt::Texts(_) | CompletionPrompt::TokenLists(_) => return Err(several()),
    })
}

/// `text_completion` stream chunks.
struct CompletionChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    echo: Option<String>,
    /// The echoed prompt's length in characters: where the text's offsets
    /// start.
    offset: usize,
    /// Whether the last chunk carries the log probabilities.
    logprobs: bool,
}

impl CompletionChunks {
    fn chunk(&self, text: &str, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
    }
}

impl ChunkFormat for CompletionChunks {
    fn start(&mut self) -> Vec<Value> {
        match self.echo.take() {
            Some(prompt) => vec![self.chunk(&prompt, None)],
            None => Vec::new(),
        }
    }

    fn piece(&mut self, text: &str) -> Vec<Value> {
        vec![self.chunk(text, None)]
    }

    fn finish(&mut self, result: &GenerationResult) -> Vec<Value> {
        let mut last = self.chunk("", Some(finish_reason(result.finish)));
        if self.logprobs {
            last["choices"][0]["logprobs"] = logprobs::completion(&result.logprobs, self.offset);
        }
        if self.include_usage {
            last["usage"] = json!(UsageOut::from(result.usage));
        }
        vec![last]
    }
}
