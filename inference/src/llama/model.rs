//! The handle to a model loaded by the llama.cpp engine.
//!
//! The handle turns a [`GenerateRequest`] into an engine job on the caller's
//! thread: it renders the chat, tokenizes, checks the lengths against the
//! context, builds the sampler (so an invalid grammar is an error here, not
//! in the middle of a batch) and reserves a place among the slots and the
//! queue. The engine thread only ever sees requests that fit.
//!
//! Tokenizing and grammar parsing only read the model's vocabulary, which
//! llama.cpp never changes after loading, so they can run here while the
//! engine thread decodes (llama-server does the same).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{oneshot, watch};

use super::embed::{embed_context, EmbedJob, EmbedMemory};
use super::engine::{Command, Job};
use crate::backend::{
    BoxFuture, Constraint, Embeddings, GenerateError, GenerateRequest, GenerationStream,
    LoadedModel, MemoryUsage, ModelInfo, Prompt, TokenizeError,
};
use crate::chat::{ChatError, ChatMessage, ChatTemplate, RenderedChat};
use crate::sampling::{Grammar, TokenSampler, TokenTexts};
use crate::schema;

/// Longest text handed to llama.cpp's tokenizer, whose lengths are `i32`.
const MAX_TEXT_BYTES: usize = (i32::MAX / 2) as usize;

/// A model running on its own engine thread (see [`super::LlamaEngine`]).
#[derive(Debug)]
pub struct LlamaModelHandle {
    info: ModelInfo,
    memory: MemoryUsage,
    /// `None` after `unload`, so the weights are freed when the engine
    /// thread ends even while handles remain.
    model: RwLock<Option<Arc<LlamaModel>>>,
    commands: crossbeam_channel::Sender<Command>,
    in_flight: Arc<AtomicU32>,
    max_queued: u32,
    finished: watch::Receiver<bool>,
    /// Every token's text, built on the first constrained request.
    token_texts: OnceLock<Arc<TokenTexts>>,
    /// Memory of the embedding context, once the engine has created it.
    embed_memory: Arc<EmbedMemory>,
    /// How chats are rendered for this model.
    chat: ChatTemplate,
}

/// Counts a request among those running or waiting until it is dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the engine thread hands over once the model is loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) info: ModelInfo,
    pub(crate) memory: MemoryUsage,
    pub(crate) model: Arc<LlamaModel>,
    pub(crate) embed_memory: Arc<EmbedMemory>,
    pub(crate) chat: ChatTemplate,
}

impl LlamaModelHandle {
    pub(crate) fn new(
        loaded: Loaded,
        max_queued: u32,
        commands: crossbeam_channel::Sender<Command>,
        finished: watch::Receiver<bool>,
    ) -> Self {
        Self {
            info: loaded.info,
            memory: loaded.memory,
            model: RwLock::new(Some(loaded.model)),
            commands,
            in_flight: Arc::new(AtomicU32::new(0)),
            max_queued,
            finished,
            token_texts: OnceLock::new(),
            embed_memory: loaded.embed_memory,
            chat: loaded.chat,
        }
    }

