//! Synthetic llama-architecture GGUF models that llama.cpp loads.
//!
//! No model can be downloaded where troupe's tests and benches run, so they
//! write their own: the llama architecture with seeded random weights and a
//! byte-level BPE vocabulary ([`vocab`]), in shapes from a few hundred KB
//! ([`SynthShape::Tiny`]) to TinyLlama-1.1B ([`SynthShape::OneB`]). Random
//! weights give real load, decode and sampling cost; the output is noise.
//!
//! The file is written with candle's GGUF writer, which needs every tensor
//! in memory at once: peak memory is about the output file's size plus one
//! F32 copy of the largest tensor (for 1b: ~0.9 GB at Q4_0, ~4.7 GB at F32).

mod vocab;

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// ChatML, which llama.cpp recognises by its `<|im_start|>` markers.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Model dimensions of a synthetic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthHparams {
    /// Vocabulary size.
    pub n_vocab: u64,
    /// Embedding (hidden) size.
    pub n_embd: u64,
    /// Number of transformer blocks.
    pub n_layer: u64,
    /// Attention heads.
    pub n_head: u64,
    /// Key/value heads (grouped-query attention).
    pub n_head_kv: u64,
    /// Feed-forward hidden size.
    pub n_ff: u64,
    /// Training context length written to the file.
    pub n_ctx_train: u64,
}

impl SynthHparams {
    /// Number of weights the shape has.
    pub fn parameters(&self) -> u64 {
        let head_dim = self.n_embd / self.n_head;
        let n_embd_kv = head_dim * self.n_head_kv;
        let per_layer = 2 * self.n_embd // norms
            + 2 * self.n_embd * self.n_embd // q, output
            + 2 * self.n_embd * n_embd_kv // k, v
            + 3 * self.n_embd * self.n_ff; // gate, up, down
        2 * self.n_vocab * self.n_embd + self.n_embd + self.n_layer * per_layer
    }
}

/// Size of a synthetic model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthShape {
    /// ~120K parameters, under 1 MB even in F32: unit and integration tests.
    Tiny,
    /// ~36M parameters: tests that need measurable compute.
    Small,
    /// ~210M parameters: benches.
    Medium,
    /// TinyLlama-1.1B's shape: realistic benches.
    OneB,
}

impl SynthShape {
    /// The shape's dimensions. Every row length is a multiple of 32, so
    /// Q8_0 and Q4_0 blocks fit.
    pub fn hparams(self) -> SynthHparams {
        let (n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff) = match self {
            SynthShape::Tiny => (320, 64, 2, 4, 2, 128),
            SynthShape::Small => (8192, 512, 8, 8, 8, 1536),
            SynthShape::Medium => (16384, 1024, 16, 16, 4, 2816),
            SynthShape::OneB => (32000, 2048, 22, 32, 4, 5632),
        };
        SynthHparams {
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            n_ctx_train: 2048,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SynthShape::Tiny => "tiny",
            SynthShape::Small => "small",
            SynthShape::Medium => "medium",
            SynthShape::OneB => "1b",
        }
    }
}

/// Weight type of a synthetic model (norms are F32 in every case, as in
/// llama.cpp's own files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum SynthQuant {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 8-bit blocks of 32.
    Q8_0,
    /// 4-bit blocks of 32.
    Q4_0,
}

impl SynthQuant {
    fn as_str(self) -> &'static str {
        match self {
            SynthQuant::F32 => "f32",
            SynthQuant::F16 => "f16",
            SynthQuant::Q8_0 => "q8_0",
            SynthQuant::Q4_0 => "q4_0",
        }
    }

    fn dtype(self) -> GgmlDType {
        match self {
            SynthQuant::F32 => GgmlDType::F32,
            SynthQuant::F16 => GgmlDType::F16,
            SynthQuant::Q8_0 => GgmlDType::Q8_0,
            SynthQuant::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// `general.file_type` (llama.cpp's `enum llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            SynthQuant::F32 => 0,
            SynthQuant::F16 => 1,
            SynthQuant::Q8_0 => 7,
            SynthQuant::Q4_0 => 2,
        }
    }
}

/// A name that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{given}'; expected one of: {expected}")]
pub struct ParseSynthError {
    kind: &'static str,
    given: String,
    expected: &'static str,
}

impl FromStr for SynthShape {
    type Err = ParseSynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tiny" => Ok(SynthShape::Tiny),
            "small" => Ok(SynthShape::Small),
            "medium" => Ok(SynthShape::Medium),
            "1b" => Ok(SynthShape::OneB),
            _ => Err(ParseSynthError {
                kind: "synthetic model shape",
                given: s.to_string(),
                expected: "tiny, small, medium, 1b",
            }),
        }
    }
}

