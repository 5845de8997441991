//! The selection policy: [`LearnerState`], a plain struct the Learner actor
//! owns and the `troupe bench learner` simulation drives directly, so the
//! benchmark measures the very code that picks models.
//!
//! Model choice is Thompson sampling on success with a cost penalty. Each
//! candidate's success probability in the call's context (task kind ×
//! complexity band) has a Beta posterior: its own successes and failures
//! there, on top of a weak prior from its record in the same kind's other
//! bands (else the other task kinds), and — for the model the configuration
//! would pick — `[learner] prior` extra pseudo-successes, so a fresh install
//! does what it is configured to do. A candidate's score is a draw from its
//! posterior minus `cost_penalty` × its mean cost (scaled so the costliest
//! candidate's is 1). The best posterior mean minus cost is the choice;
//! the draw's winner replaces it only within the exploration budget
//! (`explore` of all calls, after `explore_after` outcomes).
//!
//! Hard constraints come first and are never learned over: the model a
//! person asked for, a retry one step up the ladder after a failure, and
//! a retry with the full budget after a learned one ran out. Candidates are
//! the ladder, the rules' models, `[agents] model`, the role's model and
//! the priced remote models, less the local ones that cannot fit in the
//! memory budget now; a UX reply only considers models already loaded, so
//! it never waits for a load.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troupe_config::{AgentsConfig, LearnerConfig, TaskKind};
use troupe_store::{Context, LoadRecord, OutcomeRecord};

use super::budget::{self, BudgetParams, TokenBudget};
use super::stats::{Band, Stats, StatsRow};
use super::{recommend as config_choice, RecommendRequest, Recommendation, Role};
use crate::runtime::AgentError;

/// Pseudo-runs a model's record in other contexts is worth in a new one.
const BACKOFF_WEIGHT: f64 = 2.0;

/// What the ModelHost holds now, as far as model choice cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostView {
    /// Bytes a load could have now: the unused budget plus what evicting
    /// idle, unpinned models would free.
    pub free_bytes: u64,
    /// Models loaded now.
    pub loaded: Vec<String>,
}

/// The Learner's knowledge and its choices. Rebuilt from the store's
/// outcomes at start ([`LearnerState::rebuild`]) and updated one outcome
/// at a time ([`LearnerState::observe`]).
#[derive(Debug, Clone)]
pub struct LearnerState {
    agents: AgentsConfig,
    config: LearnerConfig,
    stats: Stats,
    rng: StdRng,
    decisions: u64,
    explored: u64,
}

/// Why a candidate was chosen.
enum Why {
    Best,
    Explore,
}

impl LearnerState {
    /// A Learner that has seen nothing.
    pub fn new(agents: AgentsConfig, config: LearnerConfig) -> LearnerState {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        LearnerState {
            agents,
            config,
            stats: Stats::default(),
            rng,
            decisions: 0,
            explored: 0,
        }
    }

    /// A Learner that has seen `outcomes` (in the order recorded).
    pub fn rebuild(
        agents: AgentsConfig,
        config: LearnerConfig,
        loads: &[LoadRecord],
        outcomes: &[OutcomeRecord],
    ) -> LearnerState {
        let mut state = LearnerState::new(agents, config);
        for l in loads {
            state.observe_load(l);
        }
        for o in outcomes {
            state.observe(o);
        }
        state
    }

    /// Learns from one outcome.
    pub fn observe(&mut self, outcome: &OutcomeRecord) {
        self.stats.add(outcome);
    }

    /// Learns a model's reload cost and memory from one load.
    pub fn observe_load(&mut self, load: &LoadRecord) {
        self.stats.add_load(load);
    }

    /// What it has seen.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Its settings.
    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// The `troupe learner stats` table.
    pub fn rows(&self) -> Vec<StatsRow> {
        self.stats.rows(self.config.quantile)
    }

    /// Calls that tried a model other than the best known one, and all calls.
    pub fn explorations(&self) -> (u64, u64) {
        (self.explored, self.decisions)
    }

