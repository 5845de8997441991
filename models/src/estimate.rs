//! How much memory loading a model will take, before loading it: the
//! ModelHost plans loads against its memory budget with this, and then
//! accounts what llama.cpp actually allocated.
//!
//! Three parts, following what llama.cpp allocates:
//! - weights: the tensor data, which llama.cpp maps (or copies to a device);
//! - KV cache: one K and one V row per layer per cell;
//! - compute: the scheduler's compute buffer (graph activations sized for the
//!   worst-case micro-batch) plus the host output buffer (logits).
//!
//! See [`estimate`] for the formulas and the measurements behind them.

use crate::gguf::{GgufError, GgufFile, GgufValue};

/// llama.cpp pads the context (and each sequence's share of it) to this many
/// cells (`GGML_PAD(n_ctx, 256)` in `llama_context`'s constructor).
const CTX_PAD: u64 = 256;

/// Element type of the KV cache (llama.cpp's `type_k`/`type_v`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum KvCacheType {
    /// 16-bit floats, llama.cpp's default.
    #[default]
    F16,
    /// 8-bit blocks of 32 (34 bytes per 32 values).
    Q8_0,
    /// 32-bit floats.
    F32,
}

impl KvCacheType {
    /// Bytes a row of `n` values takes (ggml's `ggml_row_size`).
    fn row_bytes(self, n: u64) -> u64 {
        match self {
            KvCacheType::F16 => n * 2,
            KvCacheType::F32 => n * 4,
            KvCacheType::Q8_0 => n.div_ceil(32) * 34,
        }
    }
}

/// The context a model will be loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimateParams {
    /// Total KV cells across all sequences (llama.cpp's `n_ctx`: with
    /// several sequences each gets `context_length / parallel_sequences`).
    pub context_length: u32,
    /// Sequences decoded together (llama.cpp's `n_seq_max`).
    pub parallel_sequences: u32,
    /// Tokens evaluated per step (llama.cpp's `n_ubatch`; troupe sets
    /// `n_batch` to the same).
    pub batch_size: u32,
    /// KV cache element type.
    pub kv_cache_type: KvCacheType,
    /// Layers offloaded to a GPU; 0 runs on the CPU.
    pub gpu_layers: u32,
}

impl Default for EstimateParams {
    /// llama.cpp's defaults: 4096 cells, one sequence, micro-batch 512.
    fn default() -> Self {
        Self {
            context_length: 4096,
            parallel_sequences: 1,
            batch_size: 512,
            kv_cache_type: KvCacheType::F16,
            gpu_layers: 0,
        }
    }
}

impl EstimateParams {
    /// What troupe's engine allocates for `file` with `slots` sequences of
    /// `per_slot` tokens each (each capped to the training context, as the
    /// engine does), micro-batches of at most `batch_size` (and 512, the
    /// engine's largest), and `gpu_layers` offloaded: `per_slot × slots`
    /// cells in all.
    pub fn for_slots(
        file: &GgufFile,
        per_slot: u32,
        slots: u32,
        batch_size: u32,
        gpu_layers: u32,
    ) -> Self {
        let per_slot = match file.context_length() {
            Some(train) if train > 0 => per_slot.min(u32::try_from(train).unwrap_or(u32::MAX)),
            _ => per_slot,
        };
        Self {
            context_length: per_slot.saturating_mul(slots),
            parallel_sequences: slots,
            batch_size: batch_size.min(ENGINE_MAX_UBATCH),
            kv_cache_type: KvCacheType::F16,
            gpu_layers,
        }
    }
}

/// The largest micro-batch troupe's engine hands llama.cpp.
const ENGINE_MAX_UBATCH: u32 = 512;

/// Bytes a model will need, across all devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEstimate {
    /// Tensor data.
    pub weights: u64,
    /// KV cache.
    pub kv_cache: u64,
    /// Compute buffers and the logits output buffer.
    pub compute: u64,
}

