//! A seeded simulated workload for `troupe bench learner`: task kinds with
//! known per-model success probabilities, token needs and costs, run
//! through the real [`LearnerState`] (the same code the actor uses) and
//! compared with an oracle that knows the probabilities, with always using
//! the strongest model, and with a fixed token maximum.
//!
//! Each simulated subtask goes the way the Director runs one: the Learner
//! picks a model and a budget; the run succeeds when the model can do the
//! task and its budget covers the tokens it needs; a run that could succeed
//! but used up its budget is retried with the same model and the maximum;
//! any other failure is retried one step up the ladder. The oracle and the
//! strongest model get the same retries, the same random draws (common
//! random numbers, so differences are the policies', not luck's) and never
//! run out of tokens.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use troupe_config::{AgentsConfig, Config, LearnerConfig, RemotePrice, TaskKind};
use troupe_store::{LoadRecord, OutcomeRecord};

use super::{HostView, LearnerState, RecommendRequest, Role};

const GIB: f64 = (1u64 << 30) as f64;

/// A model of the simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimModel {
    /// Its name.
    pub name: String,
    /// Memory it holds when loaded (0 for a remote model).
    pub memory_gib: f64,
    /// Tokens it processes per second.
    pub tokens_per_s: f64,
    /// Price per token for a remote model; `None`: local.
    pub price_per_token: Option<f64>,
    /// How long it takes to load.
    pub load_ms: u64,
}

/// A kind of task of the simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimTaskKind {
    /// Its kind.
    pub kind: TaskKind,
    /// 1 to 10.
    pub complexity: u8,
    /// Its share of the tasks (relative).
    pub weight: f64,
    /// Per model (in [`Workload::models`] order): the chance it succeeds.
    pub success: Vec<f64>,
    /// Median tokens the strongest-but-one model needs at the median
    /// request length; other models scale it by [`Workload::token_factor`].
    pub tokens: f64,
}

/// The whole simulated world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    /// The models, weakest first (the ladder).
    pub models: Vec<SimModel>,
    /// Per model: how many more tokens than the median it needs.
    pub token_factor: Vec<f64>,
    /// The task kinds.
    pub kinds: Vec<SimTaskKind>,
    /// The configured model (`[agents] model`) the Learner starts from.
    pub configured: String,
    /// The fixed per-call token maximum (a specialist's `max_tokens`).
    pub fixed_max: u64,
    /// Spread (log-normal sigma) of a task's token need.
    pub token_sigma: f64,
    /// Median request length in tokens.
    pub request_median: f64,
    /// Spread (log-normal sigma) of request lengths.
    pub request_sigma: f64,
    /// Token need grows with (request ÷ median) to this power.
    pub length_exponent: f64,
    /// Cost of a GiB held for a second by a local model.
    pub local_cost_per_gib_s: f64,
}

impl Workload {
    /// Four models (three local, one remote) and seven task kinds from easy
    /// chores to hard code, where cheap models do the easy ones nearly as
    /// well as the strong ones and only the strong ones do the hard ones.
    pub fn standard() -> Workload {
        let model = |name: &str, memory_gib, tokens_per_s, price, load_ms| SimModel {
            name: name.to_string(),
            memory_gib,
            tokens_per_s,
            price_per_token: price,
            load_ms,
        };
        let kind = |kind: TaskKind, complexity, weight, success: [f64; 4], tokens| SimTaskKind {
            kind,
            complexity,
            weight,
            success: success.to_vec(),
            tokens,
        };
        Workload {
            models: vec![
                model("tiny", 1.0, 120.0, None, 800),
                model("small", 2.5, 60.0, None, 1800),
                model("medium", 6.0, 25.0, None, 4000),
                model("large", 0.0, 40.0, Some(1.2e-5), 0),
            ],
            token_factor: vec![1.3, 1.15, 1.0, 0.9],
            kinds: vec![
                kind(TaskKind::General, 2, 0.25, [0.90, 0.96, 0.97, 0.98], 500.0),
                kind(TaskKind::General, 5, 0.15, [0.65, 0.90, 0.95, 0.97], 900.0),
                kind(TaskKind::Code, 2, 0.12, [0.75, 0.93, 0.96, 0.97], 800.0),
                kind(TaskKind::Code, 5, 0.15, [0.35, 0.72, 0.92, 0.95], 1500.0),
                kind(TaskKind::Code, 8, 0.10, [0.05, 0.30, 0.78, 0.93], 2600.0),
                kind(
                    TaskKind::Research,
                    5,
                    0.13,
                    [0.50, 0.85, 0.93, 0.96],
                    1300.0,
                ),
                kind(
                    TaskKind::Research,
                    8,
                    0.10,
                    [0.15, 0.50, 0.82, 0.94],
                    2200.0,
                ),
            ],
            configured: "small".to_string(),
            fixed_max: 8192,
            token_sigma: 0.45,
            request_median: 150.0,
            request_sigma: 0.6,
            length_exponent: 0.4,
            local_cost_per_gib_s: 2e-5,
        }
    }

