//! The `[agents]` and `[supervision]` sections: which model each actor uses,
//! the specialists and how many run at once, the Learner's first rules, and
//! the supervisors' restart policy.
//!
//! ```toml
//! [agents]
//! model = "small-q8_0"          # every role's model unless one is more specific
//! ladder = ["small", "medium"]  # weakest first: a failed subtask retries one up
//! workers = 4                   # subtasks running at once
//! progress_interval_s = 15      # the UX reports progress this often
//! max_replans = 1               # re-plans before a task fails
//! temperature = 0.2             # sampling temperature of the Director and Workers
//! seed = 7                      # none: a random seed per call
//! direct = true                 # one-action jobs skip the planner
//!
//! [agents.ux]
//! model = "small"               # none: the UX answers from templates
//!
//! [agents.director]
//! model = "medium"
//!
//! [[agents.specialists]]
//! kind = "code"                 # general | code | research
//! complexity = [1, 10]          # the subtasks it takes
//! workers = 2
//! max_steps = 24
//!
//! [[agents.rules]]              # first match picks the model
//! kind = "code"
//! complexity = [7, 10]
//! min_free_memory = "8GiB"
//! model = "big"
//!
//! [supervision]
//! max_restarts = 3              # within `within_s`, then escalate
//! within_s = 60
//! backoff_ms = 100              # doubled per restart up to backoff_max_ms
//! backoff_max_ms = 10000
//! ```

use crate::load::{ConfigError, ConfigSource};
use crate::size::parse_size;
use serde::Deserialize;
use std::time::Duration;

/// The Director's and Workers' sampling temperature unless configured.
pub const DEFAULT_TEMPERATURE: f32 = 0.2;

/// The kind of a subtask, and of the specialist that takes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Anything else: files, commands, notes.
    General,
    /// Programs: write, run, test.
    Code,
    /// Finding things out: search, read, summarise.
    Research,
}

impl TaskKind {
    /// Every kind, in the order they are listed to a person or a model.
    pub const ALL: [TaskKind; 3] = [TaskKind::General, TaskKind::Code, TaskKind::Research];

    /// The name used in the configuration, plans and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::General => "general",
            TaskKind::Code => "code",
            TaskKind::Research => "research",
        }
    }

    /// The names of [`TaskKind::ALL`] (a plan schema's `enum`).
    pub fn names() -> [&'static str; 3] {
        TaskKind::ALL.map(TaskKind::as_str)
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`TaskKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not one of general, code, research")]
pub struct UnknownKind(pub String);

impl std::str::FromStr for TaskKind {
    type Err = UnknownKind;

    fn from_str(name: &str) -> Result<TaskKind, UnknownKind> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| UnknownKind(name.to_string()))
    }
}

/// `[agents]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgents {
    /// Every role's model unless a more specific one is set.
    pub model: Option<String>,
    /// Models from weakest to strongest.
    pub ladder: Option<Vec<String>>,
    /// Subtasks running at once.
    pub workers: Option<u32>,
    /// Seconds between progress reports.
    pub progress_interval_s: Option<u64>,
    /// Re-plans before a task fails.
    pub max_replans: Option<u32>,
    /// Sampling temperature of the Director's and the Workers' calls.
    pub temperature: Option<f32>,
    /// Seed their sampling derives from; none draws one per call.
    pub seed: Option<u64>,
    /// A job that is one plain action becomes one subtask without a
    /// planning call.
    pub direct: Option<bool>,
    /// The UX actor.
    #[serde(default)]
    pub ux: RawRole,
    /// The Director.
    #[serde(default)]
    pub director: RawRole,
    /// The specialists.
    pub specialists: Option<Vec<RawSpecialist>>,
    /// Model rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// `[agents.ux]` and `[agents.director]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    /// The role's model.
    pub model: Option<String>,
    /// Most tokens one of its replies may use.
    pub max_tokens: Option<u32>,
}

/// `[[agents.specialists]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpecialist {
    /// `general`, `code` or `research`.
    pub kind: String,
    /// The complexity range it takes, inclusive.
    pub complexity: Option<[u8; 2]>,
    /// Its model.
    pub model: Option<String>,
    /// How many of it run at once.
    pub workers: Option<u32>,
    /// Tool-loop steps per attempt.
    pub max_steps: Option<u32>,
    /// Tokens (prompt + completion, all steps) per attempt.
    pub max_tokens: Option<u64>,
    /// Completion tokens per step.
    pub step_max_tokens: Option<u32>,
    /// Observations longer than this are cut for the model.
    pub observation_max_bytes: Option<usize>,
}

