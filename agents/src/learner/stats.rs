//! What the Learner has seen, aggregated: per task kind × complexity band ×
//! model × thinking mode, the calls, successes, failures, tokens, latency
//! and cost; per model, its loads. Built from outcome records, one at a
//! time, so the same code rebuilds it at start and keeps it current.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use troupe_store::{CallRole, Context, LoadRecord, OutcomeRecord};

/// Successful runs kept per kind × model for token budgets: enough for a
/// stable high quantile, few enough that old behaviour ages out.
const SAMPLES_KEPT: usize = 256;

/// A range of subtask complexity the Learner treats as one context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Calls without a complexity (plans, answers, UX replies).
    None,
    /// Complexity 1–3.
    Low,
    /// Complexity 4–6.
    Mid,
    /// Complexity 7–10.
    High,
}

impl Band {
    /// The band of a complexity (0: none).
    pub fn of(complexity: u8) -> Band {
        match complexity {
            0 => Band::None,
            1..=3 => Band::Low,
            4..=6 => Band::Mid,
            _ => Band::High,
        }
    }

    /// `1–3`, `4–6`, `7–10`, or `-`.
    pub fn range(self) -> &'static str {
        match self {
            Band::None => "-",
            Band::Low => "1–3",
            Band::Mid => "4–6",
            Band::High => "7–10",
        }
    }
}

/// One context and model: what a row of `troupe learner stats` is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArmKey {
    /// The subtask's kind, or the call's role.
    pub kind: Context,
    /// Complexity band.
    pub band: Band,
    /// The model.
    pub model: String,
    /// Thinking mode, for models that have one.
    pub thinking: Option<bool>,
}

/// Totals of one [`ArmKey`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmStats {
    /// Outcomes recorded.
    pub calls: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Failed for a reason other than running out of a learned budget.
    pub failures: u64,
    /// Failed because the budget ran out.
    pub budget_hits: u64,
    /// Tokens used (prompt + completion).
    pub tokens: u64,
    /// Wall time, summed.
    pub latency_ms: u64,
    /// Cost, summed.
    pub cost: f64,
}

impl ArmStats {
    /// Mean cost of one call; `None` before any.
    pub fn mean_cost(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.cost / self.calls as f64)
    }
}

/// A model's loads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStats {
    /// Loads seen.
    pub loads: u64,
    /// Their time, summed.
    pub total_ms: u64,
    /// The latest one's time.
    pub last_ms: u64,
    /// Memory the latest one held.
    pub memory_bytes: u64,
}

impl LoadStats {
    /// Mean load time.
    pub fn mean_ms(&self) -> u64 {
        self.total_ms / self.loads.max(1)
    }
}

/// One successful run, for token budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenSample {
    /// Tokens it used, in the unit its budget is given in.
    pub used: u64,
    /// Estimated tokens of its request (0: unknown).
    pub request: u64,
}

/// Everything aggregated.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Per context and model.
    pub arms: BTreeMap<ArmKey, ArmStats>,
    /// Per model.
    pub loads: BTreeMap<String, LoadStats>,
    /// Successful runs per (kind, model), newest last.
    pub samples: BTreeMap<(Context, String), VecDeque<TokenSample>>,
    /// Call outcomes seen (loads not counted).
    pub seen: u64,
}

/// The tokens of an outcome in the unit its budget is given in: a
/// subtask's budget covers prompt and completion over all its steps, a
/// single call's only the completion.
pub fn budget_tokens(o: &OutcomeRecord) -> u64 {
    if o.role == CallRole::Subtask {
        o.prompt_tokens + o.completion_tokens
    } else {
        o.completion_tokens
    }
}

impl Stats {
    /// Adds one model load.
    pub fn add_load(&mut self, load: &LoadRecord) {
        let l = self.loads.entry(load.model.clone()).or_default();
        l.loads += 1;
        l.total_ms += load.load_ms;
        l.last_ms = load.load_ms;
        if load.memory_bytes > 0 {
            l.memory_bytes = load.memory_bytes;
        }
    }

    /// Adds one outcome.
    pub fn add(&mut self, o: &OutcomeRecord) {
        self.seen += 1;
        let key = ArmKey {
            kind: o.kind,
            band: Band::of(o.complexity),
            model: o.model.clone(),
            thinking: o.thinking,
        };
        let a = self.arms.entry(key).or_default();
        a.calls += 1;
        a.tokens += o.prompt_tokens + o.completion_tokens;
        a.latency_ms += o.latency_ms;
        a.cost += o.cost;
        if o.success {
            a.successes += 1;
            let s = self.samples.entry((o.kind, o.model.clone())).or_default();
            s.push_back(TokenSample {
                used: budget_tokens(o),
                request: o.request_tokens,
            });
            if s.len() > SAMPLES_KEPT {
                s.pop_front();
            }
        } else if o.hit_budget {
            a.budget_hits += 1;
        } else {
            a.failures += 1;
        }
    }

