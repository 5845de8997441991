//! A subtask run by a worker on another node, in one process: the owner
//! (no model) and the peer (the model, its own store, tools and approval
//! policy) are joined by a loopback [`WorkerPeers`] over the peer's
//! [`WorkerHost`]. What the owner must see: the attempt delegated, every
//! step in its own journal, every step's files checkpointed in its own
//! workspace, the peer's approval parked in its own approvals, pause
//! reaching the peer, and a lost peer as a lost worker whose committed
//! steps the next run replays instead of asking the model again.

use crate::common;
use common::{act, answer};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use troupe_agents::router::Router;
use troupe_agents::runtime::{
    Approvals, Control, Decision, EventBus, TaskControl, TaskJournal, TroupeEvent,
};
use troupe_agents::worker::remote::{
    RemoteJob, RemoteUpdate, WorkerHost, WorkerOffer, WorkerPeers,
};
use troupe_agents::worker::{SubtaskJob, SubtaskOutcome, WorkerEnv, WorkerLost, WorkerPool};
use troupe_config::{ApprovalConfig, SpecialistConfig, TaskKind, ToolsConfig};
use troupe_host::ModelHostHandle;
use troupe_inference::backend::BoxFuture;
use troupe_inference::scripted::{Rule, Script, ScriptedBackend};
use troupe_store::{JournalEntry, Store, SubtaskRecord, SubtaskState, TaskEvent};
use troupe_tools::{builtin_registry, Builtins, FileChange, Policy, Workspace};

const MODEL: &str = "peer-model";
const TASK: &str = "t-0000000000b1";
const WAIT: Duration = Duration::from_secs(120);

fn models_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| common::model_dir(MODEL, 3)).path()
}

/// Write a file, run a shell command (asks the person on the peer), answer.
fn rules(delay_ms: u64) -> Vec<Rule> {
    vec![
        Rule::reply(act(
            "write_file",
            json!({ "path": "src/hello.py", "content": "print('hello')\n" }),
        ))
        .when_contains("Your subtask (s1)")
        .delayed(delay_ms),
        Rule::reply(act("shell", json!({ "command": "python3 src/hello.py" })))
            .when_contains("Observation of step 1 (write_file)")
            .delayed(delay_ms),
        Rule::reply(answer("hello.py prints hello"))
            .when_contains("Observation of step 2 (shell)")
            .when_contains("hello"),
    ]
}

/// One side: its own data dir, store, bus, host, tools and approvals.
struct Node {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    store: Store,
    bus: EventBus,
    backend: ScriptedBackend,
    host: ModelHostHandle,
    approvals: Approvals,
    tools: Arc<troupe_tools::ToolRegistry>,
}

async fn node(with_model: bool, execute: Policy, rules: Vec<Rule>) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_path_buf();
    let store = Store::open(&data_dir).expect("store");
    let backend = ScriptedBackend::new(Script {
        rules,
        ..Script::default()
    });
    let empty = data_dir.join("no-models");
    std::fs::create_dir_all(&empty).expect("dir");
    let models = if with_model {
        models_dir().to_path_buf()
    } else {
        empty
    };
    let config = common::host_config(models, 16_384);
    let (host, _join) = troupe_host::spawn(config, Arc::new(backend.clone()))
        .await
        .expect("host");
    let mut approval = ApprovalConfig::default();
    approval.read = Policy::Allow;
    approval.write = Policy::Allow;
    approval.execute = execute;
    let tools = builtin_registry(Builtins {
        tools: &ToolsConfig::default(),
        approval: &approval,
        user: None,
        memory: None,
    })
    .expect("tools");
    Node {
        _dir: dir,
        data_dir,
        store,
        bus: EventBus::new(),
        backend,
        host,
        approvals: Approvals::default(),
        tools: Arc::new(tools),
    }
}

