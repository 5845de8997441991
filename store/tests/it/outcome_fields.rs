//! Outcome records written before the Learner's fields existed still read,
//! and the new fields survive a round trip through the store.

use troupe_store::{OutcomeRecord, Store};

#[test]
fn an_outcome_written_before_the_learner_fields_reads_with_defaults() {
    let old = r#"{"task_id":"t-1","subtask":"s1","role":"subtask","model":"small",
        "kind":"code","complexity":5,"prompt_tokens":100,"completion_tokens":20,
        "latency_ms":1500,"success":true,"time_ms":7}"#;
    let outcome: OutcomeRecord = serde_json::from_str(old).unwrap();
    assert_eq!(outcome.model, "small");
    assert_eq!(outcome.max_tokens, None);
    assert!(!outcome.hit_budget);
    assert_eq!(outcome.thinking, None);
    assert_eq!(outcome.cost, 0.0);
    assert_eq!(outcome.provider, "");
}

#[tokio::test]
async fn the_learner_fields_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = OutcomeRecord {
        role: "subtask".into(),
        model: "medium".into(),
        kind: "code".into(),
        complexity: 6,
        prompt_tokens: 900,
        success: false,
        thinking: Some(true),
        max_tokens: Some(800),
        hit_budget: true,
        request_tokens: 120,
        memory_bytes: 3 << 30,
        cost: 0.25,
        provider: "local".into(),
        ..Default::default()
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.record_outcome(outcome.clone()).await.unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.outcomes().await.unwrap(), vec![outcome]);
}
