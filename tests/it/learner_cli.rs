//! `troupe learner stats` as a person runs it: after `troupe run` did a job
//! (scripted backend, examples/fib-script.json) and exited, a new process
//! shows what the Learner recorded, so its knowledge survives a restart;
//! a second job adds to it rather than starting over.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const JOB: &str = "write a Python fibonacci function with tests";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let script = std::fs::read_to_string(troupe_testkit::fib_script()).unwrap();
        troupe_testkit::write_node(
            dir.path(),
            &["small"],
            &script,
            "[agents]\nmodel = \"small\"\n[approval]\nexecute = \"allow\"\n",
        );
        Env { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn troupe(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
        for (key, _) in std::env::vars() {
            if key.starts_with("TROUPE_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .arg("--config")
            .arg(self.dir.path().join("troupe.toml"))
            .args(args)
            .env("TROUPE_LOG", "warn")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "troupe {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn stats(&self) -> Value {
        let out = self.troupe(&["learner", "stats", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// (kind, calls, successes) of every row.
fn rows(stats: &Value) -> Vec<(String, u64, u64)> {
    stats["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["calls"].as_u64().unwrap(),
                r["successes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn learner_stats_shows_past_runs_after_a_restart() {
    let env = Env::new();
    let empty = env.troupe(&["learner", "stats"]);
    assert!(
        String::from_utf8_lossy(&empty.stdout).contains("no outcomes recorded"),
        "{}",
        String::from_utf8_lossy(&empty.stdout)
    );

    env.troupe(&["run", "--yes", JOB]);
    let first = env.stats();
    let kinds: Vec<String> = rows(&first).into_iter().map(|r| r.0).collect();
    assert!(kinds.iter().any(|k| k == "plan"), "{first}");
    assert!(kinds.iter().any(|k| k == "answer"), "{first}");
    assert!(
        kinds
            .iter()
            .any(|k| ["general", "code", "research"].contains(&k.as_str())),
        "{first}"
    );
    assert!(
        first["calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["model"] == "small"),
        "{first}"
    );
    let plans = |s: &Value| {
        rows(s)
            .into_iter()
            .find(|r| r.0 == "plan")
            .map(|r| (r.1, r.2))
            .unwrap()
    };
    assert_eq!(plans(&first), (1, 1));
    // The model's load was learned too, with its memory.
    let loads = first["loads"].as_array().unwrap();
    assert_eq!(loads.len(), 1, "{first}");
    assert_eq!(loads[0]["model"], "small");

    // A second process adds to what the first one learned.
    env.troupe(&["run", "--yes", JOB]);
    let second = env.stats();
    assert_eq!(plans(&second), (2, 2), "{second}");

    let table = env.troupe(&[
        "learner",
        "stats",
        "--data-dir",
        &env.data().display().to_string(),
    ]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.starts_with("KIND"), "{table}");
    assert!(table.contains("plan") && table.contains("small"), "{table}");
}
