//! The engine thread: one per loaded model, owning the model's context.
//!
//! `LlamaContext` is not `Send`, so the thread that creates it runs every
//! decode. It loads the model, creates one context with a sequence per slot,
//! reports the result, then loops:
//!
//! 1. take commands: block while nothing is running, otherwise only drain
//!    what has arrived (`try_recv`) so decoding never waits;
//! 2. end requests whose stream was cancelled or dropped, and move waiting
//!    requests into free slots (reusing cached prompt prefixes);
//! 3. build **one** batch: the pending token of every generating slot, then
//!    prompt chunks of slots still in prefill, up to `n_batch` tokens;
//! 4. decode it once, and sample one token for each slot whose logits it
//!    produced, each with its own sampler chain, streaming the text.
//!
//! A step costs one `llama_decode` plus per-slot sampling; the Rust around it
//! is a few vector pushes, so a single generating slot runs at the speed of
//! llama.cpp's own decode loop.

use std::collections::VecDeque;
use std::ffi::CString;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use tokio::sync::{oneshot, watch};
use troupe_models::gguf::GgufFile;

use super::embed::{EmbedJob, EmbedMemory, EmbedState};
use super::memory::{capture_allocations, computed_kv_bytes};
use super::model::{InFlight, Loaded};
use super::slot::{choose_slot, common_prefix, Active, Slot};
use crate::backend::{FinishReason, GenerateError, LoadError, LoadOptions, MemoryUsage, ModelInfo};
use crate::chat::ChatTemplate;
use crate::device;
use crate::sampling::TokenSampler;

/// Largest micro-batch handed to the compute graph (llama.cpp's default).
const MAX_UBATCH: u32 = 512;

/// A message to the engine thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run a validated request.
    Generate(Box<Job>),
    /// Embed validated inputs, between two generation steps.
    Embed(Box<EmbedJob>),
    /// End every request and stop.
    Shutdown,
}

/// A validated request (see `LlamaModelHandle::generate`).
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) prompt: Vec<LlamaToken>,
    pub(crate) sampler: TokenSampler,
    pub(crate) max_tokens: u32,
    pub(crate) stop: Vec<String>,
    pub(crate) session: Option<String>,
    pub(crate) ignore_eos: bool,
    /// Alternatives per token whose log probabilities are reported.
    pub(crate) logprobs: Option<u8>,
    /// Control tokens written into the text as their special text
    /// (tool-call markers, [`crate::backend::GenerateRequest::preserved`]).
    pub(crate) preserved: Vec<LlamaToken>,
    pub(crate) events: crate::backend::GenerationSender,
    /// Held for its `Drop`: frees the place among running and waiting requests.
    pub(crate) _in_flight: InFlight,
}

/// Everything the engine thread starts with.
pub(crate) struct EngineStart {
    pub(crate) path: PathBuf,
    pub(crate) opts: LoadOptions,
    pub(crate) threads: u32,
    pub(crate) reply: oneshot::Sender<Result<Loaded, LoadError>>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) finished: watch::Sender<bool>,
}

/// Tells `unload` waiters that the thread is done, however it ends.
struct FinishedGuard(watch::Sender<bool>);

impl Drop for FinishedGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// The engine thread's body.
pub(crate) fn run(start: EngineStart) {
    let EngineStart {
        path,
        opts,
        threads,
        reply,
        commands,
        finished,
    } = start;
    let _finished = FinishedGuard(finished);
    let model = match load_model(&path, &opts) {
        Ok(model) => Arc::new(model),
        Err(error) => {
            let _ = reply.send(Err(error));
            return;
        }
    };
    let created = create_context(&model, &path, &opts, threads);
    let (ctx, mut info, memory) = match created {
        Ok(created) => created,
        Err(error) => {
            let _ = reply.send(Err(error));
            return;
        }
    };
    tracing::info!(path = %path.display(), slots = info.parallel_slots, context = info.context_length,
        threads = info.threads, weights = memory.weights, kv_cache = memory.kv_cache, compute = memory.compute,
        "model loaded");
    let embed_memory = Arc::new(EmbedMemory::default());
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let chat = ChatTemplate::for_model(&model, &name);
    info.tool_syntax = chat.tool_syntax();
    let loaded = Loaded {
        chat,
        info: info.clone(),
        memory,
        model: Arc::clone(&model),
        embed_memory: Arc::clone(&embed_memory),
    };
    if reply.send(Ok(loaded)).is_err() {
        // The caller stopped waiting for the load.
        return;
    }
    Engine::new(ctx, &model, &info, embed_memory).run(&commands);
    tracing::info!(path = %path.display(), "model unloaded");
}

