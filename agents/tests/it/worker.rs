//! The Workers end to end: a real ModelHost over a scripted backend (the
//! replies are scripted, the host, store, tools and workspace are real), a
//! worker pool, and what a person would notice: the subtask's outcome, the
//! journal, the workspace's files and checkpoints.

use crate::common;
use common::{act, answer};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use troupe_agents::router::Router;
use troupe_agents::runtime::{
    Approvals, Control, Decision, EventBus, TaskControl, TaskJournal, TroupeEvent,
};
use troupe_agents::worker::{
    FaultHook, StepPoint, SubtaskJob, SubtaskOutcome, WorkerEnv, WorkerLost, WorkerPool,
};
use troupe_config::{ApprovalConfig, SpecialistConfig, TaskKind, ToolsConfig};
use troupe_host::ModelHostHandle;
use troupe_inference::scripted::{Rule, Script, ScriptedBackend};
use troupe_store::{JournalEntry, Store, SubtaskRecord, SubtaskState, TaskEvent};
use troupe_tools::{
    builtin_registry, Builtins, Observation, Policy, RiskLevel, Tool, ToolContext, ToolError,
    ToolRegistry, Workspace,
};

/// The model's catalog name (the file stem of the synthetic model).
const MODEL: &str = "worker-model";

const TASK: &str = "t-00000000000a";

/// Longest wait for an event that must come; a hang guard, not a timing bound.
const EVENT_WAIT: Duration = Duration::from_secs(120);

fn models_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| common::model_dir(MODEL, 7)).path()
}

/// A test tool that always panics.
struct Explode;

impl Tool for Explode {
    fn name(&self) -> &str {
        "explode"
    }
    fn description(&self) -> &str {
        "Always panics."
    }
    fn schema(&self) -> Value {
        json!({ "type": "object", "properties": {}, "additionalProperties": false })
    }
    fn risk(&self) -> RiskLevel {
        RiskLevel::Read
    }
    // Written out as `#[async_trait]` would expand it: this crate does not
    // depend on async-trait.
    fn call<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _ctx: &'life1 ToolContext,
        _args: Value,
    ) -> Pin<Box<dyn Future<Output = Result<Observation, ToolError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { panic!("the explode tool always panics") })
    }
}

struct Options {
    kind: TaskKind,
    execute: Policy,
    context_length: u32,
    extra_tool: Option<Arc<dyn Tool>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kind: TaskKind::Code,
            execute: Policy::Allow,
            context_length: 16_384,
            extra_tool: None,
        }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    store: Store,
    bus: EventBus,
    backend: ScriptedBackend,
    host: ModelHostHandle,
    approvals: Approvals,
    tools: Arc<ToolRegistry>,
    kind: TaskKind,
}

async fn rig(options: Options, rules: Vec<Rule>) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_path_buf();
    Workspace::create(&data_dir, TASK).expect("workspace");
    let store = Store::open(&data_dir).expect("store");
    let backend = ScriptedBackend::new(Script {
        rules,
        ..Script::default()
    });
    let config = common::host_config(models_dir().to_path_buf(), options.context_length);
    let (host, _join) = troupe_host::spawn(config, Arc::new(backend.clone()))
        .await
        .expect("host starts");
    let mut approval = ApprovalConfig::default();
    approval.read = Policy::Allow;
    approval.write = Policy::Allow;
    approval.execute = options.execute;
    approval.network = Policy::Allow;
    let mut tools = builtin_registry(Builtins {
        tools: &ToolsConfig::default(),
        approval: &approval,
        user: None,
        memory: None,
    })
    .expect("tools");
    if let Some(tool) = options.extra_tool {
        tools.register(tool).expect("register the test tool");
    }
    Rig {
        _dir: dir,
        data_dir,
        store,
        bus: EventBus::new(),
        backend,
        host,
        approvals: Approvals::default(),
        tools: Arc::new(tools),
        kind: options.kind,
    }
}

impl Rig {
    fn env(&self) -> WorkerEnv {
        let mut specialist = SpecialistConfig::default_for(self.kind);
        specialist.workers = 1;
        WorkerEnv {
            specialist,
            router: Router::local_only(self.host.clone()),
            journal: TaskJournal::new(self.store.clone(), self.bus.clone()),
            tools: Arc::clone(&self.tools),
            approvals: self.approvals.clone(),
            data_dir: self.data_dir.clone(),
            faults: None,
            peers: Default::default(),
        }
    }

