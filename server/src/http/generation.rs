//! Running one generation on the ModelHost for an HTTP request, whole or as
//! a stream of server-sent events, shared by the completion endpoints.
//!
//! A stream owns its [`HostStream`]: when the client goes away, hyper drops
//! the response body, the body drops the `HostStream`, and the engine stops
//! decoding that request at its next step, freeing the slot.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;
use troupe_config::SamplingDefaults;
use troupe_host::{HostError, HostStream};
use troupe_inference::backend::{
    FinishReason, GenerateError, GenerateRequest, GenerationEvent, GenerationResult,
};
use troupe_inference::sampling::SamplingOptions;

use super::error::ApiError;
use super::metrics::GenerationGuard;
use super::openai::SamplingFields;
use super::AppState;

/// A generation that has been accepted by the engine.
pub(super) struct Running {
    /// The engine's stream of pieces.
    pub stream: HostStream,
    /// Records the outcome in the metrics.
    pub guard: GenerationGuard,
}

/// Starts `request` on `model`. With `max_tokens` unset, the request may
/// fill the rest of the slot's context, as OpenAI's own default does.
///
/// # Errors
/// The host's refusal as an [`ApiError`] (unknown model → 404, invalid
/// request → 400, busy → 503).
pub(super) async fn start(
    state: &AppState,
    model: &str,
    request: GenerateRequest,
    max_tokens: Option<u32>,
) -> Result<Running, ApiError> {
    start_keeping(state, model, request, Limits::tokens(max_tokens), None).await
}

/// How much a request may take of its slot.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Limits {
    /// Most tokens to generate; `None`: the rest of the window.
    pub max_tokens: Option<u32>,
    /// Tokens of prompt and answer together (Ollama's `num_ctx`), at most
    /// the slot's context; `None`: the slot's context. A larger
    /// `max_tokens` is cut to what the window leaves; a prompt that does not
    /// fit the window gets the slot's whole context.
    pub window: Option<u32>,
}

impl Limits {
    /// At most `max_tokens`, in the slot's whole context.
    pub(super) fn tokens(max_tokens: Option<u32>) -> Limits {
        Limits {
            max_tokens,
            window: None,
        }
    }
}

/// [`start`] within `limits`, with the model kept loaded for `keep_alive`
/// after the request (`None`: the host's default).
///
/// # Errors
/// As [`start`].
pub(super) async fn start_keeping(
    state: &AppState,
    model: &str,
    mut request: GenerateRequest,
    limits: Limits,
    keep_alive: Option<std::time::Duration>,
) -> Result<Running, ApiError> {
    // Without a fixed count, ask for more than any slot holds: the engine's
    // refusal tells the slot's context and the prompt's length.
    request.max_tokens = match limits {
        Limits {
            max_tokens: Some(n),
            window: None,
        } => n,
        _ => u32::MAX,
    };
    let first = state
        .host
        .generate(model, request.clone(), keep_alive)
        .await;
    let stream = match first {
        Err(HostError::Generate(GenerateError::MaxTokensTooLarge {
            context,
            prompt_tokens,
            ..
        })) if limits.max_tokens.is_none() || limits.window.is_some() => {
            // A prompt longer than the window is served in the slot's whole
            // context rather than refused (Ollama would drop its oldest
            // messages; troupe does not cut a prompt).
            let window = limits.window.filter(|&window| window > prompt_tokens);
            let context = window.map_or(context, |window| window.min(context));
            if prompt_tokens >= context {
                return Err(GenerateError::PromptTooLong {
                    prompt_tokens,
                    context,
                }
                .into());
            }
            let room = context - prompt_tokens;
            request.max_tokens = limits.max_tokens.map_or(room, |n| n.min(room));
            state.host.generate(model, request, keep_alive).await?
        }
        result => result?,
    };
    Ok(Running {
        stream,
        guard: state.metrics.start_generation(),
    })
}

impl Running {
    /// Reads the generation to its end.
    ///
    /// # Errors
    /// The engine's failure as an [`ApiError`].
    pub(super) async fn finish(mut self) -> Result<GenerationResult, ApiError> {
        match self.stream.into_result().await {
            Ok(result) => {
                self.guard.finish(&result);
                Ok(result)
            }
            Err(error) => {
                self.guard.failed();
                Err(ApiError::from(error))
            }
        }
    }
}

