//! The interface between the ModelHost and an inference engine.
//!
//! The ModelHost only sees these types: it asks a [`Backend`] to load a file
//! into a [`LoadedModel`], then sends [`GenerateRequest`]s and reads a
//! [`GenerationStream`] of [`GenerationEvent`]s. Nothing here names
//! llama.cpp, so another engine (a remote OpenAI-compatible provider, candle)
//! can sit behind the same traits.
//!
//! Nothing in these traits blocks the async runtime for long: loading runs on
//! the engine's own thread and is awaited; `generate` only renders, tokenizes
//! and validates the request (microseconds to a few milliseconds) before it
//! hands the request to the engine thread and returns the stream.

mod error;
mod stream;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

pub use error::{GenerateError, LoadError, TokenizeError};
pub use stream::{GenerationSender, GenerationStream};

use crate::chat::ChatMessage;
use crate::sampling::SamplingOptions;

/// A boxed future that can cross threads, as returned by the object-safe traits.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How to load a model.
///
/// Defaults: a 4096-token context per slot (capped at load time to the
/// context the model was trained with), one slot, batches of 2048 tokens
/// (llama.cpp's and llama-bench's default), one thread per physical core, no
/// GPU offload, and up to 64 requests waiting for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Tokens each slot can hold: prompt plus completion of one request.
    ///
    /// Each of the `parallel_slots` sequences gets this many tokens of KV
    /// cache (the context allocates `context_length × parallel_slots`), so a
    /// request never fails half-way because other requests filled a shared
    /// cache. Capped to the model's training context.
    pub context_length: u32,
    /// Requests decoded at once (continuous batching); each is one sequence
    /// of the single context.
    pub parallel_slots: u32,
    /// Most tokens handed to one decode call (prompt chunks plus one token
    /// per generating slot).
    pub batch_size: u32,
    /// CPU threads for decoding; `None` means the number of physical cores.
    pub threads: Option<u32>,
    /// Layers offloaded to the GPU; more than 0 needs a GPU build.
    pub gpu_layers: u32,
    /// Let ggml repack the weights kept on the CPU into its extra buffer
    /// types (AMX tiles, interleaved blocks); `false` is llama.cpp's
    /// `--no-repack`.
    pub repack: bool,
    /// Requests that may wait for a free slot before `generate` answers
    /// [`GenerateError::Busy`].
    pub max_queued: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            context_length: 4096,
            parallel_slots: 1,
            batch_size: 2048,
            threads: None,
            gpu_layers: 0,
            repack: true,
            max_queued: 64,
        }
    }
}

