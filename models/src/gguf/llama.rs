//! What llama.cpp needs from a GGUF file to load it as a language model.
//!
//! These checks run before llama.cpp sees the file. Several of them guard
//! GGML_ASSERTs in llama.cpp's loader (block count, expert counts), which
//! would abort the process instead of returning an error.

use super::{GgufError, GgufFile, GgufValue};
use crate::arch;

/// `LLAMA_MAX_LAYERS` in the vendored llama.cpp (src/llama-hparams.h).
const LLAMA_MAX_LAYERS: u64 = 512;
/// `LLAMA_MAX_EXPERTS` in the vendored llama.cpp (src/llama-hparams.h).
const LLAMA_MAX_EXPERTS: u64 = 1024;
/// Tokenizer models the vendored llama.cpp knows (src/llama-vocab.cpp).
const TOKENIZER_MODELS: &[&str] = &[
    "llama",
    "bert",
    "gpt2",
    "hybriddna",
    "whitespace",
    "t5",
    "rwkv",
    "test",
    "plamo2",
    "gemma4",
    "no_vocab",
    "none",
];
/// Tokenizer models llama.cpp reads as BPE, which needs merges.
const BPE_MODELS: &[&str] = &["gpt2", "hybriddna", "whitespace"];
/// The token embedding tensor, `{n_embd, n_vocab}` in ggml order.
const TOKEN_EMBD: &str = "token_embd.weight";

impl GgufFile {
    /// Checks that llama.cpp can load this file as a model: a supported
    /// architecture, the hyperparameters it requires, a consistent tokenizer
    /// and a token embedding matching the vocabulary.
    ///
    /// # Errors
    /// The first problem found, as a [`GgufError`] naming the key or tensor.
    pub fn validate_for_llama(&self) -> Result<(), GgufError> {
        let arch = self.architecture()?;
        if !arch::is_supported(arch) {
            return Err(GgufError::UnsupportedArchitecture {
                path: self.path.clone(),
                arch: arch.to_string(),
            });
        }
        self.check_hparams(arch)?;
        self.check_norm_epsilons(arch)?;
        let n_tokens = self.check_tokenizer()?;
        self.check_token_embedding(n_tokens)
    }