/// Turns a generation into an endpoint's stream chunks.
pub(super) trait ChunkFormat: Send + 'static {
    /// Chunks sent before the first piece of text.
    fn start(&mut self) -> Vec<Value>;
    /// Chunks for one piece of text.
    fn piece(&mut self, text: &str) -> Vec<Value>;
    /// Chunks for the end of the generation.
    fn finish(&mut self, result: &GenerationResult) -> Vec<Value>;
}

struct StreamState<F> {
    running: Option<Running>,
    format: F,
}

/// Streams `running` as server-sent events `data: {chunk}`, ending with
/// `data: [DONE]`. A failure after the stream began is sent as a chunk
/// `{"error": {...}}` (the status line is already out), then `[DONE]`.
pub(super) fn sse<F: ChunkFormat>(running: Running, mut format: F) -> Response {
    let head: Vec<Value> = format.start();
    let state = StreamState {
        running: Some(running),
        format,
    };
    let body = stream::iter(head)
        .chain(stream::unfold(state, next_chunks).flat_map(stream::iter))
        .map(|chunk| Event::default().data(chunk.to_string()))
        .chain(stream::once(async { Event::default().data("[DONE]") }))
        .map(Ok::<Event, Infallible>);
    sse_response(body)
}

fn sse_response<S>(body: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    // A comment line now and then keeps proxies from closing a stream whose
    // prompt takes long to process.
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn next_chunks<F: ChunkFormat>(
    mut state: StreamState<F>,
) -> Option<(Vec<Value>, StreamState<F>)> {
    let running = state.running.as_mut()?;
    let chunks = match running.stream.next().await {
        Some(GenerationEvent::Token(piece)) => return Some((state.format.piece(&piece), state)),
        Some(GenerationEvent::Done(result)) => {
            running.guard.finish(&result);
            state.format.finish(&result)
        }
        Some(GenerationEvent::Error(error)) => {
            running.guard.failed();
            vec![ApiError::from(error).body()]
        }
        None => {
            running.guard.failed();
            vec![ApiError::from(GenerateError::EngineStopped).body()]
        }
    };
    state.running = None;
    Some((chunks, state))
}

/// OpenAI's name for why a generation ended.
pub(super) fn finish_reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Length => "length",
        // A cancelled request has no reader left; "stop" is the closest name.
        FinishReason::Stop | FinishReason::StopString | FinishReason::Cancelled => "stop",
    }
}

/// Sampling options from the request, over the server's defaults
/// (`[serve.sampling]`), over the engine's. As in Ollama and llama-server,
/// `repeat_last_n: -1` looks back over the whole `context` and a negative
/// `seed` asks for a random one.
///
/// # Errors
/// A 400 naming `seed` when it is above 32 bits.
pub(super) fn sampling(
    defaults: &SamplingDefaults,
    fields: &SamplingFields,
    context: u32,
) -> Result<SamplingOptions, ApiError> {
    let engine = SamplingOptions::default();
    // Every field of the defaults is taken apart here (no `..`): one added
    // to `SamplingDefaults` fails to compile until it is overlaid.
    let SamplingDefaults {
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        repeat_last_n,
        seed,
    } = defaults.clone();
    let mut s = SamplingOptions {
        temperature: fields
            .temperature
            .or(temperature)
            .unwrap_or(engine.temperature),
        top_k: fields.top_k.or(top_k).unwrap_or(engine.top_k),
        top_p: fields.top_p.or(top_p).unwrap_or(engine.top_p),
        min_p: fields.min_p.or(min_p).unwrap_or(engine.min_p),
        repeat_penalty: fields
            .repeat_penalty
            .or(repeat_penalty)
            .unwrap_or(engine.repeat_penalty),
        repeat_last_n: fields
            .repeat_last_n
            .or(repeat_last_n)
            .unwrap_or(engine.repeat_last_n),
        frequency_penalty: fields.frequency_penalty.unwrap_or(engine.frequency_penalty),
        presence_penalty: fields.presence_penalty.unwrap_or(engine.presence_penalty),
        seed: seed.or(engine.seed),
    };
    if let Some(seed) = fields.seed {
        s.seed = if seed < 0 {
            None
        } else {
            Some(u32::try_from(seed).map_err(|_| {
                ApiError::invalid(
                    Some("seed"),
                    format!(
                        "seed {seed} is above {} (a negative one is random)",
                        u32::MAX
                    ),
                )
            })?)
        };
    }
    if s.repeat_last_n == -1 {
        s.repeat_last_n = i32::try_from(context).unwrap_or(i32::MAX);
    }
    Ok(s)
}