impl LoadOptions {
    /// Checks the options that make no sense whatever the model is.
    ///
    /// # Errors
    /// [`LoadError::InvalidOption`] naming the option.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid =
            |name: &'static str, reason: String| LoadError::InvalidOption { name, reason };
        if self.context_length == 0 {
            return Err(invalid("context_length", "must be at least 1".into()));
        }
        if self.parallel_slots == 0 || self.parallel_slots > MAX_SLOTS {
            return Err(invalid(
                "parallel_slots",
                format!(
                    "is {}; it must be between 1 and {MAX_SLOTS}",
                    self.parallel_slots
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1".into()));
        }
        if self.threads == Some(0) {
            return Err(invalid(
                "threads",
                "must be at least 1 (or unset for one per core)".into(),
            ));
        }
        Ok(())
    }
}

/// The most sequences one llama.cpp context holds (`LLAMA_MAX_SEQ`).
pub const MAX_SLOTS: u32 = 256;

/// What a loaded model is, and the options it was actually loaded with.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `general.architecture` (e.g. `llama`).
    pub architecture: String,
    /// Tokens each slot holds (prompt + completion), after capping.
    pub context_length: u32,
    /// The context the model was trained with.
    pub n_ctx_train: u32,
    /// Requests decoded at once.
    pub parallel_slots: u32,
    /// Most tokens per decode call.
    pub batch_size: u32,
    /// CPU threads used for decoding.
    pub threads: u32,
    /// Layers offloaded to the GPU.
    pub gpu_layers: u32,
    /// Tokens in the vocabulary.
    pub n_vocab: u32,
    /// Transformer layers.
    pub n_layer: u32,
    /// Embedding width.
    pub n_embd: u32,
    /// Parameters.
    pub n_params: u64,
    /// The chat template in the file, if any.
    pub chat_template: Option<String>,
    /// The tool-call syntax of the template chats are rendered with, when
    /// it shows tools in one troupe knows (never for a template the Jinja
    /// engine could not compile: the fallbacks know no tools).
    pub tool_syntax: Option<crate::chat::tool_calls::ToolSyntax>,
}

/// Memory a loaded model holds, in bytes.
///
/// For the llama.cpp engine: `weights` is `llama_model_size` (the bytes of
/// all tensors); `kv_cache` and `compute` are the buffer sizes llama.cpp
/// reports when it allocates the context (its `KV buffer size`, `compute
/// buffer size` and `output buffer size` log lines, captured at load; 0.01
/// MiB resolution). When those lines were not seen (`measured == false`) the
/// KV size is computed from the context parameters and `compute` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Model tensors.
    pub weights: u64,
    /// KV cache of all slots.
    pub kv_cache: u64,
    /// Compute (scratch) and output buffers.
    pub compute: u64,
    /// Whether `kv_cache` and `compute` were measured from llama.cpp's
    /// allocations rather than computed.
    pub measured: bool,
}

impl MemoryUsage {
    /// Weights + KV cache + compute buffers.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.compute
    }
}

/// What to complete.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Raw text, tokenized as is (special tokens such as `<|im_start|>` are
    /// parsed; BOS is added when the model asks for it).
    Text(String),
    /// Messages rendered with the model's chat template (see [`crate::chat`]),
    /// ending with an open assistant turn.
    Chat(Vec<ChatMessage>),
    /// Token ids, decoded as given (no BOS added). Ids outside the
    /// vocabulary are refused before anything reaches llama.cpp.
    Tokens(Vec<i32>),
}

/// A constraint on the shape of the output, enforced by a grammar.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Output must be JSON matching this JSON Schema (see [`crate::schema`]).
    JsonSchema(serde_json::Value),
    /// Output must match this GBNF grammar (llama.cpp syntax, start rule `root`).
    Grammar(String),
    /// Output must be a JSON value of any shape.
    Json,
    /// A lazy grammar, as llama-server constrains a model's own tool
    /// calls: the output is free until it contains one of `triggers`
    /// (literal text, e.g. `<tool_call>`); from the start of that trigger on
    /// it must match `grammar` (GBNF, start rule `root`, which begins with a
    /// trigger).
    Lazy {
        /// The grammar the output follows from the trigger on.
        grammar: String,
        /// Texts that start the constrained part.
        triggers: Vec<String>,
        /// A trigger counts only at the very start of the output (after
        /// whitespace), as a call written as bare JSON does.
        at_start: bool,
    },
}

