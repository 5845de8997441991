//! The Learner's policy as a person would notice it: it does what the
//! configuration says until outcomes say otherwise, keeps the person's
//! model and ladder retries, moves away from a model that keeps failing,
//! never picks a local model that cannot fit, explores within its budget,
//! learns token budgets (and grows one that ran out), survives a rebuild
//! from the store, and meets the targets on the simulated workload.

use troupe_agents::learner::sim::{simulate, Workload};
use troupe_agents::learner::{HostView, LearnerState, RecommendRequest, Role};
use troupe_config::{AgentsConfig, LearnerConfig};
use troupe_store::{Context, LoadRecord, OutcomeRecord};

const GIB: u64 = 1 << 30;

/// `[agents]` and `[learner]` from a troupe.toml text.
fn config(toml: &str) -> (AgentsConfig, LearnerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("troupe.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = troupe_config::load(&troupe_config::LoadOptions {
        explicit: Some(path),
        env: Vec::new(),
        platform_default: false,
    })
    .unwrap();
    (cfg.agents, cfg.learner)
}

const AGENTS: &str = "[agents]\nmodel = \"small\"\nladder = [\"small\", \"big\"]\n\
    [[agents.rules]]\nkind = \"code\"\ncomplexity = [7, 10]\nmodel = \"big\"\n\
    [learner]\nseed = 1\n";

fn learner(extra: &str) -> LearnerState {
    let (agents, learner) = config(&format!("{AGENTS}{extra}"));
    LearnerState::new(agents, learner)
}

fn host() -> HostView {
    HostView {
        free_bytes: 64 * GIB,
        loaded: Vec::new(),
    }
}

fn subtask(kind: &str, complexity: u8) -> RecommendRequest {
    RecommendRequest::new(Role::Subtask, kind.parse::<Context>().unwrap(), complexity)
}

fn outcome(kind: &str, complexity: u8, model: &str, success: bool, tokens: u64) -> OutcomeRecord {
    OutcomeRecord {
        role: Role::Subtask,
        kind: kind.parse().unwrap(),
        complexity,
        model: model.into(),
        success,
        prompt_tokens: tokens,
        latency_ms: 1000,
        ..Default::default()
    }
}

fn load(model: &str, gib: u64, millis: u64) -> LoadRecord {
    LoadRecord {
        model: model.into(),
        memory_bytes: gib * GIB,
        load_ms: millis,
        ..Default::default()
    }
}

#[test]
fn with_no_outcomes_the_configuration_decides() {
    let mut l = learner("");
    let hard = l.recommend(&subtask("code", 8), &host()).unwrap();
    assert_eq!(hard.model, "big");
    assert!(hard.reason.starts_with("rule 1: code"), "{}", hard.reason);
    let easy = l.recommend(&subtask("general", 2), &host()).unwrap();
    assert_eq!(
        (easy.model.as_str(), easy.reason.as_str()),
        ("small", "[agents] model")
    );
}

#[test]
fn the_persons_model_and_ladder_retries_are_kept_whatever_was_learned() {
    let mut l = learner("");
    for _ in 0..30 {
        l.observe(&outcome("general", 2, "small", false, 100));
        l.observe(&outcome("general", 2, "big", true, 100));
    }
    let mut asked = subtask("general", 2);
    asked.task_model = Some("small".into());
    assert_eq!(l.recommend(&asked, &host()).unwrap().model, "small");
    let mut retry = subtask("general", 2);
    retry.stronger_than = Some("small".into());
    let r = l.recommend(&retry, &host()).unwrap();
    assert_eq!(r.model, "big");
    assert!(r.reason.contains("ladder"), "{}", r.reason);
}

#[test]
fn a_model_that_keeps_failing_is_replaced_and_the_reason_says_why() {
    let mut l = learner("");
    for _ in 0..14 {
        l.observe(&outcome("code", 5, "big", true, 800));
    }
    for _ in 0..2 {
        l.observe(&outcome("code", 5, "big", false, 800));
    }
    for _ in 0..12 {
        l.observe(&outcome("code", 5, "small", false, 800));
    }
    let mut req = subtask("code", 5);
    req.max_tokens = 8192;
    let r = l.recommend(&req, &host()).unwrap();
    assert_eq!(r.model, "big");
    assert!(
        r.reason
            .starts_with("code, complexity 4–6 → big: 14 of 16 succeeded, p90 800 tokens"),
        "{}",
        r.reason
    );
    // Calls of another family (planning) keep the configured model.
    let plan = l
        .recommend(&RecommendRequest::new(Role::Plan, Role::Plan, 0), &host())
        .unwrap();
    assert_eq!(
        (plan.model.as_str(), plan.reason.as_str()),
        ("small", "[agents] model")
    );
}

