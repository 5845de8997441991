//! Ollama's generation routes, as Ollama documents them
//! (`docs/api.md` of ollama/ollama): `POST /api/chat` and
//! `POST /api/generate`, streamed as NDJSON (one JSON object per line,
//! `application/x-ndjson`) unless `"stream": false`, with `options`
//! mapped onto sampling, `format` onto a JSON Schema grammar and
//! `keep_alive` onto the ModelHost's. Errors are Ollama's shape,
//! `{"error": "..."}`, with the status the OpenAI routes give.
//!
//! The final object's counters and durations are measured: `load_duration`
//! is the time this request waited for its model to load (0 when it was
//! loaded), `prompt_eval_*` and `eval_*` come from the engine thread's
//! timings, `total_duration` is the request's own wall time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use troupe_inference::backend::{
    Constraint, FinishReason, GenerateError, GenerateRequest, GenerationEvent, GenerationResult,
    Prompt,
};
use troupe_inference::chat::{ChatMessage, MessageToolCall, Role};

use super::error::ApiError;
use super::generation::{self, Running};
use super::openai::{SamplingFields, ToolCall, ToolDefinition};
use super::tool_stream::{CallReader, Delta};
use super::tools::{self, ToolMode};
use super::{AppState, JsonBody};

/// An [`ApiError`] written as Ollama writes errors.
pub(super) struct OllamaError(ApiError);

impl From<ApiError> for OllamaError {
    fn from(error: ApiError) -> Self {
        OllamaError(error)
    }
}

impl From<troupe_host::HostError> for OllamaError {
    fn from(error: troupe_host::HostError) -> Self {
        OllamaError(ApiError::from(error))
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.into_response_for("/api/chat")
    }
}

/// A JSON body whose refusal is written as Ollama writes errors.
pub(super) struct OllamaBody<T>(pub(super) T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<Arc<AppState>>
    for OllamaBody<T>
{
    type Rejection = OllamaError;

    async fn from_request(
        request: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, OllamaError> {
        JsonBody::from_request(request, state)
            .await
            .map(|JsonBody(body)| OllamaBody(body))
            .map_err(OllamaError)
    }
}

/// `options` of a request: the ones troupe maps; others are ignored, as
/// Ollama ignores options a runner does not take.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Options {
    num_predict: Option<i64>,
    num_ctx: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<Vec<String>>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    /// Not Ollama's: llama-server's `ignore_eos` (generate past the end of
    /// the turn), which the speed benchmark uses to get equal lengths.
    #[serde(default)]
    ignore_eos: bool,
}

/// `keep_alive`: seconds (negative: forever) or a Go duration (`5m`,
/// `1h30m`, `-1`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeepAliveIn {
    Seconds(f64),
    Text(String),
}

/// One message of `/api/chat`.
#[derive(Debug, Deserialize)]
struct MessageIn {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Option<Vec<Value>>,
    /// An assistant turn's calls: `{"function": {"name", "arguments": {}}}`.
    #[serde(default)]
    tool_calls: Option<Vec<CallIn>>,
}

/// A call of an earlier assistant turn, as Ollama writes it.
#[derive(Debug, Deserialize)]
struct CallIn {
    function: CallFunctionIn,
}

