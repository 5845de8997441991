//! Token budgets: how many tokens a call may use, predicted from what
//! successful runs of the same kind and model used.
//!
//! A budget is a high quantile of those runs' tokens times a margin, scaled
//! to the request's length, and never more than the configured maximum.
//! Tokens are taken to grow with the square root of the request's length:
//! a longer request needs more, but not proportionally more (the answer and
//! the tool calls dominate, not the restated request). A run that used up
//! its budget and then succeeded with the maximum adds its larger count to
//! the samples, which is how a budget that was too small grows.

use super::stats::TokenSample;

/// The smallest budget handed out (below this a call cannot do anything).
const FLOOR: u64 = 64;

/// A predicted budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBudget {
    /// Tokens the call may use.
    pub tokens: u64,
    /// Whether it was learned (false: the configured maximum, for want of
    /// samples).
    pub learned: bool,
    /// Successful runs it was predicted from.
    pub samples: usize,
}

/// What a prediction needs.
#[derive(Debug, Clone, Copy)]
pub struct BudgetParams {
    /// The quantile of successful runs' tokens to cover.
    pub quantile: f64,
    /// Times the quantile.
    pub margin: f64,
    /// Samples needed before a budget is learned.
    pub min_samples: u32,
    /// The configured maximum.
    pub max: u64,
}

/// The `q` quantile (0 to 1) of `values`, interpolated; `None` when empty.
pub fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let w = pos - lo as f64;
    Some(values[lo] * (1.0 - w) + values[hi] * w)
}

fn length_scale(request: u64) -> f64 {
    (request.max(16) as f64).sqrt()
}

/// The budget for a call whose request is `request` tokens long (0:
/// unknown), from the successful runs `samples`.
pub fn predict(samples: &[TokenSample], request: u64, p: BudgetParams) -> TokenBudget {
    let fallback = TokenBudget {
        tokens: p.max,
        learned: false,
        samples: samples.len(),
    };
    if samples.len() < p.min_samples as usize || p.max == 0 {
        return fallback;
    }
    // Scale only when both the call and every sample know their length;
    // mixing scaled and unscaled counts would bias the quantile.
    let scaled = request > 0 && samples.iter().all(|s| s.request > 0);
    let values: Vec<f64> = samples
        .iter()
        .map(|s| {
            if scaled {
                s.used as f64 / length_scale(s.request)
            } else {
                s.used as f64
            }
        })
        .collect();
    let Some(q) = quantile(values, p.quantile) else {
        return fallback;
    };
    let q = if scaled { q * length_scale(request) } else { q };
    let tokens = (q * p.margin).ceil() as u64;
    TokenBudget {
        tokens: tokens.clamp(FLOOR.min(p.max), p.max),
        learned: true,
        samples: samples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max: u64) -> BudgetParams {
        BudgetParams {
            quantile: 0.9,
            margin: 1.2,
            min_samples: 5,
            max,
        }
    }

    fn runs(used: &[u64], request: u64) -> Vec<TokenSample> {
        used.iter()
            .map(|&used| TokenSample { used, request })
            .collect()
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(vec![], 0.9), None);
        assert_eq!(quantile(vec![5.0], 0.9), Some(5.0));
        assert_eq!(quantile(vec![3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(vec![0.0, 10.0], 0.9), Some(9.0));
    }

    #[test]
    fn too_few_runs_get_the_configured_maximum() {
        let b = predict(&runs(&[100, 120], 50), 50, params(4096));
        assert_eq!((b.tokens, b.learned), (4096, false));
    }

    #[test]
    fn a_learned_budget_covers_the_high_quantile_with_margin() {
        let used: Vec<u64> = (1..=10).map(|i| i * 100).collect();
        let b = predict(&runs(&used, 0), 0, params(4096));
        assert!(b.learned);
        // p90 of 100..1000 is 910; × 1.2.
        assert_eq!(b.tokens, 1092);
        assert!(predict(&runs(&used, 0), 0, params(500)).tokens == 500);
    }

    #[test]
    fn longer_requests_get_larger_budgets() {
        let used = [400, 420, 450, 500, 380, 410];
        let short = predict(&runs(&used, 100), 100, params(100_000));
        let long = predict(&runs(&used, 100), 400, params(100_000));
        // Four times the request, twice the tokens.
        assert!(long.tokens > short.tokens * 19 / 10, "{long:?} {short:?}");
        assert!(long.tokens < short.tokens * 21 / 10, "{long:?} {short:?}");
    }
}