/// One completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// What to complete.
    pub prompt: Prompt,
    /// How to pick tokens.
    pub sampling: SamplingOptions,
    /// Most tokens to generate; prompt + `max_tokens` must fit the context.
    pub max_tokens: u32,
    /// Generation stops when the output contains one of these; the stop
    /// string and anything after it are not part of the output.
    pub stop: Vec<String>,
    /// A grammar constraint on the output.
    pub constraint: Option<Constraint>,
    /// Texts the output may hold that are single control tokens of the
    /// model's vocabulary (a tool-call marker such as Mistral's
    /// `[TOOL_CALLS]`): such a token may be generated under a grammar and
    /// appears in the text, where other control tokens are refused or
    /// dropped. A text that is not one control token is ignored.
    pub preserved: Vec<String>,
    /// Tool definitions (OpenAI's `tools` entries) a chat prompt's template
    /// is given, so that it describes them in the model's own words;
    /// ignored by text and token prompts and by templates without tools.
    pub tools: Vec<serde_json::Value>,
    /// A conversation id: a later request with the same id reuses the KV
    /// cache of the common prompt prefix.
    pub session: Option<String>,
    /// Keep generating past end-of-generation tokens until `max_tokens` or a
    /// stop string (llama-server's `ignore_eos`; benchmarks use it). EOG
    /// tokens are then not part of the text.
    pub ignore_eos: bool,
    /// Log probabilities to report: `None` none; `Some(n)` each text
    /// token's and the `n` likeliest at its place (at most
    /// [`MAX_TOP_LOGPROBS`]), in [`GenerationResult::logprobs`].
    pub logprobs: Option<u8>,
}

/// Most alternatives [`GenerateRequest::logprobs`] may ask for (OpenAI's
/// limit).
pub const MAX_TOP_LOGPROBS: u8 = 20;

impl GenerateRequest {
    /// A request with default sampling, 256 tokens at most, no stop strings,
    /// no constraint and no session.
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            sampling: SamplingOptions::default(),
            max_tokens: 256,
            stop: Vec::new(),
            constraint: None,
            preserved: Vec::new(),
            tools: Vec::new(),
            session: None,
            ignore_eos: false,
            logprobs: None,
        }
    }

    /// [`GenerateRequest::new`] with a text prompt.
    pub fn text(prompt: impl Into<String>) -> Self {
        Self::new(Prompt::Text(prompt.into()))
    }

    /// [`GenerateRequest::new`] with a chat prompt.
    pub fn chat(messages: Vec<ChatMessage>) -> Self {
        Self::new(Prompt::Chat(messages))
    }
}

/// Checks that a prompt of `prompt_tokens` leaves room for `max_tokens` in
/// a slot of `context` tokens: the same refusal from every engine, before
/// anything is decoded.
///
/// # Errors
/// [`GenerateError::PromptTooLong`], [`GenerateError::ZeroMaxTokens`],
/// [`GenerateError::MaxTokensTooLarge`].
pub fn check_lengths(
    context: u32,
    prompt_tokens: u32,
    max_tokens: u32,
) -> Result<(), GenerateError> {
    if prompt_tokens >= context {
        return Err(GenerateError::PromptTooLong {
            prompt_tokens,
            context,
        });
    }
    if max_tokens == 0 {
        return Err(GenerateError::ZeroMaxTokens);
    }
    if max_tokens > context - prompt_tokens {
        return Err(GenerateError::MaxTokensTooLarge {
            max_tokens,
            context,
            prompt_tokens,
        });
    }
    Ok(())
}

/// What a [`GenerationStream`] yields.
#[derive(Debug)]
pub enum GenerationEvent {
    /// The next piece of text. Pieces are valid UTF-8 (bytes of a character
    /// split across tokens are held until complete) and never contain the
    /// start of a stop string that might still complete; concatenated they
    /// equal [`GenerationResult::text`].
    Token(String),
    /// Generation finished; always the last event of a successful stream.
    Done(GenerationResult),
    /// Generation failed; the last event of the stream.
    Error(GenerateError),
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The output contained a stop string.
    StopString,
    /// The request was cancelled.
    Cancelled,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the prompt (including those reused from the cache).
    pub prompt_tokens: u32,
    /// Tokens sampled, including an end-of-generation token.
    pub completion_tokens: u32,
    /// Prompt tokens whose KV cache was reused rather than decoded.
    pub cached_prompt_tokens: u32,
}