impl Node {
    fn env(&self) -> WorkerEnv {
        let mut specialist = SpecialistConfig::default_for(TaskKind::General);
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

    async fn journal(&self) -> Vec<JournalEntry> {
        self.store.journal(TASK, 0).await.expect("journal")
    }

    fn workspace(&self) -> Workspace {
        Workspace::open(&self.data_dir, TASK).expect("workspace")
    }
}

fn job(control: &TaskControl) -> SubtaskJob {
    job_of(TASK, control)
}

fn job_of(task: &str, control: &TaskControl) -> SubtaskJob {
    SubtaskJob {
        task_id: task.into(),
        request: "Write a hello script and run it.".to_string(),
        subtask: SubtaskRecord {
            task_id: task.into(),
            id: "s1".into(),
            description: "Write src/hello.py and run it.".to_string(),
            kind: TaskKind::General,
            complexity: 2,
            depends_on: Vec::new(),
            acceptance: "it prints hello".to_string(),
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

/// The peer's host reached directly; `lose_after_commit` makes the peer
/// vanish (its job dropped, polls failing) once it has sent a committed
/// step.
struct Loopback {
    host: WorkerHost,
    lose_after_commit: AtomicBool,
    lost: Arc<AtomicBool>,
}

impl WorkerPeers for Loopback {
    fn offers(&self) -> BoxFuture<Vec<WorkerOffer>> {
        let host = self.host.clone();
        Box::pin(async move { vec![host.offer("peer").await] })
    }

    fn start(&self, node: &str, job: RemoteJob) -> BoxFuture<Result<u64, String>> {
        assert_eq!(node, "peer");
        let result = self.host.start(job, "owner");
        Box::pin(async move { result })
    }

    fn poll(&self, _node: &str, id: u64) -> BoxFuture<Result<Vec<RemoteUpdate>, String>> {
        let host = self.host.clone();
        let lost = Arc::clone(&self.lost);
        let lose = self.lose_after_commit.load(Ordering::SeqCst);
        Box::pin(async move {
            if lost.load(Ordering::SeqCst) {
                return Err("connection reset by peer".to_string());
            }
            let updates = host
                .poll(id)
                .await
                .ok_or_else(|| "unknown job".to_string())?;
            let commit = updates.iter().position(|u| {
                matches!(
                    u,
                    RemoteUpdate::Journal {
                        event: TaskEvent::StepCommitted { .. },
                        ..
                    }
                )
            });
            match commit {
                Some(at) if lose => {
                    // The node dies right after this answer; its job with it.
                    lost.store(true, Ordering::SeqCst);
                    host.cancel(id);
                    Ok(updates[..=at].to_vec())
                }
                _ => Ok(updates),
            }
        })
    }

    fn decide(&self, _node: &str, id: u64, approval: &str, decision: Decision) {
        self.host.decide(id, approval, decision);
    }

    fn control(&self, _node: &str, id: u64, control: Control) {
        self.host.control(id, control);
    }

    fn cancel(&self, _node: &str, id: u64) {
        self.host.cancel(id);
    }
}

async fn pair(execute: Policy, delay_ms: u64) -> (Node, Node, Arc<Loopback>, WorkerPool) {
    let owner = node(false, Policy::Allow, Vec::new()).await;
    Workspace::create(&owner.data_dir, TASK).expect("owner workspace");
    std::fs::write(
        owner.workspace().root().join("research/notes.md"),
        "owner's notes\n",
    )
    .expect("write");
    owner.workspace().checkpoint("notes").expect("checkpoint");
    let peer = node(true, execute, rules(delay_ms)).await;
    let host = WorkerHost::new([peer.env()], peer.data_dir.join("cluster-jobs"));
    let loopback = Arc::new(Loopback {
        host,
        lose_after_commit: AtomicBool::new(false),
        lost: Arc::default(),
    });
    let env = owner.env();
    env.peers.set(loopback.clone());
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    (owner, peer, loopback, pool)
}

async fn next_approval(events: &mut tokio::sync::broadcast::Receiver<TroupeEvent>) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(TroupeEvent::ApprovalPending { request, .. }) => break request.id,
                Ok(_) => {}
                Err(error) => panic!("bus: {error}"),
            }
        }
    })
    .await
    .expect("an approval reaches the owner")
}

