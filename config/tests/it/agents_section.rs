//! The `[agents]` and `[supervision]` sections and the backend choice.

use std::time::Duration;
use troupe_config::{load, BackendChoice, ConfigError, TaskKind};

use crate::common;
use common::{opts, write};

fn invalid_key(err: ConfigError) -> String {
    match err {
        ConfigError::InvalidValue { key, .. } => key,
        other => panic!("expected an invalid value, got {other}"),
    }
}

#[test]
fn defaults_have_three_specialists_and_no_models() {
    let cfg = load(&opts(None, &[])).unwrap();
    let kinds: Vec<&str> = cfg
        .agents
        .specialists
        .iter()
        .map(|s| s.kind.as_str())
        .collect();
    assert_eq!(kinds, ["general", "code", "research"]);
    assert!(cfg.agents.specialists.iter().all(|s| s.covers(s.kind, 7)));
    assert_eq!(cfg.agents.model, None);
    assert_eq!(cfg.agents.ux_model, None);
    assert_eq!(cfg.agents.workers, 4);
    assert_eq!(cfg.supervision.max_restarts, 3);
    assert_eq!(cfg.inference.backend, BackendChoice::Llama);
}

#[test]
fn a_full_section_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        r#"
[agents]
model = "small"
ladder = ["small", "big"]
workers = 2
progress_interval_s = 3
[agents.ux]
model = "tiny"
[[agents.specialists]]
kind = "code"
complexity = [3, 8]
workers = 1
max_steps = 5
[[agents.rules]]
kind = "code"
complexity = [7, 10]
min_free_memory = "1GiB"
model = "big"
[supervision]
max_restarts = 5
backoff_ms = 10
[inference]
backend = "scripted"
script = "script.json"
"#,
    );
    let cfg = load(&opts(Some(path), &[])).unwrap();
    let a = &cfg.agents;
    assert_eq!(a.ladder, ["small", "big"]);
    assert_eq!(a.progress_interval, Duration::from_secs(3));
    assert_eq!(a.ux_model.as_deref(), Some("tiny"));
    assert_eq!(a.specialists.len(), 1);
    assert!(a.specialists[0].covers(TaskKind::Code, 3));
    assert!(!a.specialists[0].covers(TaskKind::Code, 9));
    assert!(!a.specialists[0].covers(TaskKind::General, 5));
    assert!(a.rules[0].matches(Some(TaskKind::Code), 8, 2 << 30));
    assert!(
        !a.rules[0].matches(Some(TaskKind::Code), 8, 1 << 20),
        "needs free memory"
    );
    assert!(!a.rules[0].matches(Some(TaskKind::Research), 8, 2 << 30));
    assert_eq!(cfg.supervision.max_restarts, 5);
    assert_eq!(cfg.supervision.backoff, Duration::from_millis(10));
    assert_eq!(
        cfg.inference.backend,
        BackendChoice::Scripted(dir.path().join("script.json"))
    );
}

#[test]
fn bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[agents]\nworkers = 0\n", "agents.workers"),
        (
            "[[agents.specialists]]\nkind = \"poetry\"\n",
            "agents.specialists[0].kind",
        ),
        (
            "[[agents.specialists]]\nkind = \"code\"\ncomplexity = [8, 3]\n",
            "agents.specialists[0].complexity",
        ),
        (
            "[[agents.rules]]\nmodel = \"m\"\nmin_free_memory = \"lots\"\n",
            "agents.rules[0].min_free_memory",
        ),
        (
            "[supervision]\nbackoff_ms = 99999999\n",
            "supervision.backoff_ms",
        ),
        ("[inference]\nbackend = \"scripted\"\n", "inference.script"),
        ("[inference]\nbackend = \"vllm\"\n", "inference.backend"),
    ] {
        let err = load(&opts(Some(write(&dir, text)), &[])).unwrap_err();
        assert_eq!(invalid_key(err), key, "for {text}");
    }
    let err = load(&opts(
        Some(write(&dir, "[agents.ux]\nmodle = \"x\"\n")),
        &[],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("agents.ux.modle"), "{err}");
}

#[test]
fn environment_sets_agent_keys() {
    let cfg = load(&opts(
        None,
        &[
            ("TROUPE_AGENTS__MODEL", "small"),
            ("TROUPE_AGENTS__WORKERS", "3"),
        ],
    ))
    .unwrap();
    assert_eq!(cfg.agents.model.as_deref(), Some("small"));
    assert_eq!(cfg.agents.workers, 3);
}

#[test]
fn sampling_seed_and_the_direct_path_are_read_and_checked() {
    let cfg = load(&opts(None, &[])).unwrap();
    assert_eq!(cfg.agents.temperature, 0.2);
    assert_eq!(cfg.agents.seed, None);
    assert!(cfg.agents.direct);
    assert!(cfg.inference.repack);
    assert!(cfg
        .agents
        .specialists
        .iter()
        .all(|s| s.temperature == 0.2 && s.seed.is_none()));

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "[agents]\ntemperature = 0.7\nseed = 42\ndirect = false\n[inference]\nrepack = false\n",
    );
    let cfg = load(&opts(Some(path), &[])).unwrap();
    assert_eq!(cfg.agents.temperature, 0.7);
    assert_eq!(cfg.agents.seed, Some(42));
    assert!(!cfg.agents.direct);
    assert!(!cfg.inference.repack);
    assert!(cfg
        .agents
        .specialists
        .iter()
        .all(|s| s.temperature == 0.7 && s.seed == Some(42)));

    let path = write(&dir, "[agents]\ntemperature = 3.5\n");
    let err = load(&opts(Some(path), &[])).unwrap_err();
    assert_eq!(invalid_key(err), "agents.temperature");
}
