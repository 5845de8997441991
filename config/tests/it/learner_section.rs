//! The `[learner]` section: defaults, a full section, and the mistakes it
//! refuses by key.

use troupe_config::{load, ConfigError, RemotePrice};

use crate::common;
use common::{opts, write};

#[test]
fn defaults_explore_a_little_and_learn_p90_budgets() {
    let cfg = load(&opts(None, &[])).unwrap();
    let l = &cfg.learner;
    assert!(l.enabled);
    assert_eq!((l.explore, l.quantile, l.margin), (0.1, 0.9, 1.2));
    assert_eq!(l.min_samples, 5);
    assert_eq!(l.seed, None);
    assert!(l.prices.is_empty());
}

#[test]
fn a_full_section_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        r#"
[learner]
enabled = false
explore = 0.2
explore_after = 5
cost_penalty = 0.5
prior = 2
quantile = 0.95
margin = 1.5
min_samples = 8
local_cost_per_gib_s = 0.001
seed = 42
[learner.prices."gpt-4o-mini"]
prompt = 0.00000015
completion = 0.0000006
"#,
    );
    let l = load(&opts(Some(path), &[])).unwrap().learner;
    assert!(!l.enabled);
    assert_eq!((l.explore, l.explore_after, l.cost_penalty), (0.2, 5, 0.5));
    assert_eq!(
        (l.prior, l.quantile, l.margin, l.min_samples),
        (2.0, 0.95, 1.5, 8)
    );
    assert_eq!((l.local_cost_per_gib_s, l.seed), (0.001, Some(42)));
    assert_eq!(
        l.prices.get("gpt-4o-mini"),
        Some(&RemotePrice {
            prompt: 0.000_000_15,
            completion: 0.000_000_6
        })
    );
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[learner]\nexplor = 0.2\n");
    match load(&opts(Some(path), &[])) {
        Err(ConfigError::UnknownKey { key, .. }) => assert_eq!(key, "learner.explor"),
        other => panic!("expected an unknown key, got {other:?}"),
    }
    for (text, bad) in [
        ("explore = 1.5", "learner.explore"),
        ("quantile = 0.2", "learner.quantile"),
        ("min_samples = 0", "learner.min_samples"),
        (
            "[learner.prices.x]\nprompt = -1.0\ncompletion = 0.0",
            "learner.prices.x.prompt",
        ),
    ] {
        let path = write(&dir, &format!("[learner]\n{text}\n"));
        match load(&opts(Some(path), &[])) {
            Err(ConfigError::InvalidValue { key, .. }) => assert_eq!(key, bad),
            other => panic!("{text}: expected an invalid value, got {other:?}"),
        }
    }
}
