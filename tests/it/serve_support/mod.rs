//! The harness of the tests that run the real `troupe` binary as a child
//! process (`tests/it/cluster.rs`, `tests/it/failover.rs`,
//! `tests/it/remote_troupe.rs`), over `troupe_testkit`: a node directory on
//! the scripted backend with synthetic models, and this package's binary.

use std::path::Path;
use std::process::Command;

pub(crate) use troupe_testkit::process::Node;
pub(crate) use troupe_testkit::{free_port, write_node, WAIT};

/// The text of `examples/fib-script.json`.
pub(crate) fn fib_script_text() -> String {
    std::fs::read_to_string(troupe_testkit::fib_script()).expect("examples/fib-script.json")
}

/// `troupe --config CONFIG` (see [`troupe_testkit::process::troupe`]).
pub(crate) fn troupe(config: &Path) -> Command {
    troupe_testkit::process::troupe(Path::new(env!("CARGO_BIN_EXE_troupe")), config)
}

/// Held by the tests that run a real model in a `troupe serve` of their own
/// and drive it with clients that time out (the checkers, the Ollama and
/// native-tools clients): two such servers on two cores, each with two
/// llama.cpp threads, slow each other far past a checker's 30 s.
pub(crate) static REAL_MODEL_SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `troupe --config CONFIG serve` on a free port of 127.0.0.1, and the
/// address it serves at.
pub(crate) fn serve(config: &Path) -> (Node, String) {
    let mut cmd = troupe(config);
    cmd.args(["serve", "--addr", "127.0.0.1:0"]);
    let mut node = Node::spawn(cmd);
    let url = node.serve_url();
    (node, url)
}

/// Runs `tests/SCRIPT` (a Python client of the official packages) with
/// `env`, and fails the test with its output, and `server`'s log lines,
/// unless it exits 0; prints its output.
pub(crate) async fn python_client(script: &str, env: &[(&str, &str)], server: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let output = tokio::process::Command::new("python3")
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script}\nstdout:\n{stdout}\nstderr:\n{}\nserver:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.join("\n")
    );
    eprintln!("{stdout}");
}