    /// Fills in what the recorder of `outcome` could not know: local or
    /// remote, the memory its model holds, and its cost.
    pub fn price(&self, outcome: &mut OutcomeRecord) {
        if let Some(p) = self.config.prices.get(&outcome.model) {
            outcome.provider = "remote".to_string();
            if outcome.cost == 0.0 {
                outcome.cost = p.prompt * outcome.prompt_tokens as f64
                    + p.completion * outcome.completion_tokens as f64;
            }
            return;
        }
        outcome.provider = "local".to_string();
        if outcome.memory_bytes == 0 {
            outcome.memory_bytes = self.stats.memory_of(&outcome.model);
        }
        if outcome.cost == 0.0 {
            // A model never seen loaded counts as 1 GiB rather than free.
            let gib = (outcome.memory_bytes as f64 / (1u64 << 30) as f64)
                .max(if outcome.memory_bytes == 0 { 1.0 } else { 0.0 });
            outcome.cost =
                gib * outcome.latency_ms as f64 / 1000.0 * self.config.local_cost_per_gib_s;
        }
    }

    /// Mean load time per model, for the ModelHost's eviction order.
    pub fn reload_costs(&self) -> HashMap<String, Duration> {
        self.stats
            .loads
            .iter()
            .map(|(m, l)| (m.clone(), Duration::from_millis(l.mean_ms())))
            .collect()
    }

    /// The token budget of a call of `kind` with `model` whose request is
    /// `request_tokens` long, at most `max`.
    pub fn budget(&self, kind: Context, model: &str, request_tokens: u64, max: u64) -> TokenBudget {
        let params = BudgetParams {
            quantile: self.config.quantile,
            margin: self.config.margin,
            min_samples: self.config.min_samples,
            max,
        };
        budget::predict(&self.stats.samples(kind, model), request_tokens, params)
    }

    /// A model (and token budget) for `req`.
    ///
    /// # Errors
    /// [`AgentError::NoModel`] when nothing names a model.
    pub fn recommend(
        &mut self,
        req: &RecommendRequest,
        host: &HostView,
    ) -> Result<Recommendation, AgentError> {
        if let Some(model) = &req.raise_budget_of {
            let reason = format!(
                "retry with {model} and the full budget ({}) after it ran out of a learned one",
                req.max_tokens
            );
            return Ok(self.finish(req, model, reason, false));
        }
        let base = config_choice(&self.agents, req, host.free_bytes)?;
        if !self.config.enabled {
            return Ok(Recommendation {
                max_tokens: None,
                ..base
            });
        }
        if req.stronger_than.is_some() || req.task_model.is_some() {
            return Ok(self.finish(req, &base.model, base.reason, true));
        }
        let candidates = self.candidates(req, &base.model, host);
        let band = Band::of(req.complexity);
        let (pick, why) = self.choose(req, &candidates, &base.model);
        let (s, f) = self.stats.counts(&[req.kind], Some(band), &pick);
        let context = match band {
            Band::None => req.kind.to_string(),
            b => format!("{}, complexity {}", req.kind, b.range()),
        };
        let reason = match why {
            Why::Explore if s + f == 0 => format!("{context} → {pick}: exploring, untried here"),
            Why::Explore => {
                format!(
                    "{context} → {pick}: exploring, {s} of {} succeeded so far",
                    s + f
                )
            }
            Why::Best if s + f == 0 && pick == base.model => base.reason,
            Why::Best => format!("{context} → {pick}: {s} of {} succeeded", s + f),
        };
        Ok(self.finish(req, &pick, reason, true))
    }

    /// The recommendation of `model`, with its budget; `learned` budgets
    /// (false: the configured maximum) are added to the reason.
    fn finish(
        &self,
        req: &RecommendRequest,
        model: &str,
        mut reason: String,
        learned: bool,
    ) -> Recommendation {
        let max_tokens = (req.max_tokens > 0).then(|| {
            if !learned {
                return req.max_tokens;
            }
            let b = self.budget(req.kind, model, req.request_tokens, req.max_tokens);
            if b.learned {
                let used = self
                    .stats
                    .samples(req.kind, model)
                    .iter()
                    .map(|s| s.used as f64)
                    .collect();
                if let Some(q) = budget::quantile(used, self.config.quantile) {
                    reason.push_str(&format!(
                        ", p{:.0} {} tokens",
                        self.config.quantile * 100.0,
                        q.round() as u64
                    ));
                }
            }
            b.tokens
        });
        Recommendation {
            model: model.to_string(),
            reason,
            max_tokens,
        }
    }

