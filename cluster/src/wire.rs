//! What crosses the wire between nodes: serde mirrors of the inference
//! request and event types, encoded as JSON inside ractor_cluster's byte
//! payloads.
//!
//! The inference types stay free of serde (they are the engine's, and the
//! wire format is this crate's business); each mirror converts both ways.
//! Decoding never panics: a peer's malformed payload is an error value,
//! because ractor's `BytesConvertable` for richer types may panic and a
//! panicking handler would take the serving actor down.

use serde::{Deserialize, Serialize};
use troupe_inference::backend::{
    Constraint, FinishReason, GenerateError, GenerateRequest, GenerationEvent, GenerationResult,
    Logprob, Prompt, Timings, TokenLogprob, Usage,
};
use troupe_inference::chat::{ChatMessage, MessageToolCall, Role};
use troupe_inference::sampling::SamplingOptions;

/// Encodes a wire value (never fails for these plain data types).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decodes a wire value; a malformed payload is an error naming what was expected.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(bytes)
        .map_err(|error| format!("malformed {what} from the peer: {error}"))
}

/// What a node's model server says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireServerInfo {
    pub(crate) node: String,
    pub(crate) addr: String,
    pub(crate) models: Vec<String>,
}

/// A request to start a generation on a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireStart {
    pub(crate) model: String,
    pub(crate) request: WireRequest,
}

/// The answer to a start: the request's id on the peer, or why it refused.
pub(crate) type WireStartReply = Result<u64, String>;

/// The answer to a poll: events queued since the last poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WirePollReply {
    /// Events in order (possibly none, when the long-poll timed out).
    Events(Vec<WireEvent>),
    /// The peer does not know the id (finished and collected, or reaped).
    Unknown,
}