#[derive(Debug, Deserialize)]
struct CallFunctionIn {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub(super) struct ChatBody {
    model: Option<String>,
    #[serde(default)]
    messages: Vec<MessageIn>,
    /// Functions the model may call, as OpenAI's `tools` are written.
    #[serde(default)]
    tools: Option<Vec<ToolDefinition>>,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    stream: Option<bool>,
    keep_alive: Option<KeepAliveIn>,
}

/// The messages of an Ollama chat as the engine takes them: earlier calls
/// as the template takes them (the model's own syntax), or as the
/// envelope's JSON with the tool instructions in the system message.
fn chat_messages(input: Vec<MessageIn>, tools: &ToolMode) -> Result<Vec<ChatMessage>, OllamaError> {
    let mut messages = Vec::with_capacity(input.len() + 1);
    let mut unanswered: Vec<String> = Vec::new();
    for (i, m) in input.into_iter().enumerate() {
        if m.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(no_images());
        }
        let role = match m.role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    format!(
                    "messages[{i}] has role {other:?}; expected system, user, assistant or tool"
                ),
                )
                .into())
            }
        };
        let calls = m.tool_calls.unwrap_or_default();
        let mut content = m.content;
        if tools.renders_calls() {
            // Ollama's calls have no ids: each gets one (9 digits, which
            // every template takes), and each tool answer the id of the
            // next call not yet answered.
            let mut message = ChatMessage::new(role, content);
            message.tool_calls = calls
                .into_iter()
                .enumerate()
                .map(|(n, call)| MessageToolCall {
                    id: format!("{i:05}{n:04}"),
                    name: call.function.name,
                    arguments: call.function.arguments,
                })
                .collect();
            unanswered.extend(message.tool_calls.iter().map(|c| c.id.clone()));
            if role == Role::Tool && !unanswered.is_empty() {
                message.tool_call_id = Some(unanswered.remove(0));
            }
            messages.push(message);
            continue;
        }
        // Shown to the model as the JSON it is asked to write.
        for call in calls {
            if !content.is_empty() {
                content.push('\n');
            }
            let json = json!({"name": call.function.name, "arguments": call.function.arguments});
            content.push_str(&json.to_string());
        }
        messages.push(ChatMessage::new(role, content));
    }
    if let Some(instructions) = tools.instructions() {
        match messages.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => messages.insert(0, ChatMessage::new(Role::System, instructions)),
        }
    }
    Ok(messages)
}

/// `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub(super) struct GenerateBody {
    model: Option<String>,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    images: Option<Vec<Value>>,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    stream: Option<bool>,
    keep_alive: Option<KeepAliveIn>,
}

/// `POST /api/chat`.
pub(super) async fn chat(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<ChatBody>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    let model = required_model(body.model)?;
    let keep_alive = keep_alive(body.keep_alive)?;
    // Ollama's models may call several tools at once.
    let tools = ToolMode::from_request(body.tools, None, true)?;
    if tools.is_on() && body.format.is_some() {
        return Err(ApiError::unsupported("format", "format together with tools").into());
    }
    if body.messages.is_empty() {
        // Ollama loads the model and answers at once for an empty chat
        // (with keep_alive 0, it unloads it).
        if keep_alive == Some(Duration::ZERO) {
            return unloaded(&state, Shape::Chat, &model).await;
        }
        let load_ns = preload(&state, &model, keep_alive).await?;
        return Ok(loaded(Shape::Chat, &model, load_ns, started));
    }
    // With tools, or earlier calls, the model's template decides how they
    // are shown: load it first (the load is measured here, not in the
    // host's answer; a keep_alive of 0 applies after the answer).
    let history = body
        .messages
        .iter()
        .any(|m| m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()));
    let (tools, load_ns) = if tools.is_on() || history {
        let keep = keep_alive.filter(|k| !k.is_zero());
        let load_ns = preload(&state, &model, keep).await?;
        (
            tools::for_model(&state, &model, tools, history).await?,
            Some(load_ns),
        )
    } else {
        (tools, None)
    };
    let messages = chat_messages(body.messages, &tools)?;
    let mut request = request(&state, Prompt::Chat(messages), &body.options, body.format)?;
    if let Some(constraint) = tools.constraint()? {
        request.constraint = Some(constraint);
    }
    request.tools = tools.definitions();
    request.preserved = tools.preserved();
    let mut job = Job::start(
        &state,
        model,
        request,
        &body.options,
        keep_alive,
        started,
        load_ns,
    )
    .await?;
    job.tools = tools;
    Ok(job.respond(body.stream.unwrap_or(true), Shape::Chat).await)
}

