//! `troupe chat --tui` as a person uses it: the real binary in a tmux pane
//! (160×48), keys sent with `tmux send-keys`, the screen read with `tmux
//! capture-pane`. On the scripted backend (examples/fib-script.json) and a
//! synthetic model file, as tests/it/agent_cli.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const JOB: &str = "write a Python fibonacci function with tests";
const ALLOW_SHELL: &str = "[approval]\nexecute = \"allow\"";
/// How long one expected screen may take to appear.
const PATIENCE: Duration = Duration::from_secs(90);
/// Where the right-hand column starts in a 160-column pane.
const RIGHT: usize = 80;

/// One test's world: a model dir, a script, a troupe.toml, a data dir and
/// its own tmux server running `troupe chat --tui`.
struct Tui {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Tui {
    /// Starts the view with `script`; `extra` is appended to troupe.toml.
    fn start(script: &Value, extra: &str) -> Tui {
        require_tmux();
        let dir = tempfile::tempdir().unwrap();
        let config = troupe_testkit::write_node(
            dir.path(),
            &["small"],
            &serde_json::to_string_pretty(script).unwrap(),
            &format!("[agents]\nmodel = \"small\"\nprogress_interval_s = 1\n{extra}"),
        );
        // After the view, the pane keeps a shell: what it does shows
        // whether the terminal was given back in a usable state.
        let run = dir.path().join("tui.sh");
        std::fs::write(
            &run,
            format!(
                "{bin} --config {config} chat --tui 2>{stderr}\n\
                 echo \"troupe exited with status $?\"\n\
                 exec sh -i\n",
                bin = quote(Path::new(env!("CARGO_BIN_EXE_troupe"))),
                config = quote(&config),
                stderr = quote(&dir.path().join("stderr.txt")),
            ),
        )
        .unwrap();
        let tui = Tui {
            socket: dir.path().join("tmux.sock"),
            dir,
        };
        // Its own server, started here, so the pane gets this environment
        // (less TROUPE_*) and no one's tmux configuration.
        let mut cmd = tui.tmux();
        cmd.args(["-f", "/dev/null", "new-session", "-d", "-s", "tui"])
            .args(["-x", "160", "-y", "48", "sh"])
            .arg(&run)
            .current_dir(tui.dir.path())
            .env("TROUPE_LOG", "warn")
            .env("XDG_CONFIG_HOME", tui.dir.path().join("xdg"))
            .env("TERM", "xterm-256color")
            .env("PS1", "$ ");
        for (key, _) in std::env::vars() {
            if key.starts_with("TROUPE_") && key != "TROUPE_LOG" {
                cmd.env_remove(key);
            }
        }
        assert_ok(&cmd.output().unwrap());
        tui.wait_for("the view", |screen| {
            screen.contains("Say something (Enter sends)") && screen.contains("ModelHost")
        });
        tui
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    /// The pane's text now.
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "tui"])
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        assert_ok(
            &self
                .tmux()
                .args(["send-keys", "-t", "tui", "-l", text])
                .output()
                .unwrap(),
        );
    }

    /// Presses keys by tmux name (`Enter`, `Tab`, `Escape`, `C-c`, `p`).
    fn press(&self, keys: &[&str]) {
        for key in keys {
            assert_ok(
                &self
                    .tmux()
                    .args(["send-keys", "-t", "tui", key])
                    .output()
                    .unwrap(),
            );
        }
    }

    /// Polls the pane until `ready` holds; fails with the last screen and
    /// troupe's stderr when it does not come.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if start.elapsed() > PATIENCE {
                let stderr =
                    std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default();
                panic!(
                    "waited {PATIENCE:?} for {what}; the screen:\n{screen}\ntroupe's stderr:\n{stderr}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Says a job in the input line; the id of the task it started.
    fn submit(&self, known: &[String]) -> String {
        self.type_text(JOB);
        self.press(&["Enter"]);
        let screen = self.wait_for("a new task in the tree", |s| {
            task_ids(s).iter().any(|id| !known.contains(id))
        });
        task_ids(&screen)
            .into_iter()
            .find(|id| !known.contains(id))
            .unwrap()
    }

    /// Waits until task `id` shows `state` in the tree.
    fn wait_for_state(&self, id: &str, state: &str) -> String {
        self.wait_for(&format!("{id} {state}"), |s| {
            task_state(s, id).as_deref() == Some(state)
        })
    }

    /// The approvals decided in task `id`'s journal, read with `troupe
    /// tasks log --json` once the view has quit.
    fn decisions(&self, id: &str) -> Vec<bool> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
        for (key, _) in std::env::vars() {
            if key.starts_with("TROUPE_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .arg("--config")
            .arg(self.dir.path().join("troupe.toml"))
            .args(["tasks", "log", id, "--json"])
            .env("TROUPE_LOG", "warn")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["event"]["type"] == "approval_decided")
            .map(|e| e["event"]["approved"].as_bool().unwrap())
            .collect()
    }

    /// Quits with `key` and checks that the process ended well and the
    /// shell after it works: the terminal left raw mode and the
    /// alternate screen.
    fn quit_with(&self, key: &str) {
        self.press(&[key]);
        let screen = self.wait_for("troupe to exit", |s| {
            s.contains("troupe exited with status")
        });
        assert!(
            screen.contains("troupe exited with status 0"),
            "{screen}\nstderr:\n{}",
            std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default()
        );
        assert!(
            !screen.contains("ModelHost"),
            "the view is still shown:\n{screen}"
        );
        self.type_text("echo shell-$((40+2))");
        self.press(&["Enter"]);
        self.wait_for("the shell to answer", |s| {
            s.lines().any(|l| l.trim_end() == "shell-42")
        });
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

fn require_tmux() {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "tmux is not installed: these tests drive `troupe chat --tui` in a tmux pane; \
             install it (`apt-get install tmux`; scripts/install-deps.sh does)"
        ),
    }
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// The right-hand column of each line (approvals, tasks, ModelHost).
fn right_column(screen: &str) -> impl Iterator<Item = String> + '_ {
    screen.lines().map(|l| l.chars().skip(RIGHT).collect())
}