/// `model`, or when it is empty the one model loaded now (as llama-server
/// serves its one model whatever the request names).
///
/// # Errors
/// A 400 naming `model` when it is empty and not exactly one model is
/// loaded.
pub(super) async fn model_or_the_loaded_one(
    state: &AppState,
    model: String,
) -> Result<String, ApiError> {
    if !model.is_empty() {
        return Ok(model);
    }
    let status = state.host.status().await?;
    match status.models.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(ApiError::invalid(
            Some("model"),
            "model is required: no model is loaded to default to",
        )),
        many => Err(ApiError::invalid(
            Some("model"),
            format!(
                "model is required: {} models are loaded ({})",
                many.len(),
                many.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Refuses `n` other than 1.
///
/// # Errors
/// A 400 naming `n`.
pub(super) fn check_n(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::unsupported("n", &format!("n = {n} (only 1)"))),
    }
}

/// A response id: `prefix` (`chatcmpl-`, `call_`, ...), the current time
/// in nanoseconds and a counter, so ids differ within a process and across
/// restarts.
pub(super) fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{prefix}{start:x}{n:04x}")
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_the_server_defaults_for_the_fields_it_leaves_out() {
        let engine = SamplingOptions::default();
        let none = sampling(
            &SamplingDefaults::default(),
            &SamplingFields::default(),
            512,
        )
        .unwrap();
        assert_eq!(none, engine);

        let mut defaults = SamplingDefaults {
            temperature: Some(0.0),
            top_k: Some(7),
            repeat_last_n: Some(16),
            seed: Some(42),
            ..SamplingDefaults::default()
        };
        let unset = sampling(&defaults, &SamplingFields::default(), 512).unwrap();
        assert_eq!(unset.temperature, 0.0);
        assert_eq!(unset.top_k, 7);
        assert_eq!(unset.repeat_last_n, 16);
        assert_eq!(unset.seed, Some(42));
        assert_eq!(
            unset.top_p, engine.top_p,
            "an unset default keeps llama.cpp's"
        );

        let fields = SamplingFields {
            temperature: Some(0.7),
            top_k: Some(3),
            repeat_last_n: Some(8),
            seed: Some(9),
            ..SamplingFields::default()
        };
        let set = sampling(&defaults, &fields, 512).unwrap();
        assert_eq!(
            (set.temperature, set.top_k, set.repeat_last_n, set.seed),
            (0.7, 3, 8, Some(9)),
            "the request's own fields win"
        );

        // Ollama's and llama-server's -1s: the whole context, a random seed.
        let fields = SamplingFields {
            repeat_last_n: Some(-1),
            seed: Some(-1),
            ..SamplingFields::default()
        };
        let whole = sampling(&defaults, &fields, 512).unwrap();
        assert_eq!((whole.repeat_last_n, whole.seed), (512, None));
        assert!(whole.validate().is_ok());
        defaults.repeat_last_n = Some(-1);
        let from_config = sampling(&defaults, &SamplingFields::default(), 2048).unwrap();
        assert_eq!(from_config.repeat_last_n, 2048);
        let fields = SamplingFields {
            seed: Some(1 << 32),
            ..SamplingFields::default()
        };
        assert!(sampling(&defaults, &fields, 512).is_err());
        let fields = SamplingFields {
            repeat_last_n: Some(-2),
            ..SamplingFields::default()
        };
        let bad = sampling(&defaults, &fields, 512).unwrap();
        assert!(bad.validate().is_err(), "-2 is still refused");
    }
}