/// `[[agents.rules]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Task kind it applies to; none: every kind.
    pub kind: Option<String>,
    /// Complexity range it applies to, inclusive.
    pub complexity: Option<[u8; 2]>,
    /// Free budget memory it needs.
    pub min_free_memory: Option<String>,
    /// The model it picks.
    pub model: String,
}

/// `[supervision]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSupervision {
    /// Restarts allowed within `within_s` before the failure escalates.
    pub max_restarts: Option<u32>,
    /// The window restarts are counted in.
    pub within_s: Option<u64>,
    /// First restart delay.
    pub backoff_ms: Option<u64>,
    /// Largest restart delay.
    pub backoff_max_ms: Option<u64>,
}

/// `[agents]`, resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AgentsConfig {
    /// Every role's model unless a more specific one is set.
    pub model: Option<String>,
    /// Models from weakest to strongest.
    pub ladder: Vec<String>,
    /// Subtasks running at once.
    pub workers: u32,
    /// How often the UX reports progress while tasks run.
    pub progress_interval: Duration,
    /// Re-plans before a task fails.
    pub max_replans: u32,
    /// Sampling temperature of the Director's and the Workers' model calls
    /// (default 0.2: agents pick actions better near greedy, and a retry
    /// still differs from the attempt before).
    pub temperature: f32,
    /// The seed every Director and Worker call's sampling seed is derived
    /// from (with the task, subtask, attempt and step), so a run can be
    /// repeated; none: a random one per call.
    pub seed: Option<u64>,
    /// A job that is one plain action on the workspace (write, append,
    /// rename, copy, delete a file, make a directory, run a command) becomes
    /// one subtask with only the tools it needs, without a planning call
    /// (see the Director's `direct` module). Default true.
    pub direct: bool,
    /// The UX's model; none: template answers.
    pub ux_model: Option<String>,
    /// Most tokens of one UX reply.
    pub ux_max_tokens: u32,
    /// The Director's model.
    pub director_model: Option<String>,
    /// Most tokens of a plan or a final answer.
    pub director_max_tokens: u32,
    /// The specialists, in the order they are tried.
    pub specialists: Vec<SpecialistConfig>,
    /// Model rules, first match wins.
    pub rules: Vec<ModelRule>,
}

/// One specialist.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpecialistConfig {
    /// The subtasks it takes.
    pub kind: TaskKind,
    /// Lowest complexity it takes.
    pub min_complexity: u8,
    /// Highest complexity it takes.
    pub max_complexity: u8,
    /// Its model.
    pub model: Option<String>,
    /// How many of it run at once.
    pub workers: u32,
    /// Tool-loop steps per attempt.
    pub max_steps: u32,
    /// Tokens (prompt + completion, all steps) per attempt.
    pub max_tokens: u64,
    /// Completion tokens per step.
    pub step_max_tokens: u32,
    /// Observations longer than this are cut for the model.
    pub observation_max_bytes: usize,
    /// Sampling temperature of its steps (`[agents] temperature`).
    pub temperature: f32,
    /// The seed its steps' seeds derive from (`[agents] seed`).
    pub seed: Option<u64>,
}

