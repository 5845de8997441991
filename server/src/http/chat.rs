//! `POST /v1/chat/completions`: messages rendered with the model's chat
//! template, whole answers or `chat.completion.chunk` streams,
//! `response_format` and `tools` enforced by a JSON Schema grammar.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use troupe_inference::backend::{
    Constraint, FinishReason, GenerateRequest, GenerationResult, Prompt,
};
use troupe_inference::chat::{ChatMessage, Role};

use super::error::ApiError;
use super::generation::{self, finish_reason, response_id, unix_now, ChunkFormat};
use super::logprobs;
use super::openai::{
    ChatChoice, ChatCompletion, ChatCompletionRequest, ChatMessageIn, ChatMessageOut,
    MessageContent, ResponseFormat, UsageOut,
};
use super::tool_stream::{Delta, EnvelopeReader, Streamed};
use super::tools::{render_calls, Answer, ToolMode};
use super::{AppState, JsonBody};

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    generation::check_n(body.n)?;
    let logprobs = logprobs::chat_request(body.logprobs, body.top_logprobs)?;
    let tools = ToolMode::from_request(body.tools, body.tool_choice)?;
    let constraint = constraint(body.response_format, &tools)?;
    let messages = messages(body.messages, &tools)?;
    let mut request = GenerateRequest::new(Prompt::Chat(messages));
    request.sampling = generation::sampling(&body.sampling)?;
    request.stop = body.stop.map(|s| s.into_vec()).unwrap_or_default();
    request.constraint = constraint;
    request.ignore_eos = body.ignore_eos;
    request.logprobs = logprobs;
    let max_tokens = body.max_completion_tokens.or(body.max_tokens);
    let model = generation::model_or_the_loaded_one(&state, body.model).await?;
    let running = generation::start(&state, &model, request, max_tokens).await?;
    let model = running.stream.model().to_string();
    let id = response_id("chatcmpl-");
    let created = unix_now();
    if body.stream {
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        let format = ChatChunks {
            id,
            created,
            model,
            include_usage,
            tools,
            envelope: EnvelopeReader::new(),
            call_id: response_id("call_"),
            logprobs: logprobs.is_some(),
        };
        return Ok(generation::sse(running, format));
    }
    let result = running.finish().await?;
    let answer = tools.interpret(result.text.clone(), finish_reason(result.finish));
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessageOut {
                role: "assistant",
                content: answer.content,
                tool_calls: answer.tool_calls,
                refusal: None,
                annotations: [],
            },
            finish_reason: answer.finish_reason,
            logprobs: logprobs.map(|_| logprobs::chat(&result.logprobs)),
        }],
        usage: UsageOut::from(result.usage),
    })
    .into_response())
}

/// The grammar constraint `response_format` or the tools ask for.
fn constraint(
    format: Option<ResponseFormat>,
    tools: &ToolMode,
) -> Result<Option<Constraint>, ApiError> {
    let any_object = || json!({"type": "object"});
    let from_format = match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(any_object()),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            Some(json_schema.schema.unwrap_or_else(any_object))
        }
    };
    match (tools.schema(), from_format) {
        (Some(_), Some(_)) => Err(ApiError::unsupported(
            "response_format",
            "response_format together with tools",
        )),
        (Some(schema), None) | (None, Some(schema)) => Ok(Some(Constraint::JsonSchema(schema))),
        (None, None) => Ok(None),
    }
}

/// The request's messages as the engine takes them, with the tool
/// instructions added to the system message.
fn messages(input: Vec<ChatMessageIn>, tools: &ToolMode) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::with_capacity(input.len() + 1);
    for (i, message) in input.into_iter().enumerate() {
        let role = match message.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            other => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    format!("messages[{i}] has role {other:?}; expected system, developer, user, assistant or tool"),
                ))
            }
        };
        let mut content = match message.content {
            None => String::new(),
            Some(MessageContent::Text(text)) => text,
            Some(MessageContent::Parts(parts)) => {
                let mut texts = Vec::with_capacity(parts.len());
                for part in parts {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(text)) => texts.push(text),
                        (kind, _) => {
                            return Err(ApiError::unsupported(
                                "messages",
                                &format!("content part of type {kind:?} in messages[{i}]"),
                            ))
                        }
                    }
                }
                texts.join("\n")
            }
        };
        if let Some(calls) = message.tool_calls.filter(|c| !c.is_empty()) {
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&render_calls(&calls));
        }
        out.push(ChatMessage::new(role, content));
    }
    if let Some(instructions) = tools.instructions() {
        match out.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => out.insert(0, ChatMessage::system(instructions)),
        }
    }
    Ok(out)
}

/// `chat.completion.chunk`s. With tools the JSON envelope is read as it
/// comes ([`EnvelopeReader`]): a call goes out as OpenAI's tool-call deltas
/// (its name, then its arguments piece by piece), text as content; what
/// cannot be read that way is interpreted whole at the end.
struct ChatChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    tools: ToolMode,
    envelope: EnvelopeReader,
    /// The id of the call being streamed.
    call_id: String,
    /// Whether the last choice chunk carries the log probabilities.
    logprobs: bool,
}

impl ChatChunks {
    /// The answer read whole at the end (nothing of it was streamed): its
    /// calls or text as chunks; the finish reason.
    fn whole_answer(&self, reason: &'static str, chunks: &mut Vec<Value>) -> &'static str {
        let Answer {
            content,
            tool_calls,
            finish_reason,
        } = self
            .tools
            .interpret(self.envelope.text().to_owned(), reason);
        if let Some(calls) = tool_calls {
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(index, call)| {
                    json!({
                        "index": index,
                        "id": call.id,
                        "type": call.kind,
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    })
                })
                .collect();
            chunks.push(self.chunk(json!({ "tool_calls": calls }), None));
        }
        if let Some(content) = content {
            chunks.push(self.chunk(json!({ "content": content }), None));
        }
        finish_reason
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
    }
}

impl ChunkFormat for ChatChunks {
    fn start(&mut self) -> Vec<Value> {
        vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
    }

    fn piece(&mut self, text: &str) -> Vec<Value> {
        if !self.tools.is_on() {
            return vec![self.chunk(json!({ "content": text }), None)];
        }
        let deltas = self.envelope.push(text);
        deltas
            .into_iter()
            .map(|delta| {
                let delta = match delta {
                    Delta::Content(text) => json!({ "content": text }),
                    Delta::Call(name) => json!({ "tool_calls": [{
                        "index": 0,
                        "id": self.call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]}),
                    Delta::Arguments(text) => json!({ "tool_calls": [{
                        "index": 0,
                        "function": {"arguments": text},
                    }]}),
                };
                self.chunk(delta, None)
            })
            .collect()
    }

    fn finish(&mut self, result: &GenerationResult) -> Vec<Value> {
        let mut chunks = Vec::with_capacity(3);
        let reason = finish_reason(result.finish);
        let reason = match (self.tools.is_on(), self.envelope.streamed()) {
            (false, _) => reason,
            (true, Streamed::Call) if result.finish != FinishReason::Length => "tool_calls",
            (true, Streamed::Call | Streamed::Content) => reason,
            (true, Streamed::Nothing) => self.whole_answer(reason, &mut chunks),
        };
        let mut last = self.chunk(json!({}), Some(reason));
        if self.logprobs {
            last["choices"][0]["logprobs"] = logprobs::chat(&result.logprobs);
        }
        chunks.push(last);
        if self.include_usage {
            // OpenAI's form: one more chunk with no choices and the usage.
            chunks.push(json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": UsageOut::from(result.usage),
            }));
        }
        chunks
    }
}
