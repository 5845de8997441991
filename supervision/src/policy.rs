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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: u32) -> SupervisionConfig {
        let mut c = SupervisionConfig::default();
        c.max_restarts = max;
        c.within = Duration::from_secs(10);
        c.backoff = Duration::from_millis(100);
        c.backoff_max = Duration::from_millis(350);
        c
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_escalates() {
        let mut p = RestartPolicy::new(config(4));
        let t = Instant::now();
        let delays: Vec<RestartDecision> = (0..5)
            .map(|i| p.on_failure(t + Duration::from_millis(i)))
            .collect();
        assert_eq!(
            delays,
            [
                RestartDecision::Restart(Duration::from_millis(100)),
                RestartDecision::Restart(Duration::from_millis(200)),
                RestartDecision::Restart(Duration::from_millis(350)),
                RestartDecision::Restart(Duration::from_millis(350)),
                RestartDecision::Escalate,
            ]
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut p = RestartPolicy::new(config(1));
        let t = Instant::now();
        assert!(matches!(p.on_failure(t), RestartDecision::Restart(_)));
        assert_eq!(
            p.on_failure(t + Duration::from_secs(1)),
            RestartDecision::Escalate
        );
        assert_eq!(
            p.on_failure(t + Duration::from_secs(30)),
            RestartDecision::Restart(Duration::from_millis(100))
        );
        assert_eq!(p.restarts(), 2);
    }
}
