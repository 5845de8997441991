//! The OpenAI chat-completions wire format: a [`GenerateRequest`] turned
//! into a request body, and the pieces of an answer (a stream chunk or a
//! whole completion) read back.
//!
//! Only fields every OpenAI-compatible server takes are sent. llama.cpp's
//! own sampling options (`top_k`, `min_p`, `repeat_penalty`) are left out:
//! OpenAI and several hosted providers answer 400 to fields they do not know.

use serde_json::{json, Map, Value};

use crate::backend::{
    Constraint, FinishReason, GenerateRequest, Logprob, Prompt, TokenLogprob, Usage,
};
use crate::chat::{ChatMessage, Role};

use super::RemoteError;

/// The request body for `model`, or why the request cannot be sent.
pub(crate) fn request_body(
    provider: &str,
    model: &str,
    request: &GenerateRequest,
) -> Result<Value, RemoteError> {
    let unsupported = |what: &str| RemoteError::Unsupported {
        provider: provider.to_string(),
        what: what.to_string(),
    };
    let invalid = |reason: &str| RemoteError::InvalidRequest {
        provider: provider.to_string(),
        reason: reason.to_string(),
    };
    let messages: Vec<Value> = match &request.prompt {
        Prompt::Chat(messages) => messages.iter().map(message).collect(),
        Prompt::Text(text) => vec![message(&ChatMessage::user(text.clone()))],
        Prompt::Tokens(_) => return Err(unsupported("token prompts (send text or chat)")),
    };
    let empty = match &request.prompt {
        Prompt::Text(text) => text.is_empty(),
        _ => messages.is_empty(),
    };
    if empty {
        return Err(invalid("the prompt is empty"));
    }
    if request.max_tokens == 0 {
        return Err(invalid("max_tokens must be at least 1"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(request.max_tokens));
    let sampling = &request.sampling;
    body.insert("temperature".into(), json!(sampling.temperature));
    body.insert("top_p".into(), json!(sampling.top_p));
    if let Some(seed) = sampling.seed {
        body.insert("seed".into(), json!(seed));
    }
    if sampling.frequency_penalty != 0.0 {
        body.insert(
            "frequency_penalty".into(),
            json!(sampling.frequency_penalty),
        );
    }
    if sampling.presence_penalty != 0.0 {
        body.insert("presence_penalty".into(), json!(sampling.presence_penalty));
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    match &request.constraint {
        None => {}
        Some(Constraint::JsonSchema(schema)) => {
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": { "name": "output", "schema": schema, "strict": true },
                }),
            );
        }
        Some(Constraint::Json) => {
            body.insert("response_format".into(), json!({ "type": "json_object" }));
        }
        Some(Constraint::Grammar(_) | Constraint::Lazy { .. }) => {
            return Err(unsupported(
                "GBNF grammar constraints (use a JSON Schema constraint)",
            ))
        }
    }
    if let Some(top) = request.logprobs {
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(top));
    }
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    Ok(Value::Object(body))
}

fn message(m: &ChatMessage) -> Value {
    // OpenAI refuses a `tool` message that does not answer a `tool_calls`
    // entry by id, and troupe's tool observations are plain text: they go as
    // user turns, marked so that the model can tell them from the person.
    match m.role {
        Role::Tool => json!({ "role": "user", "content": format!("Tool output:\n{}", m.content) }),
        role => json!({ "role": role.as_str(), "content": m.content }),
    }
}

/// What one stream chunk or whole completion says.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// New text, if any.
    pub text: Option<String>,
    /// The log probabilities of its tokens, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// `finish_reason`, if given.
    pub finish: Option<String>,
    /// `usage`, if given.
    pub usage: Option<Usage>,
}

