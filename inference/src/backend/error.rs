//! Errors of loading and generating, split by operation so that callers can
//! tell a bad file from a bad request from a busy engine.

use std::path::PathBuf;

use troupe_models::gguf::GgufError;

use crate::schema::SchemaError;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not a GGUF file llama.cpp can load; found before it reached llama.cpp.
    #[error("cannot load {path}: {source}")]
    InvalidGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: GgufError,
    },
    /// A load option is out of range.
    #[error("invalid load option `{name}`: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// GPU offload was asked for but this build or machine has no GPU backend.
    #[error("gpu_layers is {gpu_layers} but {reason}")]
    GpuUnavailable {
        /// The layers asked for.
        gpu_layers: u32,
        /// What is missing, and which feature to build with.
        reason: String,
    },
    /// The llama.cpp backend could not be initialised.
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
    /// llama.cpp refused the model file (its log says why).
    #[error("llama.cpp could not load the model {path} (see the llama_cpp log for the reason)")]
    ModelLoad {
        /// The file.
        path: PathBuf,
    },
    /// llama.cpp could not create the context (usually not enough memory).
    #[error("llama.cpp could not create a context of {n_ctx} tokens ({slots} slots × {per_slot}) for {path}; try a smaller context_length or fewer parallel_slots")]
    Context {
        /// The file.
        path: PathBuf,
        /// Total tokens asked for.
        n_ctx: u32,
        /// Slots.
        slots: u32,
        /// Tokens per slot.
        per_slot: u32,
    },
    /// The engine thread could not be started.
    #[error("cannot start the engine thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The engine thread ended before it reported the load result.
    #[error("the engine thread stopped while loading {path}")]
    EngineStopped {
        /// The file.
        path: PathBuf,
    },
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The prompt is empty (no text, or no chat messages).
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A token id given in the prompt is not in the vocabulary.
    #[error("prompt token {index} is id {id}, outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange {
        /// Position in the prompt.
        index: usize,
        /// The id given.
        id: i32,
        /// Vocabulary size.
        n_vocab: i32,
    },
    /// The prompt alone does not fit a slot's context.
    #[error("prompt is {prompt_tokens} tokens but the context holds {context}")]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt_tokens: u32,
        /// Tokens a slot holds.
        context: u32,
    },
    /// `max_tokens` is 0.
    #[error("max_tokens must be at least 1")]
    ZeroMaxTokens,
    /// Prompt plus `max_tokens` do not fit a slot's context.
    #[error("max_tokens {max_tokens} exceeds the context ({context}) minus the prompt ({prompt_tokens})")]
    MaxTokensTooLarge {
        /// Tokens asked for.
        max_tokens: u32,
        /// Tokens a slot holds.
        context: u32,
        /// Tokens in the prompt.
        prompt_tokens: u32,
    },
    /// Every slot is busy and the queue is full.
    #[error("all {slots} slots busy and {queued} requests already waiting")]
    Busy {
        /// Slots of the model.
        slots: u32,
        /// Requests waiting.
        queued: u32,
    },
    /// A sampling option is out of range.
    #[error("invalid sampling option `{name}`: {reason}")]
    InvalidSampling {
        /// The option.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A stop string is empty.
    #[error("stop string {index} is empty")]
    EmptyStopString {
        /// Its position in `stop`.
        index: usize,
    },
    /// The JSON Schema cannot be turned into a grammar.
    #[error("cannot constrain output to the JSON Schema: {0}")]
    InvalidSchema(#[from] SchemaError),
    /// llama.cpp refused the grammar.
    #[error("invalid grammar: {reason}")]
    InvalidGrammar {
        /// Why (llama.cpp logs the parse position).
        reason: String,
    },
    /// The chat messages could not be rendered.
    #[error("cannot render the chat: {0}")]
    ChatTemplate(String),
    /// The prompt could not be tokenized.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A llama.cpp decode call failed.
    #[error("decoding failed: {0}")]
    Decode(String),
    /// The sampler could not pick a token (e.g. the grammar allows none).
    #[error("sampling failed: {0}")]
    Sampling(String),
    /// An embeddings request held no inputs.
    #[error("no inputs to embed: give at least one string")]
    NoEmbeddingInputs,
    /// An input of an embeddings request is empty (or tokenizes to nothing).
    #[error("embedding input {index} is empty")]
    EmptyEmbeddingInput {
        /// Its position among the inputs.
        index: usize,
    },
    /// An input of an embeddings request does not fit the embedding context.
    #[error("embedding input {index} is {tokens} tokens but the embedding context holds {max}")]
    EmbeddingInputTooLong {
        /// Its position among the inputs.
        index: usize,
        /// Tokens in the input.
        tokens: usize,
        /// Most tokens one input may have.
        max: usize,
    },
    /// The model was unloaded.
    #[error("the model was unloaded")]
    Unloaded,
    /// The engine thread stopped without finishing the request.
    #[error("the engine stopped before the request finished")]
    EngineStopped,
}

/// Why text could not be tokenized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizeError {
    /// The text is longer than llama.cpp's tokenizer accepts.
    #[error("text is {len} bytes; the tokenizer takes at most {max}")]
    TooLong {
        /// Bytes in the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The model was unloaded.
    #[error("the model was unloaded")]
    Unloaded,
}
