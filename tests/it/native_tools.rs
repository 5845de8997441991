//! Tool calls in the model's own syntax (issue 17, item 3), on the real
//! SmolLM2-135M-Instruct with a template that shows tools the Hermes way
//! (`troupe_testkit::models::CHATML_TOOLS_TEMPLATE`: its own template knows
//! none), driven by the official `openai` and `ollama` Python clients
//! (`tests/native_tools_client.py`): a required call, the same call
//! streamed as OpenAI streams one, parallel calls, free text that opens a
//! call half-way, and the conversation going on after the tool's answer.

use crate::serve_support::{python_client, serve};
use crate::support::server::real_model;

const API_KEY: &str = "native-tools-key-71c2";
const MODEL: &str = "smollm2-tools";

#[tokio::test]
async fn clients_get_calls_in_the_models_own_syntax() {
    let _turn = crate::serve_support::REAL_MODEL_SERVER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    troupe_testkit::models::with_chat_template(
        &real_model("SmolLM2-135M-Instruct.Q4_1.gguf"),
        &models.join(format!("{MODEL}.gguf")),
        troupe_testkit::models::CHATML_TOOLS_TEMPLATE,
    );
    let config = dir.path().join("troupe.toml");
    let text = format!(
        "data_dir = {data:?}\n\n[models]\ndirs = [{models:?}]\nhf_cache = {hf:?}\nollama = {ollama:?}\n\n\
         [inference]\nthreads = 2\ncontext_length = 2048\nparallel_slots = 1\n\n\
         [serve]\nmemory_budget = \"2GiB\"\napi_key = \"{API_KEY}\"\n\n[agents]\nmodel = \"{MODEL}\"\n",
        data = dir.path().join("data").display().to_string(),
        models = models.display().to_string(),
        hf = dir.path().join("hf").display().to_string(),
        ollama = dir.path().join("ollama").display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let (node, host) = serve(&config);

    let env = [
        ("TROUPE_HOST", host.as_str()),
        ("TROUPE_API_KEY", API_KEY),
        ("TROUPE_MODEL", MODEL),
    ];
    python_client("native_tools_client.py", &env, &node.seen).await;
}