    /// The models `req` may get: `base` first, then the configured and
    /// priced ones that fit now, each once.
    fn candidates(&self, req: &RecommendRequest, base: &str, host: &HostView) -> Vec<String> {
        let mut all: Vec<&str> = vec![base];
        if req.role == Role::Ux {
            all.extend(host.loaded.iter().map(String::as_str));
        } else {
            all.extend(self.agents.ladder.iter().map(String::as_str));
            all.extend(self.agents.rules.iter().map(|r| r.model.as_str()));
            all.extend(self.agents.model.as_deref());
            all.extend(req.role_model.as_deref());
            all.extend(self.config.prices.keys().map(String::as_str));
        }
        let mut out: Vec<String> = Vec::new();
        for m in all {
            if !out.iter().any(|o| o == m) && (m == base || self.fits(m, host)) {
                out.push(m.to_string());
            }
        }
        out
    }

    /// Whether `model` can run now: remote, loaded, or (as far as its last
    /// load tells) small enough for the memory a load could have.
    fn fits(&self, model: &str, host: &HostView) -> bool {
        if self.config.prices.contains_key(model) || host.loaded.iter().any(|m| m == model) {
            return true;
        }
        let bytes = self.stats.memory_of(model);
        bytes == 0 || bytes <= host.free_bytes
    }

    /// Posterior (α, β) of `model`'s success in the context.
    fn posterior(&self, kind: Context, band: Band, model: &str, base: &str) -> (f64, f64) {
        let (s, f) = self.stats.counts(&[kind], Some(band), model);
        let (ks, kf) = self.stats.counts(&[kind], None, model);
        let (mut ps, mut pf) = (ks - s, kf - f);
        if ps + pf == 0 && matches!(kind, Context::Task(_)) {
            let (ts, tf) = self
                .stats
                .counts(&TaskKind::ALL.map(Context::Task), None, model);
            (ps, pf) = (ts - ks, tf - kf);
        }
        let (mut a, mut b) = (1.0, 1.0);
        if ps + pf > 0 {
            let rate = (ps as f64 + 1.0) / ((ps + pf) as f64 + 2.0);
            a += BACKOFF_WEIGHT * rate;
            b += BACKOFF_WEIGHT * (1.0 - rate);
        }
        if model == base {
            a += self.config.prior;
        }
        (a + s as f64, b + f as f64)
    }

    /// The choice among `candidates` (non-empty, `base` first).
    fn choose(
        &mut self,
        req: &RecommendRequest,
        candidates: &[String],
        base: &str,
    ) -> (String, Why) {
        self.decisions += 1;
        if candidates.len() < 2 {
            return (base.to_string(), Why::Best);
        }
        let band = Band::of(req.complexity);
        let costs: Vec<Option<f64>> = candidates
            .iter()
            .map(|m| self.stats.mean_cost(req.kind, band, m))
            .collect();
        let cmax = costs.iter().flatten().fold(0.0f64, |a, &c| a.max(c));
        let lambda = self.config.cost_penalty;
        let (mut best, mut best_mean) = (0, f64::NEG_INFINITY);
        let (mut drawn, mut best_draw) = (0, f64::NEG_INFINITY);
        for (i, m) in candidates.iter().enumerate() {
            // An unknown cost counts as the costliest known: trying a model
            // is the exploration budget's job, not the cost term's.
            let cost = if cmax > 0.0 {
                costs[i].unwrap_or(cmax) / cmax
            } else {
                0.0
            };
            let (a, b) = self.posterior(req.kind, band, m, base);
            let mean = a / (a + b) - lambda * cost;
            let draw = sample_beta(&mut self.rng, a, b) - lambda * cost;
            if mean > best_mean {
                (best, best_mean) = (i, mean);
            }
            if draw > best_draw {
                (drawn, best_draw) = (i, draw);
            }
        }
        let budget_left = (self.explored + 1) as f64 <= self.config.explore * self.decisions as f64;
        if drawn != best && self.stats.seen >= self.config.explore_after && budget_left {
            self.explored += 1;
            return (candidates[drawn].clone(), Why::Explore);
        }
        (candidates[best].clone(), Why::Best)
    }
}

/// A standard normal draw (Box–Muller).
fn sample_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang).
fn sample_gamma(rng: &mut StdRng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return sample_gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = sample_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, b) draw.
pub(crate) fn sample_beta(rng: &mut StdRng, a: f64, b: f64) -> f64 {
    let x = sample_gamma(rng, a);
    let y = sample_gamma(rng, b);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_draws_have_the_right_mean() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20_000;
        let mean = (0..n).map(|_| sample_beta(&mut rng, 8.0, 2.0)).sum::<f64>() / n as f64;
        assert!((mean - 0.8).abs() < 0.01, "{mean}");
        let mean = (0..n).map(|_| sample_beta(&mut rng, 0.5, 0.5)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
