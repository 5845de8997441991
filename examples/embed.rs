//! Embedding troupe in a program: start it, watch its events, give it a job,
//! approve its tool calls, read the answer, stop it.
//!
//! ```sh
//! cargo run --example embed                     # a synthetic model, scripted replies
//! cargo run --example embed -- MODELS_DIR MODEL # your models, the same script
//! ```
//!
//! The replies come from `examples/fib-script.json` through the scripted
//! backend, so the run is the same every time and needs no real model; the
//! ModelHost, store, actors, tools and the task's git workspace are real.
//! Only the `troupe` crate is used.

use std::path::{Path, PathBuf};

use tokio::sync::broadcast::error::RecvError;
use troupe::agents::runtime::TroupeEvent;
use troupe::config::LoadOptions;
use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};
use troupe::store::{TaskEvent, TaskState};
use troupe::tools::Workspace;
use troupe::{TaskSpec, Troupe};

const JOB: &str = "write a Python fibonacci function with tests";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (models_dir, model) = match (std::env::args().nth(1), std::env::args().nth(2)) {
        (Some(dir), Some(model)) => (PathBuf::from(dir), model),
        _ => {
            // A tiny llama-shaped GGUF with random weights: the ModelHost
            // catalogs and "loads" it; the scripted backend never reads it.
            let models = dir.path().join("models");
            std::fs::create_dir_all(&models)?;
            let spec = SynthSpec {
                shape: SynthShape::Tiny,
                quant: SynthQuant::Q8_0,
                seed: 1,
            };
            write_synthetic(&models.join("fib.gguf"), &spec)?;
            (models, "fib".to_string())
        }
    };
    let config_path = write_config(dir.path(), &models_dir, &model)?;
    // Only the file written above: no TROUPE_* variable or user config leaks in.
    let config = troupe::config::load(&LoadOptions {
        explicit: Some(config_path),
        env: Vec::new(),
        platform_default: false,
    })?;
    let data_dir = config.data_dir.clone();

    let troupe = Troupe::start(config).await?;
    // Subscribe before submitting, so that no event of the task is missed.
    let mut events = troupe.subscribe();
    let id = troupe.submit(TaskSpec::new(JOB)).await?;
    println!("submitted {id}: {JOB}");

    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                println!("  ({missed} events missed; the journal in the store has them all)");
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        if event.task_id().is_some_and(|task| task != id) {
            continue;
        }
        match event {
            TroupeEvent::Journal(entry) => {
                println!("  [{:>2}] {}", entry.seq, describe(&entry.event));
                if matches!(entry.event, TaskEvent::Finished { .. }) {
                    break;
                }
            }
            TroupeEvent::Progress { text, tokens, .. } => {
                println!("       … {text} ({tokens} tokens so far)");
            }
            TroupeEvent::ApprovalPending { request, .. } => {
                // A person would be asked here; this program says yes.
                println!("       ? {}", request.question());
                troupe.decide(
                    &request.id,
                    true,
                    Some("approved by the embed example".into()),
                    troupe::store::Approver::Embedder,
                )?;
            }
            _ => {}
        }
    }

    let task = troupe.wait(&id).await?;
    println!("\n{id} {}", task.state);
    match task.state {
        TaskState::Succeeded => println!("{}", task.answer.unwrap_or_default()),
        _ => println!("{}", task.error.unwrap_or_default()),
    }
    let workspace = Workspace::path_for(&data_dir, &id);
    println!("workspace: {}", workspace.display());
    for file in files(&workspace, &workspace) {
        println!("  {file}");
    }
    troupe.shutdown().await;
    // `dir` (data, workspace and all) is removed here; with models of your
    // own, point `data_dir` somewhere that stays.
    Ok(())
}

/// The files the task left under `dir`, as paths relative to `root`.
fn files(root: &Path, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        // Git's own files, Python's byte code and the placeholders that keep
        // empty folders in git are not what the task made.
        if path
            .file_name()
            .is_some_and(|n| n == ".git" || n == "__pycache__" || n == ".gitkeep")
        {
            continue;
        }
        if path.is_dir() {
            found.extend(files(root, &path));
        } else if let Ok(rel) = path.strip_prefix(root) {
            found.push(rel.display().to_string());
        }
    }
    found
}

/// Writes the `troupe.toml` of this run into `dir` and returns its path.
fn write_config(dir: &Path, models_dir: &Path, model: &str) -> std::io::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json");
    // `{:?}` quotes and escapes a string the way TOML's basic strings read it.
    let text = format!(
        r#"data_dir = {data:?}

[models]
dirs = [{models:?}]
hf_cache = {hf:?}
ollama = {ollama:?}

[inference]
backend = "scripted"
script = {script:?}

[agents]
model = {model:?}
"#,
        data = dir.join("data").display().to_string(),
        models = models_dir.display().to_string(),
        hf = dir.join("hf").display().to_string(),
        ollama = dir.join("ollama").display().to_string(),
        script = script.display().to_string(),
    );
    let path = dir.join("troupe.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// One line about a journal event.
fn describe(event: &TaskEvent) -> String {
    match event {
        TaskEvent::Planned {
            subtasks, model, ..
        } => {
            let ids: Vec<&str> = subtasks.iter().map(|s| s.id.as_str()).collect();
            format!("planned {} with {model}", ids.join(", "))
        }
        TaskEvent::SubtaskStarted { subtask, model, .. } => {
            format!("{subtask} started on {model}")
        }
        TaskEvent::StepStarted {
            subtask,
            step,
            tool,
            ..
        } => format!("{subtask} step {step}: {tool}"),
        TaskEvent::StepObserved {
            subtask,
            step,
            is_error,
            ..
        } => format!(
            "{subtask} step {step} observed{}",
            if *is_error { " (error)" } else { "" }
        ),
        TaskEvent::StepCommitted {
            subtask,
            step,
            checkpoint,
            ..
        } => format!(
            "{subtask} step {step} committed {}",
            checkpoint.get(..8).unwrap_or(checkpoint)
        ),
        TaskEvent::SubtaskFinished {
            subtask, success, ..
        } => format!(
            "{subtask} {}",
            if *success { "succeeded" } else { "failed" }
        ),
        TaskEvent::Finished { state, .. } => format!("finished: {state}"),
        other => other.kind().replace('_', " "),
    }
}
