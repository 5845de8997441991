//! Embeddings on the engine thread, in a second context of the same model.
//!
//! The generation context returns logits of the last token; pooled
//! embeddings need a context created with `embeddings = true` and a pooling
//! type, so the engine creates a second one the first time it is asked to
//! embed, and keeps it for the model's lifetime. It shares the weights, so it
//! costs only its own KV cache and compute buffers (see [`EmbedMemory`]).
//!
//! Each input is its own sequence; inputs are packed into batches of at
//! most [`EMBED_MAX_SEQS`] sequences and [`embed_context`] tokens. llama.cpp
//! pools a sequence over the tokens of one micro-batch, so the micro-batch is
//! as large as the batch: an input is never split, and its vector is the
//! mean over all of its tokens. The KV cache is cleared after each batch, so
//! nothing of one request leaks into the next.
//!
//! The engine runs an embeddings request between two generation steps:
//! running generations pause for as long as the embeddings take, and no
//! longer; their context is not touched.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

use super::memory::{capture_allocations, computed_kv_bytes};
use super::model::InFlight;
use crate::backend::{Embeddings, GenerateError, ModelInfo};

/// Most inputs decoded together in one batch (sequences of the embedding context).
pub(crate) const EMBED_MAX_SEQS: u32 = 16;

/// Most tokens of the embedding context. The micro-batch is as large as the
/// context (see the module documentation), and the compute buffer grows with
/// it, so it is bounded even for models loaded with long contexts.
pub(crate) const EMBED_MAX_CONTEXT: u32 = 4096;

/// Tokens the embedding context holds, which is also the longest input: a
/// slot's context, at most [`EMBED_MAX_CONTEXT`].
pub(crate) fn embed_context(info: &ModelInfo) -> u32 {
    info.context_length.clamp(1, EMBED_MAX_CONTEXT)
}

/// A validated embeddings request (see `LlamaModelHandle::embed`).
#[derive(Debug)]
pub(crate) struct EmbedJob {
    /// Tokens of each input; none empty, none longer than [`embed_context`].
    pub(crate) inputs: Vec<Vec<LlamaToken>>,
    pub(crate) reply: oneshot::Sender<Result<Embeddings, GenerateError>>,
    /// Held for its `Drop`: frees the place among running and waiting requests.
    pub(crate) _in_flight: InFlight,
}

/// Bytes held by the embedding context, written by the engine thread when it
/// creates the context and read by `LlamaModelHandle::memory`. Zero until the
/// first embeddings request.
#[derive(Debug, Default)]
pub(crate) struct EmbedMemory {
    kv_cache: AtomicU64,
    compute: AtomicU64,
    /// Whether the sizes were measured from llama.cpp's log (as for the
    /// generation context) rather than computed.
    measured: AtomicBool,
}

impl EmbedMemory {
    /// KV cache bytes, compute bytes, and whether they were measured.
    pub(crate) fn get(&self) -> (u64, u64, bool) {
        (
            self.kv_cache.load(Ordering::Acquire),
            self.compute.load(Ordering::Acquire),
            self.measured.load(Ordering::Acquire),
        )
    }

    fn set(&self, kv_cache: u64, compute: u64, measured: bool) {
        self.kv_cache.store(kv_cache, Ordering::Release);
        self.compute.store(compute, Ordering::Release);
        self.measured.store(measured, Ordering::Release);
    }
}

/// The engine thread's embedding side: the context, once created.
pub(crate) struct EmbedState<'m> {
    model: &'m LlamaModel,
    info: ModelInfo,
    memory: Arc<EmbedMemory>,
    embedder: Option<Embedder<'m>>,
}

impl<'m> EmbedState<'m> {
    /// No context yet; it is created on the first job.
    pub(crate) fn new(model: &'m LlamaModel, info: &ModelInfo, memory: Arc<EmbedMemory>) -> Self {
        Self {
            model,
            info: info.clone(),
            memory,
            embedder: None,
        }
    }

    /// Runs `job` and sends its answer, unless its caller stopped waiting.
    pub(crate) fn run(&mut self, job: EmbedJob) {
        if job.reply.is_closed() {
            return;
        }
        let embedder = match self.embedder.take() {
            Some(embedder) => Ok(embedder),
            None => Embedder::new(self.model, &self.info, &self.memory),
        };
        let result = embedder.and_then(|mut embedder| {
            let result = embedder.embed(&job.inputs);
            self.embedder = Some(embedder);
            result
        });
        if let Err(error) = &result {
            tracing::error!(%error, inputs = job.inputs.len(), "embedding failed");
        }
        let _ = job.reply.send(result);
    }
}