fn load_model(path: &std::path::Path, opts: &LoadOptions) -> Result<LlamaModel, LoadError> {
    let invalid = |source| LoadError::InvalidGguf {
        path: path.to_path_buf(),
        source,
    };
    let gguf = GgufFile::open(path).map_err(invalid)?;
    gguf.validate_for_llama().map_err(invalid)?;
    let backend = super::backend()?;
    if opts.gpu_layers > 0 && !backend.supports_gpu_offload() {
        return Err(LoadError::GpuUnavailable {
            gpu_layers: opts.gpu_layers,
            reason: device::missing_gpu_reason(),
        });
    }
    let params = LlamaModelParams::default().with_n_gpu_layers(opts.gpu_layers);
    let mut params = std::pin::pin!(params);
    // llama.cpp keeps the pattern's pointer until the load ends.
    let no_repack = (!opts.repack).then(|| {
        let layers = gguf.arch_u64("block_count").unwrap_or(0);
        cpu_weights_pattern(layers, u64::from(opts.gpu_layers))
    });
    if let Some(pattern) = &no_repack {
        params.as_mut().add_cpu_buft_override(pattern);
    }
    LlamaModel::load_from_file(backend, path, &params).map_err(|_| LoadError::ModelLoad {
        path: path.to_path_buf(),
    })
}

/// The weights that stay on the CPU, as a pattern of tensor names: with
/// `repack = false` they are put in the plain CPU buffer type, so ggml does
/// not repack them into its extra buffer types (llama.cpp's `--no-repack`).
/// llama.cpp offloads the last `gpu_layers` blocks; the token embeddings
/// always stay.
fn cpu_weights_pattern(layers: u64, gpu_layers: u64) -> CString {
    let pattern = if gpu_layers == 0 {
        ".".to_owned()
    } else {
        let cpu_blocks: Vec<String> = (0..layers.saturating_sub(gpu_layers))
            .map(|i| i.to_string())
            .collect();
        if cpu_blocks.is_empty() {
            "^token_embd\\.".to_owned()
        } else {
            format!("^token_embd\\.|^blk\\.({})\\.", cpu_blocks.join("|"))
        }
    };
    // Digits, letters and punctuation only: no NUL.
    CString::new(pattern).unwrap_or_default()
}

fn create_context<'m>(
    model: &'m LlamaModel,
    path: &std::path::Path,
    opts: &LoadOptions,
    threads: u32,
) -> Result<(LlamaContext<'m>, ModelInfo, MemoryUsage), LoadError> {
    let backend = super::backend()?;
    let n_ctx_train = model.n_ctx_train();
    let per_slot = match n_ctx_train {
        0 => opts.context_length,
        train => opts.context_length.min(train),
    };
    if per_slot < opts.context_length {
        tracing::warn!(
            asked = opts.context_length,
            n_ctx_train,
            "context_length capped to the training context"
        );
    }
    let slots = opts.parallel_slots;
    let n_ctx = per_slot
        .checked_mul(slots)
        .ok_or_else(|| LoadError::InvalidOption {
            name: "context_length",
            reason: format!("{per_slot} tokens × {slots} slots overflows"),
        })?;
    let context_error = || LoadError::Context {
        path: path.to_path_buf(),
        n_ctx,
        slots,
        per_slot,
    };
    let thread_count = i32::try_from(threads).unwrap_or(i32::MAX);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(opts.batch_size)
        .with_n_ubatch(opts.batch_size.min(MAX_UBATCH))
        .with_n_seq_max(slots)
        .with_n_threads(thread_count)
        .with_n_threads_batch(thread_count);
    let (created, allocations) = capture_allocations(|| model.new_context(backend, params));
    let ctx = created.map_err(|_| context_error())?;
    // llama.cpp clamps n_batch to n_ctx; one generating token per slot must fit.
    let batch_size = ctx.n_batch();
    if batch_size < slots {
        return Err(LoadError::InvalidOption {
            name: "batch_size",
            reason: format!("is {batch_size}; it must be at least parallel_slots ({slots})"),
        });
    }
    let memory = if allocations.seen_kv {
        MemoryUsage {
            weights: model.size(),
            kv_cache: allocations.kv_cache,
            compute: allocations.compute,
            measured: true,
        }
    } else {
        tracing::warn!(
            "llama.cpp's buffer sizes were not logged; computing the KV cache size instead"
        );
        MemoryUsage {
            weights: model.size(),
            kv_cache: computed_kv_bytes(
                u64::from(ctx.n_ctx()),
                u64::from(model.n_layer()),
                u64::try_from(model.n_embd()).unwrap_or(0),
                u64::from(model.n_head()),
                u64::from(model.n_head_kv()),
            ),
            compute: 0,
            measured: false,
        }
    };
    let info = ModelInfo {
        path: path.to_path_buf(),
        architecture: model
            .meta_val_str("general.architecture")
            .unwrap_or_default(),
        context_length: per_slot,
        n_ctx_train,
        parallel_slots: slots,
        batch_size,
        threads,
        gpu_layers: opts.gpu_layers,
        n_vocab: u32::try_from(model.n_vocab()).unwrap_or(0),
        n_layer: model.n_layer(),
        n_embd: u32::try_from(model.n_embd()).unwrap_or(0),
        n_params: model.n_params(),
        chat_template: model
            .chat_template(None)
            .ok()
            .and_then(|t| t.to_string().ok()),
        tool_syntax: None,
    };
    Ok((ctx, info, memory))
}

