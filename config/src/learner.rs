//! The `[learner]` section: how the Learner picks models and token budgets
//! from the outcomes it has seen.
//!
//! ```toml
//! [learner]
//! enabled = true           # false: the [agents] rules alone pick models
//! explore = 0.1            # share of calls that may try a model other than the best known
//! explore_after = 20       # outcomes recorded before the first exploration
//! cost_penalty = 0.3       # success probability traded for the costliest candidate's cost
//! prior = 4                # pseudo-successes favouring the configured model before any data
//! quantile = 0.9           # token budget: this quantile of successful runs' tokens ...
//! margin = 1.2             # ... times this, scaled to the request's length
//! min_samples = 5          # fewer successful runs: the configured max_tokens
//! local_cost_per_gib_s = 0.00002  # cost of a local call: memory held × seconds × this
//! seed = 7                 # the sampler's seed (absent: a fresh one per start)
//!
//! [learner.prices."gpt-4o-mini"]  # a remote model: price per token
//! prompt = 0.00000015
//! completion = 0.0000006
//! ```

use std::collections::BTreeMap;

use crate::load::{ConfigError, ConfigSource};
use serde::Deserialize;

/// `[learner]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLearner {
    /// Whether the learned policy picks models.
    pub enabled: Option<bool>,
    /// Share of calls that may explore.
    pub explore: Option<f64>,
    /// Outcomes recorded before the first exploration.
    pub explore_after: Option<u64>,
    /// Weight of the cost against the success probability.
    pub cost_penalty: Option<f64>,
    /// Pseudo-successes for the configured model.
    pub prior: Option<f64>,
    /// Token budget quantile.
    pub quantile: Option<f64>,
    /// Token budget margin.
    pub margin: Option<f64>,
    /// Successful runs needed before a budget is learned.
    pub min_samples: Option<u32>,
    /// Cost of one GiB held for one second by a local model.
    pub local_cost_per_gib_s: Option<f64>,
    /// The sampler's seed.
    pub seed: Option<u64>,
    /// Remote models' prices.
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
}

/// `[learner.prices.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Price of one prompt token.
    pub prompt: f64,
    /// Price of one completion token.
    pub completion: f64,
}

/// What one token of a remote model costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemotePrice {
    /// Price of one prompt token.
    pub prompt: f64,
    /// Price of one completion token.
    pub completion: f64,
}

/// `[learner]`, resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LearnerConfig {
    /// Whether the learned policy picks models; when false the `[agents]`
    /// rules do, as before the Learner learned.
    pub enabled: bool,
    /// Share of calls (0 to 1) that may try a model other than the one the
    /// outcomes so far favour.
    pub explore: f64,
    /// Outcomes recorded before the first exploration, so a fresh install
    /// behaves as configured.
    pub explore_after: u64,
    /// How much success probability the costliest candidate's cost is worth
    /// (costs are scaled so the costliest candidate's is 1).
    pub cost_penalty: f64,
    /// Pseudo-successes given to the configured model's choice before any
    /// outcome is known.
    pub prior: f64,
    /// The quantile (0.5 to 1) of successful runs' tokens a budget covers.
    pub quantile: f64,
    /// The budget is the quantile times this (at least 1).
    pub margin: f64,
    /// Successful runs of a kind and model needed before their budget is
    /// learned; below it calls get the configured maximum.
    pub min_samples: u32,
    /// Cost of one GiB of memory held for one second by a local model, in
    /// the unit remote prices are written in.
    pub local_cost_per_gib_s: f64,
    /// The sampler's seed; `None`: a fresh one each start.
    pub seed: Option<u64>,
    /// Remote models (reachable whatever the memory budget) and their prices.
    pub prices: BTreeMap<String, RemotePrice>,
}

impl Default for LearnerConfig {
    fn default() -> LearnerConfig {
        LearnerConfig {
            enabled: true,
            explore: 0.1,
            explore_after: 20,
            cost_penalty: 0.3,
            prior: 4.0,
            quantile: 0.9,
            margin: 1.2,
            min_samples: 5,
            local_cost_per_gib_s: 0.000_02,
            seed: None,
            prices: BTreeMap::new(),
        }
    }
}

fn within(
    source: &ConfigSource,
    key: &str,
    value: Option<f64>,
    default: f64,
    lo: f64,
    hi: f64,
) -> Result<f64, ConfigError> {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v < lo || v > hi {
        return Err(source.invalid(key, &format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

pub(crate) fn resolve_learner(
    raw: RawLearner,
    source: &ConfigSource,
) -> Result<LearnerConfig, ConfigError> {
    let d = LearnerConfig::default();
    let mut prices = BTreeMap::new();
    for (model, p) in raw.prices {
        let key = |f: &str| format!("learner.prices.{model}.{f}");
        if model.trim().is_empty() {
            return Err(source.invalid("learner.prices", "a model name must not be empty"));
        }
        let prompt = within(source, &key("prompt"), Some(p.prompt), 0.0, 0.0, f64::MAX)?;
        let completion = within(
            source,
            &key("completion"),
            Some(p.completion),
            0.0,
            0.0,
            f64::MAX,
        )?;
        prices.insert(model, RemotePrice { prompt, completion });
    }
    let min_samples = raw.min_samples.unwrap_or(d.min_samples);
    if min_samples == 0 {
        return Err(source.invalid("learner.min_samples", "must be at least 1"));
    }
    Ok(LearnerConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        explore: within(source, "learner.explore", raw.explore, d.explore, 0.0, 1.0)?,
        explore_after: raw.explore_after.unwrap_or(d.explore_after),
        cost_penalty: within(
            source,
            "learner.cost_penalty",
            raw.cost_penalty,
            d.cost_penalty,
            0.0,
            10.0,
        )?,
        prior: within(source, "learner.prior", raw.prior, d.prior, 0.0, 1000.0)?,
        quantile: within(
            source,
            "learner.quantile",
            raw.quantile,
            d.quantile,
            0.5,
            1.0,
        )?,
        margin: within(source, "learner.margin", raw.margin, d.margin, 1.0, 10.0)?,
        min_samples,
        local_cost_per_gib_s: within(
            source,
            "learner.local_cost_per_gib_s",
            raw.local_cost_per_gib_s,
            d.local_cost_per_gib_s,
            0.0,
            f64::MAX,
        )?,
        seed: raw.seed,
        prices,
    })
}
