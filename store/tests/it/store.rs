//! The store as troupe uses it: real files in a temporary data directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use troupe_store::{
    CallRole, CheckpointRecord, OutcomeRecord, PlannedSubtask, Speaker, Store, StoreError,
    SubtaskRecord, SubtaskState, TaskEvent, TaskKind, TaskRecord, TaskState,
};

fn task(id: &str, created_ms: u64, state: TaskState) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        request: format!("do {id}"),
        model: None,
        priority: 0,
        state,
        created_ms,
        updated_ms: created_ms,
        answer: None,
        error: None,
        plans: 0,
    }
}

fn subtask(task_id: &str, id: &str) -> SubtaskRecord {
    SubtaskRecord {
        task_id: task_id.into(),
        id: id.into(),
        description: format!("part {id}"),
        kind: troupe_store::TaskKind::General,
        complexity: 3,
        depends_on: vec![],
        acceptance: "it is done".into(),
        state: SubtaskState::Pending,
        attempts: 0,
        model: None,
        result: None,
        error: None,
        tokens: 0,
        tools: Vec::new(),
    }
}

fn outcome(model: &str, success: bool) -> OutcomeRecord {
    OutcomeRecord {
        task_id: Some("t-1".into()),
        subtask: Some("s1".into()),
        role: CallRole::Subtask,
        model: model.into(),
        kind: TaskKind::Code.into(),
        complexity: 5,
        prompt_tokens: 100,
        completion_tokens: 20,
        latency_ms: 1500,
        success,
        time_ms: 7,
        ..Default::default()
    }
}

fn checkpoint(task_id: &str, step: u32) -> CheckpointRecord {
    CheckpointRecord {
        task_id: task_id.into(),
        subtask: "s1".into(),
        step: format!("s1 attempt 1 step {step}"),
        commit: format!("{step:040x}"),
        time_ms: u64::from(step),
    }
}

fn note(detail: impl Into<String>) -> TaskEvent {
    TaskEvent::Recovered {
        detail: detail.into(),
    }
}

#[tokio::test]
async fn tasks_round_trip_and_upsert() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path().join("troupe.redb"));
    assert_eq!(store.task("t-1").await.unwrap(), None);

    store
        .put_task(task("t-2", 20, TaskState::Queued))
        .await
        .unwrap();
    store
        .put_task(task("t-1", 10, TaskState::Queued))
        .await
        .unwrap();
    store
        .put_task(task("t-0", 20, TaskState::Queued))
        .await
        .unwrap();
    let mut running = task("t-1", 10, TaskState::Running);
    running.model = Some("qwen".into());
    running.plans = 1;
    store.put_task(running.clone()).await.unwrap();

    assert_eq!(store.task("t-1").await.unwrap(), Some(running));
    let order: Vec<String> = store
        .tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.into())
        .collect();
    assert_eq!(order, ["t-1", "t-0", "t-2"], "oldest first, then by id");
}

#[tokio::test]
async fn unfinished_tasks_leave_out_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let states = [
        TaskState::Succeeded,
        TaskState::Paused,
        TaskState::Failed,
        TaskState::Running,
        TaskState::Cancelled,
        TaskState::Planning,
        TaskState::Queued,
    ];
    for (i, state) in states.into_iter().enumerate() {
        let created = 100 - i as u64;
        store
            .put_task(task(&format!("t-{i}"), created, state))
            .await
            .unwrap();
    }
    let unfinished: Vec<(String, TaskState)> = store
        .unfinished_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id.into(), t.state))
        .collect();
    assert_eq!(
        unfinished,
        [
            ("t-6".to_string(), TaskState::Queued),
            ("t-5".to_string(), TaskState::Planning),
            ("t-3".to_string(), TaskState::Running),
            ("t-1".to_string(), TaskState::Paused),
        ]
    );
    assert_eq!(store.tasks().await.unwrap().len(), 7);
}

#[tokio::test]
async fn subtasks_come_back_in_number_order_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // "t-a" is a prefix of "t-ab": neither task's subtasks may leak into the other's.
    let batch = ["s10", "s2", "s1", "setup"]
        .iter()
        .map(|id| subtask("t-a", id))
        .chain([subtask("t-ab", "s1"), subtask("t-", "s3")])
        .collect();
    store.put_subtasks(batch).await.unwrap();
    let mut done = subtask("t-a", "s2");
    done.state = SubtaskState::Succeeded;
    done.result = Some("42".into());
    done.attempts = 2;
    store.put_subtasks(vec![done.clone()]).await.unwrap();

    let subtasks = store.subtasks("t-a").await.unwrap();
    let ids: Vec<&str> = subtasks.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2", "s10", "setup"]);
    assert_eq!(subtasks[1], done);
    assert_eq!(
        store.subtasks("t-ab").await.unwrap(),
        [subtask("t-ab", "s1")]
    );
    assert_eq!(store.subtasks("t-").await.unwrap(), [subtask("t-", "s3")]);
    assert!(store.subtasks("t-none").await.unwrap().is_empty());
}