/// The embedding context and its batch.
pub(crate) struct Embedder<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_ctx: usize,
}

impl<'m> Embedder<'m> {
    /// Creates the embedding context and records its memory in `memory`.
    pub(crate) fn new(
        model: &'m LlamaModel,
        info: &ModelInfo,
        memory: &EmbedMemory,
    ) -> Result<Self, GenerateError> {
        let backend = super::backend().map_err(|error| GenerateError::Decode(error.to_string()))?;
        let n_ctx = embed_context(info);
        let threads = i32::try_from(info.threads).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_ubatch(n_ctx)
            .with_n_seq_max(EMBED_MAX_SEQS)
            // One KV stream shared by the sequences of a batch: a batch may
            // be one long input or many short ones.
            .with_kv_unified(true)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let (created, allocations) = capture_allocations(|| model.new_context(backend, params));
        let ctx = created.map_err(|error| {
            GenerateError::Decode(format!(
                "cannot create the embedding context of {n_ctx} tokens: {error}"
            ))
        })?;
        if allocations.seen_kv {
            memory.set(allocations.kv_cache, allocations.compute, true);
        } else {
            let kv = computed_kv_bytes(
                u64::from(ctx.n_ctx()),
                u64::from(model.n_layer()),
                u64::try_from(model.n_embd()).unwrap_or(0),
                u64::from(model.n_head()),
                u64::from(model.n_head_kv()),
            );
            memory.set(kv, 0, false);
        }
        let (kv_cache, compute, _) = memory.get();
        tracing::info!(n_ctx, kv_cache, compute, "embedding context created");
        let n_ctx = usize::try_from(ctx.n_batch().min(ctx.n_ctx())).unwrap_or(usize::MAX);
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_ctx, 1),
            n_ctx,
        })
    }

    /// Embeds every input, in order.
    pub(crate) fn embed(
        &mut self,
        inputs: &[Vec<LlamaToken>],
    ) -> Result<Embeddings, GenerateError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut start = 0;
        while start < inputs.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < inputs.len()
                && end - start < EMBED_MAX_SEQS as usize
                && tokens + inputs[end].len() <= self.n_ctx
            {
                tokens += inputs[end].len();
                end += 1;
            }
            if end == start {
                // Only an input longer than the context stops a batch from
                // taking it; the handle refuses those, so this is a bug.
                return Err(GenerateError::EmbeddingInputTooLong {
                    index: start,
                    tokens: inputs[start].len(),
                    max: self.n_ctx,
                });
            }
            let decoded = self.decode_group(&inputs[start..end], &mut vectors);
            // Whatever happened, the next batch starts from an empty cache.
            self.ctx.clear_kv_cache();
            decoded?;
            start = end;
        }
        let prompt_tokens = inputs.iter().map(Vec::len).sum::<usize>();
        Ok(Embeddings {
            vectors,
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        })
    }

    /// Decodes `group` as sequences 0.. of one batch and appends their vectors.
    fn decode_group(
        &mut self,
        group: &[Vec<LlamaToken>],
        vectors: &mut Vec<Vec<f32>>,
    ) -> Result<(), GenerateError> {
        self.batch.clear();
        for (seq, tokens) in group.iter().enumerate() {
            let seq = i32::try_from(seq).unwrap_or(i32::MAX);
            for (pos, &token) in tokens.iter().enumerate() {
                let pos = i32::try_from(pos).unwrap_or(i32::MAX);
                // Pooled embeddings need every token marked as an output.
                self.batch
                    .add(token, pos, &[seq], true)
                    .map_err(|error| GenerateError::Decode(error.to_string()))?;
            }
        }
        self.ctx
            .decode(&mut self.batch)
            .map_err(|error| GenerateError::Decode(error.to_string()))?;
        for seq in 0..group.len() {
            let seq = i32::try_from(seq).unwrap_or(i32::MAX);
            let pooled = self.ctx.embeddings_seq_ith(seq).map_err(|error| {
                GenerateError::Decode(format!("no pooled embedding for sequence {seq}: {error}"))
            })?;
            vectors.push(normalized(pooled));
        }
        Ok(())
    }
}

/// `v / ‖v‖`; a zero vector stays zero rather than becoming NaN.
fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return v.to_vec();
    }
    #[allow(clippy::cast_possible_truncation)] // back to the f32 the vector holds
    v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn normalized_vectors_have_unit_norm_and_zero_stays_zero() {
        let v = normalized(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
