//! A task whose local model cannot be used finishes through the chain: node
//! A's model does not fit its memory budget, so every request of the task
//! (plan, steps, answer) goes to the next provider of the chain, a second
//! `troupe serve` (B) reached over its OpenAI-compatible API with a key
//! from an environment variable. Both run the scripted backend with the fib
//! script; only B's ever answers.

use crate::serve_support;

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;
use serve_support::{fib_script_text, free_port, troupe, write_node, Node};

const JOB: &str = "write a Python fibonacci function with tests";
const KEY: &str = "b-key-81c2";
/// The variable A reads B's key from (not `TROUPE_*`: those are config keys).
const KEY_VAR: &str = "FAILOVER_TEST_B_KEY";

/// Node B: `troupe serve` on `addr` with the key, killed when dropped.
fn serve_b(dir: &Path, addr: &str) -> Node {
    let config = write_node(dir, &["small"], &fib_script_text(), "");
    let mut cmd = troupe(&config);
    cmd.args(["serve", "--addr", addr, "--api-key", KEY]);
    let mut b = Node::spawn(cmd);
    // The HTTP listener is bound once this line is printed.
    b.wait_for(&["troupe serve: http://", addr]);
    b
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_task_whose_local_model_does_not_fit_finishes_through_a_second_troupe() {
    let root = tempfile::tempdir().expect("temp dir");
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let addr = free_port().to_string();
    let _b = serve_b(&b_dir, &addr);

    // A's own backend would answer nothing useful; its model cannot even
    // load: 1 KiB of memory budget.
    let a_script = r#"{"rules": [], "default": "A's local model must never answer"}"#;
    let providers = format!(
        "[agents]\nmodel = \"small\"\nprogress_interval_s = 1\n\
         [serve]\nmemory_budget = \"1KiB\"\n\
         [[providers]]\nname = \"b\"\nbase_url = \"http://{addr}/v1\"\n\
         model = \"small\"\napi_key_env = \"{KEY_VAR}\"\nmax_retries = 1\nbackoff_ms = 50\n\
         prompt_price = 0.000001\ncompletion_price = 0.000002\n"
    );
    let a_config = write_node(&a_dir, &["small"], a_script, &providers);

    let out = troupe(&a_config)
        .args(["run", "--yes", JOB])
        .env(KEY_VAR, KEY)
        .stdin(Stdio::null())
        .output()
        .expect("troupe run");
    assert_ok(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("planned 2 subtasks"), "{stdout}");
    assert!(
        stdout.contains("served by b (small)"),
        "the failover is reported:\n{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("shows how to call it and run the tests."),
        "B's answer is last:\n{stdout}"
    );
    assert!(!stdout.contains("must never answer"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains(KEY),
        "the key never reaches the log:\n{stderr}"
    );

    let task = stdout
        .lines()
        .find_map(|l| l.strip_prefix("task "))
        .map(|id| id.trim().to_owned())
        .expect("a task line");
    let ws = a_dir.join("data/workspaces").join(&task);
    assert!(
        ws.join("src/fib.py").is_file(),
        "A's workspace holds the work"
    );
    assert!(ws.join("output/USAGE.md").is_file());

    // Tokens and cost per provider, from A's store.
    let out = troupe(&a_config)
        .args(["providers", "--json"])
        .output()
        .expect("troupe providers");
    assert_ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        report["chains"]["worker"],
        serde_json::json!(["local", "cluster", "b"])
    );
    assert_eq!(report["providers"][0]["api_key_env"], KEY_VAR);
    assert!(!out.stdout.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
    let usage = report["usage"].as_array().expect("usage rows");
    let row = |name: &str| {
        usage
            .iter()
            .find(|r| r["provider"] == name)
            .unwrap_or_else(|| panic!("no {name} row: {report:#}"))
    };
    let b = row("b");
    assert_eq!(b["failed"], 0, "{report:#}");
    // A plan, four steps and an answer at least.
    assert!(b["requests"].as_u64().unwrap() >= 6, "{report:#}");
    assert!(b["prompt_tokens"].as_u64().unwrap() > 0, "{report:#}");
    assert!(b["completion_tokens"].as_u64().unwrap() > 0, "{report:#}");
    assert!(b["cost"].as_f64().unwrap() > 0.0, "{report:#}");
    let local = row("local");
    assert_eq!(local["requests"], local["failed"], "{report:#}");
    assert!(
        local["last_error"].as_str().unwrap().contains("budget"),
        "{report:#}"
    );
}

#[test]
fn without_the_key_variable_the_provider_is_left_out_and_the_error_says_so() {
    let root = tempfile::tempdir().expect("temp dir");
    let providers = format!(
        "[agents]\nmodel = \"small\"\n[serve]\nmemory_budget = \"1KiB\"\n\
         [[providers]]\nname = \"b\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         model = \"small\"\napi_key_env = \"{KEY_VAR}\"\n"
    );
    let config = write_node(root.path(), &["small"], "{\"rules\": []}", &providers);
    let out = troupe(&config)
        .args(["run", "--yes", JOB])
        .env_remove(KEY_VAR)
        .stdin(Stdio::null())
        .output()
        .expect("troupe run");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains(KEY_VAR), "the variable is named:\n{all}");
    assert!(all.contains("budget"), "the local failure is named:\n{all}");
}
