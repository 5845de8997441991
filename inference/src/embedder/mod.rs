//! Sentence embeddings in process: a BERT-family model from safetensors
//! (candle), its `tokenizer.json` (tokenizers), and the pooling and
//! normalisation its sentence-transformers files ask for.
//!
//! The default model is `sentence-transformers/all-MiniLM-L6-v2`
//! ([`DEFAULT_EMBEDDER`]), found in the Hugging Face hub cache or in a plain
//! directory ([`EmbedderSource`]). Nothing is downloaded here.
//!
//! # What is computed
//! Each input is tokenised with the model's tokenizer (special tokens
//! added), **truncated to [`SentenceEmbedder::max_seq_len`] tokens** (the
//! model's `max_seq_length`, 256 for all-MiniLM-L6-v2, capped to its
//! position embeddings): text past that point does not change the vector,
//! as with sentence-transformers. The tokenizer.json's own padding and
//! truncation settings are ignored, as sentence-transformers ignores them.
//! Inputs are run in batches of up to [`MAX_BATCH`], padded to the longest
//! with an attention mask, then pooled over real tokens only (mean, CLS, max
//! or mean/√len, as `1_Pooling/config.json` says) and L2-normalised when the
//! model has a `Normalize` module. Vectors do not depend on which other
//! inputs share the call, beyond float rounding.
//!
//! # Layout
//! - `source`: [`EmbedderSource`], and finding files in a directory or in
//!   the hub cache through hf-hub's offline lookup.
//! - `sentence_config`: `modules.json`, `1_Pooling/config.json`,
//!   `sentence_bert_config.json`.
//! - `pooling`: pooling and normalisation on tensors.
//! - `error`: [`EmbedError`].

mod error;
mod pooling;
mod sentence_config;
mod source;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::pipeline::{EncodeOptions, Override, PipelineTokenizer};
use tokenizers::TruncationParams;

use crate::backend::Embeddings;
pub use error::EmbedError;
use pooling::Pooling;
use sentence_config::{read_json, SentenceConfig};
use source::ModelFiles;
pub use source::{EmbedderSource, DEFAULT_REVISION};

/// The embedder troupe uses unless configured otherwise.
pub const DEFAULT_EMBEDDER: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Most inputs run through the model at once; longer lists are split. Bounds
/// the attention buffers (batch × heads × tokens²) whatever a request holds.
pub const MAX_BATCH: usize = 32;

/// A loaded sentence-embedding model. Immutable once loaded, `Send + Sync`:
/// share it behind an `Arc` and call [`Self::embed`] from blocking threads
/// (it computes on the CPU and takes milliseconds to seconds).
pub struct SentenceEmbedder {
    model: BertModel,
    tokenizer: PipelineTokenizer,
    pooling: Pooling,
    normalize: bool,
    do_lower_case: bool,
    max_seq_len: usize,
    width: usize,
    vocab_size: usize,
    pad_id: u32,
    model_id: String,
    device: Device,
}

impl std::fmt::Debug for SentenceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEmbedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim())
            .field("max_seq_len", &self.max_seq_len)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .finish_non_exhaustive()
    }
}

const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SentenceEmbedder>();
};