    fn model(&self) -> Option<Arc<LlamaModel>> {
        self.model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn render(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
    ) -> Result<RenderedChat, GenerateError> {
        self.chat
            .render(model, messages, tools)
            .map_err(|error| match error {
                ChatError::Empty => GenerateError::EmptyPrompt,
                other => GenerateError::ChatTemplate(other.to_string()),
            })
    }

    fn check_lengths(&self, prompt_tokens: usize, max_tokens: u32) -> Result<(), GenerateError> {
        let prompt_tokens = u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
        crate::backend::check_lengths(self.info.context_length, prompt_tokens, max_tokens)
    }

    /// Tokenizes and checks `inputs` on the caller's thread, then hands them
    /// to the engine thread; the receiver yields its answer.
    fn embed_inputs(
        &self,
        inputs: &[String],
    ) -> Result<oneshot::Receiver<Result<Embeddings, GenerateError>>, GenerateError> {
        let model = self.model().ok_or(GenerateError::Unloaded)?;
        if inputs.is_empty() {
            return Err(GenerateError::NoEmbeddingInputs);
        }
        let max = embed_context(&self.info) as usize;
        let mut tokenized = Vec::with_capacity(inputs.len());
        for (index, text) in inputs.iter().enumerate() {
            let tokens = if text.is_empty() {
                Vec::new()
            } else {
                tokenize(&model, text)?
            };
            if tokens.is_empty() {
                return Err(GenerateError::EmptyEmbeddingInput { index });
            }
            if tokens.len() > max {
                return Err(GenerateError::EmbeddingInputTooLong {
                    index,
                    tokens: tokens.len(),
                    max,
                });
            }
            tokenized.push(tokens);
        }
        let in_flight = self.reserve()?;
        let (reply, answer) = oneshot::channel();
        let job = EmbedJob {
            inputs: tokenized,
            reply,
            _in_flight: in_flight,
        };
        self.commands
            .send(Command::Embed(Box::new(job)))
            .map_err(|_| GenerateError::EngineStopped)?;
        Ok(answer)
    }

    /// Reserves a place among the running and waiting requests.
    fn reserve(&self) -> Result<InFlight, GenerateError> {
        let slots = self.info.parallel_slots;
        let limit = slots.saturating_add(self.max_queued);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(|_| InFlight(Arc::clone(&self.in_flight)))
            .map_err(|n| GenerateError::Busy {
                slots,
                queued: n.saturating_sub(slots),
            })
    }
}

fn tokenize(model: &LlamaModel, text: &str) -> Result<Vec<LlamaToken>, TokenizeError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(TokenizeError::TooLong {
            len: text.len(),
            max: MAX_TEXT_BYTES,
        });
    }
    // add_special follows the model's add_bos/add_eos flags; parse_special
    // turns the template's control-token text into the control tokens.
    Ok(model.vocab().tokenize(text.as_bytes(), true, true))
}

/// The control tokens among `texts`: each text that tokenizes (special
/// tokens parsed) to exactly one control token.
fn preserved_tokens(model: &LlamaModel, texts: &[String]) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    texts
        .iter()
        .filter(|text| !text.is_empty() && text.len() <= 64)
        .filter_map(
            |text| match vocab.tokenize(text.as_bytes(), false, true)[..] {
                [token] if vocab.is_control(token) => Some(token),
                _ => None,
            },
        )
        .collect()
}

/// Token ids from the caller, checked against the vocabulary: an id out of
/// range would index past llama.cpp's embedding table.
fn checked_tokens(model: &LlamaModel, ids: &[i32]) -> Result<Vec<LlamaToken>, GenerateError> {
    let n_vocab = model.n_vocab();
    if let Some((index, &id)) = ids
        .iter()
        .enumerate()
        .find(|(_, &id)| id < 0 || id >= n_vocab)
    {
        return Err(GenerateError::TokenOutOfRange { index, id, n_vocab });
    }
    Ok(ids.iter().map(|&id| LlamaToken(id)).collect())
}

fn grammar_for(constraint: Option<&Constraint>) -> Result<Option<Grammar>, GenerateError> {
    let eager = |text: String| Grammar {
        text,
        triggers: Vec::new(),
        at_start: false,
        preserved: Vec::new(),
    };
    Ok(match constraint {
        None => None,
        Some(Constraint::JsonSchema(schema)) => Some(eager(schema::json_schema_to_gbnf(schema)?)),
        Some(Constraint::Grammar(grammar)) => Some(eager(grammar.clone())),
        Some(Constraint::Json) => Some(eager(schema::json_value_grammar().to_owned())),
        Some(Constraint::Lazy {
            grammar,
            triggers,
            at_start,
        }) => {
            if triggers.is_empty() || triggers.iter().any(String::is_empty) {
                return Err(GenerateError::InvalidGrammar {
                    reason: "a lazy grammar needs at least one trigger, and no empty one".into(),
                });
            }
            Some(Grammar {
                text: grammar.clone(),
                triggers: triggers.clone(),
                at_start: *at_start,
                preserved: Vec::new(),
            })
        }
    })
}