/// Ids of the tasks in the tree, top first.
fn task_ids(screen: &str) -> Vec<String> {
    right_column(screen)
        .filter_map(|line| {
            let at = line.find("t-")?;
            let id: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            // A tree row starts with the id and its state follows.
            let before = line[..at].trim_start_matches(['│', '▶', ' ']);
            (id.len() == 14 && before.is_empty()).then_some(id)
        })
        .collect()
}

/// The state the tree shows for task `id`.
fn task_state(screen: &str, id: &str) -> Option<String> {
    right_column(screen).find_map(|line| {
        let rest = line.split_once(id)?.1;
        let before = line.split_once(id)?.0.trim_start_matches(['│', '▶', ' ']);
        if !before.is_empty() {
            return None;
        }
        rest.split_whitespace().next().map(str::to_string)
    })
}

#[test]
fn a_job_typed_in_the_view_runs_to_its_end_and_the_model_host_shows_the_model() {
    let tui = Tui::start(&fib_script(None), ALLOW_SHELL);
    let screen = tui.screen();
    assert!(screen.contains("no tasks yet"), "{screen}");
    assert!(screen.contains("of budget"), "no memory gauge:\n{screen}");
    let id = tui.submit(&[]);
    let screen = tui.wait_for_state(&id, "succeeded");
    let tree = right_column(&screen).collect::<Vec<_>>().join("\n");
    assert!(tree.contains("✓ s1 succeeded [code]"), "{screen}");
    assert!(tree.contains("✓ s2 succeeded [general]"), "{screen}");
    assert!(
        screen.contains(&format!("{id} finished succeeded")),
        "the event log lacks the end:\n{screen}"
    );
    assert!(screen.contains(&format!("you> {JOB}")), "{screen}");
    assert!(screen.contains("troupe> "), "{screen}");
    // The ModelHost keeps the model loaded after the job: its row, slots
    // and the gauge of memory used against the budget.
    // (A slot can still be busy for a moment after the task's end, with the
    // UX's last reply: wait for the idle row.)
    let screen = tui.wait_for("the model in the ModelHost pane, idle", |s| {
        right_column(s).any(|l| l.contains("small") && l.contains("slots 0/"))
    });
    let host: Vec<String> = right_column(&screen)
        .skip_while(|l| !l.contains("ModelHost"))
        .take(6)
        .collect();
    let host = host.join("\n");
    assert!(host.contains("MiB of") && host.contains("budget"), "{host}");
    assert!(host.contains("1 loaded"), "{host}");
    assert!(host.contains("% of budget"), "{host}");
    assert!(host.contains("slots 0/"), "{host}");
    tui.quit_with("Escape");
    assert!(tui
        .dir
        .path()
        .join("data/workspaces")
        .join(&id)
        .join("src/test_fib.py")
        .is_file());
}

#[test]
fn a_waiting_tool_call_is_approved_with_a_and_another_denied_with_d() {
    // No [approval] section: the shell step asks.
    let tui = Tui::start(&fib_script(None), "");
    let first = tui.submit(&[]);
    let screen = tui.wait_for("an approval", |s| s.contains("Approvals: 1 waiting"));
    let pane: String = right_column(&screen).collect::<Vec<_>>().join("\n");
    assert!(pane.contains("shell (execute) for"), "{screen}");
    assert!(pane.contains("python3 -m unittest"), "{screen}");
    // Tab twice: from the input line to the tree, then to the approvals.
    tui.press(&["Tab", "Tab", "a"]);
    let screen = tui.wait_for_state(&first, "succeeded");
    assert!(
        screen.contains(&format!("approved shell for {first}")),
        "{screen}"
    );
    assert!(
        screen.contains("no tool call waits for approval"),
        "{screen}"
    );

    // Back to the input line for a second job, whose call is denied.
    tui.press(&["Tab"]);
    let second = tui.submit(std::slice::from_ref(&first));
    tui.wait_for("the second approval", |s| {
        s.contains("Approvals: 1 waiting")
    });
    tui.press(&["Tab", "Tab", "d"]);
    tui.wait_for("the denial", |s| {
        s.contains(&format!("denied shell for {second}"))
    });
    tui.quit_with("Escape");
    // The journal has both answers, as given.
    assert_eq!(tui.decisions(&first), vec![true]);
    assert_eq!(tui.decisions(&second).first(), Some(&false));
}

#[test]
fn p_pauses_r_resumes_and_c_cancels_the_selected_task() {
    // Each worker reply takes a while, so there is time to act mid-task.
    let tui = Tui::start(&fib_script(Some(1500)), ALLOW_SHELL);
    let id = tui.submit(&[]);
    tui.wait_for_state(&id, "running");
    tui.press(&["Tab", "p"]);
    let screen = tui.wait_for_state(&id, "paused");
    assert!(screen.contains("pause asked of"), "{screen}");
    assert!(screen.contains(&format!("{id} paused")), "{screen}");
    tui.press(&["r"]);
    tui.wait_for("the task to resume", |s| {
        s.contains(&format!("{id} resumed")) && task_state(s, &id).as_deref() == Some("running")
    });
    tui.press(&["c"]);
    let screen = tui.wait_for_state(&id, "cancelled");
    assert!(
        screen.contains(&format!("{id} finished cancelled")),
        "{screen}"
    );
    tui.quit_with("C-c");
}
