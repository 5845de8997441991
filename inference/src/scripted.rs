//! A deterministic backend that replays scripted model outputs, for
//! orchestration tests and demos.
//!
//! A [`ScriptedBackend`] "loads" any existing file (it never reads it) and
//! answers each request with the reply of the first [`Rule`] of its
//! [`Script`] that matches the model file's stem and the prompt, else the
//! script's default reply. The choice is a pure function of (model, prompt),
//! so a restarted process replays the same answers.
//!
//! Requests are checked as the llama.cpp engine checks them (empty prompt,
//! lengths against the context, stop strings, sampling options, JSON Schema),
//! and a reply the request's constraint could never have produced is an
//! error: [`Constraint::Json`](crate::backend::Constraint::Json) needs JSON,
//! [`Constraint::JsonSchema`](crate::backend::Constraint::JsonSchema) a value
//! the schema accepts (checked against the whole scripted reply, before stop
//! strings cut it); a GBNF grammar is not checked.
//!
//! Streaming: the reply (cut before the earliest stop string, then to
//! `max_tokens`) comes in pieces of four characters, each counted as one
//! token, with the script's `token_delay_ms` between pieces and the rule's
//! `delay_ms` before the first. Cancelling or unloading stops it between
//! pieces. Prompt tokens are the characters of the rendered prompt (ChatML
//! for chats) divided by four, rounded up.
//!
//! ```json
//! {
//!   "rules": [
//!     { "contains": ["You plan tasks"], "anywhere": true,
//!       "reply": "{\"subtasks\": [{\"kind\": \"code\", \"complexity\": 3}]}" },
//!     { "model": "coder", "contains": ["write"], "not_contains": ["test"],
//!       "reply": "{\"final\": \"done\"}", "delay_ms": 50 }
//!   ],
//!   "default": "I have nothing scripted for that.",
//!   "token_delay_ms": 5,
//!   "memory_bytes": 1048576
//! }
//! ```

mod model;
mod replay;
mod script;

use std::path::Path;
use std::sync::{Arc, Mutex};

pub use script::{Rule, Script, ScriptError};

use crate::backend::{Backend, BoxFuture, LoadError, LoadOptions, LoadedModel};
use model::ScriptedModel;
use troupe_models::gguf::GgufError;

/// A [`Backend`] whose models answer from a [`Script`].
///
/// Clones share the script and the record of calls.
#[derive(Debug, Clone)]
pub struct ScriptedBackend {
    script: Arc<Script>,
    calls: Arc<Mutex<Vec<ScriptedCall>>>,
}

/// One `generate` call a scripted model answered (or failed to answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedCall {
    /// The stem of the model file the call went to.
    pub model_stem: String,
    /// The last message of a chat prompt, the whole text of a text prompt,
    /// empty for a token prompt.
    pub last_message: String,
    /// The index of the rule that answered; `None` for the default reply or
    /// when nothing matched.
    pub rule: Option<usize>,
}

impl ScriptedBackend {
    /// A backend answering from `script`.
    pub fn new(script: Script) -> Self {
        Self {
            script: Arc::new(script),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A backend answering from the JSON script at `path`.
    ///
    /// # Errors
    /// [`ScriptError`] when the file cannot be read or is not a valid script
    /// (unknown keys included).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        Script::from_file(path.as_ref()).map(Self::new)
    }

    /// The script the models answer from.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Every `generate` call that got as far as choosing a reply (requests
    /// refused before, such as an empty prompt, are not recorded), oldest
    /// first, across all models this backend loaded.
    pub fn calls(&self) -> Vec<ScriptedCall> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Backend for ScriptedBackend {
    /// Checks the options and that `path` is an existing file, then resolves
    /// at once.
    fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> BoxFuture<Result<Arc<dyn LoadedModel>, LoadError>> {
        let loaded = self.load_now(path, &opts);
        Box::pin(std::future::ready(loaded))
    }
}

impl ScriptedBackend {
    fn load_now(&self, path: &Path, opts: &LoadOptions) -> Result<Arc<dyn LoadedModel>, LoadError> {
        opts.validate()?;
        let unreadable = |source: std::io::Error| LoadError::InvalidGguf {
            path: path.to_owned(),
            source: GgufError::Io {
                path: path.to_owned(),
                source,
            },
        };
        let metadata = std::fs::metadata(path).map_err(unreadable)?;
        if !metadata.is_file() {
            return Err(unreadable(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        Ok(Arc::new(ScriptedModel::new(
            path,
            opts,
            Arc::clone(&self.script),
            Arc::clone(&self.calls),
        )))
    }
}
