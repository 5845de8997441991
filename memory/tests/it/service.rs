//! The Director's calls: remembering a finished task and finding similar
//! ones when planning.

use crate::common;

use troupe_memory::{FinishedTask, Kind};

#[test]
fn a_finished_task_is_found_when_planning_a_similar_one() {
    let (_dir, path) = common::file();
    let memory = common::memory(&path, common::options(2000));
    let ids = memory
        .remember_task(&FinishedTask {
            task_id: "t-42".to_string(),
            request: "add a retry with timeout to the http client".to_string(),
            plan: "s1: read the client\ns2: add retry".to_string(),
            outcome: "retries added, tests pass".to_string(),
            succeeded: true,
            lessons: vec!["the http client tests need a local server".to_string()],
            tags: vec!["http".to_string()],
        })
        .unwrap();
    assert_eq!(ids.len(), 2);
    memory
        .remember_task(&FinishedTask {
            task_id: "t-43".to_string(),
            request: "write a poem about git branches".to_string(),
            plan: "s1: write".to_string(),
            outcome: "done".to_string(),
            succeeded: true,
            lessons: vec![],
            tags: vec![],
        })
        .unwrap();

    let hits = memory
        .similar_tasks("the http client needs a retry on timeout", 2)
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter()
            .all(|h| h.record.source_task.as_deref() == Some("t-42")),
        "{hits:?}"
    );
    let task = hits.iter().find(|h| h.record.kind == Kind::Task).unwrap();
    assert!(task
        .record
        .content
        .contains("Outcome (succeeded): retries added"));
    assert!(task
        .record
        .content
        .contains("- the http client tests need a local server"));
    let again = memory.store().get(ids[0]).unwrap().unwrap();
    assert_eq!(again.use_count, 1, "planning with it is a use");
}
