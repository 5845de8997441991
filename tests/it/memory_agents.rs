//! Long-term memory in the agent runtime, with the real sentence embedder
//! (all-MiniLM-L6-v2 from a Hugging Face cache that `scripts/fetch-minilm.sh`
//! lays out; `scripts/test.sh` exports `MINILM_TEST_HF_CACHE`): a finished
//! task is remembered with its plan, outcome and lessons; after a restart the
//! Director recalls it when planning a similar job; Workers have the memory
//! tools; long conversations are summarised into memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use troupe::inference::scripted::ScriptedBackend;
use troupe::memory::{Kind, Query};
use troupe::store::TaskState;
use troupe::supervision::BootOptions;
use troupe::{TaskSpec, Troupe};

const FIB_JOB: &str = "write a Python fibonacci function with tests";

fn hf_cache() -> PathBuf {
    match std::env::var_os("MINILM_TEST_HF_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "MINILM_TEST_HF_CACHE is not set: run `bash scripts/fetch-minilm.sh` and export \
             its output (scripts/test.sh does both)"
        ),
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let spec = troupe::models::synth::SynthSpec {
            shape: troupe::models::synth::SynthShape::Tiny,
            quant: troupe::models::synth::SynthQuant::F32,
            seed: 0,
        };
        troupe::models::synth::write_synthetic(&models.join("small.gguf"), &spec).unwrap();
        let toml = format!(
            "data_dir = \"data\"\n\
             [models]\ndirs = [\"models\"]\nhf_cache = {:?}\n\
             [inference]\nbackend = \"scripted\"\nscript = {:?}\n\
             [approval]\nexecute = \"allow\"\n\
             [agents]\nmodel = \"small\"\n",
            hf_cache().display().to_string(),
            script_path().display().to_string(),
        );
        std::fs::write(dir.path().join("troupe.toml"), toml).unwrap();
        Env { dir }
    }

    fn config(&self) -> troupe::config::Config {
        troupe::config::load(&troupe::config::LoadOptions {
            explicit: Some(self.dir.path().join("troupe.toml")),
            env: Vec::new(),
            platform_default: false,
        })
        .unwrap()
    }

    /// A troupe on this data dir, with a backend whose calls the test reads.
    async fn start(&self) -> (Troupe, Arc<ScriptedBackend>) {
        let backend = Arc::new(ScriptedBackend::from_file(script_path()).unwrap());
        let opts = BootOptions {
            backend: Some(backend.clone()),
            ..BootOptions::default()
        };
        let troupe = Troupe::start_with(self.config(), opts).await.unwrap();
        (troupe, backend)
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json")
}

async fn run(troupe: &Troupe, job: &str) -> String {
    let id = troupe.submit(TaskSpec::new(job)).await.unwrap();
    let task = troupe.wait(&id).await.unwrap();
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_is_remembered_and_recalled_when_planning_after_a_restart() {
    let env = Env::new();
    let (troupe, first_backend) = env.start().await;
    let memory = troupe
        .memory()
        .expect("memory is on with the embedder installed");
    assert_eq!(memory.embedder.dim(), 384);
    let names = troupe.tools().names();
    assert!(
        names.contains(&"memory_search") && names.contains(&"memory_store"),
        "workers get the memory tools: {names:?}"
    );
    let first = run(&troupe, FIB_JOB).await;
    // Nothing was remembered before the first task, so its plan had no past.
    let plan_call = first_backend
        .calls()
        .into_iter()
        .find(|c| c.last_message.contains("Plan the job below"))
        .expect("a planning call");
    assert!(!plan_call.last_message.contains("Similar past tasks"));

    let hits = memory
        .memory
        .recall(FIB_JOB, &Query::top(5).of_kinds([Kind::Task]))
        .unwrap();
    let task_memory = hits
        .iter()
        .find(|h| h.record.source_task.as_deref() == Some(first.as_str()))
        .expect("the finished task is remembered");
    assert!(task_memory.similarity > 0.99, "{}", task_memory.similarity);
    let content = &task_memory.record.content;
    assert!(
        content.contains(&format!("Request: {FIB_JOB}")),
        "{content}"
    );
    assert!(content.contains("Outcome (succeeded)"), "{content}");
    assert!(content.contains("Lessons:"), "{content}");
    troupe.shutdown().await;

    // A new process on the same data dir: the memory is still there, and
    // the Director puts it in the prompt for a similar job.
    let (troupe, backend) = env.start().await;
    run(
        &troupe,
        "write a Python fibonacci function, with unit tests",
    )
    .await;
    let plan_call = backend
        .calls()
        .into_iter()
        .find(|c| c.last_message.contains("Plan the job below"))
        .expect("a planning call");
    assert!(
        plan_call
            .last_message
            .contains("Similar past tasks, from memory")
            && plan_call
                .last_message
                .contains(&format!("Request: {FIB_JOB}")),
        "{}",
        plan_call.last_message
    );
    troupe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_is_summarised_into_memory() {
    let env = Env::new();
    let (troupe, _) = env.start().await;
    for i in 0..5 {
        troupe
            .chat(
                "kitchen",
                &format!("hello, my favourite colour is teal ({i})"),
            )
            .await
            .unwrap();
    }
    let memory = troupe.memory().expect("memory is on");
    // The summary is written just after the tenth message's reply is sent.
    let mut hits = Vec::new();
    for _ in 0..100 {
        hits = memory
            .memory
            .recall(
                "what is my favourite colour",
                &Query::top(3).of_kinds([Kind::Conversation]),
            )
            .unwrap();
        if !hits.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let summary = hits
        .first()
        .expect("ten messages make a conversation summary");
    assert!(
        summary.record.content.contains("favourite colour is teal"),
        "{}",
        summary.record.content
    );
    assert!(summary
        .record
        .tags
        .contains(&"conversation:kitchen".to_string()));
    troupe.shutdown().await;
}
