//! Why a GGUF file was refused.
//!
//! One enum for reading and validating, because callers handle both the same
//! way (show the message, skip the file); every variant names the file and
//! what in it was wrong, so the message alone is enough to act on.

use std::path::PathBuf;

/// A GGUF file could not be read, or is not one llama.cpp could load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the bytes `GGUF`.
    #[error("{path} is not a GGUF file (it starts with {found:02x?}, not \"GGUF\")")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// A GGUF version other than 2 or 3.
    #[error("{path} is GGUF version {version}; only versions 2 and 3 are supported{hint}",
        hint = if *version == 1 { " (version 1 files predate 2023-08: re-convert the model with a current llama.cpp)" } else { "" })]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the header.
        version: u32,
    },
    /// The file ends before `what` was complete.
    #[error("{path} is truncated: it ends inside {what} (at byte {offset}); re-download it")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The part being read.
        what: String,
        /// File offset where that part starts.
        offset: u64,
    },
    /// A count or length in the file exceeds a limit or what the rest of the
    /// file could hold.
    #[error("{path}: {what} is {value}, more than {limit} (the limit, or what the remaining bytes could hold); the file is corrupt")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Which count or length.
        what: String,
        /// The value found.
        value: u64,
        /// The largest value allowed here.
        limit: u64,
    },
    /// A key or tensor name is not UTF-8.
    #[error("{path}: {what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// Which string.
        what: String,
    },
    /// A metadata value has a type id GGUF does not define, or an array
    /// holds arrays (which llama.cpp refuses).
    #[error("{path}: metadata key '{key}' has unsupported value type {value_type}")]
    BadValueType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The type id found (9 = a nested array).
        value_type: u32,
    },
    /// The same metadata key appears twice.
    #[error("{path}: metadata key '{key}' appears more than once")]
    DuplicateKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// `general.alignment` is not a u32 power of two of at least 8.
    #[error("{path}: general.alignment is {found}; it must be a u32 power of two, at least 8")]
    BadAlignment {
        /// The file.
        path: PathBuf,
        /// What was found, as text.
        found: String,
    },
    /// A tensor has a ggml type id this ggml does not define.
    #[error(
        "{path}: tensor '{tensor}' has unknown ggml type {type_id}; it may need a newer llama.cpp"
    )]
    UnknownGgmlType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The type id found.
        type_id: u32,
    },
    /// A tensor appears twice.
    #[error("{path}: tensor '{tensor}' appears more than once")]
    DuplicateTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// A tensor's name, dimensions or size are invalid.
    #[error("{path}: tensor '{tensor}' is invalid: {reason}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor (lossy text when the name itself is the problem).
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("{path}: tensor '{tensor}' starts at data offset {offset}, not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Offset within the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's data runs past the end of the file.
    #[error("{path}: tensor '{tensor}' ends at byte {end}, past the end of the file ({file_size} bytes); the file is truncated")]
    TensorPastEnd {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Where its data would end.
        end: u64,
        /// The file size.
        file_size: u64,
    },
    /// Two tensors' data overlap.
    #[error("{path}: the data of tensors '{first}' and '{second}' overlap")]
    OverlappingTensors {
        /// The file.
        path: PathBuf,
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// A metadata key llama.cpp needs is absent.
    #[error("{path}: metadata key '{key}' is missing; llama.cpp needs it to load this model")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata key has the wrong type or an unusable value.
    #[error("{path}: metadata key '{key}' is invalid: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `general.architecture` names an architecture llama.cpp cannot load.
    #[error("{path}: architecture '{arch}' is not supported by the bundled llama.cpp")]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// The architecture found.
        arch: String,
    },
    /// A BPE (`gpt2`) vocabulary without merges.
    #[error("{path}: the BPE tokenizer has no merges (tokenizer.ggml.merges missing or empty); llama.cpp refuses it")]
    MissingMerges {
        /// The file.
        path: PathBuf,
    },
    /// A per-token array's length differs from the number of tokens.
    #[error("{path}: '{key}' has {len} entries but tokenizer.ggml.tokens has {tokens}")]
    TokenArrayMismatch {
        /// The file.
        path: PathBuf,
        /// The per-token array key.
        key: String,
        /// Its length.
        len: u64,
        /// The number of tokens.
        tokens: u64,
    },
    /// A tensor llama.cpp needs is absent.
    #[error("{path}: tensor '{tensor}' is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// The token embedding's vocabulary dimension differs from the token count.
    #[error("{path}: tensor '{tensor}' has a vocabulary dimension of {dim} but the tokenizer has {tokens} tokens")]
    VocabMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its vocabulary dimension.
        dim: u64,
        /// The number of tokens.
        tokens: u64,
    },
}