    /// The `[agents]` configuration of the simulated install: the ladder
    /// and the configured model, no rules.
    pub fn agents(&self) -> AgentsConfig {
        let mut agents = Config::defaults().agents;
        agents.ladder = self.models.iter().map(|m| m.name.clone()).collect();
        agents.model = Some(self.configured.clone());
        agents
    }

    /// `base` with this workload's remote prices and local cost, and `seed`.
    pub fn learner_config(&self, base: &LearnerConfig, seed: u64) -> LearnerConfig {
        let mut config = base.clone();
        config.seed = Some(seed);
        config.local_cost_per_gib_s = self.local_cost_per_gib_s;
        for m in &self.models {
            if let Some(p) = m.price_per_token {
                config.prices.insert(
                    m.name.clone(),
                    RemotePrice {
                        prompt: p,
                        completion: p,
                    },
                );
            }
        }
        config
    }

    /// What `tokens` of `model` cost (as the Learner prices an outcome).
    pub fn cost(&self, model: usize, tokens: f64) -> f64 {
        let m = &self.models[model];
        match m.price_per_token {
            Some(p) => p * tokens,
            None => m.memory_gib * tokens / m.tokens_per_s * self.local_cost_per_gib_s,
        }
    }

    fn expected_need(&self, kind: usize, model: usize, request: f64) -> f64 {
        self.kinds[kind].tokens
            * self.token_factor[model]
            * (request / self.request_median).powf(self.length_exponent)
            * (self.token_sigma * self.token_sigma / 2.0).exp()
    }

    /// The oracle's objective for `model` on a task: success probability
    /// minus `penalty` × expected cost (scaled so the costliest model's is
    /// 1), the same trade the Learner makes.
    fn utility(&self, kind: usize, request: f64, penalty: f64) -> Vec<f64> {
        let costs: Vec<f64> = (0..self.models.len())
            .map(|m| self.cost(m, self.expected_need(kind, m, request)))
            .collect();
        let cmax = costs
            .iter()
            .fold(0.0f64, |a, &c| a.max(c))
            .max(f64::MIN_POSITIVE);
        (0..self.models.len())
            .map(|m| self.kinds[kind].success[m] - penalty * costs[m] / cmax)
            .collect()
    }
}

/// The figures after some number of tasks (cumulative from the first).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Checkpoint {
    /// Tasks so far.
    pub tasks: usize,
    /// Share of tasks the Learner's runs finished successfully.
    pub success_rate: f64,
    /// The oracle's.
    pub oracle_success_rate: f64,
    /// Always using the strongest model's.
    pub strongest_success_rate: f64,
    /// The Learner's total cost.
    pub cost: f64,
    /// The oracle's.
    pub oracle_cost: f64,
    /// Always the strongest model's.
    pub strongest_cost: f64,
    /// Sum over tasks of the oracle's objective minus the Learner's first
    /// choice's (expected values, so luck does not count).
    pub regret: f64,
    /// Tokens the Learner's budgets allocated.
    pub tokens_allocated: u64,
    /// Tokens the fixed maximum would have allocated to the same calls.
    pub fixed_max_tokens: u64,
    /// Share of runs that could succeed whose first budget covered them.
    pub budget_coverage: f64,
    /// Calls that explored.
    pub explored: u64,
}

impl Checkpoint {
    /// The Learner's success rate ÷ the oracle's.
    pub fn success_vs_oracle(&self) -> f64 {
        self.success_rate / self.oracle_success_rate.max(f64::MIN_POSITIVE)
    }

    /// The Learner's cost ÷ always the strongest's.
    pub fn cost_vs_strongest(&self) -> f64 {
        self.cost / self.strongest_cost.max(f64::MIN_POSITIVE)
    }

    /// Tokens allocated ÷ the fixed maximum's.
    pub fn tokens_vs_fixed(&self) -> f64 {
        self.tokens_allocated as f64 / self.fixed_max_tokens.max(1) as f64
    }

    /// The targets: ≥ 95% of the oracle's success, ≤ 40% of the
    /// strongest's cost, budgets covering ≥ 90% of successful runs with
    /// ≥ 50% fewer tokens than the fixed maximum.
    pub fn meets_targets(&self) -> bool {
        self.success_vs_oracle() >= 0.95
            && self.cost_vs_strongest() <= 0.40
            && self.budget_coverage >= 0.90
            && self.tokens_vs_fixed() <= 0.50
    }
}