    fn job(&self, control: &TaskControl) -> SubtaskJob {
        SubtaskJob {
            task_id: TASK.into(),
            request: "Write a Fibonacci function in Python, with tests.".to_string(),
            subtask: SubtaskRecord {
                task_id: TASK.into(),
                id: "s1".into(),
                description: "Write fib.py with fib(n) and unit tests for it.".to_string(),
                kind: self.kind,
                complexity: 3,
                depends_on: Vec::new(),
                acceptance: "python3 -m unittest test_fib passes".to_string(),
                state: SubtaskState::Running,
                attempts: 1,
                model: Some(MODEL.to_string()),
                result: None,
                error: None,
                tokens: 0,
                tools: Vec::new(),
            },
            attempt: 1,
            model: MODEL.to_string(),
            dependencies: Vec::new(),
            control: control.watch(),
            max_tokens: None,
        }
    }

    async fn journal(&self) -> Vec<JournalEntry> {
        self.store.journal(TASK, 0).await.expect("journal")
    }

    fn workspace(&self) -> Workspace {
        Workspace::open(&self.data_dir, TASK).expect("workspace opens")
    }

    /// The rules that answered, in call order.
    fn rules_used(&self) -> Vec<Option<usize>> {
        self.backend.calls().iter().map(|c| c.rule).collect()
    }
}

const FIB: &str =
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n";
const TEST_FIB: &str = "import unittest\nfrom fib import fib\n\nclass FibTest(unittest.TestCase):\n    def test_values(self):\n        self.assertEqual([fib(n) for n in range(7)], [0, 1, 1, 2, 3, 5, 8])\n\nif __name__ == '__main__':\n    unittest.main()\n";

/// Write fib.py, write its tests, run them, answer.
fn fib_rules() -> Vec<Rule> {
    vec![
        Rule::reply(act(
            "write_file",
            json!({ "path": "fib.py", "content": FIB }),
        ))
        .when_contains("Your subtask (s1)"),
        Rule::reply(act(
            "write_file",
            json!({ "path": "test_fib.py", "content": TEST_FIB }),
        ))
        .when_contains("Observation of step 1 (write_file)"),
        Rule::reply(act(
            "shell",
            json!({ "command": "python3 -m unittest test_fib" }),
        ))
        .when_contains("Observation of step 2 (write_file)"),
        Rule::reply(answer("fib.py computes Fibonacci numbers; its tests pass."))
            .when_contains("Observation of step 3 (shell)")
            .unless_contains("[error]"),
    ]
}

fn started_steps(entries: &[JournalEntry]) -> Vec<(u32, String)> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::StepStarted { step, tool, .. } => Some((*step, tool.clone())),
            _ => None,
        })
        .collect()
}

fn observations(entries: &[JournalEntry]) -> Vec<(u32, String, bool)> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::StepObserved {
                step,
                observation,
                is_error,
                ..
            } => Some((*step, observation.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

fn committed(entries: &[JournalEntry]) -> Vec<(u32, String)> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::StepCommitted {
                step, checkpoint, ..
            } => Some((*step, checkpoint.clone())),
            _ => None,
        })
        .collect()
}

fn tools_of(steps: &[(u32, String)]) -> Vec<&str> {
    steps.iter().map(|(_, t)| t.as_str()).collect()
}