    /// Successes and failures of `model` over `kinds` (every thinking
    /// mode); `band` `None` means every band.
    pub fn counts(&self, kinds: &[Context], band: Option<Band>, model: &str) -> (u64, u64) {
        self.arms
            .iter()
            .filter(|(k, _)| k.model == model && kinds.contains(&k.kind))
            .filter(|(k, _)| band.is_none_or(|b| k.band == b))
            .fold((0, 0), |(s, f), (_, a)| (s + a.successes, f + a.failures))
    }

    /// Mean cost of a call of `model` in the context, else in `kind`, else
    /// in any call of it.
    pub fn mean_cost(&self, kind: Context, band: Band, model: &str) -> Option<f64> {
        let mean = |filter: &dyn Fn(&ArmKey) -> bool| {
            let (c, n) = self
                .arms
                .iter()
                .filter(|(k, _)| k.model == model && filter(k))
                .fold((0.0, 0u64), |(c, n), (_, a)| (c + a.cost, n + a.calls));
            (n > 0).then(|| c / n as f64)
        };
        mean(&|k| k.kind == kind && k.band == band)
            .or_else(|| mean(&|k| k.kind == kind))
            .or_else(|| mean(&|_| true))
    }

    /// The successful runs of `kind` with `model`.
    pub fn samples(&self, kind: Context, model: &str) -> Vec<TokenSample> {
        self.samples
            .get(&(kind, model.to_string()))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Memory `model` held at its latest load (0: never seen loaded).
    pub fn memory_of(&self, model: &str) -> u64 {
        self.loads.get(model).map_or(0, |l| l.memory_bytes)
    }
}

/// One row of `troupe learner stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRow {
    /// The subtask's kind, or the call's role.
    pub kind: Context,
    /// Complexity band (`1–3`, ...; `-` for calls without one).
    pub complexity: String,
    /// The model.
    pub model: String,
    /// Thinking mode, for models that have one.
    pub thinking: Option<bool>,
    /// Outcomes.
    pub calls: u64,
    /// Successes.
    pub successes: u64,
    /// Failures (budget hits not included).
    pub failures: u64,
    /// Runs that used up their budget.
    pub budget_hits: u64,
    /// Mean tokens per call.
    pub mean_tokens: u64,
    /// The budget quantile of successful runs' tokens (`None`: none yet).
    pub quantile_tokens: Option<u64>,
    /// Mean wall time per call.
    pub mean_latency_ms: u64,
    /// Mean cost per call.
    pub mean_cost: f64,
}

/// One model's load times, for `troupe learner stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadRow {
    /// The model.
    pub model: String,
    /// Loads seen.
    pub loads: u64,
    /// Mean load time.
    pub mean_ms: u64,
    /// The latest load's time.
    pub last_ms: u64,
    /// Memory it held.
    pub memory_bytes: u64,
}

impl Stats {
    /// The table, in key order; `quantile` is the budget quantile.
    pub fn rows(&self, quantile: f64) -> Vec<StatsRow> {
        self.arms
            .iter()
            .map(|(k, a)| {
                let used: Vec<f64> = self
                    .samples(k.kind, &k.model)
                    .iter()
                    .map(|s| s.used as f64)
                    .collect();
                StatsRow {
                    kind: k.kind,
                    complexity: k.band.range().to_string(),
                    model: k.model.clone(),
                    thinking: k.thinking,
                    calls: a.calls,
                    successes: a.successes,
                    failures: a.failures,
                    budget_hits: a.budget_hits,
                    mean_tokens: a.tokens / a.calls.max(1),
                    quantile_tokens: super::budget::quantile(used, quantile).map(|q| q as u64),
                    mean_latency_ms: a.latency_ms / a.calls.max(1),
                    mean_cost: a.mean_cost().unwrap_or(0.0),
                }
            })
            .collect()
    }

    /// Load times per model.
    pub fn load_rows(&self) -> Vec<LoadRow> {
        self.loads
            .iter()
            .map(|(m, l)| LoadRow {
                model: m.clone(),
                loads: l.loads,
                mean_ms: l.mean_ms(),
                last_ms: l.last_ms,
                memory_bytes: l.memory_bytes,
            })
            .collect()
    }
}