    fn required_u64(&self, key: &str) -> Result<u64, GgufError> {
        match self.get(key) {
            None => Err(self.missing_key(key)),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.bad_key(key, "it is not a non-negative integer")),
        }
    }

    fn check_hparams(&self, arch: &str) -> Result<(), GgufError> {
        let key = |suffix: &str| format!("{arch}.{suffix}");
        self.required_u64(&key("context_length"))?;
        let n_embd = self.required_u64(&key("embedding_length"))?;
        let n_layer = self.required_u64(&key("block_count"))?;
        if !(1..=LLAMA_MAX_LAYERS).contains(&n_layer) {
            return Err(self.bad_key(
                &key("block_count"),
                format!("{n_layer} is outside 1..={LLAMA_MAX_LAYERS}"),
            ));
        }
        if let Some(nextn) = self.get_u64(&key("nextn_predict_layers")) {
            if nextn > n_layer {
                return Err(self.bad_key(
                    &key("nextn_predict_layers"),
                    format!("{nextn} is more than block_count {n_layer}"),
                ));
            }
        }
        let n_expert = self.get_u64(&key("expert_count")).unwrap_or(0);
        let n_expert_used = self.get_u64(&key("expert_used_count")).unwrap_or(0);
        if n_expert > LLAMA_MAX_EXPERTS {
            return Err(self.bad_key(
                &key("expert_count"),
                format!("{n_expert} is more than {LLAMA_MAX_EXPERTS}"),
            ));
        }
        if n_expert_used > n_expert || (n_expert > 0 && n_expert_used == 0) {
            return Err(self.bad_key(
                &key("expert_used_count"),
                format!("{n_expert_used} does not fit expert_count {n_expert}"),
            ));
        }
        if arch == "llama" {
            self.check_llama_heads(arch, n_embd)?;
        }
        Ok(())
    }

    fn check_llama_heads(&self, arch: &str, n_embd: u64) -> Result<(), GgufError> {
        let ff_key = format!("{arch}.feed_forward_length");
        if self.get(&ff_key).is_none() {
            return Err(self.missing_key(&ff_key));
        }
        let head_key = format!("{arch}.attention.head_count");
        let n_head = self.required_u64(&head_key)?;
        // Head size comes from embedding_length / head_count unless the file
        // gives it explicitly.
        let explicit_head_size = self.get(&format!("{arch}.attention.key_length")).is_some();
        if n_head == 0 || (!explicit_head_size && !n_embd.is_multiple_of(n_head)) {
            return Err(self.bad_key(
                &head_key,
                format!("{n_head} heads do not divide embedding_length {n_embd}"),
            ));
        }
        let kv_key = format!("{arch}.attention.head_count_kv");
        if let Some(n_head_kv) = self.get_u64(&kv_key) {
            if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
                return Err(self.bad_key(
                    &kv_key,
                    format!("{n_head_kv} KV heads do not divide head_count {n_head}"),
                ));
            }
        }
        Ok(())
    }

    /// Every norm epsilon (`{arch}.attention.layer_norm_rms_epsilon`, …)
    /// must be a finite number ≥ 0: llama.cpp asserts on a negative one.
    fn check_norm_epsilons(&self, arch: &str) -> Result<(), GgufError> {
        let prefix = format!("{arch}.");
        for (key, value) in &self.metadata {
            if !key.starts_with(&prefix) || !key.ends_with("epsilon") {
                continue;
            }
            let eps = match value {
                GgufValue::F32(v) => f64::from(*v),
                GgufValue::F64(v) => *v,
                _ => return Err(self.bad_key(key, "a norm epsilon must be a float")),
            };
            if !eps.is_finite() || eps < 0.0 {
                return Err(self.bad_key(
                    key,
                    format!("{eps} is not a norm epsilon (a finite number, at least 0)"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the tokenizer and returns the number of tokens.
    fn check_tokenizer(&self) -> Result<u64, GgufError> {
        const MODEL: &str = "tokenizer.ggml.model";
        const TOKENS: &str = "tokenizer.ggml.tokens";
        const MERGES: &str = "tokenizer.ggml.merges";
        let model = match self.get(MODEL) {
            None => return Err(self.missing_key(MODEL)),
            Some(v) => v
                .as_str()
                .ok_or_else(|| self.bad_key(MODEL, "it is not a string"))?,
        };
        if !TOKENIZER_MODELS.contains(&model) {
            return Err(self.bad_key(
                MODEL,
                format!("'{model}' is not a tokenizer the bundled llama.cpp knows"),
            ));
        }
        if BPE_MODELS.contains(&model) && self.get_str("tokenizer.ggml.pre") != Some("kimi-k2") {
            match self.get(MERGES) {
                None => return Err(self.missing_merges()),
                Some(GgufValue::Array(merges)) if merges.is_empty() => {
                    return Err(self.missing_merges())
                }
                Some(GgufValue::Array(merges)) if merges.iter().all(|m| m.as_str().is_some()) => {}
                Some(_) => return Err(self.bad_key(MERGES, "it is not an array of strings")),
            }
        }
        if model == "no_vocab" || model == "none" {
            return Ok(0);
        }
        let n_tokens = match self.get(TOKENS) {
            None => return Err(self.missing_key(TOKENS)),
            Some(GgufValue::Array(tokens)) if tokens.iter().all(|t| t.as_str().is_some()) => {
                tokens.len() as u64
            }
            Some(_) => return Err(self.bad_key(TOKENS, "it is not an array of strings")),
        };
        if n_tokens == 0 {
            return Err(self.bad_key(TOKENS, "it is empty"));
        }
        self.check_token_texts(model)?;
        for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
            match self.get(key) {
                None => {}
                Some(GgufValue::Array(items)) if items.len() as u64 == n_tokens => {}
                Some(GgufValue::Array(items)) => {
                    return Err(GgufError::TokenArrayMismatch {
                        path: self.path.clone(),
                        key: key.to_string(),
                        len: items.len() as u64,
                        tokens: n_tokens,
                    })
                }
                Some(_) => return Err(self.bad_key(key, "it is not an array")),
            }
        }
        Ok(n_tokens)
    }

    /// What llama.cpp's vocabulary loader asserts on: every token distinct,
    /// valid UTF-8 in a byte-level BPE vocabulary (it decodes every token),
    /// and a token for the newline in the form the tokenizer model looks up
    /// (`<0x0A>` for SentencePiece, `Ċ` for byte-level BPE), which is also
    /// how a tokenizer model that does not match its vocabulary shows.
    fn check_token_texts(&self, model: &str) -> Result<(), GgufError> {
        const TOKENS: &str = "tokenizer.ggml.tokens";
        let Some(GgufValue::Array(tokens)) = self.get(TOKENS) else {
            return Ok(());
        };
        let invalid: &[u64] = self.non_utf8.get(TOKENS).map_or(&[], Vec::as_slice);
        if BPE_MODELS.contains(&model) {
            if let Some(i) = invalid.first() {
                return Err(self.bad_key(
                    TOKENS,
                    format!(
                        "token {i} is not valid UTF-8, which a '{model}' (byte-level BPE) vocabulary needs"
                    ),
                ));
            }
        }
        let mut seen: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(tokens.len());
        let mut skip = invalid.iter().peekable();
        for (i, token) in tokens.iter().enumerate() {
            // A token that was not UTF-8 is compared by its lossy text only
            // if that were exact; it is not, so such tokens are skipped.
            if skip.peek().is_some_and(|&&j| j == i as u64) {
                skip.next();
                continue;
            }
            let Some(text) = token.as_str() else { continue };
            if let Some(first) = seen.insert(text, i) {
                return Err(self.bad_key(
                    TOKENS,
                    format!(
                        "token {i} repeats token {first} ({text:?}); llama.cpp needs every token distinct"
                    ),
                ));
            }
        }
        let newline: &[&str] = match model {
            "llama" => &["<0x0A>", "\n"],
            m if BPE_MODELS.contains(&m) => &["\u{10A}", "\n"],
            _ => &[],
        };
        if !newline.is_empty() && !newline.iter().any(|n| seen.contains_key(n)) {
            return Err(self.bad_key(
                "tokenizer.ggml.model",
                format!(
                    "'{model}' looks the newline up as {:?}, which the vocabulary lacks: the tokenizer model does not match its vocabulary",
                    newline[0]
                ),
            ));
        }
        Ok(())
    }

    fn check_token_embedding(&self, n_tokens: u64) -> Result<(), GgufError> {
        let tensor = self
            .tensor(TOKEN_EMBD)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: TOKEN_EMBD.to_string(),
            })?;
        let dim = tensor.dims.get(1).copied().unwrap_or(1);
        if n_tokens > 0 && dim != n_tokens {
            return Err(GgufError::VocabMismatch {
                path: self.path.clone(),
                tensor: TOKEN_EMBD.to_string(),
                dim,
                tokens: n_tokens,
            });
        }
        Ok(())
    }

    fn missing_merges(&self) -> GgufError {
        GgufError::MissingMerges {
            path: self.path.clone(),
        }
    }
}
