//! The agent front doors end to end: `troupe run`, `troupe tasks ...` and
//! `troupe chat` as a person runs them, on the scripted backend (which
//! replays examples/fib-script.json) and a synthetic model file the
//! ModelHost's catalog needs but the backend never reads.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const JOB: &str = "write a Python fibonacci function with tests";

/// One test's world: a model dir, a script, a troupe.toml and a data dir.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// `script` is the replay script; `extra` is appended to troupe.toml.
    fn new(script: &Value, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        troupe_testkit::write_node(
            dir.path(),
            &["small"],
            &serde_json::to_string_pretty(script).unwrap(),
            &format!("[agents]\nmodel = \"small\"\nprogress_interval_s = 1\n{extra}"),
        );
        Env { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn workspace(&self, id: &str) -> PathBuf {
        self.data().join("workspaces").join(id)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
        for (key, _) in std::env::vars() {
            if key.starts_with("TROUPE_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--config")
            .arg(self.dir.path().join("troupe.toml"))
            .args(args)
            .env("TROUPE_LOG", "warn")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"));
        cmd
    }

    fn troupe(&self, args: &[&str]) -> Output {
        self.troupe_with_input(args, "")
    }

    fn troupe_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        // A hang fails this test with what the process printed, instead of
        // holding the whole suite until CI's limit.
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel();
        let watchdog = std::thread::spawn(move || {
            if finished
                .recv_timeout(std::time::Duration::from_secs(180))
                .is_err()
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                return true;
            }
            false
        });
        let out = child.wait_with_output().unwrap();
        let _ = done.send(());
        if watchdog.join().unwrap() {
            panic!(
                "troupe {args:?} did not end within 180 s and was killed\nstdout:\n{}\nstderr:\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        out
    }

    /// The task's journal, from `tasks log --json`.
    fn journal(&self, id: &str) -> Vec<Value> {
        let out = self.troupe(&["tasks", "log", id, "--json"]);
        assert_ok(&out);
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The fib script, optionally with every worker reply slowed down.
fn fib_script(worker_delay_ms: Option<u64>) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json");
    let mut script: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if let Some(delay) = worker_delay_ms {
        for rule in script["rules"].as_array_mut().unwrap() {
            let contains = rule["contains"].to_string();
            if !contains.contains("Plan the job") && !contains.contains("Write the final answer") {
                rule["delay_ms"] = delay.into();
            }
        }
    }
    script
}

const ALLOW_SHELL: &str = "[approval]\nexecute = \"allow\"";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_fails_with(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure, got success:\n{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(needle),
        "stderr lacks `{needle}`:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
}

/// The id from the `task <id>` line.
fn task_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("task "))
        .unwrap_or_else(|| panic!("no `task <id>` line in:\n{stdout}"))
        .trim()
        .to_string()
}

/// (subtask, attempt, step) of every `step_committed` entry.
fn committed_steps(journal: &[Value]) -> Vec<(String, u64, u64)> {
    journal
        .iter()
        .map(|e| &e["event"])
        .filter(|e| e["type"] == "step_committed")
        .map(|e| {
            (
                e["subtask"].as_str().unwrap().to_string(),
                e["attempt"].as_u64().unwrap(),
                e["step"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The checkpoint labels of the workspace's steps (`s1 attempt 1 step 2:
/// write_file`), oldest first.
fn step_checkpoints(workspace: &Path) -> Vec<String> {
    // The workspace's git dir lies outside it: DATA_DIR/git/<task>.git.
    let task = workspace.file_name().expect("task id");
    let git_dir = workspace
        .parent()
        .and_then(Path::parent)
        .expect("data dir")
        .join("git")
        .join(format!("{}.git", task.to_string_lossy()));
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(&git_dir)
        .args(["log", "--reverse", "--format=%s"])
        .output()
        .unwrap();
    assert_ok(&out);
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("checkpoint: "))
        .filter(|l| l.contains(" attempt ") && l.contains(" step "))
        .map(str::to_string)
        .collect()
}

#[test]
fn run_does_the_fib_job_and_tasks_shows_it() {
    let env = Env::new(&fib_script(None), "");
    // The shell step asks for approval; the answer comes on stdin.
    let out = env.troupe_with_input(&["run", JOB], "y\n");
    assert_ok(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("task t-"), "{stdout}");
    let id = task_id(&stdout);
    assert!(stdout.contains("planned 2 subtasks"), "{stdout}");
    assert!(stdout.contains("s1 step 3 committed: shell"), "{stdout}");
    assert!(stdout.contains("Approve? [y/N]"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("shows how to call it and run the tests."),
        "the answer is not last:\n{stdout}"
    );

    let ws = env.workspace(&id);
    assert!(ws.join("src/fib.py").is_file());
    assert!(ws.join("src/test_fib.py").is_file());
    assert!(ws.join("output/USAGE.md").is_file());
    let tests = Command::new("python3")
        .args(["-m", "unittest", "-v", "test_fib"])
        .current_dir(ws.join("src"))
        .output()
        .unwrap();
    assert_ok(&tests);

    let out = env.troupe(&["tasks", "log", &id]);
    assert_ok(&out);
    let log = text(&out.stdout);
    assert!(log.contains(" planned "), "{log}");
    assert_eq!(log.matches(" step_committed ").count(), 4, "{log}");
    let last = log.lines().last().unwrap();
    assert!(
        last.contains("finished") && last.contains("succeeded"),
        "{log}"
    );

    let journal = env.journal(&id);
    let committed = committed_steps(&journal);
    let expected: Vec<(String, u64, u64)> = [("s1", 1), ("s1", 2), ("s1", 3), ("s2", 1)]
        .iter()
        .map(|(s, step)| (s.to_string(), 1, *step))
        .collect();
    assert_eq!(committed, expected);
    // One checkpoint commit per step, labelled with it.
    let checkpoints = step_checkpoints(&ws);
    assert_eq!(checkpoints.len(), 4, "{checkpoints:?}");
    for ((subtask, attempt, step), label) in committed.iter().zip(&checkpoints) {
        assert!(
            label.starts_with(&format!("{subtask} attempt {attempt} step {step}:")),
            "{label}"
        );
    }

    // A prefix of the id is enough.
    let out = env.troupe(&["tasks", "show", &id[..8]]);
    assert_ok(&out);
    let show = text(&out.stdout);
    assert!(show.contains(&format!("task       {id}")), "{show}");
    assert!(show.contains("state      succeeded"), "{show}");
    assert!(show.contains("s1 succeeded"), "{show}");
    assert!(show.contains("s2 succeeded"), "{show}");
    assert!(show.contains("src/fib.py defines fib(n)"), "{show}");

    let out = env.troupe(&["tasks", "list"]);
    assert_ok(&out);
    let list = text(&out.stdout);
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("succeeded") && row.contains("2/2"), "{list}");
    assert!(row.contains(JOB), "{list}");
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_redoing_a_committed_step() {
    // Each worker reply takes a while, so the kill lands mid-task.
    let env = Env::new(&fib_script(Some(400)), "");
    let mut child: Child = env
        .command(&["run", "--yes", JOB])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut id = None;
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the run ended before s1's step 2:\n{seen}"))
            .unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("task ") {
            id = Some(rest.trim().to_string());
        }
        if line.starts_with("s1 step 2 committed") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = id.expect("a task line");
    assert!(!seen.contains("finished"), "{seen}");

    let out = env.troupe(&["tasks", "resume", "--yes", &id]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("shows how to call it and run the tests."),
        "{}",
        text(&out.stdout)
    );

    let journal = env.journal(&id);
    let seqs: Vec<u64> = journal.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let expected_seqs: Vec<u64> = (0..journal.len() as u64).collect();
    assert_eq!(seqs, expected_seqs, "the journal has gaps");
    assert!(
        journal.iter().any(|e| e["event"]["type"] == "recovered"),
        "no `recovered` entry"
    );
    let committed = committed_steps(&journal);
    let mut counts: HashMap<&(String, u64, u64), usize> = HashMap::new();
    for step in &committed {
        *counts.entry(step).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "a committed step was committed again: {committed:?}"
    );
    for want in [("s1", 1), ("s1", 2), ("s1", 3), ("s2", 1)] {
        assert!(
            committed.contains(&(want.0.to_string(), 1, want.1)),
            "{want:?} missing from {committed:?}"
        );
    }
    let last = journal.last().unwrap();
    assert_eq!(last["event"]["type"], "finished");
    assert_eq!(last["event"]["state"], "succeeded");

    let checkpoints = step_checkpoints(&env.workspace(&id));
    let distinct: BTreeSet<&String> = checkpoints.iter().collect();
    assert_eq!(distinct.len(), checkpoints.len(), "{checkpoints:?}");
    assert_eq!(checkpoints.len(), committed.len(), "{checkpoints:?}");
}

#[test]
fn cancel_ends_an_unfinished_task_for_good() {
    let env = Env::new(&fib_script(Some(400)), "");
    let mut child = env
        .command(&["run", "--yes", JOB])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let id = task_id(&first);
    for line in lines.by_ref() {
        if line.unwrap().starts_with("s1 started") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let out = env.troupe(&["tasks", "cancel", &id[..10]]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout).trim(), format!("task {id} cancelled"));

    let out = env.troupe(&["tasks", "list"]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("cancelled"),
        "{}",
        text(&out.stdout)
    );
    let out = env.troupe(&["tasks", "resume", &id]);
    assert_fails_with(&out, "cancelled");
    let out = env.troupe(&["tasks", "cancel", &id]);
    assert_fails_with(&out, "cannot cancel");
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused() {
    let env = Env::new(&fib_script(None), ALLOW_SHELL);
    let mut chat = env
        .command(&["chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The greeting comes once troupe has started, holding the data dir.
    let mut lines = BufReader::new(chat.stdout.take().unwrap()).lines();
    let greeting = lines.next().unwrap().unwrap();
    assert!(greeting.contains("troupe chat"), "{greeting}");

    let out = env.troupe(&["tasks", "list"]);
    assert_fails_with(&out, "already in use");
    assert_fails_with(&out, &env.data().display().to_string());
    let out = env.troupe(&["run", "--yes", JOB]);
    assert_fails_with(&out, "already in use");

    drop(chat.stdin.take());
    assert!(chat.wait().unwrap().success());
    let out = env.troupe(&["tasks", "list"]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("no tasks"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let env = Env::new(&fib_script(None), "");
    let out = env.troupe(&["run", ""]);
    assert_fails_with(&out, "the job is empty");

    let out = env.troupe(&["run", "--model", "nope", JOB]);
    assert_fails_with(&out, "nope");
    let stderr = text(&out.stderr);
    let id = task_id(&text(&out.stdout));
    assert!(stderr.contains(&format!("task {id} failed")), "{stderr}");

    let out = env.troupe(&["tasks", "show", "t-doesnotexist"]);
    assert_fails_with(&out, "no task");
    // --data-dir wins over the configured one.
    let elsewhere = env.dir.path().join("elsewhere");
    let out = env.troupe(&["tasks", "list", "--data-dir", elsewhere.to_str().unwrap()]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("no tasks in"),
        "{}",
        text(&out.stdout)
    );
    let out = env.troupe(&["tasks", "log", "t-"]);
    assert_ok(&out); // the only task
    let out = env.troupe(&["tasks", "resume", &id]);
    assert_fails_with(&out, "nothing to resume");
}

#[test]
fn piped_chat_runs_the_job_to_its_end() {
    let env = Env::new(&fib_script(None), ALLOW_SHELL);
    let out = env.troupe_with_input(&["chat"], &format!("{JOB}\n"));
    assert_ok(&out);
    let stdout = text(&out.stdout);
    let started = stdout
        .find("Started task t-")
        .unwrap_or_else(|| panic!("no task started:\n{stdout}"));
    let id: String = stdout[started + "Started task ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let end = stdout
        .find(&format!("Task {id} succeeded"))
        .unwrap_or_else(|| panic!("no success message for {id}:\n{stdout}"));
    assert!(started < end, "{stdout}");
    assert!(env.workspace(&id).join("src/test_fib.py").is_file());
}

/// Three subtasks sharing a workspace, each appending one line per shell
/// step to `effects.txt` and then sleeping (each for its own time, so
/// their steps interleave), so a kill can land mid-step.
fn three_subtasks_script(steps: u32) -> Value {
    let subtasks: Vec<Value> = (1..=3)
        .map(|i| {
            serde_json::json!({
                "id": format!("s{i}"),
                "description": format!("Append your marks s{i}-1 to s{i}-{steps} to effects.txt, one per step."),
                "kind": "code",
                "complexity": 2,
                "depends_on": [],
                "acceptance": "effects.txt holds each mark once"
            })
        })
        .collect();
    let plan = serde_json::json!({ "subtasks": subtasks }).to_string();
    let mut rules = vec![
        serde_json::json!({"contains": ["Plan the job below"], "reply": plan}),
        serde_json::json!({"contains": ["Write the final answer"], "reply": "Every mark is in effects.txt once."}),
    ];
    let shell = |s: u32, k: u32| {
        serde_json::json!({
            "thought": format!("mark {k}"),
            "action": {"tool": "shell", "args": {
                "command": format!(
                    "echo s{s}-{k} >> effects.txt && sleep 0.{} && echo done-s{s}-{k}",
                    [2, 45, 7][s as usize - 1]
                )
            }}
        })
        .to_string()
    };
    for s in 1..=3 {
        rules.push(serde_json::json!({
            "contains": [format!("Your subtask (s{s})")],
            "reply": shell(s, 1), "delay_ms": 100
        }));
        for k in 2..=steps + 1 {
            let reply = if k <= steps {
                shell(s, k)
            } else {
                serde_json::json!({"thought": "all marks are in", "final": format!("s{s} marks appended")})
                    .to_string()
            };
            rules.push(serde_json::json!({
                "contains": [format!("Observation of step {} (shell)", k - 1), format!("done-s{s}-{}", k - 1)],
                "reply": reply, "delay_ms": 100
            }));
        }
    }
    serde_json::json!({ "rules": rules, "token_delay_ms": 0 })
}

#[test]
fn three_subtasks_killed_ten_times_repeat_no_side_effect() {
    const STEPS: u32 = 8;
    const KILLS: usize = 10;
    let env = Env::new(
        &three_subtasks_script(STEPS),
        "[[agents.specialists]]\nkind = \"code\"\nworkers = 3\n",
    );
    let effects = |id: &str| -> Vec<String> {
        std::fs::read_to_string(env.workspace(id).join("effects.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let mut id: Option<String> = None;
    let mut kills = 0;
    while kills < KILLS {
        let args: Vec<&str> = match &id {
            None => vec!["run", "--yes", JOB],
            Some(id) => vec!["tasks", "resume", "--yes", id],
        };
        let mut child = env
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        if id.is_none() {
            let first = lines.next().unwrap().unwrap();
            id = Some(task_id(&first));
        }
        let task = id.clone().unwrap();
        // Drain stdout so troupe never blocks on it.
        let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        // Two effects new in this round: the first step's is committed (a
        // step's tool and checkpoint hold the workspace's step lock), the
        // second's tool is sleeping. Kill now, mid-step.
        let before: BTreeSet<String> = effects(&task).into_iter().collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut ended = false;
        loop {
            let new = effects(&task)
                .into_iter()
                .filter(|l| !before.contains(l))
                .count();
            if new >= 2 {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                ended = true;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {kills} made no progress"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if ended {
            // Finished before it was killed often enough: fails below, once
            // the effects have been checked.
            assert!(child.wait().unwrap().success());
            reader.join().unwrap();
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        kills += 1;
    }
    let id = id.unwrap();
    if kills == KILLS {
        let out = env.troupe(&["tasks", "resume", "--yes", &id]);
        assert_ok(&out);
    }

    let mut got = effects(&id);
    got.sort();
    let mut want: Vec<String> = (1..=3)
        .flat_map(|s| (1..=STEPS).map(move |k| format!("s{s}-{k}")))
        .collect();
    want.sort();
    assert_eq!(
        got, want,
        "every mark once: no side effect repeated or lost"
    );
    assert_eq!(
        kills, KILLS,
        "the task finished before it was killed {KILLS} times"
    );

    let journal = env.journal(&id);
    let all = serde_json::to_string(&journal).unwrap();
    assert!(!all.contains("index is locked"), "{all}");
    let committed = committed_steps(&journal);
    let distinct: BTreeSet<&(String, u64, u64)> = committed.iter().collect();
    assert_eq!(
        distinct.len(),
        committed.len(),
        "a step committed twice: {committed:?}"
    );
    assert_eq!(committed.len(), 3 * STEPS as usize, "{committed:?}");
    assert!(
        committed.iter().all(|(_, attempt, _)| *attempt == 1),
        "no subtask started over: {committed:?}"
    );
    // Each kill landed mid-step, and each such step was undone and redone.
    let recovered = journal
        .iter()
        .filter(|e| e["event"]["type"] == "recovered")
        .count();
    assert!(
        recovered >= KILLS,
        "{recovered} recoveries for {KILLS} kills"
    );
    let last = journal.last().unwrap();
    assert_eq!(last["event"]["type"], "finished");
    assert_eq!(last["event"]["state"], "succeeded");
}