/// How long one request took, measured on the engine thread.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// From the request reaching the engine thread to the first sampled token
    /// (includes waiting for a slot and prompt processing).
    pub time_to_first_token_ms: f64,
    /// From the first decode holding prompt tokens to the end of the decode
    /// of the last prompt token.
    pub prompt_ms: f64,
    /// From the first sampled token to the last.
    pub generation_ms: f64,
    /// Prompt tokens decoded (not reused from the cache) per second of `prompt_ms`.
    pub prompt_tokens_per_s: f64,
    /// Tokens decoded after the first sampled one, per second of `generation_ms`.
    pub generation_tokens_per_s: f64,
}

/// The outcome of a finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationResult {
    /// The whole output, without any stop string.
    pub text: String,
    /// Why generation ended.
    pub finish: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Durations and rates.
    pub timings: Timings,
    /// The ids of the generated tokens (end-of-generation token included),
    /// where the backend knows them (llama.cpp); empty otherwise.
    pub tokens: Vec<i32>,
    /// With [`GenerateRequest::logprobs`], one entry per token of the text
    /// (end-of-generation tokens are not text), where the backend knows
    /// them (llama.cpp); empty otherwise.
    pub logprobs: Vec<TokenLogprob>,
}

/// The token generated at a place and the likeliest ones there.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token generated.
    pub chosen: Logprob,
    /// The likeliest tokens at this place, likeliest first.
    pub top: Vec<Logprob>,
}

/// A token's natural-log probability under the model's distribution at a
/// place (the logits' softmax, before sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct Logprob {
    /// The token's id in the model's vocabulary, where the backend knows
    /// it (llama.cpp; a remote provider names tokens by their text only).
    pub token: Option<i32>,
    /// Its text's bytes (a piece of a UTF-8 character may stand alone).
    pub bytes: Vec<u8>,
    /// `ln p`.
    pub logprob: f32,
}

/// The answer to [`LoadedModel::embed`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    /// One vector per input, in input order, each of unit L2 norm (as
    /// OpenAI's embeddings are) and `n_embd` long.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs together (BOS included when the model adds one).
    pub prompt_tokens: u32,
}

/// An inference engine that loads model files.
pub trait Backend: Send + Sync {
    /// Loads the model at `path`. The work happens off the async runtime (on
    /// the model's own thread); the future resolves when the model is ready.
    fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> BoxFuture<Result<Arc<dyn LoadedModel>, LoadError>>;
}

/// A model ready to generate.
pub trait LoadedModel: Send + Sync {
    /// What the model is and how it was loaded.
    fn info(&self) -> &ModelInfo;

    /// Memory held by the model and its context.
    fn memory(&self) -> MemoryUsage;

    /// Starts a request. Errors that the request itself causes (empty or too
    /// long prompt, invalid grammar, all slots and the queue full) come back
    /// here, before anything is decoded.
    fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, GenerateError>;

    /// Embeds each of `inputs`: the mean of the model's last hidden states
    /// over the input's tokens, L2-normalised. Inputs are independent (each
    /// its own sequence), so the vector of a text does not depend on what
    /// else is in the list. An empty list, an empty input or one longer than
    /// the embedding context is an error before anything is decoded.
    fn embed(&self, inputs: Vec<String>) -> BoxFuture<Result<Embeddings, GenerateError>>;

    /// Token ids of `text` as a prompt would be tokenized (special tokens
    /// parsed, BOS added when the model asks for it).
    fn tokenize(&self, text: &str) -> Result<Vec<i32>, TokenizeError>;

    /// How many tokens `text` is as a prompt.
    fn count_tokens(&self, text: &str) -> Result<usize, TokenizeError> {
        self.tokenize(text).map(|tokens| tokens.len())
    }

    /// The prompt text `messages` render to, ending with an open assistant turn.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError>;

    /// Stops the engine: running and queued requests end with
    /// [`GenerateError::Unloaded`], later `generate` calls fail. The future
    /// resolves once the engine has freed its context and model. Dropping
    /// the last handle stops the engine too, without waiting.
    fn unload(&self) -> BoxFuture<()>;
}
