//! What a scripted model answers: rules read from JSON, matched in order.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::Prompt;

/// The replies of a [`super::ScriptedBackend`], as written in its JSON file.
///
/// ```json
/// { "rules": [ { "contains": ["plan"], "anywhere": true, "reply": "{\"subtasks\": []}" } ],
///   "default": "ok", "token_delay_ms": 0, "memory_bytes": 1048576 }
/// ```
///
/// Unknown keys are refused, so a misspelt field fails loudly instead of
/// silently matching everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Tried in order; the first that matches answers.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The reply when no rule matches; without one such a request fails.
    #[serde(default)]
    pub default: Option<String>,
    /// Pause between streamed pieces, in milliseconds.
    #[serde(default)]
    pub token_delay_ms: u64,
    /// The weights size a loaded model reports (default 1 MiB), so memory
    /// budgets can be exercised.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: u64,
}

fn default_memory_bytes() -> u64 {
    1 << 20
}

impl Default for Script {
    /// No rules, no default reply, no delay, 1 MiB.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: None,
            token_delay_ms: 0,
            memory_bytes: default_memory_bytes(),
        }
    }
}

/// One scripted reply and the prompts it answers.
///
/// A rule matches when its `model` filter (if any) is part of the model
/// file's stem, every `contains` string occurs in the matched text and no
/// `not_contains` string does. The matched text is the last message of a chat
/// prompt (whatever its role), or all messages joined by newlines when
/// `anywhere` is set; a text prompt is matched whole either way; a token
/// prompt matches as empty text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Only for models whose file stem contains this.
    #[serde(default)]
    pub model: Option<String>,
    /// All must occur in the matched text; empty matches anything.
    #[serde(default)]
    pub contains: Vec<String>,
    /// None may occur in the matched text.
    #[serde(default)]
    pub not_contains: Vec<String>,
    /// Match against every message rather than only the last one (for calls
    /// identified by their system prompt).
    #[serde(default)]
    pub anywhere: bool,
    /// The model's output.
    pub reply: String,
    /// Pause before the first piece, in milliseconds (a slow prompt).
    #[serde(default)]
    pub delay_ms: u64,
}

impl Rule {
    /// A rule that answers every prompt with `reply`; narrow it with the
    /// other builder methods.
    pub fn reply(reply: impl Into<String>) -> Self {
        Self {
            model: None,
            contains: Vec::new(),
            not_contains: Vec::new(),
            anywhere: false,
            reply: reply.into(),
            delay_ms: 0,
        }
    }

    /// Also requires `needle` in the matched text.
    pub fn when_contains(mut self, needle: impl Into<String>) -> Self {
        self.contains.push(needle.into());
        self
    }

    /// Also requires `needle` to be absent from the matched text.
    pub fn unless_contains(mut self, needle: impl Into<String>) -> Self {
        self.not_contains.push(needle.into());
        self
    }

    /// Only for models whose file stem contains `stem`.
    pub fn for_model(mut self, stem: impl Into<String>) -> Self {
        self.model = Some(stem.into());
        self
    }

    /// Matches against all messages rather than the last one.
    pub fn anywhere(mut self) -> Self {
        self.anywhere = true;
        self
    }

    /// Waits `ms` milliseconds before the first piece.
    pub fn delayed(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }

    fn matches(&self, model_stem: &str, prompt: &Prompt) -> bool {
        if let Some(model) = &self.model {
            if !model_stem.contains(model.as_str()) {
                return false;
            }
        }
        let text = if self.anywhere {
            whole_text(prompt)
        } else {
            last_message(prompt).to_owned()
        };
        self.contains
            .iter()
            .all(|needle| text.contains(needle.as_str()))
            && !self
                .not_contains
                .iter()
                .any(|needle| text.contains(needle.as_str()))
    }
}

/// Why a script could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read the script {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid script (serde names the unknown or missing
    /// key and its line).
    #[error("invalid script {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: serde_json::Error,
    },
}

/// The answer a script chose for one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice<'a> {
    /// The matching rule's index; `None` for the default reply.
    pub(crate) rule: Option<usize>,
    pub(crate) reply: &'a str,
    pub(crate) delay_ms: u64,
}

impl Script {
    /// Reads a script from a JSON file.
    ///
    /// # Errors
    /// [`ScriptError::Read`] when the file cannot be read,
    /// [`ScriptError::Parse`] when it is not a valid script.
    pub fn from_file(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ScriptError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The first rule matching, else the default reply; `None` when neither.
    /// A pure function of its arguments, so a restarted process replays the
    /// same answers.
    pub(crate) fn choose(&self, model_stem: &str, prompt: &Prompt) -> Option<Choice<'_>> {
        let matched = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(model_stem, prompt));
        match matched {
            Some((index, rule)) => Some(Choice {
                rule: Some(index),
                reply: &rule.reply,
                delay_ms: rule.delay_ms,
            }),
            None => self.default.as_deref().map(|reply| Choice {
                rule: None,
                reply,
                delay_ms: 0,
            }),
        }
    }
}

/// The text a rule without `anywhere` is matched against.
pub(crate) fn last_message(prompt: &Prompt) -> &str {
    match prompt {
        Prompt::Text(text) => text,
        Prompt::Chat(messages) => messages.last().map_or("", |m| m.content.as_str()),
        Prompt::Tokens(_) => "",
    }
}

fn whole_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Text(text) => text.clone(),
        Prompt::Chat(messages) => messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Prompt::Tokens(_) => String::new(),
    }
}