/// `POST /api/generate`.
pub(super) async fn generate(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<GenerateBody>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    let model = required_model(body.model)?;
    let keep_alive = keep_alive(body.keep_alive)?;
    if body.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(no_images());
    }
    if body.prompt.is_empty() {
        // An empty prompt loads the model (or, with keep_alive 0, unloads it).
        if keep_alive == Some(Duration::ZERO) {
            return unloaded(&state, Shape::Generate, &model).await;
        }
        let load_ns = preload(&state, &model, keep_alive).await?;
        return Ok(loaded(Shape::Generate, &model, load_ns, started));
    }
    let prompt = if body.raw {
        Prompt::Text(body.prompt)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = body.system {
            messages.push(ChatMessage::new(Role::System, system));
        }
        messages.push(ChatMessage::new(Role::User, body.prompt));
        Prompt::Chat(messages)
    };
    let request = request(&state, prompt, &body.options, body.format)?;
    let job = Job::start(
        &state,
        model,
        request,
        &body.options,
        keep_alive,
        started,
        None,
    )
    .await?;
    Ok(job
        .respond(body.stream.unwrap_or(true), Shape::Generate)
        .await)
}

/// `input` of `/api/embed`: one text or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

/// `POST /api/embed`.
#[derive(Debug, Deserialize)]
pub(super) struct EmbedBody {
    model: Option<String>,
    input: EmbedInput,
    keep_alive: Option<KeepAliveIn>,
}

/// `POST /api/embeddings` (Ollama's older route): one prompt.
#[derive(Debug, Deserialize)]
pub(super) struct LegacyEmbedBody {
    model: Option<String>,
    prompt: String,
    keep_alive: Option<KeepAliveIn>,
}

/// `POST /api/embed`: unit-length vectors, one per input, in order.
pub(super) async fn embed(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<EmbedBody>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    let model = required_model(body.model)?;
    let keep_alive = keep_alive(body.keep_alive)?;
    let inputs = match body.input {
        EmbedInput::One(text) => vec![text],
        EmbedInput::Many(texts) => texts,
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid(Some("input"), "input is empty").into());
    }
    let load_ns = preload(&state, &model, keep_alive).await?;
    let embeddings = state.host.embed_keeping(&model, inputs, keep_alive).await?;
    Ok(Json(json!({
        "model": model,
        "embeddings": embeddings.vectors,
        "total_duration": nanos(started.elapsed()),
        "load_duration": load_ns,
        "prompt_eval_count": embeddings.prompt_tokens,
    }))
    .into_response())
}

/// `POST /api/embeddings`: `{"embedding": [...]}` for one prompt.
pub(super) async fn embeddings(
    State(state): State<Arc<AppState>>,
    OllamaBody(body): OllamaBody<LegacyEmbedBody>,
) -> Result<Response, OllamaError> {
    let model = required_model(body.model)?;
    let keep_alive = keep_alive(body.keep_alive)?;
    let mut embeddings = state
        .host
        .embed_keeping(&model, vec![body.prompt], keep_alive)
        .await?;
    let vector = embeddings.vectors.pop().unwrap_or_default();
    Ok(Json(json!({ "embedding": vector })).into_response())
}

/// `GET /api/version`: the version of Ollama's API these routes follow.
pub(super) async fn version() -> Json<Value> {
    Json(json!({ "version": OLLAMA_API_VERSION }))
}

/// The Ollama release whose documented API the `/api/*` routes follow
/// (clients such as Open WebUI check it before they talk to a server).
pub(super) const OLLAMA_API_VERSION: &str = "0.12.0";

/// The request's model (the catalog reads Ollama's `NAME:latest` and
/// `hf.co/OWNER/REPO:TAG` names).
fn required_model(model: Option<String>) -> Result<String, OllamaError> {
    match model {
        Some(model) if !model.is_empty() => Ok(model),
        _ => Err(ApiError::invalid(Some("model"), "model is required").into()),
    }
}

fn no_images() -> OllamaError {
    ApiError::unsupported("images", "images (troupe serves no vision models yet)").into()
}

/// `keep_alive` as the host takes it: `None` the default, `Duration::MAX`
/// forever.
fn keep_alive(value: Option<KeepAliveIn>) -> Result<Option<Duration>, OllamaError> {
    let bad = |text: &str| {
        OllamaError(ApiError::invalid(
            Some("keep_alive"),
            format!(
                "keep_alive {text:?} is neither a number of seconds nor a duration such as \"5m\""
            ),
        ))
    };
    let seconds = match value {
        None => return Ok(None),
        Some(KeepAliveIn::Seconds(s)) => s,
        Some(KeepAliveIn::Text(text)) => match text.trim().parse::<f64>() {
            Ok(s) => s,
            Err(_) => go_duration(text.trim()).ok_or_else(|| bad(&text))?,
        },
    };
    if seconds < 0.0 {
        return Ok(Some(Duration::MAX));
    }
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(|_| bad(&seconds.to_string()))
}