/// A simulation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The figures at each requested checkpoint.
    pub checkpoints: Vec<Checkpoint>,
    /// The figures every few tasks, for plots.
    pub curve: Vec<Checkpoint>,
}

/// One attempt's result.
struct Attempt {
    success: bool,
    hit_budget: bool,
    used: f64,
}

/// Tallies while running.
#[derive(Default)]
struct Tally {
    now: Checkpoint,
    successes: u64,
    oracle_successes: u64,
    strongest_successes: u64,
    could_succeed: u64,
    covered: u64,
}

impl Tally {
    fn snapshot(&self, tasks: usize, explored: u64) -> Checkpoint {
        let n = tasks.max(1) as f64;
        Checkpoint {
            tasks,
            success_rate: self.successes as f64 / n,
            oracle_success_rate: self.oracle_successes as f64 / n,
            strongest_success_rate: self.strongest_successes as f64 / n,
            budget_coverage: self.covered as f64 / self.could_succeed.max(1) as f64,
            explored,
            ..self.now.clone()
        }
    }
}

/// The host reports each local model's load, as the ModelHost does.
fn observe_loads(learner: &mut LearnerState, w: &Workload) {
    for m in w.models.iter().filter(|m| m.price_per_token.is_none()) {
        learner.observe_load(&LoadRecord {
            model: m.name.clone(),
            load_ms: m.load_ms,
            memory_bytes: (m.memory_gib * GIB) as u64,
            ..Default::default()
        });
    }
}

/// The kind whose share of the total weight `pick` falls in.
fn pick_kind(w: &Workload, mut pick: f64) -> usize {
    w.kinds
        .iter()
        .position(|kind| {
            pick -= kind.weight;
            pick < 0.0
        })
        .unwrap_or(w.kinds.len() - 1)
}

/// Runs `tasks` simulated subtasks with the Learner configured by `config`
/// (its seed also seeds the workload), reporting at each of `checkpoints`
/// and every `every` tasks.
pub fn simulate(
    w: &Workload,
    config: &LearnerConfig,
    seed: u64,
    tasks: usize,
    checkpoints: &[usize],
    every: usize,
) -> SimReport {
    let config = w.learner_config(config, seed);
    let penalty = config.cost_penalty;
    let mut learner = LearnerState::new(w.agents(), config);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1ea2);
    observe_loads(&mut learner, w);
    let host = HostView {
        free_bytes: 64 << 30,
        loaded: Vec::new(),
    };
    let total_weight: f64 = w.kinds.iter().map(|k| k.weight).sum();
    let strongest = w.models.len() - 1;
    let index = |name: &str| w.models.iter().position(|m| m.name == name).unwrap_or(0);
    let mut tally = Tally::default();
    let mut report = SimReport {
        seed,
        checkpoints: Vec::new(),
        curve: Vec::new(),
    };
    for t in 1..=tasks {
        let k = pick_kind(w, rng.random::<f64>() * total_weight);
        let kind = &w.kinds[k];
        let request = w.request_median * (w.request_sigma * normal(&mut rng)).exp();
        let noise = (w.token_sigma * normal(&mut rng)).exp();
        let (u1, u2): (f64, f64) = (rng.random(), rng.random());
        let need = |m: usize| {
            kind.tokens
                * w.token_factor[m]
                * (request / w.request_median).powf(w.length_exponent)
                * noise
        };
        let run = |m: usize, budget: f64, u: f64| {
            let can = u < kind.success[m];
            let need = need(m);
            Attempt {
                success: can && need <= budget,
                hit_budget: can && need > budget,
                used: need.min(budget),
            }
        };
        let fixed = w.fixed_max as f64;

        // The Learner, as the Director uses it.
        let mut req = RecommendRequest::new(Role::Subtask, kind.kind, kind.complexity);
        req.max_tokens = w.fixed_max;
        req.request_tokens = request.round() as u64;
        let first = match learner.recommend(&req, &host) {
            Ok(r) => r,
            Err(_) => break,
        };
        let m1 = index(&first.model);
        let budget = first.max_tokens.unwrap_or(w.fixed_max) as f64;
        let a1 = run(m1, budget, u1);
        if u1 < kind.success[m1] {
            tally.could_succeed += 1;
            tally.covered += u64::from(need(m1) <= budget);
        }
        tally.now.tokens_allocated += budget as u64;
        tally.now.fixed_max_tokens += w.fixed_max;
        tally.now.cost += record(
            &mut learner,
            kind,
            request,
            &first.model,
            budget,
            &a1,
            w,
            m1,
        );
        let mut success = a1.success;
        if !a1.success {
            let mut retry = req.clone();
            if a1.hit_budget {
                retry.raise_budget_of = Some(first.model.clone());
            } else {
                retry.stronger_than = Some(first.model.clone());
            }
            if let Ok(second) = learner.recommend(&retry, &host) {
                let m2 = index(&second.model);
                let budget = second.max_tokens.unwrap_or(w.fixed_max) as f64;
                let u = if a1.hit_budget { u1 } else { u2 };
                let a2 = run(m2, budget, u);
                tally.now.tokens_allocated += budget as u64;
                tally.now.fixed_max_tokens += w.fixed_max;
                tally.now.cost += record(
                    &mut learner,
                    kind,
                    request,
                    &second.model,
                    budget,
                    &a2,
                    w,
                    m2,
                );
                success = a2.success;
            }
        }
        tally.successes += u64::from(success);

        // The oracle: the best expected trade, the fixed maximum, one
        // retry up the ladder.
        let utility = w.utility(k, request, penalty);
        let best = (0..w.models.len())
            .max_by(|&a, &b| utility[a].total_cmp(&utility[b]))
            .unwrap_or(strongest);
        tally.now.regret += utility[best] - utility[m1];
        let (ok, cost) = with_retry(w, best, fixed, u1, u2, &run);
        tally.oracle_successes += u64::from(ok);
        tally.now.oracle_cost += cost;
        let (ok, cost) = with_retry(w, strongest, fixed, u1, u2, &run);
        tally.strongest_successes += u64::from(ok);
        tally.now.strongest_cost += cost;

        let explored = learner.explorations().0;
        if checkpoints.contains(&t) {
            report.checkpoints.push(tally.snapshot(t, explored));
        }
        if every > 0 && t % every == 0 {
            report.curve.push(tally.snapshot(t, explored));
        }
    }
    report
}

