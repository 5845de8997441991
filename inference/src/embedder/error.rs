//! What can go wrong finding, loading or running a sentence embedder.

use std::path::PathBuf;

/// An error of [`super::SentenceEmbedder`]: loading names the file (or cache
/// entry) at fault; embedding names the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The local model directory does not exist or is not a directory.
    #[error("{} is not a model directory (it does not exist or is not a directory)", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The repository has no entry in the Hugging Face cache.
    #[error(
        "{repo} (revision {revision}) is not in the Hugging Face cache at {}; \
         download it first (e.g. `huggingface-cli download {repo}`) or point the \
         embedder at a local directory",
        cache_dir.display()
    )]
    NotCached {
        /// The repository id.
        repo: String,
        /// The revision looked up.
        revision: String,
        /// The cache searched.
        cache_dir: PathBuf,
    },
    /// A file the model needs is missing.
    #[error("{file} is missing from {place}")]
    MissingFile {
        /// The file, relative to the model's root (`1_Pooling/config.json`).
        file: String,
        /// The directory or cache entry it was looked for in.
        place: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is there but its contents are wrong (bad JSON, impossible
    /// values, weights that do not match the config).
    #[error("{} is not valid: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The model asks for something this embedder does not implement (a
    /// non-BERT architecture, a Dense module, a pooling mode).
    #[error("{} needs {what}, which troupe's sentence embedder does not support", path.display())]
    Unsupported {
        /// The file that asks for it.
        path: PathBuf,
        /// What it asks for.
        what: String,
    },
    /// The Hugging Face cache could not be searched.
    #[error("cannot look up {repo} in the Hugging Face cache: {reason}")]
    Cache {
        /// The repository id.
        repo: String,
        /// hf-hub's error.
        reason: String,
    },
    /// Tokenising an input failed.
    #[error("cannot tokenize input {index}: {reason}")]
    Tokenize {
        /// Position of the input in the request.
        index: usize,
        /// The tokenizer's error.
        reason: String,
    },
    /// A token id of the tokenizer lies outside the model's vocabulary: the
    /// tokenizer.json and config.json belong to different models.
    #[error(
        "input {index} has token id {id}, outside the model's vocabulary of {vocab_size}: \
         tokenizer.json and config.json do not belong together"
    )]
    TokenOutOfVocabulary {
        /// Position of the input in the request.
        index: usize,
        /// The token id.
        id: u32,
        /// The model's `vocab_size`.
        vocab_size: usize,
    },
    /// The forward pass failed.
    #[error("the forward pass failed: {0}")]
    Compute(#[from] candle_core::Error),
}