/// Seconds of a Go duration (`1h30m`, `5m`, `10s`, `250ms`, `-1m`).
fn go_duration(text: &str) -> Option<f64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(sign * total)
}

/// The engine's request from a prompt, `options` and `format`, over the
/// server's sampling defaults.
fn request(
    state: &AppState,
    prompt: Prompt,
    options: &Options,
    format: Option<Value>,
) -> Result<GenerateRequest, OllamaError> {
    let mut request = GenerateRequest::new(prompt);
    request.sampling = generation::sampling(
        &state.sampling,
        &SamplingFields {
            temperature: options.temperature,
            top_p: options.top_p,
            top_k: options.top_k,
            min_p: options.min_p,
            repeat_penalty: options.repeat_penalty,
            repeat_last_n: options.repeat_last_n,
            frequency_penalty: options.frequency_penalty,
            presence_penalty: options.presence_penalty,
            seed: options.seed,
        },
        // -1's whole context: this request's num_ctx when it asks for more.
        options
            .num_ctx
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
            .max(state.host.slot_context(None)),
    )?;
    request.stop = options.stop.clone().unwrap_or_default();
    request.ignore_eos = options.ignore_eos;
    request.constraint = match format {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(Constraint::Json),
        Some(schema @ Value::Object(_)) => Some(Constraint::JsonSchema(schema)),
        Some(other) => {
            return Err(ApiError::invalid(
                Some("format"),
                format!("format must be \"json\" or a JSON Schema object, not {other}"),
            )
            .into())
        }
    };
    Ok(request)
}

/// Loads `model` if it is not loaded, and gives it `keep_alive` either
/// way; the nanoseconds the load took (0 when it was loaded).
async fn preload(
    state: &AppState,
    model: &str,
    keep_alive: Option<Duration>,
) -> Result<u64, OllamaError> {
    let status = state.host.status().await?;
    let was_loaded = status.models.iter().any(|m| m.name == model);
    let start = Instant::now();
    state.host.load(model, keep_alive).await?;
    Ok(if was_loaded {
        0
    } else {
        nanos(start.elapsed())
    })
}

/// Unloads `model` (a request with keep_alive 0 and nothing to do).
async fn unloaded(state: &AppState, shape: Shape, model: &str) -> Result<Response, OllamaError> {
    state.host.unload(model).await?;
    let mut object = piece(shape, model, "");
    if let Some(map) = object.as_object_mut() {
        map.insert("done".into(), json!(true));
        map.insert("done_reason".into(), json!("unload"));
    }
    Ok(Json(object).into_response())
}

/// Which route's objects a job writes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Chat,
    Generate,
}

/// A started generation and what its final object reports.
struct Job {
    running: Running,
    model: String,
    started: Instant,
    load_ns: u64,
    /// With tools on: the JSON envelope is read when it is complete; in
    /// the model's own syntax, text streams and calls come at the end.
    tools: ToolMode,
}