impl FromStr for SynthQuant {
    type Err = ParseSynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(SynthQuant::F32),
            "f16" => Ok(SynthQuant::F16),
            "q8_0" => Ok(SynthQuant::Q8_0),
            "q4_0" => Ok(SynthQuant::Q4_0),
            _ => Err(ParseSynthError {
                kind: "synthetic model quantization",
                given: s.to_string(),
                expected: "f32, f16, q8_0, q4_0",
            }),
        }
    }
}

impl fmt::Display for SynthShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SynthQuant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSpec {
    /// Dimensions.
    pub shape: SynthShape,
    /// Weight type.
    pub quant: SynthQuant,
    /// RNG seed: the same spec always gives a byte-identical file.
    pub seed: u64,
}

/// A written synthetic model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthReport {
    /// The file written.
    pub path: PathBuf,
    /// Number of weights.
    pub parameters: u64,
    /// File size in bytes.
    pub file_size: u64,
}

/// Writing a synthetic model failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// Creating, writing or renaming the file failed.
    #[error("cannot write synthetic model {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Building, quantizing or serialising a tensor failed.
    #[error("cannot build synthetic model {path}: {source}")]
    Candle {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: candle_core::Error,
    },
}

/// Writes the model `spec` describes to `path`.
///
/// The data goes to `path` + `.tmp` first and is renamed into place once
/// complete, so a crash never leaves a partial file under `path`.
///
/// # Errors
/// [`SynthError`] when the file cannot be written.
pub fn write_synthetic(path: &Path, spec: &SynthSpec) -> Result<SynthReport, SynthError> {
    write_synthetic_with_context(path, spec, spec.shape.hparams().n_ctx_train)
}