impl SentenceEmbedder {
    /// Loads the model at `source`: `config.json` (a BERT config),
    /// `tokenizer.json`, `model.safetensors`, `modules.json` and the pooling
    /// config it names, and `sentence_bert_config.json` when present.
    ///
    /// # Errors
    /// [`EmbedError::NotADirectory`] / [`EmbedError::NotCached`] when the
    /// model is not there; [`EmbedError::MissingFile`] naming a missing
    /// file; [`EmbedError::BadFile`] naming a file that is not what it
    /// should be (bad JSON, corrupt safetensors, weights that do not match
    /// the config); [`EmbedError::Unsupported`] for a model this embedder
    /// would compute wrongly (not BERT, a Dense module, another pooling).
    pub fn load(source: &EmbedderSource) -> Result<Self, EmbedError> {
        let files = ModelFiles::open(source)?;
        let config_path = files.require("config.json")?;
        let config = read_bert_config(&config_path)?;
        let sentence = SentenceConfig::read(&files)?;
        if let Some((width, path)) = &sentence.pooling_width {
            if *width != config.hidden_size {
                return Err(EmbedError::BadFile {
                    path: path.clone(),
                    reason: format!(
                        "word_embedding_dimension is {width} but config.json's hidden_size is {}",
                        config.hidden_size
                    ),
                });
            }
        }

        let tokenizer_path = files.require("tokenizer.json")?;
        let bad_tokenizer = |reason: String| EmbedError::BadFile {
            path: tokenizer_path.clone(),
            reason,
        };
        // Hub models mostly carry tokenizer.json files of the 1.0 format;
        // this tokenizers release reads only its canonical 2.0 one and
        // ships the (idempotent) upgrade for the rest.
        let canonical = tokenizers::canonicalize_file(&tokenizer_path)
            .map_err(|e| bad_tokenizer(e.to_string()))?;
        let tokenizer =
            tokenizers::from_json(&canonical).map_err(|e| bad_tokenizer(e.to_string()))?;

        let weights_path = files.require("model.safetensors")?;
        let bytes = std::fs::read(&weights_path).map_err(|source| EmbedError::Read {
            path: weights_path.clone(),
            source,
        })?;
        let device = Device::Cpu;
        let bad_weights = |e: candle_core::Error| EmbedError::BadFile {
            path: weights_path.clone(),
            reason: e.to_string(),
        };
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(bad_weights)?;
        let model = BertModel::load(vb, &config).map_err(|e| EmbedError::BadFile {
            path: weights_path.clone(),
            reason: format!("the weights do not match config.json: {e}"),
        })?;

        let max_seq_len = sentence
            .max_seq_length
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        Ok(Self {
            model,
            tokenizer,
            pooling: sentence.pooling,
            normalize: sentence.normalize,
            do_lower_case: sentence.do_lower_case,
            max_seq_len,
            width: config.hidden_size,
            vocab_size: config.vocab_size,
            pad_id: u32::try_from(config.pad_token_id).unwrap_or(0),
            model_id: source.model_id(),
            device,
        })
    }

    /// One vector per text, in input order, each [`Self::dim`] long (unit
    /// length when the model normalises). An empty list gives an empty
    /// answer; an empty string is a valid input. Texts longer than
    /// [`Self::max_seq_len`] tokens are truncated.
    ///
    /// # Errors
    /// [`EmbedError::Tokenize`], [`EmbedError::TokenOutOfVocabulary`] (a
    /// tokenizer that does not belong to the model), [`EmbedError::Compute`].
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_counting_tokens(texts)?.vectors)
    }

    /// As [`Self::embed`], also counting the tokens embedded (after
    /// truncation, special tokens included), as OpenAI's `usage` reports.
    ///
    /// # Errors
    /// As [`Self::embed`].
    pub fn embed_counting_tokens(&self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        if texts.is_empty() {
            return Ok(Embeddings::default());
        }
        let encoded = self.tokenize(texts)?;
        let prompt_tokens = encoded.iter().map(Vec::len).sum::<usize>();
        // Similar lengths batched together waste less on padding; the
        // vectors go back to input order below.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut vectors = vec![Vec::new(); encoded.len()];
        for chunk in batches(&order, |i| encoded[i].len()) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            for (&i, vector) in chunk.iter().zip(self.forward(&batch)?) {
                vectors[i] = vector;
            }
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        })
    }

    /// Length of the vectors: the transformer's width times the pooling
    /// modes (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.width * self.pooling.modes()
    }

    /// The repository id, or the directory's name for a local model.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Tokens an input is truncated to, special tokens included.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// Whether vectors are L2-normalised (the model has a `Normalize` module).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Token ids of each text, truncated, checked against the vocabulary.
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| {
                if self.do_lower_case {
                    t.to_lowercase()
                } else {
                    (*t).to_owned()
                }
            })
            .collect();
        let options = EncodeOptions {
            padding: Override::Off,
            truncation: Override::With(TruncationParams {
                max_length: self.max_seq_len,
                ..TruncationParams::default()
            }),
            ..EncodeOptions::default()
        };
        let mut out = vec![Vec::new(); texts.len()];
        for (index, result) in self.tokenizer.encode(inputs, &options) {
            let encoding = result.map_err(|e| EmbedError::Tokenize {
                index,
                reason: e.to_string(),
            })?;
            let ids: Vec<u32> = encoding.ids().iter().map(|t| t.id()).collect();
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
                return Err(EmbedError::TokenOutOfVocabulary {
                    index,
                    id,
                    vocab_size: self.vocab_size,
                });
            }
            if let Some(slot) = out.get_mut(index) {
                *slot = ids;
            }
        }
        Ok(out)
    }

    /// One padded batch through the model, pooled and normalised.
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // At least one position, so that a tokenizer that adds no special
        // tokens still gives a tensor for "" (pooled to zeros).
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for row in batch {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + len - row.len(), self.pad_id);
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, len - row.len()));
        }
        let shape = (batch.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let mut pooled = self.pooling.apply(&hidden, &mask)?;
        if self.normalize {
            pooled = pooling::l2_normalize(&pooled)?;
        }
        Ok(pooled.to_vec2::<f32>()?)
    }
}