impl Job {
    async fn start(
        state: &AppState,
        model: String,
        request: GenerateRequest,
        options: &Options,
        keep_alive: Option<Duration>,
        started: Instant,
        loaded: Option<u64>,
    ) -> Result<Job, OllamaError> {
        // `loaded`: the model was loaded (and its load measured) already;
        // the generation request sets its keep-alive.
        let load_ns = match loaded {
            Some(load_ns) => load_ns,
            None => preload(state, &model, keep_alive).await?,
        };
        // Ollama's num_predict: -1 (and absent) is "until the context is
        // full", -2 "fill the context"; both are the engine's default here.
        let max_tokens = match options.num_predict {
            Some(n) if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Some(0) => {
                return Err(ApiError::invalid(
                    Some("options.num_predict"),
                    "num_predict 0 asks for nothing; give a positive count or -1",
                )
                .into())
            }
            _ => None,
        };
        // num_ctx: the request's window of prompt and answer, within the
        // slot's context (the model is not reloaded for a larger one; a
        // longer prompt is not cut, it gets the slot's context).
        let window = match options.num_ctx {
            Some(n) if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            None => None,
            Some(n) => {
                return Err(ApiError::invalid(
                    Some("options.num_ctx"),
                    format!("num_ctx {n} leaves no room; give a positive count of tokens"),
                )
                .into())
            }
        };
        let limits = generation::Limits { max_tokens, window };
        let running = generation::start_keeping(state, &model, request, limits, keep_alive).await?;
        Ok(Job {
            running,
            model,
            started,
            load_ns,
            tools: ToolMode::OFF,
        })
    }

    async fn respond(self, stream: bool, shape: Shape) -> Response {
        if stream {
            return self.ndjson(shape);
        }
        let Job {
            running,
            model,
            started,
            load_ns,
            tools,
        } = self;
        match running.finish().await {
            Ok(result) => {
                let mut body = answer_piece(shape, &model, &tools, &result);
                finish_fields(&mut body, &result, started, load_ns);
                Json(body).into_response()
            }
            Err(error) => OllamaError(error).into_response(),
        }
    }

