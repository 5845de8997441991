//! A task whose local model cannot be used finishes through the chain: node
//! A's model does not fit its memory budget, so every request of the task
//! (plan, steps, answer) goes to the next provider of the chain, a second
//! `troupe serve` (B) reached over its OpenAI-compatible API with a key
//! from an environment variable. Both run the scripted backend with the fib
//! script; only B's ever answers.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const JOB: &str = "write a Python fibonacci function with tests";
const KEY: &str = "b-key-81c2";
/// The variable A reads B's key from (not `TROUPE_*`: those are config keys).
const KEY_VAR: &str = "FAILOVER_TEST_B_KEY";

fn fib_script() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json"))
        .expect("examples/fib-script.json")
}

/// A node's directory: a model, a script and a troupe.toml.
fn node(dir: &Path, script: &str, extra: &str) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::F32,
        seed: 1,
    };
    write_synthetic(&models.join("small.gguf"), &spec).expect("synthetic model");
    let script_path = dir.join("script.json");
    std::fs::write(&script_path, script).expect("script");
    let config = dir.join("troupe.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n{extra}\n\
             [models]\ndirs = [{models:?}]\n\
             [inference]\nbackend = \"scripted\"\nscript = {script_path:?}\n",
            data = dir.join("data"),
        ),
    )
    .expect("troupe.toml");
    config
}

fn troupe(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TROUPE_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--config")
        .arg(config)
        .env("TROUPE_LOG", "warn")
        .env("XDG_CONFIG_HOME", config.with_file_name("xdg"));
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Node B: `troupe serve` with the key, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_b(dir: &Path, port: u16) -> Serve {
    let config = node(dir, &fib_script(), "");
    let child = troupe(&config)
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--api-key",
            KEY,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("troupe serve starts");
    let mut b = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return b;
        }
        if let Ok(Some(status)) = b.0.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = b.0.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("troupe serve (B) exited with {status}:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "troupe serve (B) did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let port = free_port();
    let _b = serve_b(&b_dir, port);

    // A's own backend would answer nothing useful; its model cannot even
    // load: 1 KiB of memory budget.
    let a_script = r#"{"rules": [], "default": "A's local model must never answer"}"#;
    let providers = format!(
        "[agents]\nmodel = \"small\"\nprogress_interval_s = 1\n\
         [serve]\nmemory_budget = \"1KiB\"\n\
         [[providers]]\nname = \"b\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n\
         model = \"small\"\napi_key_env = \"{KEY_VAR}\"\nmax_retries = 1\nbackoff_ms = 50\n\
         prompt_price = 0.000001\ncompletion_price = 0.000002\n"
    );
    let a_config = node(&a_dir, a_script, &providers);

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
    let config = node(root.path(), "{\"rules\": []}", &providers);
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