impl SpecialistConfig {
    /// The default specialist of `kind`: every complexity, 2 workers, 24
    /// steps, 32k tokens per attempt, 512 per step, 4 KB observations.
    pub fn default_for(kind: TaskKind) -> SpecialistConfig {
        SpecialistConfig {
            kind,
            min_complexity: 1,
            max_complexity: 10,
            model: None,
            workers: 2,
            max_steps: 24,
            max_tokens: 32_768,
            step_max_tokens: 512,
            observation_max_bytes: 4000,
            temperature: DEFAULT_TEMPERATURE,
            seed: None,
        }
    }

    /// Whether it takes a subtask of this kind and complexity.
    pub fn covers(&self, kind: TaskKind, complexity: u8) -> bool {
        self.kind == kind && (self.min_complexity..=self.max_complexity).contains(&complexity)
    }
}

/// One model rule.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelRule {
    /// Task kind; none: every kind.
    pub kind: Option<TaskKind>,
    /// Lowest complexity.
    pub min_complexity: u8,
    /// Highest complexity.
    pub max_complexity: u8,
    /// Free budget memory it needs, in bytes.
    pub min_free_memory: u64,
    /// The model it picks.
    pub model: String,
}

impl ModelRule {
    /// Whether the rule applies.
    /// Whether it applies to a call of `kind` (none: a call that is not a
    /// subtask's, which only a rule for every kind applies to).
    pub fn matches(&self, kind: Option<TaskKind>, complexity: u8, free_memory: u64) -> bool {
        self.kind.is_none_or(|k| Some(k) == kind)
            && (self.min_complexity..=self.max_complexity).contains(&complexity)
            && free_memory >= self.min_free_memory
    }
}