    /// One object per line: a piece of text per token, then the final one.
    fn ndjson(self, shape: Shape) -> Response {
        let Job {
            running,
            model,
            started,
            load_ns,
            tools,
        } = self;
        // In the model's own call syntax, text before a call streams as it
        // comes; the envelope is read whole at the end.
        let reader = tools.syntax().map(CallReader::new);
        let lines = stream::unfold(Some((running, reader)), move |state| {
            let (model, tools) = (model.clone(), tools.clone());
            async move {
                let (mut running, mut reader) = state?;
                let lines = match running.stream.next().await {
                    Some(GenerationEvent::Token(text)) if tools.is_on() => {
                        let pieces = reader.as_mut().map_or_else(Vec::new, |reader| {
                            content_pieces(shape, &model, reader.push(&text))
                        });
                        return Some((pieces, Some((running, reader))));
                    }
                    Some(GenerationEvent::Token(text)) => {
                        return Some((vec![piece(shape, &model, &text)], Some((running, reader))))
                    }
                    Some(GenerationEvent::Done(result)) => {
                        running.guard.finish(&result);
                        let mut lines = match (&reader, tools.is_on()) {
                            (_, false) => Vec::new(),
                            (None, true) => vec![answer_piece(shape, &model, &tools, &result)],
                            (Some(reader), true) => native_end(shape, &model, &tools, reader),
                        };
                        let mut last = piece(shape, &model, "");
                        finish_fields(&mut last, &result, started, load_ns);
                        lines.push(last);
                        lines
                    }
                    Some(GenerationEvent::Error(error)) => {
                        running.guard.failed();
                        vec![json!({ "error": ApiError::from(error).message })]
                    }
                    None => {
                        running.guard.failed();
                        vec![json!({ "error": ApiError::from(GenerateError::EngineStopped).message })]
                    }
                };
                Some((lines, None))
            }
        })
        .flat_map(stream::iter)
        .map(|object| Ok::<_, Infallible>(format!("{object}\n")));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(Body::from_stream(lines))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// The whole answer as one object, `done: false`: with tools, the model's
/// JSON read as a call (`tool_calls`, arguments as an object, as Ollama
/// writes them) or as text.
fn answer_piece(shape: Shape, model: &str, tools: &ToolMode, result: &GenerationResult) -> Value {
    let answer = tools.interpret(result.text.clone(), "stop");
    let mut object = piece(shape, model, answer.content.as_deref().unwrap_or(""));
    if let (Some(calls), Some(message)) = (answer.tool_calls, object.get_mut("message")) {
        message["tool_calls"] = ollama_calls(&calls);
    }
    object
}

/// The content deltas of a streamed answer as pieces (calls are sent
/// whole at the end, as Ollama sends them).
fn content_pieces(shape: Shape, model: &str, deltas: Vec<Delta>) -> Vec<Value> {
    deltas
        .into_iter()
        .filter_map(|delta| match delta {
            Delta::Content(text) => Some(piece(shape, model, &text)),
            Delta::Call(_) | Delta::Arguments(_) => None,
        })
        .collect()
}

/// The end of a streamed answer in the model's own syntax: its calls, or
/// the text held back when it made none.
fn native_end(shape: Shape, model: &str, tools: &ToolMode, reader: &CallReader) -> Vec<Value> {
    let answer = tools.interpret(reader.text().to_owned(), "stop");
    match answer.tool_calls {
        Some(calls) => {
            let mut object = piece(shape, model, "");
            object["message"]["tool_calls"] = ollama_calls(&calls);
            vec![object]
        }
        None if reader.not_content().is_empty() => Vec::new(),
        None => vec![piece(shape, model, reader.not_content())],
    }
}

/// Calls as Ollama writes them: arguments as an object.
fn ollama_calls(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|call| {
            let arguments = serde_json::from_str::<Value>(&call.function.arguments)
                .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
            json!({ "function": { "name": call.function.name, "arguments": arguments } })
        })
        .collect()
}

/// An object carrying `text` as the route writes it, `done: false`.
fn piece(shape: Shape, model: &str, text: &str) -> Value {
    match shape {
        Shape::Chat => json!({
            "model": model,
            "created_at": now_rfc3339(),
            "message": { "role": "assistant", "content": text },
            "done": false,
        }),
        Shape::Generate => json!({
            "model": model,
            "created_at": now_rfc3339(),
            "response": text,
            "done": false,
        }),
    }
}

/// The answer to a request that only loads its model.
fn loaded(shape: Shape, model: &str, load_ns: u64, started: Instant) -> Response {
    let mut object = piece(shape, model, "");
    if let Some(map) = object.as_object_mut() {
        map.insert("done".into(), json!(true));
        map.insert("done_reason".into(), json!("load"));
        map.insert("load_duration".into(), json!(load_ns));
        map.insert("total_duration".into(), json!(nanos(started.elapsed())));
    }
    Json(object).into_response()
}

/// Turns `object` into the final one: `done`, why, and what was measured.
fn finish_fields(object: &mut Value, result: &GenerationResult, started: Instant, load_ns: u64) {
    let done_reason = match result.finish {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::StopString | FinishReason::Cancelled => "stop",
    };
    let ms = |ms: f64| (ms.max(0.0) * 1e6) as u64;
    if let Some(map) = object.as_object_mut() {
        map.insert("done".into(), json!(true));
        map.insert("done_reason".into(), json!(done_reason));
        map.insert("total_duration".into(), json!(nanos(started.elapsed())));
        map.insert("load_duration".into(), json!(load_ns));
        map.insert(
            "prompt_eval_count".into(),
            json!(result.usage.prompt_tokens),
        );
        map.insert(
            "prompt_eval_duration".into(),
            json!(ms(result.timings.prompt_ms)),
        );
        map.insert("eval_count".into(), json!(result.usage.completion_tokens));
        map.insert(
            "eval_duration".into(),
            json!(ms(result.timings.generation_ms)),
        );
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Now as RFC 3339 UTC with nanoseconds, as Ollama writes `created_at`.
fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = super::ollama::rfc3339(now.as_secs());
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), now.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_reads_numbers_and_go_durations() {
        let ka = |v: Value| keep_alive(serde_json::from_value(v).ok()).ok().flatten();
        assert_eq!(ka(json!(0)), Some(Duration::ZERO));
        assert_eq!(ka(json!(30)), Some(Duration::from_secs(30)));
        assert_eq!(ka(json!("5m")), Some(Duration::from_secs(300)));
        assert_eq!(ka(json!("1h30m")), Some(Duration::from_secs(5400)));
        assert_eq!(ka(json!("0")), Some(Duration::ZERO));
        assert_eq!(ka(json!(-1)), Some(Duration::MAX));
        assert_eq!(ka(json!("-1m")), Some(Duration::MAX));
        assert!(keep_alive(Some(KeepAliveIn::Text("soon".into()))).is_err());
    }
}