impl LoadedModel for LlamaModelHandle {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The generation context's memory as measured at load, plus the
    /// embedding context's KV cache and compute buffers once the first
    /// [`LoadedModel::embed`] call has created it (nothing before: it is
    /// allocated lazily). `measured` stays true only if both were measured.
    fn memory(&self) -> MemoryUsage {
        let (kv_cache, compute, measured) = self.embed_memory.get();
        let created = kv_cache > 0 || compute > 0;
        MemoryUsage {
            kv_cache: self.memory.kv_cache + kv_cache,
            compute: self.memory.compute + compute,
            measured: self.memory.measured && (measured || !created),
            ..self.memory
        }
    }

    fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, GenerateError> {
        let model = self.model().ok_or(GenerateError::Unloaded)?;
        let mut stop = req.stop;
        let prompt = match &req.prompt {
            Prompt::Tokens(ids) => checked_tokens(&model, ids)?,
            Prompt::Text(text) if text.is_empty() => return Err(GenerateError::EmptyPrompt),
            Prompt::Text(text) => tokenize(&model, text)?,
            Prompt::Chat(messages) => {
                let rendered = self.render(&model, messages, &req.tools)?;
                if let Some(marker) = rendered.extra_stop() {
                    if !stop.iter().any(|s| s == marker) {
                        stop.push(marker.to_owned());
                    }
                }
                tokenize(&model, &rendered.text)?
            }
        };
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        self.check_lengths(prompt.len(), req.max_tokens)?;
        if let Some(index) = stop.iter().position(String::is_empty) {
            return Err(GenerateError::EmptyStopString { index });
        }
        let preserved = preserved_tokens(&model, &req.preserved);
        let grammar = grammar_for(req.constraint.as_ref())?.map(|grammar| Grammar {
            preserved: preserved.clone(),
            ..grammar
        });
        let constraint = grammar.as_ref().map(|grammar| {
            let texts = self
                .token_texts
                .get_or_init(|| Arc::new(TokenTexts::new(&model)));
            (grammar, Arc::clone(texts))
        });
        let sampler = TokenSampler::new(&req.sampling, &model, constraint)?;
        let in_flight = self.reserve()?;
        let (events, stream) = GenerationStream::channel();
        let job = Job {
            prompt,
            sampler,
            max_tokens: req.max_tokens,
            stop,
            session: req.session,
            ignore_eos: req.ignore_eos,
            logprobs: req.logprobs,
            preserved,
            events,
            _in_flight: in_flight,
        };
        self.commands
            .send(Command::Generate(Box::new(job)))
            .map_err(|_| GenerateError::EngineStopped)?;
        Ok(stream)
    }

    fn embed(&self, inputs: Vec<String>) -> BoxFuture<Result<Embeddings, GenerateError>> {
        let sent = self.embed_inputs(&inputs);
        Box::pin(async move {
            let answer = sent?;
            answer.await.map_err(|_| GenerateError::EngineStopped)?
        })
    }

    fn tokenize(&self, text: &str) -> Result<Vec<i32>, TokenizeError> {
        let model = self.model().ok_or(TokenizeError::Unloaded)?;
        Ok(tokenize(&model, text)?
            .into_iter()
            .map(|token| token.0)
            .collect())
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        let model = self.model().ok_or(GenerateError::Unloaded)?;
        Ok(self.render(&model, messages, &[])?.text)
    }

    fn unload(&self) -> BoxFuture<()> {
        self.model
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        // Fails only when the engine has already stopped.
        let _ = self.commands.send(Command::Shutdown);
        let mut finished = self.finished.clone();
        Box::pin(async move {
            // An error means the engine thread is gone, which is what we wait for.
            let _ = finished.wait_for(|done| *done).await;
        })
    }
}

impl Drop for LlamaModelHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}
