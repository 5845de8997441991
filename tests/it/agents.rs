//! The agent runtime end to end, in process: the Director plans, Workers
//! act in the task's workspace through real tools, every step is journaled
//! and checkpointed, and tasks survive a dying worker, a pause across a
//! restart, failed attempts and bad planner output. Model outputs come from
//! the scripted replay backend (`examples/fib-script.json` and variants);
//! everything else is the real thing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use troupe::agents::runtime::TroupeEvent;
use troupe::agents::ux::Intent;
use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};
use troupe::store::{Approver, SubtaskState, TaskEvent, TaskState};
use troupe::supervision::BootOptions;
use troupe::{TaskSpec, Troupe};

const FIB_JOB: &str = "write a Python fibonacci function with tests";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A data dir, a models dir holding `models` (tiny synthetic GGUF files
    /// the scripted backend stands in for), and a troupe.toml with `extra`.
    fn new(models: &[&str], script: &Value, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let models_dir = dir.path().join("models");
        std::fs::create_dir_all(&models_dir).unwrap();
        for (i, name) in models.iter().enumerate() {
            let spec = SynthSpec {
                shape: SynthShape::Tiny,
                quant: SynthQuant::F32,
                seed: i as u64,
            };
            write_synthetic(&models_dir.join(format!("{name}.gguf")), &spec).unwrap();
        }
        std::fs::write(dir.path().join("script.json"), script.to_string()).unwrap();
        // Tests run the shell tool without asking unless they set their
        // own approval policy.
        let approval = if extra.contains("[approval]") {
            ""
        } else {
            "[approval]\nexecute = \"allow\"\n"
        };
        let toml = format!(
            "data_dir = \"data\"\n\
             [models]\ndirs = [\"models\"]\n\
             [inference]\nbackend = \"scripted\"\nscript = \"script.json\"\n\
             {approval}{extra}\n"
        );
        std::fs::write(dir.path().join("troupe.toml"), toml).unwrap();
        Env { dir }
    }

    fn config(&self) -> troupe::config::Config {
        troupe::config::load(&troupe::config::LoadOptions {
            explicit: Some(self.dir.path().join("troupe.toml")),
            env: Vec::new(),
            platform_default: false,
        })
        .unwrap()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start(&self) -> Troupe {
        Troupe::start(self.config()).await.unwrap()
    }

    async fn start_with(&self, opts: BootOptions) -> Troupe {
        Troupe::start_with(self.config(), opts).await.unwrap()
    }
}

/// Waits for the task to end; on a hang, shows its journal instead of
/// hanging the test run.
async fn finish(troupe: &Troupe, id: &str) -> troupe::store::TaskRecord {
    match tokio::time::timeout(std::time::Duration::from_secs(120), troupe.wait(id)).await {
        Ok(task) => task.unwrap(),
        Err(_) => {
            let view = troupe.task(id).await.unwrap().unwrap();
            for e in &view.events {
                eprintln!("{} {:?}", e.seq, e.event);
            }
            panic!("task {id} did not end; subtasks: {:?}", view.subtasks);
        }
    }
}

fn fib_script() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn events_of(view: &troupe::TaskView) -> Vec<&TaskEvent> {
    view.events.iter().map(|e| &e.event).collect()
}

fn git_log(workspace: &Path) -> Vec<String> {
    // The workspace's git dir lies outside it: DATA_DIR/git/<task>.git.
    let task = workspace.file_name().expect("task id").to_string_lossy();
    let git_dir = workspace
        .parent()
        .and_then(Path::parent)
        .expect("data dir")
        .join("git")
        .join(format!("{task}.git"));
    let out = std::process::Command::new("git")
        .args([
            "--git-dir",
            &git_dir.display().to_string(),
            "log",
            "--format=%s",
            "--reverse",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fibonacci_job_plans_writes_tests_checkpoints_and_succeeds() {
    let env = Env::new(&["small"], &fib_script(), "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let id = troupe.submit(TaskSpec::new(FIB_JOB)).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    assert!(task.answer.unwrap().contains("fib"));

    let view = troupe.task(&id).await.unwrap().unwrap();
    let states: Vec<(&str, SubtaskState)> = view
        .subtasks
        .iter()
        .map(|s| (s.id.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("s1", SubtaskState::Succeeded),
            ("s2", SubtaskState::Succeeded)
        ]
    );

    // The journal: submitted, planned, then per step started → observed →
    // committed, and finished; seqs without gaps.
    let seqs: Vec<u64> = view.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..view.events.len() as u64).collect::<Vec<_>>());
    let events = events_of(&view);
    assert!(matches!(events[0], TaskEvent::Submitted { .. }));
    assert!(matches!(events[1], TaskEvent::Planned { subtasks, .. } if subtasks.len() == 2));
    let tools: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::StepStarted { tool, .. } => Some(tool.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(tools, ["write_file", "write_file", "shell", "write_file"]);
    let shell_ok = events.iter().any(|e| {
        matches!(e, TaskEvent::StepObserved { observation, is_error: false, .. }
            if observation.contains("Ran 3 tests") && observation.contains("OK"))
    });
    assert!(shell_ok, "the tests ran through the shell tool and passed");
    assert!(matches!(
        events.last().unwrap(),
        TaskEvent::Finished {
            state: TaskState::Succeeded,
            ..
        }
    ));

    // The workspace: the files, passing tests, one commit per step.
    let ws = env.data_dir().join("workspaces").join(&id);
    assert!(ws.join("src/fib.py").is_file() && ws.join("output/USAGE.md").is_file());
    let rerun = std::process::Command::new("python3")
        .args(["-m", "unittest", "-q", "test_fib"])
        .current_dir(ws.join("src"))
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let log = git_log(&ws);
    let committed: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::StepCommitted {
                subtask,
                attempt,
                step,
                ..
            } => Some(format!("{subtask} attempt {attempt} step {step}")),
            _ => None,
        })
        .collect();
    assert_eq!(committed.len(), 4);
    for label in &committed {
        assert_eq!(
            log.iter().filter(|l| l.contains(label.as_str())).count(),
            1,
            "one commit for {label} in {log:?}"
        );
    }
    assert!(log.iter().any(|l| l.contains("task finished")));
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_panics_mid_subtask_is_replaced_and_the_task_finishes() {
    let env = Env::new(&["small"], &fib_script(), "[agents]\nmodel = \"small\"\n");
    let fired = Arc::new(AtomicBool::new(false));
    let hook_fired = Arc::clone(&fired);
    let opts = BootOptions {
        faults: Some(Arc::new(
            move |point: &troupe::agents::worker::StepPoint| {
                if point.subtask == "s1"
                    && point.step == 3
                    && !hook_fired.swap(true, Ordering::SeqCst)
                {
                    panic!("injected fault before s1 step 3");
                }
            },
        )),
        ..BootOptions::default()
    };
    let troupe = env.start_with(opts).await;
    let id = troupe.submit(TaskSpec::new(FIB_JOB)).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert!(fired.load(Ordering::SeqCst), "the fault fired");
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = troupe.task(&id).await.unwrap().unwrap();
    let events = events_of(&view);
    assert!(events
        .iter()
        .any(|e| matches!(e, TaskEvent::Recovered { .. })));
    // Steps 1 and 2 of s1 were committed before the panic and not redone.
    let mut committed: HashMap<(String, u32), usize> = HashMap::new();
    for e in &events {
        if let TaskEvent::StepCommitted { subtask, step, .. } = e {
            *committed.entry((subtask.to_string(), *step)).or_default() += 1;
        }
    }
    assert!(committed.values().all(|n| *n == 1), "{committed:?}");
    assert_eq!(committed.len(), 4);
    troupe.shutdown().await;
}

/// A script whose worker steps are slow, so a test can act mid-task.
fn slow_fib_script(delay_ms: u64) -> Value {
    let mut script = fib_script();
    for rule in script["rules"].as_array_mut().unwrap() {
        rule["delay_ms"] = json!(delay_ms);
    }
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_across_a_restart_and_resume_finishes_without_redoing_steps() {
    let env = Env::new(
        &["small"],
        &slow_fib_script(150),
        "[agents]\nmodel = \"small\"\n",
    );
    let troupe = env.start().await;
    let mut events = troupe.subscribe();
    let id = troupe.submit(TaskSpec::new(FIB_JOB)).await.unwrap();
    // Pause once the first step is committed.
    loop {
        if let Ok(TroupeEvent::Journal(e)) = events.recv().await {
            if e.task_id == id && matches!(e.event, TaskEvent::StepCommitted { .. }) {
                break;
            }
        }
    }
    troupe.pause(&id).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Paused);
    troupe.shutdown().await;

    // A new process: a paused task stays paused until resumed.
    let troupe = env.start().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        troupe.task(&id).await.unwrap().unwrap().task.state,
        TaskState::Paused
    );
    troupe.resume(&id).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = troupe.task(&id).await.unwrap().unwrap();
    let mut started: HashMap<(String, u32), usize> = HashMap::new();
    for e in events_of(&view) {
        if let TaskEvent::StepCommitted { subtask, step, .. } = e {
            *started.entry((subtask.to_string(), *step)).or_default() += 1;
        }
    }
    assert!(started.values().all(|n| *n == 1), "{started:?}");
    let kinds: Vec<&str> = view.events.iter().map(|e| e.event.kind()).collect();
    assert!(
        kinds.contains(&"paused") && kinds.contains(&"resumed"),
        "{kinds:?}"
    );
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_subtask_is_retried_with_a_stronger_model() {
    // The weak model wanders (lists the directory forever) and runs out of
    // steps; the strong one does the job.
    let mut script = fib_script();
    let wander = json!({
        "model": "weak",
        "contains": [],
        "reply": json!({"thought": "look around", "action": {"tool": "list_dir", "args": {"path": "."}}}).to_string()
    });
    let rules = script["rules"].as_array_mut().unwrap();
    // Planning and the answer stay with the first two rules for every model.
    rules.insert(2, wander);
    let env = Env::new(
        &["weak", "strong"],
        &script,
        "[agents]\nladder = [\"weak\", \"strong\"]\n\
         [[agents.specialists]]\nkind = \"code\"\nmax_steps = 4\n\
         [[agents.specialists]]\nkind = \"general\"\nmax_steps = 3\n",
    );
    let troupe = env.start().await;
    let id = troupe.submit(TaskSpec::new(FIB_JOB)).await.unwrap();
    let task = finish(&troupe, &id).await;
    let view = troupe.task(&id).await.unwrap().unwrap();
    if task.state != TaskState::Succeeded {
        for e in &view.events {
            eprintln!("{} {:?}", e.seq, e.event);
        }
    }
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let starts: Vec<(String, u32, String, String)> = events_of(&view)
        .into_iter()
        .filter_map(|e| match e {
            TaskEvent::SubtaskStarted {
                subtask,
                attempt,
                model,
                reason,
            } => Some((subtask.to_string(), *attempt, model.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(starts[0].0, "s1");
    assert_eq!((starts[0].1, starts[0].2.as_str()), (1, "weak"));
    assert_eq!(
        (starts[1].1, starts[1].2.as_str()),
        (2, "strong"),
        "{starts:?}"
    );
    assert!(starts[1].3.contains("ladder"), "{}", starts[1].3);
    let failed = events_of(&view).into_iter().any(|e| {
        matches!(e, TaskEvent::SubtaskFinished { success: false, summary, .. } if summary.contains("step budget"))
    });
    assert!(failed);
    // The outcomes the Learner recorded include the failure and the success.
    let outcomes = troupe.store().outcomes().await.unwrap();
    let subtask_outcomes: Vec<(String, bool)> = outcomes
        .iter()
        .filter(|o| {
            o.role == troupe::store::CallRole::Subtask && o.subtask.as_deref() == Some("s1")
        })
        .map(|o| (o.model.clone(), o.success))
        .collect();
    assert_eq!(
        subtask_outcomes,
        [("weak".to_string(), false), ("strong".to_string(), true)]
    );
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_planner_output_fails_the_task_with_a_clear_reason() {
    // The plan violates the schema twice (a scripted reply the grammar
    // could never produce is refused by the backend), then the task fails.
    let script = json!({ "rules": [
        { "contains": ["Plan the job below"], "anywhere": true, "reply": "{\"subtasks\": \"not a list\"}" }
    ]});
    let env = Env::new(&["small"], &script, "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let id = troupe
        .submit(TaskSpec::new("plan something impossible"))
        .await
        .unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Failed);
    let error = task.error.unwrap();
    assert!(
        error.contains("planning") || error.contains("plan"),
        "{error}"
    );
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_a_dependency_cycle_is_refused_then_corrected() {
    let cycle = json!({"subtasks": [
        {"id": "a", "description": "one", "kind": "general", "complexity": 1, "depends_on": ["b"], "acceptance": "x"},
        {"id": "b", "description": "two", "kind": "general", "complexity": 1, "depends_on": ["a"], "acceptance": "y"}]});
    let good = json!({"subtasks": [
        {"id": "a", "description": "say hi", "kind": "general", "complexity": 1, "depends_on": [], "acceptance": "x"}]});
    let script = json!({ "rules": [
        { "contains": ["That plan is invalid", "cycle"], "reply": good.to_string() },
        { "contains": ["Plan the job below"], "reply": cycle.to_string() },
        { "contains": ["Your subtask (s1)"], "reply": json!({"thought": "easy", "final": "hi"}).to_string() },
        { "contains": ["Write the final answer"], "reply": "hi" }
    ]});
    let env = Env::new(&["small"], &script, "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let id = troupe.submit(TaskSpec::new("greet")).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    assert_eq!(task.answer.as_deref(), Some("hi"));
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_and_unknown_models_get_clear_errors() {
    let env = Env::new(&["small"], &fib_script(), "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let err = troupe.submit(TaskSpec::new("   ")).await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let huge = "x".repeat(70_000);
    let err = troupe.submit(TaskSpec::new(huge)).await.unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    let spec = TaskSpec {
        model: Some("no-such-model".to_string()),
        ..TaskSpec::new(FIB_JOB)
    };
    let id = troupe.submit(spec).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.error.unwrap().contains("no-such-model"));
    let err = troupe.cancel(&id).await.unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_troupe_on_the_same_data_dir_is_refused() {
    let env = Env::new(&["small"], &fib_script(), "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let err = Troupe::start(env.config()).await.unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
    troupe.shutdown().await;
    // Once the first has stopped, the data dir is free again.
    env.start().await.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ux_tells_chat_from_work_from_commands_and_reports_the_end() {
    let env = Env::new(
        &["small"],
        &fib_script(),
        "[agents]\nmodel = \"small\"\nprogress_interval_s = 1\n",
    );
    let troupe = env.start().await;
    let mut events = troupe.subscribe();
    let hello = troupe.chat("c1", "hello there").await.unwrap();
    assert_eq!(hello.intent, Intent::Chat);
    let work = troupe
        .chat("c1", "Write a Python fibonacci function with tests")
        .await
        .unwrap();
    assert_eq!(work.intent, Intent::Work);
    let id = work.task_id.clone().unwrap();
    assert!(work.text.contains(id.as_str()));
    let status = troupe.chat("c1", "status").await.unwrap();
    assert_eq!(status.intent, Intent::Command);
    assert!(status.text.contains(id.as_str()), "{}", status.text);
    // The UX reports the task's end in the conversation on its own.
    let end = loop {
        match events.recv().await.unwrap() {
            TroupeEvent::Ux { text, .. }
                if text.contains(id.as_str()) && text.contains("succeeded") =>
            {
                break text
            }
            _ => {}
        }
    };
    assert!(end.contains("Task"));
    let cancel = troupe.chat("c1", &format!("cancel {id}")).await.unwrap();
    assert!(cancel.text.contains("succeeded"), "{}", cancel.text);
    // The conversation is kept in the store.
    let kept = troupe.store().conversation("c1").await.unwrap();
    assert_eq!(kept.len(), 8);
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risky_tool_call_waits_for_the_persons_approval() {
    let env = Env::new(
        &["small"],
        &fib_script(),
        "[agents]\nmodel = \"small\"\n[approval]\nexecute = \"ask\"\n",
    );
    let troupe = env.start().await;
    let mut events = troupe.subscribe();
    let id = troupe.submit(TaskSpec::new(FIB_JOB)).await.unwrap();
    let request = loop {
        if let Ok(TroupeEvent::ApprovalPending { task_id, request }) = events.recv().await {
            assert_eq!(task_id, id);
            break request;
        }
    };
    assert_eq!(request.tool, "shell");
    assert_eq!(troupe.pending_approvals().len(), 1);
    // Nothing runs while it waits; an unknown id is refused.
    assert!(troupe
        .decide("no-such-id", true, None, Approver::Embedder)
        .is_err());
    let decided = troupe
        .decide(&request.id[..8], true, None, Approver::Embedder)
        .unwrap();
    assert_eq!(decided.task_id, id);
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = troupe.task(&id).await.unwrap().unwrap();
    assert!(events_of(&view).iter().any(|e| matches!(
        e,
        TaskEvent::ApprovalDecided {
            approved: true,
            by: Some(Approver::Embedder),
            ..
        }
    )));
    troupe.shutdown().await;
}

fn director_tokens(events: &[&TaskEvent], purpose: &str) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::DirectorCall {
                purpose: p, tokens, ..
            } if p == purpose => Some(*tokens),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_and_answering_tokens_count_toward_the_task() {
    let env = Env::new(&["small"], &fib_script(), "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let id = troupe.submit(TaskSpec::new(FIB_JOB)).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = troupe.task(&id).await.unwrap().unwrap();
    let events = events_of(&view);
    let plan = director_tokens(&events, "plan");
    let answer = director_tokens(&events, "answer");
    assert_eq!(plan.len(), 1, "one planning call");
    assert_eq!(answer.len(), 1, "one answering call");
    assert!(plan[0] > 0 && answer[0] > 0);
    let finished: u64 = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::SubtaskFinished { tokens, .. } => Some(*tokens),
            _ => None,
        })
        .sum();
    let steps: u64 = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::StepStarted { tokens, .. } => Some(*tokens),
            _ => None,
        })
        .sum();
    let total = troupe::store::TokenTally::of(events.iter().copied()).total();
    assert_eq!(total, plan[0] + answer[0] + finished);
    assert!(finished > steps, "the final answers' tokens count too");
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_action_job_is_one_subtask_without_a_planning_call() {
    const JOB: &str = "Write a file hello.txt containing the word hello";
    let script = json!({"rules": [
        {"contains": ["Plan the job below"], "reply": "not a plan"},
        {"contains": ["The job: Write a file hello.txt"],
         "reply": "{\"thought\": \"Write it.\", \"action\": {\"tool\": \"write_file\", \"args\": {\"path\": \"hello.txt\", \"content\": \"hello\"}}}"},
        {"contains": ["Observation of step 1 (write_file)", "hello.txt"],
         "reply": "{\"thought\": \"Done.\", \"final\": \"Wrote hello.txt containing: hello\"}"}
    ]});
    let env = Env::new(&["small"], &script, "[agents]\nmodel = \"small\"\n");
    let troupe = env.start().await;
    let id = troupe.submit(TaskSpec::new(JOB)).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    assert_eq!(
        task.answer.as_deref(),
        Some("Wrote hello.txt containing: hello")
    );
    let ws = env.data_dir().join("workspaces").join(&id);
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.txt")).unwrap(),
        "hello"
    );

    let view = troupe.task(&id).await.unwrap().unwrap();
    let events = events_of(&view);
    let TaskEvent::Planned {
        subtasks, model, ..
    } = events[1]
    else {
        panic!("planned second: {:?}", events[1]);
    };
    assert_eq!(model, "rules");
    assert_eq!(subtasks.len(), 1);
    assert_eq!(subtasks[0].description, JOB);
    assert!(subtasks[0].tools.iter().any(|t| t == "write_file"));
    assert!(!subtasks[0].tools.iter().any(|t| t == "web_search"));
    assert!(director_tokens(&events, "plan").is_empty());
    assert!(director_tokens(&events, "answer").is_empty());
    let steps = events
        .iter()
        .filter(|e| matches!(e, TaskEvent::StepStarted { .. }))
        .count();
    assert_eq!(steps, 1);
    troupe.shutdown().await;
}

/// Waits until the supervisor reports `name` alive after `restarts`
/// restarts.
async fn restarted(troupe: &Troupe, name: &str, restarts: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let children = troupe.agents().await;
        let child = children.iter().find(|c| c.name == name);
        if child.is_some_and(|c| c.alive && c.restarts == restarts) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} not restarted {restarts} times: {children:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_host_and_a_worker_pool_that_die_are_restarted_and_the_next_job_runs() {
    const JOB: &str = "Write a file hello.txt containing the word hello";
    let script = json!({"rules": [
        {"contains": ["The job: Write a file hello.txt"],
         "reply": "{\"thought\": \"Write it.\", \"action\": {\"tool\": \"write_file\", \"args\": {\"path\": \"hello.txt\", \"content\": \"hello\"}}}"},
        {"contains": ["Observation of step 1 (write_file)", "hello.txt"],
         "reply": "{\"thought\": \"Done.\", \"final\": \"Wrote hello.txt\"}"}
    ]});
    let env = Env::new(
        &["small"],
        &script,
        "[agents]\nmodel = \"small\"\n[serve]\npin = [\"small\"]\n",
    );
    let troupe = env.start().await;
    let names: Vec<String> = troupe
        .agents()
        .await
        .into_iter()
        .map(|c| c.name.into_owned())
        .collect();
    // Linked under the root supervisor, in start order.
    assert_eq!(
        names,
        [
            "model-host",
            "workers-general",
            "workers-code",
            "workers-research",
            "learner",
            "director",
            "ux"
        ],
        "the supervisor's children"
    );
    let first_host = troupe.model_host().actor_cell().get_id();
    troupe.model_host().actor_cell().kill();
    let pool = &troupe.worker_pools()[0];
    assert_eq!(pool.kind(), "general");
    let first_pool = pool.actor_cell().get_id();
    pool.actor_cell().kill();
    // A job handed out before the restarts are done waits for them rather
    // than being lost: it runs once, on the new pool and host.
    let id = troupe.submit(TaskSpec::new(JOB)).await.unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = troupe.task(&id).await.unwrap().unwrap();
    assert!(
        !events_of(&view)
            .iter()
            .any(|e| matches!(e, TaskEvent::Recovered { .. })),
        "the job was lost and handed out again: {:?}",
        events_of(&view)
    );
    restarted(&troupe, "model-host", 1).await;
    restarted(&troupe, "workers-general", 1).await;
    assert_ne!(troupe.model_host().actor_cell().get_id(), first_host);
    assert_ne!(pool.actor_cell().get_id(), first_pool);
    // The handles everyone holds reach the new actors: the pinned model
    // is loaded again.
    let status = troupe.model_host().status().await.unwrap();
    assert_eq!(status.models.len(), 1, "{status:?}");
    for name in ["learner", "director", "ux"] {
        restarted(&troupe, name, 0).await;
    }
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_is_started_when_a_worker_takes_it_not_while_it_waits() {
    let plan = json!({"subtasks": [
        {"id": "s1", "description": "first note", "kind": "general", "complexity": 1,
         "depends_on": [], "acceptance": "done"},
        {"id": "s2", "description": "second note", "kind": "general", "complexity": 1,
         "depends_on": [], "acceptance": "done"}
    ]});
    let script = json!({"rules": [
        {"contains": ["Plan the job below"], "reply": plan.to_string()},
        {"contains": ["Write the final answer"], "reply": "both written"},
        {"contains": ["Your subtask"], "reply": "{\"thought\": \"ok\", \"final\": \"noted\"}"}
    ]});
    let extra = "[agents]\nmodel = \"small\"\n\
                 [[agents.specialists]]\nkind = \"general\"\nworkers = 1\n";
    let env = Env::new(&["small"], &script, extra);
    let troupe = env.start().await;
    let id = troupe
        .submit(TaskSpec::new("write two notes"))
        .await
        .unwrap();
    let task = finish(&troupe, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let view = troupe.task(&id).await.unwrap().unwrap();
    let order: Vec<String> = events_of(&view)
        .iter()
        .filter_map(|e| match e {
            TaskEvent::SubtaskStarted { subtask, .. } => Some(format!("start {subtask}")),
            TaskEvent::SubtaskFinished { subtask, .. } => Some(format!("end {subtask}")),
            _ => None,
        })
        .collect();
    // One worker: the second subtask starts only after the first ended.
    assert_eq!(order.len(), 4, "{order:?}");
    assert!(
        order[0].starts_with("start") && order[1].starts_with("end"),
        "{order:?}"
    );
    assert_eq!(order[0][6..], order[1][4..], "{order:?}");
    troupe.shutdown().await;
}

/// The main job on a real model: SmolLM2-135M-Instruct, in process through
/// llama.cpp, writes the file (the README's first command runs the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_does_the_main_job_for_real() {
    let models = std::env::var_os("REAL_MODELS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/models"),
        PathBuf::from,
    );
    let file = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        file.is_file(),
        "{} is missing: run `bash scripts/fetch-models.sh`",
        file.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "data_dir = \"data\"\n[models]\ndirs = [{models:?}]\n\
         [inference]\nthreads = 2\ncontext_length = 4096\nparallel_slots = 1\n\
         [agents]\nmodel = \"SmolLM2-135M-Instruct.Q4_1\"\nseed = 1\n\
         [approval]\nexecute = \"allow\"\n"
    );
    std::fs::write(dir.path().join("troupe.toml"), toml).unwrap();
    let config = troupe::config::load(&troupe::config::LoadOptions {
        explicit: Some(dir.path().join("troupe.toml")),
        env: Vec::new(),
        platform_default: false,
    })
    .unwrap();
    let troupe = Troupe::start(config).await.unwrap();
    let job = "Write a file hello.txt containing the word hello";
    let id = troupe.submit(TaskSpec::new(job)).await.unwrap();
    let task = finish(&troupe, &id).await;
    let view = troupe.task(&id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", view.events);
    let written = dir
        .path()
        .join("data/workspaces")
        .join(&id)
        .join("hello.txt");
    let text = std::fs::read_to_string(&written).unwrap_or_default();
    assert!(text.to_lowercase().contains("hello"), "{text:?}");
    let steps: Vec<&str> = events_of(&view)
        .iter()
        .filter_map(|e| match e {
            TaskEvent::StepStarted { tool, .. } => Some(tool.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["write_file"]);
    troupe.shutdown().await;
}