/// A request waiting for a slot.
struct Queued {
    job: Box<Job>,
    arrived: Instant,
}

/// The decode loop's state.
struct Engine<'m> {
    ctx: LlamaContext<'m>,
    vocab: LlamaVocab<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    slots: Vec<Slot>,
    queue: VecDeque<Queued>,
    /// Slots with tokens in the current batch.
    in_batch: Vec<usize>,
    /// Where prefill chunks start taking batch space, rotated for fairness.
    prefill_turn: usize,
    /// Bytes of the token being turned into text.
    piece: Vec<u8>,
    clock: u64,
    running: bool,
    embed: EmbedState<'m>,
}

impl<'m> Engine<'m> {
    fn new(
        ctx: LlamaContext<'m>,
        model: &'m LlamaModel,
        info: &ModelInfo,
        embed_memory: Arc<EmbedMemory>,
    ) -> Self {
        let n_batch = info.batch_size as usize;
        let slots = (0..info.parallel_slots)
            .map(|seq| Slot::new(i32::try_from(seq).unwrap_or(i32::MAX)))
            .collect();
        Self {
            ctx,
            vocab: model.vocab(),
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            slots,
            queue: VecDeque::new(),
            in_batch: Vec::new(),
            prefill_turn: 0,
            piece: Vec::new(),
            clock: 0,
            running: true,
            embed: EmbedState::new(model, info, embed_memory),
        }
    }