#[tokio::test]
async fn journal_appends_number_from_zero_and_read_from_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let submitted = TaskEvent::Submitted {
        request: "write a poem".into(),
    };
    let first = store
        .append_with_task(task("t-1", 1, TaskState::Queued), submitted.clone())
        .await
        .unwrap();
    assert_eq!((first.task_id.as_str(), first.seq), ("t-1", 0));
    assert_eq!(first.event, submitted);
    assert!(first.time_ms > 0);
    assert_eq!(store.task("t-1").await.unwrap().unwrap().request, "do t-1");

    let planned = TaskEvent::Planned {
        subtasks: vec![PlannedSubtask {
            id: "s1".into(),
            description: "rhyme".into(),
            kind: troupe_store::TaskKind::General,
            complexity: 2,
            depends_on: vec![],
            acceptance: "it rhymes".into(),
            tools: Vec::new(),
        }],
        model: "qwen".into(),
        reason: "small job".into(),
    };
    let step = TaskEvent::StepStarted {
        subtask: "s1".into(),
        attempt: 1,
        step: 1,
        thought: "write it".into(),
        tool: "fs_write".into(),
        args: serde_json::json!({"path": "poem.txt", "content": "roses"}),
        tokens: 12,
    };
    assert_eq!(store.append("t-1", planned.clone()).await.unwrap().seq, 1);
    assert_eq!(store.append("t-2", note("other")).await.unwrap().seq, 0);
    assert_eq!(store.append("t-1", step.clone()).await.unwrap().seq, 2);

    let all: Vec<TaskEvent> = store
        .journal("t-1", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(all, [submitted, planned, step.clone()]);
    let tail = store.journal("t-1", 2).await.unwrap();
    assert_eq!((tail.len(), tail[0].seq, &tail[0].event), (1, 2, &step));
    assert!(store.journal("t-1", 3).await.unwrap().is_empty());
    assert_eq!(store.journal("t-2", 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn outcomes_conversations_and_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();

    let outcomes = [outcome("b", true), outcome("a", false), outcome("c", true)];
    for o in &outcomes {
        store.record_outcome(o.clone()).await.unwrap();
    }
    assert_eq!(store.outcomes().await.unwrap(), outcomes);

    let hello = store
        .append_message("c1", Speaker::User, "hello")
        .await
        .unwrap();
    assert_eq!((hello.seq, hello.role), (0, Speaker::User));
    store
        .append_message("c2", Speaker::User, "elsewhere")
        .await
        .unwrap();
    let reply = store
        .append_message("c1", Speaker::Assistant, "hi!")
        .await
        .unwrap();
    assert_eq!(reply.seq, 1);
    assert_eq!(store.conversation("c1").await.unwrap(), [hello, reply]);
    assert!(store.conversation("c3").await.unwrap().is_empty());

    for step in [3, 1, 2] {
        store.put_checkpoint(checkpoint("t-1", step)).await.unwrap();
    }
    store.put_checkpoint(checkpoint("t-2", 9)).await.unwrap();
    let steps: Vec<u64> = store
        .checkpoints("t-1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.time_ms)
        .collect();
    assert_eq!(steps, [3, 1, 2], "in the order they were put");
    assert_eq!(
        store.checkpoints("t-2").await.unwrap(),
        [checkpoint("t-2", 9)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_contiguous_seqs_in_sending_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let appenders: Vec<_> = (0..8)
        .map(|appender| {
            let store = store.clone();
            tokio::spawn(async move {
                let task_id = format!("t-{}", appender % 2);
                for n in 0..100 {
                    let entry = store
                        .append(&task_id, note(format!("{appender}:{n}")))
                        .await
                        .unwrap();
                    assert_eq!(entry.task_id, task_id);
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }

    for task_id in ["t-0", "t-1"] {
        let journal = store.journal(task_id, 0).await.unwrap();
        let seqs: Vec<u64> = journal.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..400).collect::<Vec<_>>(), "{task_id}");
        let mut next_n: HashMap<u32, u32> = HashMap::new();
        for entry in &journal {
            let TaskEvent::Recovered { detail } = &entry.event else {
                panic!("unexpected event {:?}", entry.event);
            };
            let (appender, n) = detail.split_once(':').unwrap();
            let (appender, n): (u32, u32) = (appender.parse().unwrap(), n.parse().unwrap());
            assert_eq!(appender % 2, u32::from(task_id == "t-1"));
            let expected = next_n.entry(appender).or_default();
            assert_eq!(n, *expected, "appender {appender}'s events out of order");
            *expected += 1;
        }
        assert_eq!(next_n.len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = store.commits();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..800u64 {
        let store = store.clone();
        writers.spawn(async move {
            let mut outcome = outcome("m", true);
            outcome.time_ms = i;
            store.record_outcome(outcome).await
        });
    }
    while let Some(written) = writers.join_next().await {
        written.unwrap().unwrap();
    }
    let commits = store.commits() - before;
    assert_eq!(store.outcomes().await.unwrap().len(), 800);
    assert!(commits >= 1);
    assert!(
        commits < 200,
        "800 concurrent writes took {commits} commits"
    );
}

#[tokio::test]
async fn reopening_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let clone = store.clone();
        store
            .put_task(task("t-1", 1, TaskState::Running))
            .await
            .unwrap();
        store
            .put_subtasks(vec![subtask("t-1", "s1")])
            .await
            .unwrap();
        store.append("t-1", note("a")).await.unwrap();
        store.append("t-1", note("b")).await.unwrap();
        store.record_outcome(outcome("m", true)).await.unwrap();
        store
            .append_message("c", Speaker::User, "hi")
            .await
            .unwrap();
        clone.put_checkpoint(checkpoint("t-1", 1)).await.unwrap();
        drop(store);
        // A clone keeps the database open.
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::InUse { .. })
        ));
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.task("t-1").await.unwrap(),
        Some(task("t-1", 1, TaskState::Running))
    );
    assert_eq!(store.subtasks("t-1").await.unwrap(), [subtask("t-1", "s1")]);
    assert_eq!(store.journal("t-1", 0).await.unwrap().len(), 2);
    assert_eq!(store.append("t-1", note("c")).await.unwrap().seq, 2);
    assert_eq!(store.outcomes().await.unwrap(), [outcome("m", true)]);
    assert_eq!(store.conversation("c").await.unwrap()[0].content, "hi");
    store.put_checkpoint(checkpoint("t-1", 2)).await.unwrap();
    assert_eq!(store.checkpoints("t-1").await.unwrap().len(), 2);
}

#[test]
fn a_second_open_says_the_directory_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    let StoreError::InUse { path } = &err else {
        panic!("expected InUse, got {err:?}");
    };
    assert_eq!(path, &dir.path().join("troupe.redb"));
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "the data directory {} is already in use by another troupe process",
            dir.path().display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("{} is locked", path.display())),
        "{message}"
    );
    drop(first);
    Store::open(dir.path()).unwrap();
}

const HOLD_DIR: &str = "TROUPE_STORE_TEST_HOLD_DIR";

/// Not a test: the child process of `another_process_gets_in_use`, which
/// starts this binary with `--ignored --exact` and the directory in
/// [`HOLD_DIR`]. Holds the store open until its stdin closes.
#[test]
#[ignore = "the child process of another_process_gets_in_use, started by it"]
fn hold_store_for_parent_process() {
    let dir = std::env::var_os(HOLD_DIR)
        .expect("started by another_process_gets_in_use, which names the directory");
    let _store = Store::open(Path::new(&dir)).unwrap();
    println!("HOLDING");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn another_process_gets_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            // Its name in this test binary (tests/it: module::test).
            "store::hold_store_for_parent_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HOLD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut holding = false;
    for line in lines.by_ref() {
        if line.unwrap().contains("HOLDING") {
            holding = true;
            break;
        }
    }
    assert!(holding, "the child process never opened the store");

    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");

    drop(child.stdin.take());
    // Read to the end: the child's test harness still reports on stdout.
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    Store::open(dir.path()).unwrap();
}

#[tokio::test]
async fn a_corrupt_value_is_an_error_naming_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .put_task(task("t-good", 1, TaskState::Queued))
        .await
        .unwrap();
    store.append("t-good", note("fine")).await.unwrap();
    let path = store.path().to_owned();
    drop(store);

    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let tasks: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("tasks-0");
            let mut table = txn.open_table(tasks).unwrap();
            table.insert("t-bad", b"\x00not json".as_slice()).unwrap();
            let journal: redb::TableDefinition<(&str, u64), &[u8]> =
                redb::TableDefinition::new("journal-0");
            let mut table = txn.open_table(journal).unwrap();
            table.insert(("t-good", 1), b"{}".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    for result in [
        store.task("t-bad").await.map(drop),
        store.tasks().await.map(drop),
    ] {
        match result {
            Err(StoreError::Corrupt { table, key, .. }) => {
                assert_eq!(table, "tasks-0");
                assert!(key.contains("t-bad"), "{key}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    let err = store.journal("t-good", 0).await.unwrap_err();
    assert!(
        err.to_string().contains("journal-0"),
        "the message names the table: {err}"
    );
    // The rest of the store still works.
    assert_eq!(store.task("t-good").await.unwrap().unwrap().id, "t-good");
    assert_eq!(
        store.journal("t-good", 0).await.unwrap_err().to_string(),
        err.to_string()
    );
    assert_eq!(store.append("t-good", note("more")).await.unwrap().seq, 2);
}

#[tokio::test]
async fn close_releases_the_directory_while_clones_live_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clone = store.clone();
    store
        .put_task(task("t-kept", 1, TaskState::Running))
        .await
        .unwrap();
    store.close().await.unwrap();
    // The clone is still alive, yet the directory is free and nothing
    // acknowledged was lost.
    let reopened = Store::open(dir.path()).unwrap();
    assert!(reopened.task("t-kept").await.unwrap().is_some());
    assert!(matches!(
        clone.task("t-kept").await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.close().await, Err(StoreError::Closed)));
}
