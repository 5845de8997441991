//! The restart policy: backoff doubling up to its cap, escalation, and
//! failures outside the window forgotten.

use std::time::{Duration, Instant};

use troupe_config::SupervisionConfig;
use troupe_supervision::{RestartDecision, RestartPolicy};

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
