//! The UX's reply latency while four Workers are generating.
//!
//! `cargo bench --bench ux_latency [-- --messages N --workers W]`
//!
//! Everything runs through the real stack with the llama.cpp engine and
//! synthetic models: the UX model (`ux`, small q8_0) is pinned; four tasks
//! keep four Workers generating on the worker model (`worker`, small
//! q8_0, random weights, so each step is a grammar-constrained JSON action
//! of up to 96 tokens). Only the Director's plan is replayed from a script
//! (a random-weights planner would rarely produce a valid plan), through a
//! backend that routes the `director` model to the script and every other
//! model to llama.cpp. Tools that execute or reach the network are denied.
//!
//! It sends N chat messages one after another, first with nothing else
//! running (the baseline), then while the four Workers generate, and prints
//! p50/p90/p99 of each and their ratio as a table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe::inference::backend::LoadError;
use troupe::inference::backend::{Backend, BoxFuture, LoadOptions, LoadedModel};
use troupe::inference::llama::LlamaEngine;
use troupe::inference::scripted::{Rule, Script, ScriptedBackend};
use troupe::models::synth::{write_synthetic_with_context, SynthQuant, SynthShape, SynthSpec};
use troupe::store::TaskState;
use troupe::supervision::BootOptions;
use troupe::{TaskSpec, Troupe};

/// Sends the `director` model to the script, the rest to llama.cpp.
struct Routed {
    script: ScriptedBackend,
    llama: LlamaEngine,
}

impl Backend for Routed {
    fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
    ) -> BoxFuture<Result<Arc<dyn LoadedModel>, LoadError>> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem == "director" {
            self.script.load(path, opts)
        } else {
            self.llama.load(path, opts)
        }
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latencies(troupe: &Troupe, n: usize, tag: &str) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let reply = troupe
            .chat(
                &format!("bench-{tag}"),
                &format!("/chat hello number {i}, how are you?"),
            )
            .await
            .expect("the UX answers");
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(!reply.text.is_empty());
    }
    out.sort_by(f64::total_cmp);
    out
}

fn main() {
    let messages = arg("--messages", 30);
    let workers = arg("--workers", 4);
    let dir = tempfile::tempdir().expect("a temp dir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    for (name, seed) in [("ux", 1), ("worker", 2), ("director", 3)] {
        let spec = SynthSpec {
            shape: if name == "director" {
                SynthShape::Tiny
            } else {
                SynthShape::Small
            },
            quant: SynthQuant::Q8_0,
            seed,
        };
        write_synthetic_with_context(&models.join(format!("{name}.gguf")), &spec, 8192)
            .expect("synthetic model");
    }
    let plan = serde_json::json!({"subtasks": [{
        "id": "s1", "description": "Keep working on the notes.", "kind": "general",
        "complexity": 2, "depends_on": [], "acceptance": "never"}]});
    let script = Script {
        rules: vec![Rule::reply(plan.to_string()).when_contains("Plan the job below")],
        default: Some("done".to_string()),
        ..Script::default()
    };
    let toml = format!(
        "data_dir = \"data\"\n[models]\ndirs = [\"models\"]\n\
         [inference]\ncontext_length = 8192\nparallel_slots = {slots}\n\
         [agents]\nmodel = \"worker\"\nworkers = {workers}\nprogress_interval_s = 3600\n\
         temperature = 0.8\ndirect = false\n\
         [agents.ux]\nmodel = \"ux\"\nmax_tokens = 48\n\
         [agents.director]\nmodel = \"director\"\n\
         [[agents.specialists]]\nkind = \"general\"\nworkers = {workers}\nmax_steps = 1000\n\
         step_max_tokens = 96\nmax_tokens = 100000000\n\
         [approval]\nexecute = \"deny\"\nnetwork = \"deny\"\n",
        slots = workers.max(1)
    );
    std::fs::write(dir.path().join("troupe.toml"), toml).expect("config");
    let config = troupe::config::load(&troupe::config::LoadOptions {
        explicit: Some(dir.path().join("troupe.toml")),
        env: Vec::new(),
        platform_default: false,
    })
    .expect("config loads");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let backend = Arc::new(Routed {
            script: ScriptedBackend::new(script),
            llama: LlamaEngine::new(),
        });
        let troupe = Troupe::start_with(
            config,
            BootOptions {
                backend: Some(backend),
                ..BootOptions::default()
            },
        )
        .await
        .expect("troupe starts");
        // Warm up the UX model's KV cache and the worker model's load.
        latencies(&troupe, 2, "warmup").await;
        let idle = latencies(&troupe, messages, "idle").await;

        let mut events = troupe.subscribe();
        let mut ids = Vec::new();
        for i in 0..workers {
            ids.push(troupe.submit(TaskSpec::new(format!("write notes, part {i}"))).await.expect("submit"));
        }
        // Wait until every worker is generating (its first step started).
        let mut generating = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        while generating.len() < workers && Instant::now() < deadline {
            // A subtask started: its worker is processing the prompt and
            // generating from here on, step after step.
            if let Ok(Ok(troupe::agents::runtime::TroupeEvent::Journal(entry))) =
                tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            {
                if let troupe::store::TaskEvent::SubtaskStarted { .. } = entry.event {
                    generating.insert(entry.task_id);
                }
            }
        }
        if generating.len() < workers {
            for id in &ids {
                let task = troupe.task(id).await.expect("store").expect("task");
                eprintln!("{id}: {} {:?}", task.task.state, task.task.error);
            }
            panic!("only {} of {workers} workers started", generating.len());
        }
        // Let their prompts be processed, so the measurement sees generation.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let busy = latencies(&troupe, messages, "busy").await;
        for id in &ids {
            let _ = troupe.cancel(id).await;
        }
        for id in &ids {
            let task = troupe.wait(id).await.expect("task ends");
            if task.state != TaskState::Cancelled {
                eprintln!("task {id} ended {} before the cancel: {:?}", task.state, task.error);
            }
        }
        println!("\nUX reply latency, {messages} messages each (ms), {workers} workers generating in the second row\n");
        println!("| load | p50 | p90 | p99 | max |");
        println!("|---|---:|---:|---:|---:|");
        for (name, l) in [("idle", &idle), (&*format!("{workers} workers generating"), &busy)] {
            println!(
                "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
                percentile(l, 0.5),
                percentile(l, 0.9),
                percentile(l, 0.99),
                l[l.len() - 1]
            );
        }
        println!(
            "\nbusy / idle: p50 {:.2}x, p99 {:.2}x (workers seen generating: {})",
            percentile(&busy, 0.5) / percentile(&idle, 0.5),
            percentile(&busy, 0.99) / percentile(&idle, 0.99),
            generating.len()
        );
        troupe.shutdown().await;
    });
}
