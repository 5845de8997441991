//! Outcome records written before the Learner's fields existed still read,
//! and the new fields survive a round trip through the store.

use troupe_store::{CallRole, LoadRecord, OutcomeRecord, Store, TaskKind};

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
        role: CallRole::Subtask,
        model: "medium".into(),
        kind: TaskKind::Code.into(),
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

#[tokio::test]
async fn loads_recorded_as_outcomes_by_an_older_troupe_read_as_loads() {
    let dir = tempfile::tempdir().unwrap();
    // An older troupe wrote model loads into outcomes-0 as role `load`.
    {
        let db = redb::Database::create(dir.path().join(troupe_store::DATABASE_FILE)).unwrap();
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("outcomes-0");
        let txn = db.begin_write().unwrap();
        {
            let mut rows = txn.open_table(table).unwrap();
            let load = r#"{"role":"load","kind":"load","model":"small","complexity":0,
                "prompt_tokens":0,"completion_tokens":0,"latency_ms":1500,"success":true,
                "time_ms":7,"memory_bytes":2048,"provider":"local"}"#;
            let call = r#"{"role":"plan","model":"small","kind":"plan","complexity":0,
                "prompt_tokens":10,"completion_tokens":5,"latency_ms":80,"success":true,
                "time_ms":8}"#;
            rows.insert(0, load.as_bytes()).unwrap();
            rows.insert(1, call.as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let new_load = LoadRecord {
        model: "big".into(),
        load_ms: 9000,
        memory_bytes: 1 << 30,
        time_ms: 9,
    };
    store.record_load(new_load.clone()).await.unwrap();
    let outcomes = store.outcomes().await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].role, CallRole::Plan);
    assert_eq!(
        store.loads().await.unwrap(),
        vec![
            LoadRecord {
                model: "small".into(),
                load_ms: 1500,
                memory_bytes: 2048,
                time_ms: 7,
            },
            new_load
        ]
    );
}

#[test]
fn an_unknown_role_is_an_error_not_a_load() {
    let row = r#"{"role":"loader","model":"small","kind":"x","complexity":0,
        "prompt_tokens":0,"completion_tokens":0,"latency_ms":1,"success":true,"time_ms":7}"#;
    assert!(serde_json::from_str::<OutcomeRecord>(row).is_err());
}

#[test]
fn a_context_reads_and_writes_as_one_word_and_an_unknown_one_is_named() {
    use troupe_store::Context;
    for word in Context::WORDS {
        let context: Context = word.parse().unwrap();
        assert_eq!(serde_json::to_value(context).unwrap(), word);
    }
    let error = "load".parse::<Context>().unwrap_err();
    assert!(
        error.contains("`load`") && error.contains("general"),
        "{error}"
    );
}

#[tokio::test]
async fn an_outcome_row_of_an_unknown_kind_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join(troupe_store::DATABASE_FILE)).unwrap();
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("outcomes-0");
        let txn = db.begin_write().unwrap();
        {
            let mut rows = txn.open_table(table).unwrap();
            let row = r#"{"role":"subtask","model":"small","kind":"poetry","complexity":0,
                "prompt_tokens":0,"completion_tokens":0,"latency_ms":1,"success":true,"time_ms":7}"#;
            rows.insert(0, row.as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let error = store.outcomes().await.unwrap_err().to_string();
    assert!(
        error.contains("outcomes-0") && error.contains("unknown context `poetry`"),
        "{error}"
    );
}