/// [`write_synthetic`] with another training context length in the file
/// (every shape writes 2048; agent prompts with a full tool list need more).
///
/// # Errors
/// [`SynthError`] when the file cannot be written.
pub fn write_synthetic_with_context(
    path: &Path,
    spec: &SynthSpec,
    n_ctx_train: u64,
) -> Result<SynthReport, SynthError> {
    let hp = SynthHparams {
        n_ctx_train,
        ..spec.shape.hparams()
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let io = |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let candle = |source| SynthError::Candle {
        path: path.to_path_buf(),
        source,
    };
    tracing::info!(path = %path.display(), shape = %spec.shape, quant = %spec.quant, "writing synthetic model");

    let metadata = metadata(spec, &hp);
    let tensors = tensors(spec, &hp).map_err(candle)?;
    if let Err(e) = write_then_rename(path, &tmp, &metadata, &tensors) {
        // Best effort: the error being returned matters more than this one.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let file_size = std::fs::metadata(path).map_err(io)?.len();
    Ok(SynthReport {
        path: path.to_path_buf(),
        parameters: hp.parameters(),
        file_size,
    })
}

/// Writes the GGUF to `tmp`, syncs it, and renames it to `path`.
fn write_then_rename(
    path: &Path,
    tmp: &Path,
    metadata: &[(&'static str, Value)],
    tensors: &[(String, QTensor)],
) -> Result<(), SynthError> {
    let io = |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(tmp).map_err(io)?);
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &meta_refs, &tensor_refs).map_err(|source| SynthError::Candle {
        path: path.to_path_buf(),
        source,
    })?;
    out.flush().map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(tmp, path).map_err(io)
}

fn u32_value(v: u64) -> Value {
    // Every synthetic dimension is far below u32::MAX.
    Value::U32(u32::try_from(v).unwrap_or(u32::MAX))
}

fn metadata(spec: &SynthSpec, hp: &SynthHparams) -> Vec<(&'static str, Value)> {
    let vocab = vocab::build(hp.n_vocab as usize);
    let strings =
        |items: &[String]| Value::Array(items.iter().cloned().map(Value::String).collect());
    vec![
        ("general.architecture", Value::String("llama".into())),
        (
            "general.name",
            Value::String(format!("troupe-synth-{}-{}", spec.shape, spec.quant)),
        ),
        ("general.file_type", Value::U32(spec.quant.file_type())),
        ("general.quantization_version", Value::U32(2)),
        ("llama.vocab_size", u32_value(hp.n_vocab)),
        ("llama.context_length", u32_value(hp.n_ctx_train)),
        ("llama.embedding_length", u32_value(hp.n_embd)),
        ("llama.block_count", u32_value(hp.n_layer)),
        ("llama.feed_forward_length", u32_value(hp.n_ff)),
        ("llama.attention.head_count", u32_value(hp.n_head)),
        ("llama.attention.head_count_kv", u32_value(hp.n_head_kv)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        (
            "llama.rope.dimension_count",
            u32_value(hp.n_embd / hp.n_head),
        ),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        ("tokenizer.ggml.tokens", strings(&vocab.tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vocab.token_types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.merges", strings(&vocab.merges)),
        (
            "tokenizer.ggml.bos_token_id",
            Value::U32(vocab.id(vocab::BOS)),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            Value::U32(vocab.id(vocab::EOS)),
        ),
        (
            "tokenizer.ggml.padding_token_id",
            Value::U32(vocab.id(vocab::EOS)),
        ),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::String(CHATML_TEMPLATE.into()),
        ),
    ]
}

/// Builds every tensor in llama.cpp's order and naming. candle shapes are
/// (rows, row length), the reverse of ggml's `ne`: llama.cpp's
/// `{n_embd, n_vocab}` token embedding is candle's `(n_vocab, n_embd)`.
fn tensors(spec: &SynthSpec, hp: &SynthHparams) -> candle_core::Result<Vec<(String, QTensor)>> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let n_embd_kv = hp.n_embd / hp.n_head * hp.n_head_kv;
    let weight_type = spec.quant.dtype();
    let mut out = Vec::with_capacity(3 + 9 * hp.n_layer as usize);
    let mut random = |name: String, rows: u64, cols: u64, out: &mut Vec<(String, QTensor)>| {
        let t = random_matrix(&mut rng, rows, cols, weight_type)?;
        out.push((name, t));
        candle_core::Result::Ok(())
    };
    random("token_embd.weight".into(), hp.n_vocab, hp.n_embd, &mut out)?;
    for layer in 0..hp.n_layer {
        let name = |part: &str| format!("blk.{layer}.{part}.weight");
        out.push((name("attn_norm"), ones(hp.n_embd)?));
        random(name("attn_q"), hp.n_embd, hp.n_embd, &mut out)?;
        random(name("attn_k"), n_embd_kv, hp.n_embd, &mut out)?;
        random(name("attn_v"), n_embd_kv, hp.n_embd, &mut out)?;
        random(name("attn_output"), hp.n_embd, hp.n_embd, &mut out)?;
        out.push((name("ffn_norm"), ones(hp.n_embd)?));
        random(name("ffn_gate"), hp.n_ff, hp.n_embd, &mut out)?;
        random(name("ffn_up"), hp.n_ff, hp.n_embd, &mut out)?;
        random(name("ffn_down"), hp.n_embd, hp.n_ff, &mut out)?;
    }
    out.push(("output_norm.weight".into(), ones(hp.n_embd)?));
    random("output.weight".into(), hp.n_vocab, hp.n_embd, &mut out)?;
    Ok(out)
}

fn ones(n: u64) -> candle_core::Result<QTensor> {
    let t = Tensor::ones(n as usize, candle_core::DType::F32, &Device::Cpu)?;
    QTensor::quantize(&t, GgmlDType::F32)
}

/// A `rows × cols` matrix of uniform values in ±1/√cols, so each matrix
/// product keeps activations near unit scale and finite.
fn random_matrix(
    rng: &mut StdRng,
    rows: u64,
    cols: u64,
    dtype: GgmlDType,
) -> candle_core::Result<QTensor> {
    let n = (rows * cols) as usize;
    let scale = 1.0 / (cols as f32).sqrt();
    // 24 random bits per value map exactly onto an f32 in [-1, 1).
    let data: Vec<f32> = (0..n)
        .map(|_| ((rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0) * scale)
        .collect();
    let t = Tensor::from_vec(data, (rows as usize, cols as usize), &Device::Cpu)?;
    QTensor::quantize(&t, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for shape in [
            SynthShape::Tiny,
            SynthShape::Small,
            SynthShape::Medium,
            SynthShape::OneB,
        ] {
            assert_eq!(shape.to_string().parse::<SynthShape>(), Ok(shape));
        }
        for quant in [
            SynthQuant::F32,
            SynthQuant::F16,
            SynthQuant::Q8_0,
            SynthQuant::Q4_0,
        ] {
            assert_eq!(quant.to_string().parse::<SynthQuant>(), Ok(quant));
        }
        assert!("2b".parse::<SynthShape>().is_err());
        assert!("q5_k".parse::<SynthQuant>().is_err());
    }

    #[test]
    fn shapes_have_the_documented_sizes() {
        let params = |s: SynthShape| s.hparams().parameters();
        assert!(params(SynthShape::Tiny) < 250_000);
        assert!((20_000_000..=40_000_000).contains(&params(SynthShape::Small)));
        assert!((150_000_000..=250_000_000).contains(&params(SynthShape::Medium)));
        // TinyLlama-1.1B has 1,100,048,384 weights.
        assert_eq!(params(SynthShape::OneB), 1_100_048_384);
        for shape in [
            SynthShape::Tiny,
            SynthShape::Small,
            SynthShape::Medium,
            SynthShape::OneB,
        ] {
            let hp = shape.hparams();
            assert_eq!(hp.n_embd % 32, 0);
            assert_eq!(hp.n_ff % 32, 0);
            assert_eq!(hp.n_embd % hp.n_head, 0);
            assert_eq!(hp.n_head % hp.n_head_kv, 0);
        }
    }
}