    fn run(mut self, commands: &Receiver<Command>) {
        while self.running {
            let busy =
                !self.queue.is_empty() || self.slots.iter().any(|slot| slot.active.is_some());
            if !busy {
                match commands.recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                }
            }
            loop {
                match commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.running = false;
                        break;
                    }
                }
            }
            if !self.running {
                break;
            }
            self.drop_cancelled();
            self.admit();
            self.step();
        }
        self.shutdown();
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Generate(job) => self.queue.push_back(Queued {
                job,
                arrived: Instant::now(),
            }),
            Command::Embed(job) => self.embed.run(*job),
            Command::Shutdown => self.running = false,
        }
    }

    /// Ends requests whose caller cancelled or dropped the stream.
    fn drop_cancelled(&mut self) {
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|active| active.job.events.is_cancelled())
            {
                if let Some(active) = slot.active.take() {
                    active.finish(FinishReason::Cancelled);
                    self.clock += 1;
                    slot.last_used = self.clock;
                }
            }
        }
        if !self
            .queue
            .iter()
            .any(|queued| queued.job.events.is_cancelled())
        {
            return;
        }
        let (cancelled, waiting) = self
            .queue
            .drain(..)
            .partition::<VecDeque<_>, _>(|queued| queued.job.events.is_cancelled());
        self.queue = waiting;
        for queued in cancelled {
            Active::new(queued.job, queued.arrived, 0).finish(FinishReason::Cancelled);
        }
    }

    /// Moves waiting requests into free slots.
    fn admit(&mut self) {
        while let Some(front) = self.queue.front() {
            let Some(index) =
                choose_slot(&self.slots, &front.job.prompt, front.job.session.as_deref())
            else {
                return;
            };
            let Some(queued) = self.queue.pop_front() else {
                return;
            };
            self.start(index, queued);
        }
    }

    /// Puts a request in slot `index`, keeping the KV cache of the prompt
    /// prefix the slot already holds.
    fn start(&mut self, index: usize, queued: Queued) {
        let slot = &mut self.slots[index];
        let prompt = &queued.job.prompt;
        // At least one prompt token is decoded, to get logits to sample from.
        let mut keep = common_prefix(&slot.cached, prompt).min(prompt.len() - 1);
        if keep < slot.cached.len() {
            let removed = self.ctx.clear_kv_cache_seq(
                u32::try_from(slot.seq).ok(),
                u32::try_from(keep).ok(),
                None,
            );
            if !matches!(removed, Ok(true)) {
                // Partial removal refused (not the case for a plain KV
                // cache): start the sequence over.
                let _ = self
                    .ctx
                    .clear_kv_cache_seq(u32::try_from(slot.seq).ok(), None, None);
                keep = 0;
            }
            slot.cached.truncate(keep);
        }
        slot.session.clone_from(&queued.job.session);
        slot.active = Some(Active::new(queued.job, queued.arrived, keep));
    }

    /// Builds one batch from every active slot, decodes it and samples.
    fn step(&mut self) {
        self.batch.clear();
        self.in_batch.clear();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            active.logit_index = None;
            if let Some(token) = active.pending {
                let pos = i32::try_from(slot.cached.len()).unwrap_or(i32::MAX);
                // The batch holds at least one token per slot (checked at
                // load); were it full, the token would simply wait a step.
                if self.batch.add(token, pos, &[slot.seq], true).is_ok() {
                    active.pending = None;
                    active.logit_index = Some(self.batch.n_tokens() - 1);
                    slot.cached.push(token);
                    self.in_batch.push(index);
                }
            }
        }
        self.add_prefill_chunks();
        if self.batch.n_tokens() == 0 {
            return;
        }
        if let Err(error) = self.ctx.decode(&mut self.batch) {
            self.fail_batch(&error.to_string());
            return;
        }
        let decoded = Instant::now();
        for i in 0..self.in_batch.len() {
            let index = self.in_batch[i];
            self.sample_slot(index, decoded);
        }
    }

    fn add_prefill_chunks(&mut self) {
        let n_slots = self.slots.len();
        for turn in 0..n_slots {
            let index = (self.prefill_turn + turn) % n_slots;
            let room = self
                .n_batch
                .saturating_sub(usize::try_from(self.batch.n_tokens()).unwrap_or(0));
            if room == 0 {
                break;
            }
            let slot = &mut self.slots[index];
            if !slot.in_prefill() {
                continue;
            }
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            let prompt = &active.job.prompt;
            let from = slot.cached.len();
            let mut to = from;
            while to < prompt.len().min(from + room) {
                let is_last = to + 1 == prompt.len();
                let pos = i32::try_from(to).unwrap_or(i32::MAX);
                // Room was measured above, so this only fails if that is wrong;
                // the rest of the prompt then waits for the next step.
                if self
                    .batch
                    .add(prompt[to], pos, &[slot.seq], is_last)
                    .is_err()
                {
                    break;
                }
                to += 1;
            }
            if to == from {
                continue;
            }
            if to == prompt.len() {
                active.logit_index = Some(self.batch.n_tokens() - 1);
            }
            active.prompt_started.get_or_insert_with(Instant::now);
            slot.cached.extend_from_slice(&prompt[from..to]);
            if !self.in_batch.contains(&index) {
                self.in_batch.push(index);
            }
        }
        self.prefill_turn = (self.prefill_turn + 1) % n_slots.max(1);
    }

    /// A failed decode leaves the batch's sequences in an unknown state:
    /// fail their requests and clear their caches.
    fn fail_batch(&mut self, reason: &str) {
        tracing::error!(reason, "llama_decode failed");
        for i in 0..self.in_batch.len() {
            let slot = &mut self.slots[self.in_batch[i]];
            let _ = self
                .ctx
                .clear_kv_cache_seq(u32::try_from(slot.seq).ok(), None, None);
            slot.cached.clear();
            if let Some(active) = slot.active.take() {
                active.fail(GenerateError::Decode(reason.to_owned()));
            }
        }
    }

    fn sample_slot(&mut self, index: usize, decoded: Instant) {
        let slot = &mut self.slots[index];
        let Some(active) = slot.active.as_mut() else {
            return;
        };
        if slot.cached.len() == active.job.prompt.len() && active.prompt_done.is_none() {
            active.prompt_done = Some(decoded);
        }
        let Some(logit_index) = active.logit_index.take() else {
            return;
        };
        let token = match active.job.sampler.sample(&self.ctx, logit_index) {
            Ok(token) => token,
            Err(error) => {
                if let Some(active) = slot.active.take() {
                    active.fail(error);
                }
                return;
            }
        };
        let now = Instant::now();
        active.first_token.get_or_insert(now);
        active.last_token = Some(now);
        active.generated += 1;
        active.tokens.push(token.0);
        if let Some(top) = active.job.logprobs {
            if !self.vocab.is_eog(token) {
                let logits = self.ctx.get_logits_ith(logit_index);
                let logprob = token_logprob(&self.vocab, logits, token, top);
                active.logprobs.push(logprob);
            }
        }
        let finish = if self.vocab.is_eog(token) && !active.job.ignore_eos {
            Some(FinishReason::Stop)
        } else if self.vocab.is_eog(token) {
            if active.generated >= active.job.max_tokens {
                Some(FinishReason::Length)
            } else {
                active.pending = Some(token);
                None
            }
        } else {
            self.piece.clear();
            let special = active.job.preserved.contains(&token);
            self.vocab
                .token_to_piece_into(token, &mut self.piece, special, None);
            let pushed = active.output.push(&self.piece);
            if !pushed.emit.is_empty() {
                active
                    .job
                    .events
                    .send(crate::backend::GenerationEvent::Token(pushed.emit));
            }
            if pushed.stopped {
                Some(FinishReason::StopString)
            } else if active.generated >= active.job.max_tokens {
                Some(FinishReason::Length)
            } else {
                active.pending = Some(token);
                None
            }
        };
        if let Some(reason) = finish {
            if let Some(active) = slot.active.take() {
                active.finish(reason);
            }
            self.clock += 1;
            slot.last_used = self.clock;
        }
    }

    /// Ends every running and waiting request: the model is going away.
    fn shutdown(&mut self) {
        for slot in &mut self.slots {
            if let Some(active) = slot.active.take() {
                active.fail(GenerateError::Unloaded);
            }
        }
        for queued in self.queue.drain(..) {
            queued
                .job
                .events
                .send(crate::backend::GenerationEvent::Error(
                    GenerateError::Unloaded,
                ));
        }
    }
}