impl MemoryEstimate {
    /// All three parts together.
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.kv_cache)
            .saturating_add(self.compute)
    }
}

/// Why no estimate could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstimateError {
    /// The file lacks a hyperparameter the estimate needs.
    #[error("cannot estimate memory for {path}: it has no '{key}' (is it a language model?)")]
    MissingHparam {
        /// The model file.
        path: String,
        /// The metadata key.
        key: String,
    },
    /// A hyperparameter has a value the estimate cannot use.
    #[error("cannot estimate memory for {path}: '{key}' {reason}")]
    BadHparam {
        /// The model file.
        path: String,
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The parameters ask for something llama.cpp would refuse.
    #[error("cannot estimate memory: {0}")]
    BadParams(String),
    /// The file has no architecture.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

/// The hyperparameters the estimate reads, per layer where files may vary
/// them by layer.
struct Hparams {
    n_layer: u64,
    n_embd: u64,
    n_vocab: u64,
    /// Widest feed-forward activation (MoE: per-expert width × experts used).
    n_ff: u64,
    /// Σ over layers of (K width, V width) per cell.
    kv_widths: Vec<(u64, u64)>,
}

/// Estimates the memory `file` needs when loaded with `params`.
///
/// - weights = [`GgufFile::tensor_bytes`].
/// - KV = Σ over layers of `cells × (row(n_embd_k_gqa) + row(n_embd_v_gqa))`,
///   with `n_embd_k_gqa = head_dim_k × n_head_kv` (per layer when
///   `head_count_kv` is an array) and `cells` llama.cpp's padded `n_ctx`.
///   Sliding-window layers are counted at full size: an upper bound.
/// - compute: compute buffer plus logits buffer; the formula and the
///   llama.cpp measurements it was fitted to are documented at
///   `compute_bytes` in this file.
///
/// # Errors
/// [`EstimateError::MissingHparam`] when the file lacks block count,
/// embedding length or head count (an embedding-only or non-transformer
/// file), [`EstimateError::BadParams`] for zero sizes.
pub fn estimate(file: &GgufFile, params: &EstimateParams) -> Result<MemoryEstimate, EstimateError> {
    for (what, v) in [
        ("context_length", params.context_length),
        ("parallel_sequences", params.parallel_sequences),
        ("batch_size", params.batch_size),
    ] {
        if v == 0 {
            return Err(EstimateError::BadParams(format!(
                "{what} must be at least 1"
            )));
        }
    }
    let hp = read_hparams(file)?;
    let cells = kv_cells(
        u64::from(params.context_length),
        u64::from(params.parallel_sequences),
    );
    let kv_cache = hp
        .kv_widths
        .iter()
        .map(|&(k, v)| {
            cells * (params.kv_cache_type.row_bytes(k) + params.kv_cache_type.row_bytes(v))
        })
        .sum();
    Ok(MemoryEstimate {
        weights: file.tensor_bytes(),
        kv_cache,
        compute: compute_bytes(&hp, params, cells),
    })
}

/// KV cells llama.cpp allocates for `n_ctx` over `n_seq` sequences: the
/// context padded to 256, and with several (non-unified) sequences each
/// share padded again; the larger of the unified and split layouts.
fn kv_cells(n_ctx: u64, n_seq: u64) -> u64 {
    let unified = n_ctx.next_multiple_of(CTX_PAD);
    let split = (unified / n_seq).max(1).next_multiple_of(CTX_PAD) * n_seq;
    unified.max(split)
}

/// Compute buffer plus output buffer, in bytes.
///
/// llama.cpp reserves its compute buffer for the worst-case graph: a
/// micro-batch of `n_ub = min(batch_size, context_length)` tokens, all
/// producing logits, attending over every cell. ggml-alloc reuses memory
/// between layers, so the buffer is the peak of live tensors (plus packing
/// waste), which for every shape measured sits at the output: `n_vocab`
/// logits and a handful of `n_embd` rows per token. Beside it lives the KQ
/// mask, `cells × n_ub` F16 values (flash attention; llama.cpp's default
/// `flash_attn = auto` turns it on for the CPU and GPU backends). So:
///
/// ```text
/// compute = 4·n_ub·(n_vocab + max(6·n_embd, 2·n_ff) + 16) + 2·cells·n_ub + 64 KiB
/// output  = 4·n_vocab·parallel_sequences      (host logits buffer)
/// ```
///
/// Calibration: llama.cpp of llama-cpp-sys-2 0.1.161 on the CPU, F16 KV,
/// `n_batch = n_ubatch`, synthetic llama models (`synth`), compute + output
/// buffer as llama.cpp logs them, in MiB (estimate / llama.cpp):
///
/// ```text
/// shape (vocab, embd, ff)       ctx   ub   estimate  llama.cpp
/// tiny   (320,   64,  128)      512  512     1.97      1.64
/// tiny                         2048  512     3.47      3.14
/// small  (8192,  512, 1536)     256  256    11.23     10.66
/// small                        2048  512    24.13     24.05
/// small                        8192  512    30.13     29.05
/// small                        2048   32     1.60      1.53
/// small, 4 sequences           2048  512    24.22     21.64 (split KV), 24.14 (unified)
/// medium (16384, 1024, 2816)   2048  512    46.16     46.08
/// medium                       8192  512    52.16     52.08
/// medium                       2048   32     3.00      2.94
/// 1b     (32000, 2048, 5632)    256  256    43.58     41.50
/// 1b                           2048  512    88.72     84.64
/// 1b                           8192  512    94.72     94.64
/// 1b                           1024 1024   175.25    167.16
/// ```
///
/// Per token, llama.cpp used `n_vocab + 6·n_embd + ~10` floats for small,
/// medium and 1b (tiny: fewer), and the mask cost 2 bytes per cell and
/// token; the 64 KiB covers a constant seen on medium. With several
/// sequences llama.cpp's default split KV lets each sequence's mask span
/// only its own cells; the formula counts all cells, exact for a unified
/// KV cache and an upper bound otherwise. `2·n_ff` stands in for the
/// gate/up activations of feed-forward layers wider than `3·n_embd`, which
/// no synthetic shape has: that term is reasoned, not measured. Without
/// flash attention llama.cpp would also hold `n_head·cells·n_ub` F32
/// attention scores, which this does not count.
///
/// With layers split between a GPU and the CPU each device gets a compute
/// buffer sized for its part, so the compute buffer is counted twice; with
/// every layer offloaded the host keeps an input buffer of `n_ub` embedding
/// rows. Neither GPU case is calibrated (no GPU was available).
fn compute_bytes(hp: &Hparams, params: &EstimateParams, cells: u64) -> u64 {
    let n_ub = u64::from(params.batch_size).min(u64::from(params.context_length));
    let n_seq = u64::from(params.parallel_sequences);
    let per_token = hp.n_vocab + (6 * hp.n_embd).max(2 * hp.n_ff) + PER_TOKEN_EXTRA;
    let mut compute = 4 * n_ub * per_token + MASK_BYTES * cells * n_ub + COMPUTE_CONSTANT;
    let gpu_layers = u64::from(params.gpu_layers);
    if gpu_layers > 0 && gpu_layers <= hp.n_layer {
        compute *= 2;
    } else if gpu_layers > hp.n_layer {
        compute += 4 * n_ub * hp.n_embd;
    }
    compute + 4 * hp.n_vocab * n_seq
}

/// F32 values per token beyond logits and activations (token ids,
/// positions, output ids; ~10 were measured).
const PER_TOKEN_EXTRA: u64 = 16;
/// Bytes per KQ mask element (F16, read by flash attention).
const MASK_BYTES: u64 = 2;
/// Size-independent part of the compute buffer (~63 KB measured on medium).
const COMPUTE_CONSTANT: u64 = 64 * 1024;

fn read_hparams(file: &GgufFile) -> Result<Hparams, EstimateError> {
    let arch = file.architecture()?.to_owned();
    let path = file.path.display().to_string();
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let missing = |k: String| EstimateError::MissingHparam {
        path: path.clone(),
        key: k,
    };
    let bad = |k: String, reason: String| EstimateError::BadHparam {
        path: path.clone(),
        key: k,
        reason,
    };
    let n_layer = file
        .arch_u64("block_count")
        .ok_or_else(|| missing(key("block_count")))?;
    let n_embd = file
        .arch_u64("embedding_length")
        .ok_or_else(|| missing(key("embedding_length")))?;
    let per_layer = |suffix: &str| -> Result<Option<Vec<u64>>, EstimateError> {
        let k = key(suffix);
        match file.get(&k) {
            None => Ok(None),
            Some(GgufValue::Array(items)) => {
                let values: Option<Vec<u64>> = items.iter().map(GgufValue::as_u64).collect();
                match values {
                    Some(v) if v.len() as u64 == n_layer => Ok(Some(v)),
                    Some(v) => Err(bad(
                        k,
                        format!("has {} entries for {n_layer} layers", v.len()),
                    )),
                    None => Err(bad(
                        k,
                        "holds a value that is not a non-negative integer".to_owned(),
                    )),
                }
            }
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(vec![n; n_layer as usize])),
                None => Err(bad(k, "is not a non-negative integer".to_owned())),
            },
        }
    };
    let heads =
        per_layer("attention.head_count")?.ok_or_else(|| missing(key("attention.head_count")))?;
    let heads_kv = per_layer("attention.head_count_kv")?.unwrap_or_else(|| heads.clone());
    let n_head = heads.iter().copied().max().unwrap_or(0);
    if n_head == 0 {
        return Err(bad(key("attention.head_count"), "is 0".to_owned()));
    }
    let head_dim = |suffix: &str| file.arch_u64(suffix).unwrap_or(n_embd / n_head);
    let (dim_k, dim_v) = (
        head_dim("attention.key_length"),
        head_dim("attention.value_length"),
    );
    let kv_widths = heads_kv.iter().map(|&h| (dim_k * h, dim_v * h)).collect();

    let n_ff_dense = per_layer("feed_forward_length")?
        .and_then(|v| v.into_iter().max())
        .unwrap_or(4 * n_embd);
    let n_ff = match (
        file.arch_u64("expert_used_count"),
        file.arch_u64("expert_feed_forward_length"),
    ) {
        (Some(used), Some(per_expert)) if used > 0 => n_ff_dense.max(used * per_expert),
        _ => n_ff_dense,
    };
    let n_vocab = file
        .tensor("token_embd.weight")
        .and_then(|t| t.dims.get(1).copied())
        .or_else(|| {
            file.get("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
                .map(|a| a.len() as u64)
        })
        .or_else(|| file.arch_u64("vocab_size"))
        .ok_or_else(|| missing("tokenizer.ggml.tokens".to_owned()))?;
    Ok(Hparams {
        n_layer,
        n_embd,
        n_vocab,
        n_ff,
        kv_widths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_llama_cpp_padding() {
        assert_eq!(kv_cells(512, 1), 512);
        assert_eq!(kv_cells(1000, 1), 1024);
        assert_eq!(kv_cells(1, 1), 256);
        // 1024 over 3 sequences: 341 each, padded to 512.
        assert_eq!(kv_cells(1024, 3), 1536);
        assert_eq!(kv_cells(4096, 4), 4096);
    }

    #[test]
    fn q8_0_rows_are_blocks_of_34_bytes() {
        assert_eq!(KvCacheType::Q8_0.row_bytes(64), 68);
        assert_eq!(KvCacheType::F16.row_bytes(64), 128);
        assert_eq!(KvCacheType::F32.row_bytes(64), 256);
    }
}