fn succeeded(outcome: Result<SubtaskOutcome, WorkerLost>) -> (String, u32) {
    match outcome {
        Ok(SubtaskOutcome::Succeeded { result, steps, .. }) => (result, steps),
        other => panic!("expected success, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_subtask_writes_tests_runs_them_and_answers() {
    let rig = rig(Options::default(), fib_rules()).await;
    let pool = WorkerPool::spawn(rig.env(), None).await.expect("pool");
    assert_eq!(pool.kind(), "code");
    let control = TaskControl::new();
    let mut events = rig.bus.subscribe();

    let (result, steps) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "fib.py computes Fibonacci numbers; its tests pass.");
    assert_eq!(steps, 4, "three actions and the final answer");

    let journal = rig.journal().await;
    let started = started_steps(&journal);
    assert_eq!(started.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(tools_of(&started), ["write_file", "write_file", "shell"]);
    let observed = observations(&journal);
    assert!(!observed[2].2, "the tests passed: {}", observed[2].1);
    let commits = committed(&journal);
    assert_eq!(commits.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3]);
    let ws = rig.workspace();
    let history = ws.checkpoints().expect("checkpoints");
    for (step, id) in &commits {
        let cp = history
            .iter()
            .find(|c| &c.id.0 == id)
            .unwrap_or_else(|| panic!("step {step}'s checkpoint {id} is not in the git log"));
        assert!(cp.step.starts_with(&format!("s1 attempt 1 step {step}: ")));
    }
    let recorded = rig
        .store
        .checkpoints(TASK)
        .await
        .expect("checkpoint records");
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        std::fs::read_to_string(ws.root().join("fib.py")).expect("fib.py"),
        FIB
    );
    assert!(ws.root().join("test_fib.py").is_file());

    let mut progress = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let TroupeEvent::Progress { text, .. } = event {
            progress.push(text);
        }
    }
    assert!(
        progress.contains(&"s1 step 3: shell".to_string()),
        "{progress:?}"
    );
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_specialist_refuses_a_final_answer_before_the_tests_ran() {
    let rules = vec![
        Rule::reply(act(
            "write_file",
            json!({ "path": "fib.py", "content": FIB }),
        ))
        .when_contains("Your subtask (s1)"),
        Rule::reply(answer("untested")).when_contains("Observation of step 1 (write_file)"),
        Rule::reply(act(
            "shell",
            json!({ "command": "python3 -c 'import fib; assert fib.fib(6) == 8'" }),
        ))
        .when_contains("run your tests first"),
        Rule::reply(answer("tested")).when_contains("Observation of step 3 (shell)"),
    ];
    let rig = rig(Options::default(), rules).await;
    let pool = WorkerPool::spawn(rig.env(), None).await.expect("pool");
    let control = TaskControl::new();

    let (result, steps) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "tested");
    assert_eq!(steps, 4);
    assert_eq!(rig.rules_used(), [Some(0), Some(1), Some(2), Some(3)]);
    let calls = rig.backend.calls();
    assert!(calls[2].last_message.contains("run your tests first"));
    let journal = rig.journal().await;
    assert_eq!(
        tools_of(&started_steps(&journal)),
        ["write_file", "final", "shell"]
    );
    let refusal = &observations(&journal)[1];
    assert!(
        refusal.2 && refusal.1.contains("Step 1 (write_file)"),
        "{refusal:?}"
    );
    pool.stop();
}

