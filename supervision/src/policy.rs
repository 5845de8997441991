//! Restart policy: one-for-one, at most `max_restarts` within `within`,
//! each restart after an exponentially growing delay, then escalate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use troupe_config::SupervisionConfig;

/// What to do about a child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Too many failures in the window: fail the supervisor itself.
    Escalate,
}

/// A child's restart history under the policy.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    config: SupervisionConfig,
    recent: VecDeque<Instant>,
    total: u32,
}

impl RestartPolicy {
    /// A policy with no failures yet.
    pub fn new(config: SupervisionConfig) -> RestartPolicy {
        RestartPolicy {
            config,
            recent: VecDeque::new(),
            total: 0,
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.total
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> RestartDecision {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.config.within)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.config.max_restarts {
            return RestartDecision::Escalate;
        }
        // The n-th restart in the window waits backoff * 2^n, capped.
        let n = self.recent.len() as u32;
        let delay = self
            .config
            .backoff
            .checked_mul(1u32 << n.min(20))
            .unwrap_or(self.config.backoff_max)
            .min(self.config.backoff_max);
        self.recent.push_back(now);
        self.total += 1;
        RestartDecision::Restart(delay)
    }
}