/// Splits `order` (input positions sorted by token count, shortest first)
/// into batches of at most [`MAX_BATCH`], closing a batch early when the
/// next input would pad it by more than a quarter of its real tokens: a
/// 256-token input does not make 31 short ones run at 256 tokens each.
fn batches(order: &[usize], len_of: impl Fn(usize) -> usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let (mut start, mut real) = (0, 0);
    for (end, &i) in order.iter().enumerate() {
        let len = len_of(i).max(1);
        let count = end - start;
        let padded = len * (count + 1);
        if count > 0 && (count == MAX_BATCH || padded * 4 > (real + len) * PADDING_SLACK_QUARTERS) {
            out.push(&order[start..end]);
            (start, real) = (end, 0);
        }
        real += len;
    }
    if start < order.len() {
        out.push(&order[start..]);
    }
    out
}

/// Padded tokens a batch may hold per real token, in quarters (5/4: at
/// most 25% padding) before it is split.
const PADDING_SLACK_QUARTERS: usize = 5;

/// `config.json` as candle's BERT reads it, refusing what would load but
/// compute nonsense or panic (zero sizes, heads that do not divide the width).
fn read_bert_config(path: &std::path::Path) -> Result<BertConfig, EmbedError> {
    let json = read_json(path)?;
    let bad = |reason: String| EmbedError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    match json.get("model_type").and_then(serde_json::Value::as_str) {
        None | Some("bert") => {}
        Some(other) => {
            return Err(EmbedError::Unsupported {
                path: path.to_path_buf(),
                what: format!("model_type {other:?} (only BERT models are supported)"),
            })
        }
    }
    let config: BertConfig =
        serde_json::from_value(json).map_err(|e| bad(format!("not a BERT config: {e}")))?;
    let sizes = [
        ("vocab_size", config.vocab_size),
        ("hidden_size", config.hidden_size),
        ("num_hidden_layers", config.num_hidden_layers),
        ("num_attention_heads", config.num_attention_heads),
        ("intermediate_size", config.intermediate_size),
        ("max_position_embeddings", config.max_position_embeddings),
        ("type_vocab_size", config.type_vocab_size),
    ];
    if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(bad(format!("{key} is 0")));
    }
    if !config
        .hidden_size
        .is_multiple_of(config.num_attention_heads)
    {
        return Err(bad(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            config.hidden_size, config.num_attention_heads
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_input_once_and_keep_long_ones_apart() {
        let lens = [2, 3, 6, 9, 9, 11, 12, 20, 22, 256, 7, 7, 7, 7];
        let mut order: Vec<usize> = (0..lens.len()).collect();
        order.sort_by_key(|&i| lens[i]);
        let split = batches(&order, |i| lens[i]);
        let flat: Vec<usize> = split.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(flat, order);
        let last = split.last().unwrap();
        assert_eq!(last, &[9], "the 256-token input runs alone");

        let same: Vec<usize> = (0..100).collect();
        let split = batches(&same, |_| 10);
        assert_eq!(
            split.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [32, 32, 32, 4]
        );
        assert!(batches(&[], |_| 1).is_empty());
    }
}