/// `[supervision]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SupervisionConfig {
    /// Restarts allowed within `within` before the failure escalates.
    pub max_restarts: u32,
    /// The window restarts are counted in.
    pub within: Duration,
    /// First restart delay.
    pub backoff: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> SupervisionConfig {
        SupervisionConfig {
            max_restarts: 3,
            within: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

fn range(source: &ConfigSource, key: &str, raw: Option<[u8; 2]>) -> Result<(u8, u8), ConfigError> {
    let [lo, hi] = raw.unwrap_or([1, 10]);
    if lo == 0 || hi > 10 || lo > hi {
        return Err(source.invalid(
            key,
            &format!("[{lo}, {hi}] is not a range within 1..=10 (low first)"),
        ));
    }
    Ok((lo, hi))
}

fn kind(source: &ConfigSource, key: &str, kind: &str) -> Result<TaskKind, ConfigError> {
    kind.parse()
        .map_err(|e: UnknownKind| source.invalid(key, &e.to_string()))
}

fn model_name(
    source: &ConfigSource,
    key: &str,
    m: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match m {
        Some(m) if m.trim().is_empty() => Err(source.invalid(key, "must not be empty")),
        other => Ok(other),
    }
}

pub(crate) fn resolve_agents(
    raw: RawAgents,
    source: &ConfigSource,
) -> Result<AgentsConfig, ConfigError> {
    let workers = raw.workers.unwrap_or(4);
    if workers == 0 || workers > 256 {
        return Err(source.invalid("agents.workers", &format!("{workers} is outside 1..=256")));
    }
    let interval = raw.progress_interval_s.unwrap_or(15);
    if interval == 0 {
        return Err(source.invalid("agents.progress_interval_s", "must be at least 1"));
    }
    let temperature = raw.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(source.invalid(
            "agents.temperature",
            &format!("{temperature} is outside 0..=2"),
        ));
    }
    let mut specialists = Vec::new();
    match raw.specialists {
        None => {
            for k in TaskKind::ALL {
                specialists.push(SpecialistConfig::default_for(k));
            }
        }
        Some(list) => {
            for (i, s) in list.into_iter().enumerate() {
                let key = |f: &str| format!("agents.specialists[{i}].{f}");
                let k = kind(source, &key("kind"), &s.kind)?;
                let (lo, hi) = range(source, &key("complexity"), s.complexity)?;
                let d = SpecialistConfig::default_for(k);
                let spec = SpecialistConfig {
                    min_complexity: lo,
                    max_complexity: hi,
                    model: model_name(source, &key("model"), s.model)?,
                    workers: s.workers.unwrap_or(d.workers),
                    max_steps: s.max_steps.unwrap_or(d.max_steps),
                    max_tokens: s.max_tokens.unwrap_or(d.max_tokens),
                    step_max_tokens: s.step_max_tokens.unwrap_or(d.step_max_tokens),
                    observation_max_bytes: s
                        .observation_max_bytes
                        .unwrap_or(d.observation_max_bytes),
                    ..d
                };
                for (field, value) in [
                    ("workers", u64::from(spec.workers)),
                    ("max_steps", u64::from(spec.max_steps)),
                    ("max_tokens", spec.max_tokens),
                    ("step_max_tokens", u64::from(spec.step_max_tokens)),
                    ("observation_max_bytes", spec.observation_max_bytes as u64),
                ] {
                    if value == 0 {
                        return Err(source.invalid(&key(field), "must be at least 1"));
                    }
                }
                specialists.push(spec);
            }
        }
    }
    for spec in &mut specialists {
        spec.temperature = temperature;
        spec.seed = raw.seed;
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = |f: &str| format!("agents.rules[{i}].{f}");
        let rule_kind = match &r.kind {
            Some(k) => Some(kind(source, &key("kind"), k)?),
            None => None,
        };
        let (lo, hi) = range(source, &key("complexity"), r.complexity)?;
        let min_free_memory = match &r.min_free_memory {
            Some(text) => parse_size(text)
                .map_err(|e| source.invalid(&key("min_free_memory"), &e.to_string()))?,
            None => 0,
        };
        let model = model_name(source, &key("model"), Some(r.model))?.unwrap_or_default();
        rules.push(ModelRule {
            kind: rule_kind,
            min_complexity: lo,
            max_complexity: hi,
            min_free_memory,
            model,
        });
    }
    Ok(AgentsConfig {
        model: model_name(source, "agents.model", raw.model)?,
        ladder: raw.ladder.unwrap_or_default(),
        workers,
        progress_interval: Duration::from_secs(interval),
        max_replans: raw.max_replans.unwrap_or(1),
        temperature,
        seed: raw.seed,
        direct: raw.direct.unwrap_or(true),
        ux_model: model_name(source, "agents.ux.model", raw.ux.model)?,
        ux_max_tokens: raw.ux.max_tokens.unwrap_or(256),
        director_model: model_name(source, "agents.director.model", raw.director.model)?,
        director_max_tokens: raw.director.max_tokens.unwrap_or(1024),
        specialists,
        rules,
    })
}

pub(crate) fn resolve_supervision(
    raw: RawSupervision,
    source: &ConfigSource,
) -> Result<SupervisionConfig, ConfigError> {
    let d = SupervisionConfig::default();
    let within_s = raw.within_s.unwrap_or(d.within.as_secs());
    if within_s == 0 {
        return Err(source.invalid("supervision.within_s", "must be at least 1"));
    }
    let backoff = raw.backoff_ms.map_or(d.backoff, Duration::from_millis);
    let backoff_max = raw
        .backoff_max_ms
        .map_or(d.backoff_max, Duration::from_millis);
    if backoff > backoff_max {
        return Err(source.invalid(
            "supervision.backoff_ms",
            &format!(
                "{} ms is more than backoff_max_ms ({} ms)",
                backoff.as_millis(),
                backoff_max.as_millis()
            ),
        ));
    }
    Ok(SupervisionConfig {
        max_restarts: raw.max_restarts.unwrap_or(d.max_restarts),
        within: Duration::from_secs(within_s),
        backoff,
        backoff_max,
    })
}