/// A run of `m` and, if it fails, one step up the ladder (or `m` again at
/// the top): whether it succeeded and what it cost.
fn with_retry(
    w: &Workload,
    m: usize,
    budget: f64,
    u1: f64,
    u2: f64,
    run: &dyn Fn(usize, f64, f64) -> Attempt,
) -> (bool, f64) {
    let a = run(m, budget, u1);
    let mut cost = w.cost(m, a.used);
    if a.success {
        return (true, cost);
    }
    let up = (m + 1).min(w.models.len() - 1);
    let b = run(up, budget, u2);
    cost += w.cost(up, b.used);
    (b.success, cost)
}

/// Records one simulated run with the Learner, which prices it; returns
/// the cost.
#[allow(clippy::too_many_arguments)]
fn record(
    learner: &mut LearnerState,
    kind: &SimTaskKind,
    request: f64,
    model: &str,
    budget: f64,
    a: &Attempt,
    w: &Workload,
    m: usize,
) -> f64 {
    let mut outcome = OutcomeRecord {
        role: Role::Subtask,
        model: model.to_string(),
        kind: kind.kind.into(),
        complexity: kind.complexity,
        prompt_tokens: a.used.round() as u64,
        latency_ms: (a.used / w.models[m].tokens_per_s * 1000.0).round() as u64,
        success: a.success,
        max_tokens: Some(budget as u64),
        hit_budget: a.hit_budget,
        request_tokens: request.round() as u64,
        ..Default::default()
    };
    learner.price(&mut outcome);
    learner.observe(&outcome);
    outcome.cost
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learner_prices_a_run_as_the_workload_does() {
        let w = Workload::standard();
        let config = w.learner_config(&LearnerConfig::default(), 1);
        let mut learner = LearnerState::new(w.agents(), config);
        let medium = &w.models[2];
        learner.observe_load(&LoadRecord {
            model: medium.name.clone(),
            memory_bytes: (medium.memory_gib * GIB) as u64,
            ..Default::default()
        });
        for (m, tokens) in [(2usize, 1000.0), (3, 1000.0)] {
            let mut o = OutcomeRecord {
                role: Role::Subtask,
                model: w.models[m].name.clone(),
                prompt_tokens: tokens as u64,
                latency_ms: (tokens / w.models[m].tokens_per_s * 1000.0) as u64,
                ..Default::default()
            };
            learner.price(&mut o);
            let expected = w.cost(m, tokens);
            assert!(
                (o.cost - expected).abs() < expected * 1e-3,
                "{o:?} {expected}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let w = Workload::standard();
        let c = LearnerConfig::default();
        let a = simulate(&w, &c, 9, 120, &[50, 100], 10);
        let b = simulate(&w, &c, 9, 120, &[50, 100], 10);
        assert_eq!(a, b);
        assert_eq!(a.checkpoints.len(), 2);
        assert_eq!(a.curve.len(), 12);
        let other = simulate(&w, &c, 10, 120, &[50, 100], 10);
        assert_ne!(a, other);
    }
}