#[test]
fn a_local_model_that_cannot_fit_is_not_chosen_but_a_remote_one_is() {
    let mut l = learner("[learner.prices.cloud]\nprompt = 0.000001\ncompletion = 0.000002\n");
    l.observe_load(&load("big", 40, 9000));
    for _ in 0..20 {
        l.observe(&outcome("code", 5, "small", false, 500));
        l.observe(&outcome("code", 5, "big", true, 500));
        l.observe(&outcome("code", 5, "cloud", true, 500));
    }
    let tight = HostView {
        free_bytes: 8 * GIB,
        loaded: vec!["small".into()],
    };
    assert_eq!(
        l.recommend(&subtask("code", 5), &tight).unwrap().model,
        "cloud"
    );
    // Loaded, it is a candidate again.
    let loaded = HostView {
        free_bytes: 0,
        loaded: vec!["big".into()],
    };
    let m = l.recommend(&subtask("code", 5), &loaded).unwrap().model;
    assert!(m == "big" || m == "cloud", "{m}");
}

#[test]
fn exploration_stays_within_its_budget_and_off_means_off() {
    for (explore, most) in [(0.1, 0.1), (0.0, 0.0)] {
        let mut l = learner(&format!("explore = {explore}\nexplore_after = 0\n"));
        for _ in 0..3 {
            l.observe(&outcome("research", 5, "small", true, 500));
        }
        for _ in 0..500 {
            l.recommend(&subtask("research", 5), &host()).unwrap();
        }
        let (explored, calls) = l.explorations();
        assert_eq!(calls, 500);
        assert!(
            explored as f64 <= most * calls as f64,
            "{explored} of {calls}"
        );
        if explore > 0.0 {
            assert!(explored > 0, "an untried model is never tried");
        }
    }
}

#[test]
fn budgets_are_learned_from_successful_runs_and_grow_after_one_ran_out() {
    let mut l = learner("");
    let mut req = subtask("general", 2);
    req.max_tokens = 8192;
    assert_eq!(l.recommend(&req, &host()).unwrap().max_tokens, Some(8192));
    for t in [400, 450, 500, 520, 480, 430, 470, 510, 490, 460] {
        l.observe(&outcome("general", 2, "small", true, t));
    }
    let learned = l.recommend(&req, &host()).unwrap().max_tokens.unwrap();
    assert!((500..1000).contains(&learned), "{learned}");
    // The run ran out; the retry keeps the model with the full budget...
    let mut retry = req.clone();
    retry.raise_budget_of = Some("small".into());
    let r = l.recommend(&retry, &host()).unwrap();
    assert_eq!((r.model.as_str(), r.max_tokens), ("small", Some(8192)));
    // ... and what it used when it succeeded is learned.
    for _ in 0..3 {
        let mut o = outcome("general", 2, "small", false, learned);
        o.hit_budget = true;
        l.observe(&o);
        l.observe(&outcome("general", 2, "small", true, 2000));
    }
    let grown = l.recommend(&req, &host()).unwrap().max_tokens.unwrap();
    assert!(grown > learned, "{grown} <= {learned}");
}

#[test]
fn a_rebuild_from_the_outcomes_knows_what_the_running_learner_knew() {
    let mut l = learner("");
    let loads = vec![load("small", 2, 1500), load("small", 2, 2500)];
    let mut all = Vec::new();
    for i in 0..20 {
        all.push(outcome("code", 3, "small", i % 4 != 0, 300 + i * 10));
    }
    for record in &loads {
        l.observe_load(record);
    }
    for o in &all {
        let mut o = o.clone();
        l.price(&mut o);
        l.observe(&o);
    }
    let (agents, config) = config(AGENTS);
    let rebuilt = LearnerState::rebuild(agents, config, &loads, &all);
    assert_eq!(rebuilt.rows().len(), 1);
    assert_eq!(rebuilt.rows()[0].successes, 15);
    assert_eq!(
        rebuilt.reload_costs().get("small").map(|d| d.as_millis()),
        Some(2000)
    );
    assert_eq!(
        rebuilt.rows()[0].quantile_tokens,
        l.rows()[0].quantile_tokens
    );
}

#[test]
fn the_simulated_workload_meets_the_targets_at_200_tasks() {
    let w = Workload::standard();
    let report = simulate(&w, &LearnerConfig::default(), 7, 1000, &[50, 200, 1000], 10);
    for c in &report.checkpoints {
        eprintln!(
            "{} tasks: success {:.3} oracle {:.3} strongest {:.3} vs-oracle {:.3} cost {:.3} \
             (oracle {:.3}) regret {:.2} coverage {:.3} tokens {:.3} explored {}",
            c.tasks,
            c.success_rate,
            c.oracle_success_rate,
            c.strongest_success_rate,
            c.success_vs_oracle(),
            c.cost_vs_strongest(),
            c.oracle_cost / c.strongest_cost,
            c.regret,
            c.budget_coverage,
            c.tokens_vs_fixed(),
            c.explored
        );
    }
    let at_200 = &report.checkpoints[1];
    assert_eq!(at_200.tasks, 200);
    assert!(at_200.meets_targets(), "{at_200:?}");
}