/// Reads a stream chunk (`delta`) or a whole completion (`message`).
///
/// # Errors
/// The reason the value is not a chat completion, in words.
pub(crate) fn read_answer(value: &Value) -> Result<Answer, String> {
    let Some(object) = value.as_object() else {
        return Err(format!("expected a JSON object, got {}", excerpt_of(value)));
    };
    if let Some(error) = object.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| excerpt_of(error));
        return Err(format!("the server reported an error: {message}"));
    }
    let usage = object.get("usage").and_then(read_usage);
    let choices = match object.get("choices") {
        Some(Value::Array(choices)) => choices,
        Some(other) => return Err(format!("`choices` is not a list: {}", excerpt_of(other))),
        // The last chunk of a stream with `include_usage` may carry usage only.
        None if usage.is_some() => {
            return Ok(Answer {
                usage,
                ..Answer::default()
            })
        }
        None => return Err(format!("no `choices` in the answer: {}", excerpt_of(value))),
    };
    let Some(choice) = choices.first() else {
        return Ok(Answer {
            usage,
            ..Answer::default()
        });
    };
    let content = choice
        .get("delta")
        .or_else(|| choice.get("message"))
        .map(|m| m.get("content"));
    let text = match content {
        Some(Some(Value::String(s))) => Some(s.clone()),
        Some(None | Some(Value::Null)) => None,
        Some(Some(other)) => {
            return Err(format!("`content` is not a string: {}", excerpt_of(other)))
        }
        // Legacy completion servers put the text here.
        None => choice
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    if content.is_none() && text.is_none() && choice.get("finish_reason").is_none() {
        return Err(format!(
            "a choice has neither `delta`, `message` nor `finish_reason`: {}",
            excerpt_of(choice)
        ));
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let logprobs = match choice.get("logprobs").and_then(|l| l.get("content")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tokens)) => tokens
            .iter()
            .map(read_token_logprob)
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`logprobs.content` is not a list: {}",
                excerpt_of(other)
            ))
        }
    };
    Ok(Answer {
        text,
        logprobs,
        finish,
        usage,
    })
}

/// One entry of OpenAI's `logprobs.content`: the token and its likeliest
/// alternatives, each by its text (`bytes` when given, else `token`).
fn read_token_logprob(value: &Value) -> Result<TokenLogprob, String> {
    let one = |value: &Value| -> Result<Logprob, String> {
        let logprob = value
            .get("logprob")
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                format!(
                    "a logprobs entry has no number `logprob`: {}",
                    excerpt_of(value)
                )
            })?;
        let bytes = match (value.get("bytes"), value.get("token")) {
            (Some(Value::Array(bytes)), _) => bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("`bytes` are not bytes: {}", excerpt_of(value)))?,
            (_, Some(Value::String(token))) => token.as_bytes().to_vec(),
            _ => {
                return Err(format!(
                    "a logprobs entry has no token: {}",
                    excerpt_of(value)
                ))
            }
        };
        Ok(Logprob {
            token: None,
            bytes,
            #[allow(clippy::cast_possible_truncation)]
            logprob: logprob as f32,
        })
    };
    let top = match value.get("top_logprobs") {
        Some(Value::Array(top)) => top.iter().map(one).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(TokenLogprob {
        chosen: one(value)?,
        top,
    })
}

fn read_usage(value: &Value) -> Option<Usage> {
    let count = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let cached = value
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
        cached_prompt_tokens: cached,
    })
}

/// OpenAI's `finish_reason` as ours. `content_filter` and `tool_calls`
/// end the text like a stop token does.
pub(crate) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// The first 200 characters of a JSON value, for error messages.
fn excerpt_of(value: &Value) -> String {
    excerpt(&value.to_string())
}

/// The first 200 characters of `text`, on one line.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX + 1)
        .collect();
    if flat.chars().count() > MAX {
        format!("{}…", flat.chars().take(MAX).collect::<String>())
    } else if flat.is_empty() {
        "(empty body)".to_string()
    } else {
        flat
    }
}

/// Tokens of `text` estimated as one per 4 bytes, OpenAI's rule of thumb,
/// for servers that report no usage.
pub(crate) fn estimate_tokens(text: &str) -> u32 {
    estimate_tokens_of_len(text.len())
}

/// [`estimate_tokens`] of a text `len` bytes long.
pub(crate) fn estimate_tokens_of_len(len: usize) -> u32 {
    u32::try_from(len.div_ceil(4)).unwrap_or(u32::MAX)
}

/// The prompt's text, for [`estimate_tokens`].
pub(crate) fn prompt_text_len(prompt: &Prompt) -> usize {
    match prompt {
        Prompt::Text(text) => text.len(),
        Prompt::Chat(messages) => messages.iter().map(|m| m.content.len() + 4).sum(),
        Prompt::Tokens(tokens) => tokens.len() * 4,
    }
}
