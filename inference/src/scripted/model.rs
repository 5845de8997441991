//! A loaded scripted model: checks requests as the llama.cpp engine does,
//! picks the reply from the script and replays it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::replay::{self, Replay};
use super::script::{self, Script};
use super::ScriptedCall;
use crate::backend::{
    BoxFuture, Constraint, Embeddings, GenerateError, GenerateRequest, GenerationEvent,
    GenerationStream, LoadOptions, LoadedModel, MemoryUsage, ModelInfo, Prompt, TokenizeError,
};
use crate::chat::{self, ChatMessage};
use crate::schema::JsonSchema;

/// Token ids of [`LoadedModel::tokenize`] are below this.
const N_VOCAB: u32 = 32_768;

/// Length of the vectors [`LoadedModel::embed`] returns.
const EMBEDDING_DIM: u32 = 32;

/// Most characters of the last message quoted when no rule matches.
const QUOTED_CHARS: usize = 200;

/// A model of a [`super::ScriptedBackend`].
#[derive(Debug)]
pub(crate) struct ScriptedModel {
    info: ModelInfo,
    stem: String,
    script: Arc<Script>,
    calls: Arc<Mutex<Vec<ScriptedCall>>>,
    unloaded: Arc<AtomicBool>,
}

/// What the reply must be, checked before it is streamed.
enum ReplyCheck {
    Any,
    Json,
    Schema(Box<JsonSchema>),
}

impl ScriptedModel {
    pub(crate) fn new(
        path: &Path,
        opts: &LoadOptions,
        script: Arc<Script>,
        calls: Arc<Mutex<Vec<ScriptedCall>>>,
    ) -> Self {
        let info = ModelInfo {
            path: path.to_owned(),
            architecture: "scripted".to_owned(),
            context_length: opts.context_length,
            n_ctx_train: opts.context_length,
            parallel_slots: opts.parallel_slots,
            batch_size: opts.batch_size,
            threads: opts.threads.unwrap_or(1),
            gpu_layers: opts.gpu_layers,
            n_vocab: N_VOCAB,
            n_layer: 0,
            n_embd: EMBEDDING_DIM,
            n_params: 0,
            chat_template: None,
            tool_syntax: None,
        };
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            info,
            stem,
            script,
            calls,
            unloaded: Arc::new(AtomicBool::new(false)),
        }
    }

    fn is_unloaded(&self) -> bool {
        self.unloaded.load(Ordering::Relaxed)
    }

    /// Prompt tokens, refusing what the llama.cpp engine refuses.
    fn prompt_tokens(&self, prompt: &Prompt) -> Result<u32, GenerateError> {
        let tokens = match prompt {
            Prompt::Text(text) if text.is_empty() => return Err(GenerateError::EmptyPrompt),
            Prompt::Text(text) => replay::token_count(text),
            Prompt::Chat(messages) if messages.is_empty() => {
                return Err(GenerateError::EmptyPrompt)
            }
            Prompt::Chat(messages) => replay::token_count(&chat::render_chatml(messages)),
            Prompt::Tokens(ids) if ids.is_empty() => return Err(GenerateError::EmptyPrompt),
            Prompt::Tokens(ids) => {
                if let Some((index, &id)) = ids
                    .iter()
                    .enumerate()
                    .find(|(_, &id)| u32::try_from(id).map_or(true, |id| id >= N_VOCAB))
                {
                    return Err(GenerateError::TokenOutOfRange {
                        index,
                        id,
                        n_vocab: N_VOCAB as i32,
                    });
                }
                ids.len()
            }
        };
        Ok(u32::try_from(tokens).unwrap_or(u32::MAX))
    }

    fn check_lengths(&self, prompt_tokens: u32, max_tokens: u32) -> Result<(), GenerateError> {
        crate::backend::check_lengths(self.info.context_length, prompt_tokens, max_tokens)
    }

    fn record(&self, prompt: &Prompt, rule: Option<usize>) {
        let call = ScriptedCall {
            model_stem: self.stem.clone(),
            last_message: script::last_message(prompt).to_owned(),
            rule,
        };
        // A panic elsewhere while holding the lock leaves a usable Vec.
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(call);
    }

    fn no_rule_matched(&self, prompt: &Prompt) -> GenerateError {
        let last = script::last_message(prompt);
        let mut quoted: String = last.chars().take(QUOTED_CHARS).collect();
        if quoted.len() < last.len() {
            quoted.push('…');
        }
        GenerateError::Decode(format!(
            "no scripted rule matched the prompt for model `{}` and the script has no default reply; last message: {quoted:?}",
            self.stem
        ))
    }
}

fn reply_check(constraint: Option<&Constraint>) -> Result<ReplyCheck, GenerateError> {
    Ok(match constraint {
        None | Some(Constraint::Grammar(_) | Constraint::Lazy { .. }) => ReplyCheck::Any,
        Some(Constraint::Json) => ReplyCheck::Json,
        Some(Constraint::JsonSchema(schema)) => {
            ReplyCheck::Schema(Box::new(JsonSchema::compile(schema)?))
        }
    })
}