/// A hook that panics, killing the worker, the first time it reaches `at`.
fn panic_once_at(at: u32) -> FaultHook {
    let armed = AtomicBool::new(true);
    Arc::new(move |point: &StepPoint| {
        if point.step == at && armed.swap(false, Ordering::SeqCst) {
            panic!("fault injected before step {at}");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_subtask_is_replaced_and_the_job_resumes_without_redoing_steps() {
    let rig = rig(Options::default(), fib_rules()).await;
    let mut env = rig.env();
    env.faults = Some(panic_once_at(3));
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let control = TaskControl::new();

    let lost = pool.run(rig.job(&control)).await;
    assert!(matches!(lost, Err(WorkerLost::Died { .. })), "{lost:?}");
    assert_eq!(rig.rules_used(), [Some(0), Some(1)]);

    // The pool has one worker: the factory's replacement takes the job.
    let (result, steps) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "fib.py computes Fibonacci numbers; its tests pass.");
    assert_eq!(steps, 4);
    assert_eq!(
        rig.rules_used(),
        [Some(0), Some(1), Some(2), Some(3)],
        "the model was not asked again for steps 1 and 2"
    );
    let journal = rig.journal().await;
    let started = started_steps(&journal);
    for step in 1..=3 {
        let n = started.iter().filter(|s| s.0 == step).count();
        assert_eq!(n, 1, "step {step} was started {n} times");
    }
    assert!(rig.workspace().root().join("test_fib.py").is_file());
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_interrupted_after_it_started_is_redone_from_the_journal() {
    let rig = rig(Options::default(), fib_rules()).await;
    let control = TaskControl::new();
    let mut env = rig.env();
    env.faults = Some(panic_once_at(3));
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    assert!(pool.run(rig.job(&control)).await.is_err());

    // As if a worker had decided on step 3, journaled it, started the tool,
    // and died before the observation: a stray file is left behind.
    rig.store
        .append(
            TASK,
            TaskEvent::StepStarted {
                subtask: "s1".into(),
                attempt: 1,
                step: 3,
                thought: "run the tests".into(),
                tool: "shell".into(),
                args: json!({ "command": "python3 -m unittest test_fib" }),
                tokens: 5,
            },
        )
        .await
        .expect("append");
    let stray = rig.workspace().root().join("half-written.txt");
    std::fs::write(&stray, "partial").expect("stray file");

    let (result, _) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "fib.py computes Fibonacci numbers; its tests pass.");
    assert_eq!(
        rig.rules_used(),
        [Some(0), Some(1), Some(3)],
        "step 3's action came from the journal, not from the model"
    );
    assert!(
        !stray.exists(),
        "the workspace was restored to its last checkpoint"
    );
    let journal = rig.journal().await;
    assert!(journal.iter().any(|e| matches!(
        &e.event,
        TaskEvent::Recovered { detail } if detail.contains("s1 attempt 1 step 3: shell")
    )));
    let observed = observations(&journal);
    assert_eq!(observed.last().map(|o| (o.0, o.2)), Some((3, false)));
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_tool_fails_its_step_and_the_worker_goes_on() {
    let rules = vec![
        Rule::reply(act("explode", json!({}))).when_contains("Your subtask (s1)"),
        Rule::reply(answer("survived"))
            .when_contains("Observation of step 1 (explode) [error]")
            .when_contains("panicked"),
    ];
    let options = Options {
        kind: TaskKind::General,
        extra_tool: Some(Arc::new(Explode)),
        ..Options::default()
    };
    let rig = rig(options, rules).await;
    let pool = WorkerPool::spawn(rig.env(), None).await.expect("pool");
    let control = TaskControl::new();

    let (result, _) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "survived");
    let observed = observations(&rig.journal().await);
    assert!(observed[0].2);
    assert!(observed[0]
        .1
        .contains("the tool `explode` panicked: the explode tool always panics"));
    pool.stop();
}

/// A hook that sets the task's control when the worker reaches `at`.
fn control_at(control: &Arc<TaskControl>, at: u32, to: Control) -> FaultHook {
    let control = Arc::clone(control);
    let armed = AtomicBool::new(true);
    Arc::new(move |point: &StepPoint| {
        if point.step == at && armed.swap(false, Ordering::SeqCst) {
            control.set(to);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_subtask_and_pause_stops_it_until_resumed() {
    let rig = rig(Options::default(), fib_rules()).await;

    // Cancelled while step 2 is being generated: nothing of step 2 is done.
    let control = Arc::new(TaskControl::new());
    let mut env = rig.env();
    env.faults = Some(control_at(&control, 2, Control::Cancel));
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let outcome = pool.run(rig.job(&control)).await.expect("an answer");
    assert!(
        matches!(outcome, SubtaskOutcome::Cancelled { .. }),
        "{outcome:?}"
    );
    assert_eq!(started_steps(&rig.journal().await).len(), 1);
    pool.stop();

    // Paused while step 2 is generated: step 2 finishes, step 3 waits.
    let control = Arc::new(TaskControl::new());
    let mut env = rig.env();
    env.faults = Some(control_at(&control, 2, Control::Pause));
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let outcome = pool.run(rig.job(&control)).await.expect("an answer");
    assert!(
        matches!(outcome, SubtaskOutcome::Paused { tokens } if tokens > 0),
        "{outcome:?}"
    );
    assert_eq!(committed(&rig.journal().await).len(), 2);

    control.set(Control::Run);
    let (result, steps) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "fib.py computes Fibonacci numbers; its tests pass.");
    assert_eq!(steps, 4);
    pool.stop();
}

/// Runs a job whose first step needs approval, answering with `approved`.
async fn decide_shell(approved: bool) -> (Rig, String) {
    let rules = vec![
        Rule::reply(act("shell", json!({ "command": "echo it-ran" })))
            .when_contains("Your subtask (s1)"),
        Rule::reply(answer("denied")).when_contains("did not approve"),
        Rule::reply(answer("ran"))
            .when_contains("Observation of step 1 (shell)")
            .when_contains("it-ran"),
    ];
    let options = Options {
        kind: TaskKind::General,
        execute: Policy::Ask,
        ..Options::default()
    };
    let rig = rig(options, rules).await;
    let pool = WorkerPool::spawn(rig.env(), None).await.expect("pool");
    let control = TaskControl::new();
    let mut events = rig.bus.subscribe();
    let running = tokio::spawn({
        let pool = pool.clone();
        let job = rig.job(&control);
        async move { pool.run(job).await }
    });
    let request = tokio::time::timeout(EVENT_WAIT, async {
        loop {
            match events.recv().await {
                Ok(TroupeEvent::ApprovalPending { request, .. }) => break request,
                Ok(_) => {}
                Err(error) => panic!("the bus failed: {error}"),
            }
        }
    })
    .await
    .expect("an approval is asked for");
    assert_eq!(request.tool, "shell");
    let pending = rig.approvals.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].subtask, "s1");
    let reason = (!approved).then(|| "not now".to_string());
    rig.approvals
        .decide(
            &request.id,
            Decision {
                approved,
                reason,
                by: troupe_store::Approver::Embedder,
            },
        )
        .expect("decided");
    let (result, _) = succeeded(running.await.expect("the run"));
    let journal = rig.journal().await;
    assert!(journal.iter().any(|e| matches!(
        &e.event,
        TaskEvent::ApprovalDecided { request_id, approved: a, by: Some(troupe_store::Approver::Embedder) } if *request_id == request.id && *a == approved
    )));
    pool.stop();
    (rig, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_runs() {
    let (_rig, result) = decide_shell(true).await;
    assert_eq!(result, "ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_shown_to_the_model() {
    let (rig, result) = decide_shell(false).await;
    assert_eq!(result, "denied");
    let observed = observations(&rig.journal().await);
    assert!(
        observed[0].2 && observed[0].1.contains("not now"),
        "{observed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_end_an_attempt_that_never_answers() {
    let rules = vec![Rule::reply(act("list_dir", json!({ "path": "." })))];
    let rig = rig(Options::default(), rules).await;
    let mut env = rig.env();
    env.specialist.max_steps = 3;
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let control = TaskControl::new();

    let outcome = pool.run(rig.job(&control)).await.expect("an answer");
    match outcome {
        SubtaskOutcome::Failed { reason, steps, .. } => {
            assert_eq!(reason, "the step budget (3) ran out");
            assert_eq!(steps, 3);
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    let mut job = rig.job(&control);
    job.attempt = 2;
    job.max_tokens = Some(50);
    let outcome = pool.run(job).await.expect("an answer");
    match outcome {
        SubtaskOutcome::Failed { reason, .. } => {
            assert_eq!(reason, "the token budget (50) ran out")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_steps_are_pruned_to_fit_a_small_context() {
    let rules = vec![
        Rule::reply(answer("pruned"))
            .anywhere()
            .when_contains("earlier steps omitted"),
        Rule::reply(act(
            "shell",
            json!({ "command": "python3 -c \"print('x' * 6000)\"" }),
        )),
    ];
    let options = Options {
        kind: TaskKind::General,
        context_length: 4096,
        ..Options::default()
    };
    let rig = rig(options, rules).await;
    let mut env = rig.env();
    env.specialist.observation_max_bytes = 3000;
    env.specialist.step_max_tokens = 256;
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let control = TaskControl::new();

    let (result, steps) = succeeded(pool.run(rig.job(&control)).await);
    assert_eq!(result, "pruned");
    assert!(
        steps > 2,
        "pruning started after a few long steps ({steps})"
    );
    let rules = rig.rules_used();
    assert_eq!(rules.last(), Some(&Some(0)));
    assert!(rules[..rules.len() - 1].iter().all(|r| *r == Some(1)));
    pool.stop();
}