/// `token`'s log probability under `logits`' softmax, and the `top`
/// likeliest tokens'. One pass for the normaliser, one for the top (kept
/// sorted in a small vector): a vocabulary of 50k to 260k floats.
fn token_logprob(
    vocab: &LlamaVocab<'_>,
    logits: &[f32],
    token: LlamaToken,
    top: u8,
) -> crate::backend::TokenLogprob {
    let finite = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let max = logits
        .iter()
        .copied()
        .map(finite)
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .map(|&l| f64::from(finite(l) - max).exp())
        .sum();
    let log_z = max + sum.ln() as f32;
    let logprob_of = |id: usize| {
        logits
            .get(id)
            .map_or(f32::NEG_INFINITY, |&l| finite(l) - log_z)
    };
    let n = usize::from(top.min(crate::backend::MAX_TOP_LOGPROBS));
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(n + 1);
    if n > 0 {
        for (id, &l) in logits.iter().enumerate() {
            let l = finite(l);
            if best.len() == n && best.last().is_some_and(|&(worst, _)| l <= worst) {
                continue;
            }
            let at = best.partition_point(|&(other, _)| other >= l);
            best.insert(at, (l, id));
            best.truncate(n);
        }
    }
    let logprob = |id: usize| {
        let token = i32::try_from(id).unwrap_or(i32::MAX);
        let mut bytes = Vec::with_capacity(16);
        vocab.token_to_piece_into(LlamaToken(token), &mut bytes, false, None);
        crate::backend::Logprob {
            token: Some(token),
            bytes,
            logprob: logprob_of(id),
        }
    };
    crate::backend::TokenLogprob {
        chosen: logprob(usize::try_from(token.0).unwrap_or(usize::MAX)),
        top: best.into_iter().map(|(_, id)| logprob(id)).collect(),
    }
}