fn delegated(entries: &[JournalEntry]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::Delegated { node, reason, .. } => Some((node.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn commits(entries: &[JournalEntry]) -> Vec<(u32, String)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_runs_on_the_peer_with_the_model_and_everything_comes_back() {
    let (owner, peer, loopback, pool) = pair(Policy::Ask, 0).await;
    let control = TaskControl::new();
    let mut events = owner.bus.subscribe();
    let running = tokio::spawn({
        let (pool, job) = (pool.clone(), job(&control));
        async move { pool.run(job).await }
    });

    // The peer's policy asks; the question is the owner's person's.
    let approval = next_approval(&mut events).await;
    let pending = owner.approvals.pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].request.tool, "shell");
    assert_eq!(pending[0].subtask, "s1");
    owner
        .approvals
        .decide(
            &approval,
            Decision {
                approved: true,
                reason: None,
                by: troupe_store::Approver::Embedder,
            },
        )
        .expect("decided");

    let outcome = tokio::time::timeout(WAIT, running)
        .await
        .expect("ends")
        .expect("joins");
    match outcome {
        Ok(SubtaskOutcome::Succeeded { result, steps, .. }) => {
            assert_eq!(result, "hello.py prints hello");
            assert_eq!(steps, 3);
        }
        other => panic!("expected success, got {other:?}"),
    }

    let journal = owner.journal().await;
    let sent = delegated(&journal);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "peer");
    assert!(
        sent[0].1.contains("does not have the model"),
        "{}",
        sent[0].1
    );
    let kinds: Vec<&str> = journal.iter().map(|e| e.event.kind()).collect();
    for kind in [
        "step_started",
        "step_observed",
        "step_committed",
        "approval_requested",
        "approval_decided",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // The approval entry comes after the call was parked here and before
    // its decision.
    let asked = kinds
        .iter()
        .position(|k| *k == "approval_requested")
        .unwrap();
    let decided = kinds.iter().position(|k| *k == "approval_decided").unwrap();
    assert!(asked < decided);

    // Each committed step is a checkpoint of the owner's workspace, and
    // its files are there, next to the owner's own.
    let ws = owner.workspace();
    let checkpoints: Vec<String> = ws
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.id.0)
        .collect();
    let committed = commits(&journal);
    assert_eq!(committed.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2]);
    for (_, id) in &committed {
        assert!(checkpoints.contains(id), "{id} is not an owner checkpoint");
    }
    assert_eq!(
        std::fs::read_to_string(ws.root().join("src/hello.py")).unwrap(),
        "print('hello')\n"
    );
    assert!(ws.root().join("research/notes.md").is_file());

    // The peer's model answered every step; the owner has none.
    assert_eq!(peer.backend.calls().len(), 3);
    // The peer keeps nothing of the job once the owner has it all.
    tokio::time::timeout(WAIT, async {
        while loopback.host.jobs() > 0
            || std::fs::read_dir(peer.data_dir.join("cluster-jobs"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the peer's scratch copy is removed");
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_lost_mid_subtask_is_a_lost_worker_and_the_next_run_replays_its_steps() {
    let (owner, peer, loopback, pool) = pair(Policy::Allow, 0).await;
    loopback.lose_after_commit.store(true, Ordering::SeqCst);
    let control = TaskControl::new();
    let lost = tokio::time::timeout(WAIT, pool.run(job(&control)))
        .await
        .expect("ends");
    match &lost {
        Err(WorkerLost::PeerLost { node, reason, .. }) => {
            assert_eq!(node, "peer");
            assert!(reason.contains("connection reset"), "{reason}");
        }
        other => panic!("expected a lost peer, got {other:?}"),
    }
    // Step 1 made it here before the peer died.
    let journal = owner.journal().await;
    assert_eq!(
        commits(&journal).iter().map(|c| c.0).collect::<Vec<_>>(),
        [1]
    );
    assert!(owner.workspace().root().join("src/hello.py").is_file());
    let asked_before = peer.backend.calls().len();
    // In this process the "dead" peer's worker is still winding down; a
    // real one would be gone. Its worker is free again once it has.
    tokio::time::timeout(WAIT, async {
        while loopback.host.offer("peer").await.free(TaskKind::General) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the peer's worker stops");

    // The peer is back; the same attempt goes out again and step 1 is
    // replayed from the journal the owner sends, not asked of the model.
    loopback.lose_after_commit.store(false, Ordering::SeqCst);
    loopback.lost.store(false, Ordering::SeqCst);
    let outcome = tokio::time::timeout(WAIT, pool.run(job(&control)))
        .await
        .expect("ends");
    assert!(
        matches!(outcome, Ok(SubtaskOutcome::Succeeded { steps: 3, .. })),
        "{outcome:?}"
    );
    let first_rule_calls = peer
        .backend
        .calls()
        .iter()
        .filter(|c| c.rule == Some(0))
        .count();
    assert_eq!(first_rule_calls, 1, "step 1 was not asked for again");
    assert!(peer.backend.calls().len() > asked_before);
    let journal = owner.journal().await;
    assert_eq!(delegated(&journal).len(), 2);
    assert_eq!(
        commits(&journal).iter().map(|c| c.0).collect::<Vec<_>>(),
        [1, 2]
    );
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_reaches_the_peers_worker_and_resume_continues_there() {
    let (owner, peer, _loopback, pool) = pair(Policy::Allow, 200).await;
    let control = TaskControl::new();
    let mut events = owner.bus.subscribe();
    let running = tokio::spawn({
        let (pool, job) = (pool.clone(), job(&control));
        async move { pool.run(job).await }
    });
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(TroupeEvent::Journal(e)) = events.recv().await {
                if matches!(e.event, TaskEvent::StepCommitted { step: 1, .. }) {
                    break;
                }
            }
        }
    })
    .await
    .expect("step 1 commits");
    control.set(Control::Pause);
    let paused = tokio::time::timeout(WAIT, running)
        .await
        .expect("ends")
        .expect("joins");
    assert!(
        matches!(paused, Ok(SubtaskOutcome::Paused { .. })),
        "{paused:?}"
    );
    // The peer stops at the first step boundary after the pause reaches
    // it: after step 1, or after step 2 when that was already under way.
    let before = commits(&owner.journal().await).len();
    assert!((1..=2).contains(&before), "{before} steps before the pause");

    control.set(Control::Run);
    let outcome = tokio::time::timeout(WAIT, pool.run(job(&control)))
        .await
        .expect("ends");
    assert!(
        matches!(outcome, Ok(SubtaskOutcome::Succeeded { steps: 3, .. })),
        "{outcome:?}"
    );
    // No step was asked of the model twice: the peer replayed them.
    let rules: Vec<Option<usize>> = peer.backend.calls().iter().map(|c| c.rule).collect();
    assert_eq!(rules, [Some(0), Some(1), Some(2)]);
    assert_eq!(commits(&owner.journal().await).len(), 2);
    pool.stop();
}

/// A peer that answers one committed step whose files name `path`.
struct Hostile {
    path: String,
    cancelled: Mutex<bool>,
}

impl WorkerPeers for Hostile {
    fn offers(&self) -> BoxFuture<Vec<WorkerOffer>> {
        Box::pin(async {
            vec![WorkerOffer {
                node: "hostile".into(),
                models: vec![MODEL.into()],
                kinds: vec![troupe_agents::worker::remote::KindOffer {
                    kind: TaskKind::General,
                    workers: 1,
                    free: 1,
                }],
            }]
        })
    }
    fn start(&self, _node: &str, _job: RemoteJob) -> BoxFuture<Result<u64, String>> {
        Box::pin(async { Ok(7) })
    }
    fn poll(&self, _node: &str, _id: u64) -> BoxFuture<Result<Vec<RemoteUpdate>, String>> {
        let path = self.path.clone();
        Box::pin(async move {
            Ok(vec![RemoteUpdate::Journal {
                event: TaskEvent::StepCommitted {
                    subtask: "s1".into(),
                    attempt: 1,
                    step: 1,
                    checkpoint: "0".repeat(40),
                },
                files: vec![FileChange {
                    path,
                    content: Some(b"owned".to_vec()),
                    executable: false,
                }],
                label: Some("s1 attempt 1 step 1: write_file".into()),
            }])
        })
    }
    fn decide(&self, _: &str, _: u64, _: &str, _: Decision) {}
    fn control(&self, _: &str, _: u64, _: Control) {}
    fn cancel(&self, _: &str, _: u64) {
        *self.cancelled.lock().unwrap() = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_files_outside_the_workspace_fails_the_attempt_and_writes_nothing() {
    let owner = node(false, Policy::Allow, Vec::new()).await;
    Workspace::create(&owner.data_dir, TASK).expect("workspace");
    let hostile = Arc::new(Hostile {
        path: "../../escaped.txt".into(),
        cancelled: Mutex::new(false),
    });
    let env = owner.env();
    env.peers.set(hostile.clone());
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let control = TaskControl::new();
    let outcome = tokio::time::timeout(WAIT, pool.run(job(&control)))
        .await
        .expect("ends");
    match outcome {
        Ok(SubtaskOutcome::Failed { reason, .. }) => {
            assert!(reason.contains("../../escaped.txt"), "{reason}");
        }
        other => panic!("expected a failed attempt, got {other:?}"),
    }
    assert!(
        *hostile.cancelled.lock().unwrap(),
        "the peer is told to stop"
    );
    assert!(!owner.data_dir.join("escaped.txt").exists());
    assert!(!owner
        .data_dir
        .parent()
        .unwrap()
        .join("escaped.txt")
        .exists());
    assert!(commits(&owner.journal().await).is_empty());
    pool.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_goes_to_a_peer_when_every_local_worker_is_busy() {
    const OTHER: &str = "t-0000000000b2";
    // Both nodes have the model; the owner's one worker is slow.
    let owner = node(true, Policy::Allow, rules(300)).await;
    for task in [TASK, OTHER] {
        Workspace::create(&owner.data_dir, task).expect("workspace");
    }
    let peer = node(true, Policy::Allow, rules(0)).await;
    let host = WorkerHost::new([peer.env()], peer.data_dir.join("cluster-jobs"));
    let env = owner.env();
    env.peers.set(Arc::new(Loopback {
        host,
        lose_after_commit: AtomicBool::new(false),
        lost: Arc::default(),
    }));
    let pool = WorkerPool::spawn(env, None).await.expect("pool");
    let control = TaskControl::new();

    let first = tokio::spawn({
        let (pool, job) = (pool.clone(), job_of(TASK, &control));
        async move { pool.run(job).await }
    });
    tokio::time::timeout(WAIT, async {
        while pool.busy() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the local worker takes the first job");
    let second = tokio::time::timeout(WAIT, pool.run(job_of(OTHER, &control)))
        .await
        .expect("ends");
    assert!(
        matches!(second, Ok(SubtaskOutcome::Succeeded { .. })),
        "{second:?}"
    );
    let first = tokio::time::timeout(WAIT, first)
        .await
        .expect("ends")
        .expect("joins");
    assert!(
        matches!(first, Ok(SubtaskOutcome::Succeeded { .. })),
        "{first:?}"
    );

    let sent = delegated(&owner.store.journal(OTHER, 0).await.expect("journal"));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].1.contains("every local general worker is busy"),
        "{}",
        sent[0].1
    );
    assert!(
        delegated(&owner.journal().await).is_empty(),
        "the first ran here"
    );
    assert_eq!(peer.backend.calls().len(), 3, "the peer ran the second");
    assert!(Workspace::open(&owner.data_dir, OTHER)
        .unwrap()
        .root()
        .join("src/hello.py")
        .is_file());
    pool.stop();
}