/// Refuses a reply the request's grammar could never have produced, so a
/// script cannot feed the orchestration output a real model could not give.
fn check_reply(check: &ReplyCheck, reply: &str, rule: Option<usize>) -> Result<(), GenerateError> {
    let source = || match rule {
        Some(index) => format!("rules[{index}]"),
        None => "the default reply".to_owned(),
    };
    let value = match check {
        ReplyCheck::Any => return Ok(()),
        ReplyCheck::Json | ReplyCheck::Schema(_) => serde_json::from_str::<Value>(reply)
            .map_err(|error| {
                GenerateError::Sampling(format!(
                    "the scripted reply of {} is not JSON ({error}) but the request is constrained to JSON",
                    source()
                ))
            })?,
    };
    if let ReplyCheck::Schema(schema) = check {
        schema.validate(&value).map_err(|violation| {
            GenerateError::Sampling(format!(
                "the scripted reply of {} does not match the request's JSON Schema: {violation}",
                source()
            ))
        })?;
    }
    Ok(())
}

impl LoadedModel for ScriptedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// `memory_bytes` of the script as the weights; nothing else.
    fn memory(&self) -> MemoryUsage {
        MemoryUsage {
            weights: self.script.memory_bytes,
            kv_cache: 0,
            compute: 0,
            measured: true,
        }
    }

    fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, GenerateError> {
        if self.is_unloaded() {
            return Err(GenerateError::Unloaded);
        }
        req.sampling.validate()?;
        let prompt_tokens = self.prompt_tokens(&req.prompt)?;
        self.check_lengths(prompt_tokens, req.max_tokens)?;
        if let Some(index) = req.stop.iter().position(String::is_empty) {
            return Err(GenerateError::EmptyStopString { index });
        }
        let check = reply_check(req.constraint.as_ref())?;
        let choice = self.script.choose(&self.stem, &req.prompt);
        self.record(&req.prompt, choice.and_then(|choice| choice.rule));
        let Some(choice) = choice else {
            return Err(self.no_rule_matched(&req.prompt));
        };
        tracing::debug!(model = %self.stem, rule = ?choice.rule, "scripted reply");
        let (events, stream) = GenerationStream::channel();
        if let Err(error) = check_reply(&check, choice.reply, choice.rule) {
            events.send(GenerationEvent::Error(error));
            return Ok(stream);
        }
        let (pieces, finish) = replay::cut(choice.reply, &req.stop, req.max_tokens);
        let replay = Replay {
            pieces,
            finish,
            delay_ms: choice.delay_ms,
            token_delay_ms: self.script.token_delay_ms,
            prompt_tokens,
            events,
            unloaded: Arc::clone(&self.unloaded),
        };
        if replay.pauses() {
            // A thread of its own, not a tokio task: `generate` may be called
            // outside a runtime, and sleeping must not stall the caller.
            std::thread::Builder::new()
                .name("scripted-replay".to_owned())
                .spawn(move || replay.run())
                .map_err(|error| {
                    tracing::warn!(%error, "cannot start a scripted replay thread");
                    GenerateError::EngineStopped
                })?;
        } else {
            replay.run();
        }
        Ok(stream)
    }

    /// Deterministic unit vectors of 32 dimensions derived from a hash of
    /// each input: equal texts get equal vectors, different texts almost
    /// surely different ones, but similarity means nothing.
    fn embed(&self, inputs: Vec<String>) -> BoxFuture<Result<Embeddings, GenerateError>> {
        Box::pin(std::future::ready(self.embed_now(&inputs)))
    }

    /// One id per four characters, derived from a hash of them: an
    /// approximation of a tokenizer, good for counting only.
    fn tokenize(&self, text: &str) -> Result<Vec<i32>, TokenizeError> {
        if self.is_unloaded() {
            return Err(TokenizeError::Unloaded);
        }
        Ok(replay::pieces(text)
            .iter()
            .map(|piece| (fnv1a(piece.as_bytes()) % u64::from(N_VOCAB)) as i32)
            .collect())
    }

    /// The ChatML rendering ([`chat::render_chatml`]), the fallback the
    /// llama.cpp engine uses for models without a template.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        if self.is_unloaded() {
            return Err(GenerateError::Unloaded);
        }
        if messages.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        Ok(chat::render_chatml(messages))
    }

    /// Resolves at once; running replays end with
    /// [`GenerateError::Unloaded`] at their next piece.
    fn unload(&self) -> BoxFuture<()> {
        self.unloaded.store(true, Ordering::Relaxed);
        Box::pin(std::future::ready(()))
    }
}

impl ScriptedModel {
    fn embed_now(&self, inputs: &[String]) -> Result<Embeddings, GenerateError> {
        if self.is_unloaded() {
            return Err(GenerateError::Unloaded);
        }
        if inputs.is_empty() {
            return Err(GenerateError::NoEmbeddingInputs);
        }
        let max = usize::try_from(self.info.context_length).unwrap_or(usize::MAX);
        let mut prompt_tokens = 0usize;
        for (index, input) in inputs.iter().enumerate() {
            let tokens = replay::token_count(input);
            if tokens == 0 {
                return Err(GenerateError::EmptyEmbeddingInput { index });
            }
            if tokens > max {
                return Err(GenerateError::EmbeddingInputTooLong { index, tokens, max });
            }
            prompt_tokens += tokens;
        }
        Ok(Embeddings {
            vectors: inputs.iter().map(|input| unit_vector(input)).collect(),
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        })
    }
}

/// FNV-1a: a hash fixed by its definition, unlike `DefaultHasher`, so ids
/// and vectors are the same in every build and process.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A unit vector seeded by `text`, its components drawn with splitmix64.
fn unit_vector(text: &str) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes());
    let mut vector: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // The top 24 bits as a float in [-1, 1).
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    } else if let Some(first) = vector.first_mut() {
        *first = 1.0;
    }
    vector
}