/// A [`GenerateRequest`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireRequest {
    prompt: WirePrompt,
    sampling: WireSampling,
    max_tokens: u32,
    stop: Vec<String>,
    constraint: Option<WireConstraint>,
    session: Option<String>,
    ignore_eos: bool,
    #[serde(default)]
    tools: Vec<serde_json::Value>,
    #[serde(default)]
    logprobs: Option<u8>,
    #[serde(default)]
    preserved: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WirePrompt {
    Text(String),
    Chat(Vec<(WireRole, String)>),
    Tokens(Vec<i32>),
    /// A chat with tool calls or answers (a plain chat goes as `Chat`).
    Messages(Vec<WireMessage>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireMessage {
    role: WireRole,
    content: String,
    tool_calls: Vec<WireToolCall>,
    tool_call_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireToolCall {
    id: String,
    name: String,
    arguments: serde_json::Value,
}

impl From<&ChatMessage> for WireMessage {
    fn from(m: &ChatMessage) -> Self {
        Self {
            role: m.role.into(),
            content: m.content.clone(),
            tool_calls: m
                .tool_calls
                .iter()
                .map(|call| WireToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                })
                .collect(),
            tool_call_id: m.tool_call_id.clone(),
        }
    }
}

impl From<WireMessage> for ChatMessage {
    fn from(m: WireMessage) -> Self {
        let mut message = ChatMessage::new(m.role.into(), m.content);
        message.tool_calls = m
            .tool_calls
            .into_iter()
            .map(|call| MessageToolCall {
                id: call.id,
                name: call.name,
                arguments: call.arguments,
            })
            .collect();
        message.tool_call_id = m.tool_call_id;
        message
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum WireRole {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireSampling {
    temperature: f32,
    top_k: i32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: i32,
    frequency_penalty: f32,
    presence_penalty: f32,
    seed: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WireConstraint {
    JsonSchema(serde_json::Value),
    Grammar(String),
    Json,
    Lazy {
        grammar: String,
        triggers: Vec<String>,
        at_start: bool,
    },
}

/// A token's log probability: id, bytes, `ln p`.
type WireLogprob = (Option<i32>, Vec<u8>, f32);

fn wire_logprob(l: Logprob) -> WireLogprob {
    (l.token, l.bytes, l.logprob)
}

fn logprob((token, bytes, logprob): WireLogprob) -> Logprob {
    Logprob {
        token,
        bytes,
        logprob,
    }
}

/// A [`GenerationEvent`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireEvent {
    Token(String),
    Done(WireResult),
    Error(WireError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireResult {
    text: String,
    finish: WireFinish,
    #[serde(default)]
    tokens: Vec<i32>,
    #[serde(default)]
    logprobs: Vec<(WireLogprob, Vec<WireLogprob>)>,
    usage: (u32, u32, u32),
    timings: (f64, f64, f64, f64, f64),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum WireFinish {
    Stop,
    Length,
    StopString,
    Cancelled,
}

/// A [`GenerateError`] on the wire: the variants a caller may act on keep
/// their data; the rest travel as their message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    EmptyPrompt,
    PromptTooLong {
        prompt_tokens: u32,
        context: u32,
    },
    ZeroMaxTokens,
    MaxTokensTooLarge {
        max_tokens: u32,
        context: u32,
        prompt_tokens: u32,
    },
    Busy {
        slots: u32,
        queued: u32,
    },
    EmptyStopString {
        index: usize,
    },
    InvalidGrammar {
        reason: String,
    },
    ChatTemplate(String),
    Unloaded,
    EngineStopped,
    Other(String),
}

impl From<&GenerateRequest> for WireRequest {
    fn from(request: &GenerateRequest) -> Self {
        let prompt = match &request.prompt {
            Prompt::Text(text) => WirePrompt::Text(text.clone()),
            Prompt::Chat(messages)
                if messages
                    .iter()
                    .any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some()) =>
            {
                WirePrompt::Messages(messages.iter().map(WireMessage::from).collect())
            }
            Prompt::Chat(messages) => WirePrompt::Chat(
                messages
                    .iter()
                    .map(|message| (WireRole::from(message.role), message.content.clone()))
                    .collect(),
            ),
            Prompt::Tokens(tokens) => WirePrompt::Tokens(tokens.clone()),
        };
        let s = &request.sampling;
        Self {
            prompt,
            sampling: WireSampling {
                temperature: s.temperature,
                top_k: s.top_k,
                top_p: s.top_p,
                min_p: s.min_p,
                repeat_penalty: s.repeat_penalty,
                repeat_last_n: s.repeat_last_n,
                frequency_penalty: s.frequency_penalty,
                presence_penalty: s.presence_penalty,
                seed: s.seed,
            },
            max_tokens: request.max_tokens,
            stop: request.stop.clone(),
            constraint: request
                .constraint
                .as_ref()
                .map(|constraint| match constraint {
                    Constraint::JsonSchema(schema) => WireConstraint::JsonSchema(schema.clone()),
                    Constraint::Grammar(grammar) => WireConstraint::Grammar(grammar.clone()),
                    Constraint::Json => WireConstraint::Json,
                    Constraint::Lazy {
                        grammar,
                        triggers,
                        at_start,
                    } => WireConstraint::Lazy {
                        grammar: grammar.clone(),
                        triggers: triggers.clone(),
                        at_start: *at_start,
                    },
                }),
            session: request.session.clone(),
            ignore_eos: request.ignore_eos,
            tools: request.tools.clone(),
            logprobs: request.logprobs,
            preserved: request.preserved.clone(),
        }
    }
}

impl From<WireRequest> for GenerateRequest {
    fn from(wire: WireRequest) -> Self {
        let prompt = match wire.prompt {
            WirePrompt::Text(text) => Prompt::Text(text),
            WirePrompt::Chat(messages) => Prompt::Chat(
                messages
                    .into_iter()
                    .map(|(role, content)| ChatMessage::new(role.into(), content))
                    .collect(),
            ),
            WirePrompt::Tokens(tokens) => Prompt::Tokens(tokens),
            WirePrompt::Messages(messages) => {
                Prompt::Chat(messages.into_iter().map(ChatMessage::from).collect())
            }
        };
        let s = wire.sampling;
        let mut request = GenerateRequest::new(prompt);
        request.sampling = SamplingOptions {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            repeat_last_n: s.repeat_last_n,
            frequency_penalty: s.frequency_penalty,
            presence_penalty: s.presence_penalty,
            seed: s.seed,
        };
        request.max_tokens = wire.max_tokens;
        request.stop = wire.stop;
        request.constraint = wire.constraint.map(|constraint| match constraint {
            WireConstraint::JsonSchema(schema) => Constraint::JsonSchema(schema),
            WireConstraint::Grammar(grammar) => Constraint::Grammar(grammar),
            WireConstraint::Json => Constraint::Json,
            WireConstraint::Lazy {
                grammar,
                triggers,
                at_start,
            } => Constraint::Lazy {
                grammar,
                triggers,
                at_start,
            },
        });
        request.session = wire.session;
        request.ignore_eos = wire.ignore_eos;
        request.tools = wire.tools;
        request.logprobs = wire.logprobs;
        request.preserved = wire.preserved;
        request
    }
}

impl From<Role> for WireRole {
    fn from(role: Role) -> Self {
        match role {
            Role::System => Self::System,
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
            Role::Tool => Self::Tool,
        }
    }
}

impl From<WireRole> for Role {
    fn from(role: WireRole) -> Self {
        match role {
            WireRole::System => Self::System,
            WireRole::User => Self::User,
            WireRole::Assistant => Self::Assistant,
            WireRole::Tool => Self::Tool,
        }
    }
}

impl From<GenerationEvent> for WireEvent {
    fn from(event: GenerationEvent) -> Self {
        match event {
            GenerationEvent::Token(text) => Self::Token(text),
            GenerationEvent::Done(result) => Self::Done(WireResult::from(result)),
            GenerationEvent::Error(error) => Self::Error(WireError::from(&error)),
        }
    }
}

impl WireEvent {
    /// The event as the caller's stream carries it; `node` names the peer
    /// in errors that only travel as text.
    pub(crate) fn into_event(self, node: &str) -> GenerationEvent {
        match self {
            Self::Token(text) => GenerationEvent::Token(text),
            Self::Done(result) => GenerationEvent::Done(result.into()),
            Self::Error(error) => GenerationEvent::Error(error.into_error(node)),
        }
    }

    /// Whether this event ends the stream.
    pub(crate) fn is_last(&self) -> bool {
        !matches!(self, Self::Token(_))
    }
}

impl From<GenerationResult> for WireResult {
    fn from(result: GenerationResult) -> Self {
        let t = result.timings;
        Self {
            text: result.text,
            finish: match result.finish {
                FinishReason::Stop => WireFinish::Stop,
                FinishReason::Length => WireFinish::Length,
                FinishReason::StopString => WireFinish::StopString,
                FinishReason::Cancelled => WireFinish::Cancelled,
            },
            tokens: result.tokens,
            logprobs: result
                .logprobs
                .into_iter()
                .map(|l| {
                    (
                        wire_logprob(l.chosen),
                        l.top.into_iter().map(wire_logprob).collect(),
                    )
                })
                .collect(),
            usage: (
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                result.usage.cached_prompt_tokens,
            ),
            timings: (
                t.time_to_first_token_ms,
                t.prompt_ms,
                t.generation_ms,
                t.prompt_tokens_per_s,
                t.generation_tokens_per_s,
            ),
        }
    }
}

impl From<WireResult> for GenerationResult {
    fn from(wire: WireResult) -> Self {
        let (prompt_tokens, completion_tokens, cached_prompt_tokens) = wire.usage;
        let (ttft, prompt_ms, generation_ms, prompt_tps, generation_tps) = wire.timings;
        Self {
            text: wire.text,
            finish: match wire.finish {
                WireFinish::Stop => FinishReason::Stop,
                WireFinish::Length => FinishReason::Length,
                WireFinish::StopString => FinishReason::StopString,
                WireFinish::Cancelled => FinishReason::Cancelled,
            },
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                cached_prompt_tokens,
            },
            timings: Timings {
                time_to_first_token_ms: ttft,
                prompt_ms,
                generation_ms,
                prompt_tokens_per_s: prompt_tps,
                generation_tokens_per_s: generation_tps,
            },
            tokens: wire.tokens,
            logprobs: wire
                .logprobs
                .into_iter()
                .map(|(chosen, top)| TokenLogprob {
                    chosen: logprob(chosen),
                    top: top.into_iter().map(logprob).collect(),
                })
                .collect(),
        }
    }
}

impl From<&GenerateError> for WireError {
    fn from(error: &GenerateError) -> Self {
        match error {
            GenerateError::EmptyPrompt => Self::EmptyPrompt,
            GenerateError::PromptTooLong {
                prompt_tokens,
                context,
            } => Self::PromptTooLong {
                prompt_tokens: *prompt_tokens,
                context: *context,
            },
            GenerateError::ZeroMaxTokens => Self::ZeroMaxTokens,
            GenerateError::MaxTokensTooLarge {
                max_tokens,
                context,
                prompt_tokens,
            } => Self::MaxTokensTooLarge {
                max_tokens: *max_tokens,
                context: *context,
                prompt_tokens: *prompt_tokens,
            },
            GenerateError::Busy { slots, queued } => Self::Busy {
                slots: *slots,
                queued: *queued,
            },
            GenerateError::EmptyStopString { index } => Self::EmptyStopString { index: *index },
            GenerateError::InvalidGrammar { reason } => Self::InvalidGrammar {
                reason: reason.clone(),
            },
            GenerateError::ChatTemplate(reason) => Self::ChatTemplate(reason.clone()),
            GenerateError::Unloaded => Self::Unloaded,
            GenerateError::EngineStopped => Self::EngineStopped,
            other => Self::Other(other.to_string()),
        }
    }
}

impl WireError {
    /// The error as the caller sees it. Errors that travel as text become
    /// [`GenerateError::Decode`] with the peer's message, naming the peer.
    pub(crate) fn into_error(self, node: &str) -> GenerateError {
        match self {
            Self::EmptyPrompt => GenerateError::EmptyPrompt,
            Self::PromptTooLong {
                prompt_tokens,
                context,
            } => GenerateError::PromptTooLong {
                prompt_tokens,
                context,
            },
            Self::ZeroMaxTokens => GenerateError::ZeroMaxTokens,
            Self::MaxTokensTooLarge {
                max_tokens,
                context,
                prompt_tokens,
            } => GenerateError::MaxTokensTooLarge {
                max_tokens,
                context,
                prompt_tokens,
            },
            Self::Busy { slots, queued } => GenerateError::Busy { slots, queued },
            Self::EmptyStopString { index } => GenerateError::EmptyStopString { index },
            Self::InvalidGrammar { reason } => GenerateError::InvalidGrammar { reason },
            Self::ChatTemplate(reason) => GenerateError::ChatTemplate(reason),
            Self::Unloaded => GenerateError::Unloaded,
            Self::EngineStopped => GenerateError::EngineStopped,
            Self::Other(message) => GenerateError::Decode(format!("on node {node}: {message}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_the_round_trip() {
        let mut request = GenerateRequest::chat(vec![
            ChatMessage::system("be brief"),
            ChatMessage::new(Role::User, "hi"),
        ]);
        request.max_tokens = 17;
        request.stop = vec!["\n\n".into()];
        request.constraint = Some(Constraint::JsonSchema(
            serde_json::json!({"type": "object"}),
        ));
        request.session = Some("s1".into());
        request.sampling.seed = Some(3);
        request.logprobs = Some(2);
        let bytes = encode(&WireRequest::from(&request));
        let back: WireRequest = decode(&bytes, "request").expect("decodes");
        assert_eq!(GenerateRequest::from(back), request);
    }

    #[test]
    fn tool_calls_tools_and_a_lazy_grammar_survive_the_round_trip() {
        let mut call = ChatMessage::assistant("");
        call.tool_calls = vec![MessageToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: serde_json::json!({"city": "Oslo"}),
        }];
        let mut answer = ChatMessage::tool("{\"sky\": \"clear\"}");
        answer.tool_call_id = Some("call_1".into());
        let mut request = GenerateRequest::chat(vec![ChatMessage::user("weather?"), call, answer]);
        request.tools =
            vec![serde_json::json!({"type": "function", "function": {"name": "get_weather"}})];
        request.constraint = Some(Constraint::Lazy {
            grammar: "root ::= \"<tool_call>\"".into(),
            triggers: vec!["<tool_call>".into()],
            at_start: false,
        });
        request.preserved = vec!["<tool_call>".into()];
        let bytes = encode(&WireRequest::from(&request));
        let back: WireRequest = decode(&bytes, "request").expect("decodes");
        assert_eq!(GenerateRequest::from(back), request);
    }

    #[test]
    fn a_result_keeps_its_tokens_and_log_probabilities() {
        let logprob = |token, text: &str, logprob| Logprob {
            token: Some(token),
            bytes: text.as_bytes().to_vec(),
            logprob,
        };
        let result = GenerationResult {
            text: "Hi".into(),
            finish: FinishReason::Stop,
            usage: Usage::default(),
            timings: Timings::default(),
            tokens: vec![17, 2],
            logprobs: vec![TokenLogprob {
                chosen: logprob(17, "Hi", -0.25),
                top: vec![logprob(17, "Hi", -0.25), logprob(9, "\u{e9}", -1.5)],
            }],
        };
        let bytes = encode(&WireEvent::Done(WireResult::from(result.clone())));
        let Ok(WireEvent::Done(back)) = decode::<WireEvent>(&bytes, "event") else {
            panic!("decodes as a result");
        };
        assert_eq!(GenerationResult::from(back), result);
    }

    #[test]
    fn a_malformed_payload_is_an_error_not_a_panic() {
        let error = decode::<WireRequest>(b"{not json", "request").expect_err("refused");
        assert!(error.contains("malformed request"), "{error}");
    }
}
