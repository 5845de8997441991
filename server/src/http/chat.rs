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
    MessageContent, ResponseFormat, ToolCall, UsageOut,
};
use super::tool_stream::{CallReader, Delta, EnvelopeReader, Streamed};
use super::tools::{self, render_calls, Answer, ToolMode};
use super::{AppState, JsonBody};

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    generation::check_n(body.n)?;
    let logprobs = logprobs::chat_request(body.logprobs, body.top_logprobs)?;
    let parallel = body.parallel_tool_calls.unwrap_or(true);
    let tools = ToolMode::from_request(body.tools, body.tool_choice, parallel)?;
    if tools.is_on() && !matches!(body.response_format, None | Some(ResponseFormat::Text)) {
        return Err(ApiError::unsupported(
            "response_format",
            "a JSON response_format together with tools",
        ));
    }
    let model = generation::model_or_the_loaded_one(&state, body.model).await?;
    let history = body
        .messages
        .iter()
        .any(|m| m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) || m.tool_call_id.is_some());
    let tools = tools::for_model(&state, &model, tools, history).await?;
    let constraint = match tools.constraint()? {
        Some(constraint) => Some(constraint),
        None => format_constraint(body.response_format),
    };
    let messages = messages(body.messages, &tools)?;
    let mut request = GenerateRequest::new(Prompt::Chat(messages));
    request.sampling = generation::sampling(
        &state.sampling,
        &body.sampling,
        state.host.slot_context(None),
    )?;
    request.stop = body.stop.map(|s| s.into_vec()).unwrap_or_default();
    request.constraint = constraint;
    request.tools = tools.definitions();
    request.preserved = tools.preserved();
    request.ignore_eos = body.ignore_eos;
    request.logprobs = logprobs;
    let max_tokens = body.max_completion_tokens.or(body.max_tokens);
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
            reader: match tools.syntax() {
                Some(syntax) => Reader::Native(CallReader::new(syntax)),
                None => Reader::Envelope(EnvelopeReader::new()),
            },
            tools,
            call_id: response_id("call_"),
            calls: 0,
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

/// The grammar constraint `response_format` asks for.
fn format_constraint(format: Option<ResponseFormat>) -> Option<Constraint> {
    let any_object = || json!({"type": "object"});
    let schema = match format {
        None | Some(ResponseFormat::Text) => return None,
        Some(ResponseFormat::JsonObject) => any_object(),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            json_schema.schema.unwrap_or_else(any_object)
        }
    };
    Some(Constraint::JsonSchema(schema))
}

/// The request's messages as the engine takes them: earlier calls and the
/// tools' answers as the template takes them (the model's own syntax), or
/// as the envelope's JSON with the tool instructions added to the system
/// message.
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
        let calls = message.tool_calls.unwrap_or_default();
        if tools.renders_calls() {
            let mut message_out = ChatMessage::new(role, content);
            message_out.tool_calls = calls.iter().map(tools::message_call).collect();
            message_out.tool_call_id = message.tool_call_id;
            out.push(message_out);
            continue;
        }
        if !calls.is_empty() {
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

/// `chat.completion.chunk`s. With tools the answer is read as it comes:
/// the JSON envelope ([`EnvelopeReader`]) or the model's own call syntax
/// ([`CallReader`]). A call goes out as OpenAI's tool-call deltas (its name,
/// then its arguments piece by piece), text as content; what cannot be
/// read that way is interpreted whole at the end.
struct ChatChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    tools: ToolMode,
    reader: Reader,
    /// The id of the call being streamed.
    call_id: String,
    /// Calls begun so far (the next one's index).
    calls: usize,
    /// Whether the last choice chunk carries the log probabilities.
    logprobs: bool,
}

/// How a stream with tools reads the answer.
enum Reader {
    Envelope(EnvelopeReader),
    Native(CallReader),
}

impl ChatChunks {
    /// The calls of `answer` from the `skip`-th on, as one chunk.
    fn calls_chunk(&self, calls: Vec<ToolCall>, skip: usize) -> Option<Value> {
        let calls: Vec<Value> = calls
            .into_iter()
            .enumerate()
            .skip(skip)
            .map(|(index, call)| {
                json!({
                    "index": index,
                    "id": call.id,
                    "type": call.kind,
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                })
            })
            .collect();
        (!calls.is_empty()).then(|| self.chunk(json!({ "tool_calls": calls }), None))
    }

    /// The envelope read whole at the end (nothing of it was streamed): its
    /// calls or text as chunks; the finish reason.
    fn whole_answer(
        &self,
        text: &str,
        reason: &'static str,
        chunks: &mut Vec<Value>,
    ) -> &'static str {
        let Answer {
            content,
            tool_calls,
            finish_reason,
        } = self.tools.interpret(text.to_owned(), reason);
        if let Some(chunk) = tool_calls.and_then(|calls| self.calls_chunk(calls, 0)) {
            chunks.push(chunk);
        }
        if let Some(content) = content {
            chunks.push(self.chunk(json!({ "content": content }), None));
        }
        finish_reason
    }

    /// The end of an answer in the model's own syntax: the calls not yet
    /// streamed whole, or the text held back; the finish reason.
    fn native_end(
        &self,
        reader: &CallReader,
        reason: &'static str,
        chunks: &mut Vec<Value>,
    ) -> &'static str {
        let answer = self.tools.interpret(reader.text().to_owned(), reason);
        let (started, completed) = reader.calls_sent();
        match answer.tool_calls {
            Some(calls) if started == completed => {
                if let Some(chunk) = self.calls_chunk(calls, completed) {
                    chunks.push(chunk);
                }
                answer.finish_reason
            }
            Some(_) => {
                tracing::warn!("a streamed tool call could not be read to its end");
                reason
            }
            None => {
                if !reader.unsent().is_empty() {
                    chunks.push(self.chunk(json!({ "content": reader.unsent() }), None));
                }
                reason
            }
        }
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
        let deltas = match &mut self.reader {
            Reader::Envelope(reader) => reader.push(text),
            Reader::Native(reader) => reader.push(text),
        };
        let mut chunks = Vec::with_capacity(deltas.len());
        for delta in deltas {
            let delta = match delta {
                Delta::Content(text) => json!({ "content": text }),
                Delta::Call(name) => {
                    if self.calls > 0 {
                        self.call_id = response_id("call_");
                    }
                    self.calls += 1;
                    json!({ "tool_calls": [{
                        "index": self.calls - 1,
                        "id": self.call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]})
                }
                Delta::Arguments(text) => json!({ "tool_calls": [{
                    "index": self.calls.saturating_sub(1),
                    "function": {"arguments": text},
                }]}),
            };
            chunks.push(self.chunk(delta, None));
        }
        chunks
    }

    fn finish(&mut self, result: &GenerationResult) -> Vec<Value> {
        let mut chunks = Vec::with_capacity(3);
        let reason = finish_reason(result.finish);
        let reason = match (&self.reader, self.tools.is_on()) {
            (_, false) => reason,
            (Reader::Native(reader), true) => self.native_end(reader, reason, &mut chunks),
            (Reader::Envelope(reader), true) => match reader.streamed() {
                Streamed::Call if result.finish != FinishReason::Length => "tool_calls",
                Streamed::Call | Streamed::Content => reason,
                Streamed::Nothing => self.whole_answer(reader.text(), reason, &mut chunks),
            },
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
