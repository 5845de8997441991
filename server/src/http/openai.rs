//! The OpenAI wire types troupe reads and writes: chat completions, legacy
//! completions and their stream chunks, the model list.
//!
//! Requests keep every field OpenAI clients commonly send, so that a field
//! troupe cannot honour is refused by name rather than silently ignored;
//! unknown fields are ignored (clients add new ones all the time).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ChatCompletionRequest {
    /// The catalog name of the model; absent or empty: the one loaded
    /// model, when exactly one is.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options (`include_usage`).
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate (legacy name).
    pub max_tokens: Option<u32>,
    /// Most tokens to generate.
    pub max_completion_tokens: Option<u32>,
    /// Sampling options shared with `/v1/completions`.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Number of choices; only 1 is supported.
    pub n: Option<u32>,
    /// Output format: text, any JSON object, or a JSON Schema.
    pub response_format: Option<ResponseFormat>,
    /// Functions the model may call.
    pub tools: Option<Vec<ToolDefinition>>,
    /// Whether and which function the model must call.
    pub tool_choice: Option<ToolChoice>,
    /// Several calls in one answer (OpenAI's default: yes); honoured where
    /// the model calls in its own syntax, the JSON envelope makes one call.
    pub parallel_tool_calls: Option<bool>,
    /// Report each token's log probability.
    pub logprobs: Option<bool>,
    /// With `logprobs`, the likeliest alternatives per token (0 to 20).
    pub top_logprobs: Option<u32>,
    /// Keep generating past end-of-generation tokens (llama-server's extension).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// Sampling fields of both completion endpoints. `top_k`, `min_p`,
/// `repeat_penalty` and `repeat_last_n` are llama.cpp extensions that
/// llama-server accepts too.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct SamplingFields {
    /// Softmax temperature; 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold.
    pub top_p: Option<f32>,
    /// Keep the K most likely tokens.
    pub top_k: Option<i32>,
    /// Drop tokens less likely than this fraction of the most likely one.
    pub min_p: Option<f32>,
    /// Penalty for repeated tokens.
    pub repeat_penalty: Option<f32>,
    /// How many recent tokens the penalties look at (llama-server's); -1:
    /// the whole context.
    pub repeat_last_n: Option<i32>,
    /// OpenAI frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// OpenAI presence penalty.
    pub presence_penalty: Option<f32>,
    /// Sampling seed.
    pub seed: Option<i64>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct StreamOptions {
    /// Send a last chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopField {
    /// The stop strings as a list.
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        }
    }
}

/// One message of a chat request.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (absent on an assistant message that only calls tools).
    pub content: Option<MessageContent>,
    /// Tool calls an earlier assistant turn made.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
}

/// Message content: a string, or a list of parts of which troupe reads text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ContentPart {
    /// `text`, `image_url`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema` (its `name` and `strict` are accepted and
/// ignored: the schema is always enforced).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct JsonSchemaFormat {
    /// The JSON Schema; absent means any JSON object.
    pub schema: Option<Value>,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ToolDefinition {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// A function the model may call.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct FunctionDefinition {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of its arguments (an object); absent means no arguments.
    pub parameters: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type": "function", "function": {"name": ...}}`.
    Named {
        /// The function to call.
        function: NamedFunction,
    },
}

/// The function a named `tool_choice` forces.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct NamedFunction {
    /// Its name.
    pub name: String,
}

/// A tool call, in requests (assistant history) and responses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct ToolCall {
    /// Call id, which the `tool` message answering it repeats.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is called.
    pub function: FunctionCall,
}

/// The function and arguments of a tool call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments: a JSON object serialised as a string, as OpenAI sends them.
    pub arguments: String,
}

/// Token usage of a response.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(super) struct UsageOut {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Both.
    pub total_tokens: u32,
    /// Prompt tokens reused from the KV cache.
    pub prompt_tokens_details: CachedTokens,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(super) struct CachedTokens {
    /// Prompt tokens reused from the KV cache.
    pub cached_tokens: u32,
}

impl From<troupe_inference::backend::Usage> for UsageOut {
    fn from(u: troupe_inference::backend::Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cached_prompt_tokens,
            },
        }
    }
}

/// The assistant message of a chat answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ChatMessageOut {
    /// Always `assistant`.
    pub role: &'static str,
    /// The text; `null` when the model called a tool.
    pub content: Option<String>,
    /// The tool calls, when the model made any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Always `null`: troupe has no refusal channel (OpenAI's schema
    /// requires the field).
    pub refusal: Option<String>,
    /// Always empty: no web-search citations.
    pub annotations: [(); 0],
}

/// One choice of a chat answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ChatChoice {
    /// Always 0 (one choice per request).
    pub index: u32,
    /// The answer.
    pub message: ChatMessageOut,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
    /// The tokens' log probabilities, when asked for.
    pub logprobs: Option<Value>,
}

/// `chat.completion`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ChatCompletion {
    /// Response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix time of creation.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The answer.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: UsageOut,
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct CompletionRequest {
    /// The catalog name of the model; absent or empty: the one loaded
    /// model, when exactly one is.
    #[serde(default)]
    pub model: String,
    /// The prompt: text, a one-element list of text, or token ids.
    pub prompt: CompletionPrompt,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options (`include_usage`).
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate; OpenAI's default is 16.
    pub max_tokens: Option<u32>,
    /// Sampling options.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Number of choices; only 1 is supported.
    pub n: Option<u32>,
    /// Put the prompt in front of the answer.
    #[serde(default)]
    pub echo: bool,
    /// Text after the completion; not supported.
    pub suffix: Option<String>,
    /// Report each token's log probability and this many alternatives.
    pub logprobs: Option<u32>,
    /// Keep generating past end-of-generation tokens (llama-server's extension).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// The `prompt` of a completion request.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum CompletionPrompt {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<i32>),
    /// Several texts; one is supported.
    Texts(Vec<String>),
    /// Several token lists; one is supported.
    TokenLists(Vec<Vec<i32>>),
}

/// One choice of a completion answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CompletionChoice {
    /// The generated text.
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// The tokens' log probabilities, when asked for.
    pub logprobs: Option<Value>,
    /// `stop` or `length`; `null` on stream chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// `text_completion`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Completion {
    /// Response id.
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix time of creation.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The answer.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (absent on stream chunks unless asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageOut>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ModelObject {
    /// The name to pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix time the file was last modified.
    pub created: u64,
    /// Always `troupe`.
    pub owned_by: &'static str,
}
