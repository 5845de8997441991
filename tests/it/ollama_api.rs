//! Ollama's API on `troupe serve` (issue 17), checked by the official
//! `ollama` Python client (`tests/ollama_client.py`) against the real
//! binary serving the real SmolLM2-135M-Instruct: list, chat and generate
//! whole and streamed, `format`, `ps`, `keep_alive`, pull (from a local
//! stand-in for the Hugging Face hub), copy and delete, and the errors an
//! unknown model, images and bad store requests get.

use std::path::Path;

use troupe::models::synth::SynthQuant;
use troupe_testkit::hub::{HubFile, HubRepo, HubServer};

use crate::serve_support::{python_client, serve};
use crate::support::server::real_model;

const API_KEY: &str = "ollama-key-2c91";
const MODEL: &str = "smollm2";
/// The repository the stand-in hub serves, with two quantizations.
const PULLED: &str = "troupe-test/tiny-GGUF";

#[tokio::test]
async fn the_ollama_python_client_works_against_troupe_serve() {
    let _turn = crate::serve_support::REAL_MODEL_SERVER.lock().await;
    let has_client = std::process::Command::new("python3")
        .args(["-c", "import ollama"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_client,
        "the `ollama` Python package is missing: python3 -m pip install ollama \
         (scripts/test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(
        real_model("SmolLM2-135M-Instruct.Q4_1.gguf"),
        models.join(format!("{MODEL}.gguf")),
    )
    .unwrap();
    let hub = HubServer::start(vec![HubRepo::new(PULLED, synthetic_quants(dir.path()))]).await;
    let config = dir.path().join("troupe.toml");
    std::fs::write(&config, config_text(dir.path(), &hub.endpoint)).unwrap();
    let (node, host) = serve(&config);

    let env = [
        ("TROUPE_HOST", host.as_str()),
        ("TROUPE_API_KEY", API_KEY),
        ("TROUPE_MODEL", MODEL),
        ("TROUPE_PULL", PULLED),
    ];
    python_client("ollama_client.py", &env, &node.seen).await;
}

/// A tiny synthetic model as `tiny.Q8_0.gguf` and `tiny.F32.gguf`.
fn synthetic_quants(dir: &Path) -> Vec<HubFile> {
    let source = dir.join("hub-source");
    [(SynthQuant::Q8_0, "Q8_0"), (SynthQuant::F32, "F32")]
        .into_iter()
        .map(|(quant, tag)| {
            troupe_testkit::models::write(&source, &[tag], quant, 5);
            let body = std::fs::read(source.join(format!("{tag}.gguf"))).unwrap();
            HubFile::new(&format!("tiny.{tag}.gguf"), body)
        })
        .collect()
}

fn config_text(dir: &Path, hub: &str) -> String {
    format!(
        "data_dir = {data:?}\n\n[models]\ndirs = [{models:?}]\nhf_cache = {hf:?}\nollama = {ollama:?}\nhf_endpoint = {hub:?}\n\n\
         [inference]\nthreads = 2\ncontext_length = 1024\nparallel_slots = 2\n\n\
         [serve]\nmemory_budget = \"2GiB\"\napi_key = \"{API_KEY}\"\n\n[agents]\nmodel = \"{MODEL}\"\n",
        data = dir.join("data").display().to_string(),
        models = dir.join("models").display().to_string(),
        hf = dir.join("hf").display().to_string(),
        ollama = dir.join("ollama").display().to_string(),
    )
}
