//! `troupe bench swap -m A -m B`: what switching models costs through the
//! ModelHost.
//!
//! First a host whose memory budget holds either model but not both (the
//! larger estimate plus half the smaller), so loading one evicts the other:
//! 1. the first load of A in this process (cold only if the caller evicted
//!    the file from the page cache first: benches/issue3.sh does, and says
//!    whether it managed to);
//! 2. `-r` times: load B (evicting A), then load A again (evicting B): the
//!    reload of a model evicted a moment ago, its file in the page cache.
//!
//! Then a host with room for both, both loaded: `-r` times a request to A,
//! then one to B — switching between resident models — each one prompt
//! token and one generated token, checked through the host's events to
//! have loaded nothing.
//!
//! Load times are the host's own (`HostEvent::Loaded`: reading the weights
//! and creating the context); the wall time of each call, which adds the
//! eviction of the other model, is reported beside them.

use super::{emit, file_name, Stat};
use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use troupe::host::{
    estimate_load_bytes, format_bytes, HostEvent, ModelHostConfig, ModelHostHandle, UnloadReason,
};
use troupe_config::Config;
use troupe_inference::backend::{Backend, GenerateRequest, Prompt};
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;

/// The longest wait for an event the host publishes right after answering.
const EVENT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct SwapArgs {
    /// The two models, A then B: catalog names or GGUF paths (`-m A -m B`).
    #[arg(short, long, num_args = 1, required = true)]
    model: Vec<String>,
    /// CPU threads per model (default: configured, else one per physical core).
    #[arg(short, long)]
    threads: Option<u32>,
    /// Tokens of KV cache per slot.
    #[arg(long, default_value_t = 512)]
    ctx: u32,
    /// Slots per model.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Resident requests and evict-and-reload cycles.
    #[arg(short, long, default_value_t = 3)]
    reps: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The report `--json` prints. Times in milliseconds.
#[derive(Debug, Serialize)]
pub(super) struct SwapReport {
    model_a: String,
    model_b: String,
    threads: Option<u32>,
    ctx_per_slot: u32,
    slots: u32,
    reps: u32,
    budget_bytes: u64,
    /// A's first load in this process, as the host timed it.
    first_load_ms: f64,
    /// The same, as the caller waited for it.
    first_load_wall_ms: f64,
    /// A request to A or B, alternating, both resident: one prompt token,
    /// one generated token.
    switch_request_ms: Stat,
    /// Loads that happened during those requests (always 0, or the run
    /// fails).
    switch_loads: u32,
    /// B's loads, evicting A (the first of them is B's first load).
    load_b_ms: Stat,
    /// A's reloads after B evicted it, as the host timed them.
    reload_ms: Stat,
    /// The same, as the caller waited for them (adds evicting B).
    reload_wall_ms: Stat,
    /// Freeing a model to make room for the other.
    evict_ms: Stat,
}

pub(super) async fn run(args: SwapArgs, config: &Config) -> anyhow::Result<()> {
    let [a, b] = args.model.as_slice() else {
        bail!(
            "bench swap needs exactly two models (-m A -m B), got {}",
            args.model.len()
        );
    };
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    let entry_a = crate::cli::models::resolve(config, a).await?;
    let entry_b = crate::cli::models::resolve(config, b).await?;
    if entry_a.path == entry_b.path {
        bail!(
            "both models are {}: swapping needs two files",
            entry_a.path.display()
        );
    }

    let mut host_config = ModelHostConfig::from_config(config, 0, Vec::new());
    host_config.load.context_length = args.ctx;
    host_config.load.parallel_slots = args.slots;
    if args.threads.is_some() {
        host_config.load.threads = args.threads;
    }
    // Nothing may expire on its own during the run.
    host_config.default_keep_alive = Duration::from_secs(24 * 3600);
    let estimate = |path: &std::path::Path| {
        estimate_load_bytes(path, &host_config.load)
            .with_context(|| format!("cannot estimate the memory of {}", path.display()))
    };
    let (est_a, est_b) = (estimate(&entry_a.path)?, estimate(&entry_b.path)?);
    host_config.budget_bytes = est_a.max(est_b) + est_a.min(est_b) / 2;

    let backend: Arc<dyn Backend> = Arc::new(LlamaEngine::new());
    let (host, host_task) = troupe::host::spawn(host_config.clone(), backend.clone())
        .await
        .context("cannot start the model host")?;
    let measured = measure(&host, &args, &entry_a.path, &entry_b.path).await;
    host.shutdown().await;
    let _ = host_task.await;
    let mut report = measured?;
    report.budget_bytes = host_config.budget_bytes;

    // Room for both, with a margin for estimates below what llama.cpp
    // allocates.
    let mut roomy = host_config;
    roomy.budget_bytes = (est_a + est_b).saturating_mul(2);
    let (host, host_task) = troupe::host::spawn(roomy, backend)
        .await
        .context("cannot start the model host")?;
    let switched = switching(&host, &args, &entry_a.path, &entry_b.path).await;
    host.shutdown().await;
    let _ = host_task.await;
    let (switch, switch_loads) = switched?;
    report.switch_request_ms = switch;
    report.switch_loads = switch_loads;
    let json = serde_json::to_string_pretty(&report)?;
    emit(&json, args.out.as_deref(), args.json, || {
        print_table(&report)
    })
}

async fn measure(
    host: &ModelHostHandle,
    args: &SwapArgs,
    path_a: &std::path::Path,
    path_b: &std::path::Path,
) -> anyhow::Result<SwapReport> {
    let (a, b) = (path_a.display().to_string(), path_b.display().to_string());
    let mut events = Events {
        rx: host.events(),
        seen: Vec::new(),
    };

    let started = Instant::now();
    let status = host.load(&a, None).await.context("cannot load model A")?;
    let first_load_wall_ms = ms(started.elapsed());
    let name_a = status.name;
    let first_load_ms = ms(events.loaded(&name_a).await?);

    let (mut load_b, mut reload, mut reload_wall, mut evict) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.reps {
        let status = host.load(&b, None).await.context("cannot load model B")?;
        load_b.push(ms(events.loaded(&status.name).await?));
        evict.push(ms(events.evicted(&name_a, &status.name)?));
        let started = Instant::now();
        host.load(&a, None).await.context("cannot reload model A")?;
        reload_wall.push(ms(started.elapsed()));
        reload.push(ms(events.loaded(&name_a).await?));
        evict.push(ms(events.evicted(&status.name, &name_a)?));
    }

    Ok(SwapReport {
        model_a: a,
        model_b: b,
        threads: args.threads,
        ctx_per_slot: args.ctx,
        slots: args.slots,
        reps: args.reps,
        budget_bytes: 0,
        first_load_ms,
        first_load_wall_ms,
        switch_request_ms: Stat::of(Vec::new()),
        switch_loads: 0,
        load_b_ms: Stat::of(load_b),
        reload_ms: Stat::of(reload),
        reload_wall_ms: Stat::of(reload_wall),
        evict_ms: Stat::of(evict),
    })
}

/// Loads A and B into a host with room for both, then alternates requests
/// between them; every load during the requests is counted.
async fn switching(
    host: &ModelHostHandle,
    args: &SwapArgs,
    path_a: &std::path::Path,
    path_b: &std::path::Path,
) -> anyhow::Result<(Stat, u32)> {
    let (a, b) = (path_a.display().to_string(), path_b.display().to_string());
    let mut events = Events {
        rx: host.events(),
        seen: Vec::new(),
    };
    host.load(&a, None).await.context("cannot load model A")?;
    host.load(&b, None).await.context("cannot load model B")?;
    let status = host.status().await.context("the model host stopped")?;
    if status.models.len() != 2 {
        bail!(
            "the host holds {} models after loading both into a {} budget",
            status.models.len(),
            format_bytes(status.budget_bytes)
        );
    }
    events.take_loads();
    let mut times = Vec::new();
    let mut loads = 0;
    for _ in 0..args.reps {
        for model in [&a, &b] {
            let mut request = GenerateRequest::new(Prompt::Tokens(vec![1]));
            request.max_tokens = 1;
            request.sampling = SamplingOptions::greedy();
            request.ignore_eos = true;
            let started = Instant::now();
            let stream = host
                .generate(model, request, None)
                .await
                .with_context(|| format!("request to resident {model} failed"))?;
            stream
                .into_result()
                .await
                .with_context(|| format!("request to resident {model} failed"))?;
            times.push(ms(started.elapsed()));
            loads += events.take_loads();
        }
    }
    if loads > 0 {
        bail!("{loads} loads happened during requests to resident models");
    }
    Ok((Stat::of(times), loads))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The host's events, with those read while waiting for one kept for
/// later questions.
struct Events {
    rx: broadcast::Receiver<HostEvent>,
    seen: Vec<HostEvent>,
}

impl Events {
    /// Moves events published so far into `seen`.
    fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(event) => self.seen.push(event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    }

    /// Loads started or finished since the last call.
    fn take_loads(&mut self) -> u32 {
        self.drain();
        let loads = self
            .seen
            .drain(..)
            .filter(|e| matches!(e, HostEvent::LoadStarted { .. } | HostEvent::Loaded { .. }))
            .count();
        u32::try_from(loads).unwrap_or(u32::MAX)
    }

    /// How long the host took to load `model`, from its `Loaded` event.
    async fn loaded(&mut self, model: &str) -> anyhow::Result<Duration> {
        let wait = async {
            loop {
                match self.rx.recv().await {
                    Ok(HostEvent::Loaded {
                        model: name,
                        duration,
                        ..
                    }) if name == model => return Ok(duration),
                    Ok(event) => self.seen.push(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => bail!("the model host stopped"),
                }
            }
        };
        tokio::time::timeout(EVENT_WAIT, wait)
            .await
            .with_context(|| format!("no Loaded event for {model}"))?
    }

    /// How long freeing `model` for `for_model` took; an error when the
    /// host did not evict it (the budget then held both, and nothing was
    /// measured). Forgets the events seen so far.
    fn evicted(&mut self, model: &str, for_model: &str) -> anyhow::Result<Duration> {
        self.drain();
        self.seen
            .drain(..)
            .find_map(|event| match event {
                HostEvent::Unloaded {
                    model: name,
                    reason: UnloadReason::Evicted { for_model: by },
                    duration,
                } if name == model && by == for_model => Some(duration),
                _ => None,
            })
            .with_context(|| format!("loading {for_model} did not evict {model}"))
    }
}

fn print_table(r: &SwapReport) {
    println!(
        "A = {}, B = {}; budget {} (holds one of them), {} tokens × {} slots",
        file_name(&r.model_a),
        file_name(&r.model_b),
        format_bytes(r.budget_bytes),
        r.ctx_per_slot,
        r.slots
    );
    println!();
    println!("| step | ms |");
    println!("| --- | ---: |");
    let row = |step: &str, s: &Stat| println!("| {step} | {:.2} ± {:.2} |", s.avg, s.stddev);
    println!(
        "| first load of A in this process | {:.2} (wall {:.2}) |",
        r.first_load_ms, r.first_load_wall_ms
    );
    row(
        "request switching between resident A and B (1 prompt + 1 generated token, no load)",
        &r.switch_request_ms,
    );
    row("load B, evicting A", &r.load_b_ms);
    row("reload A, evicted a moment ago", &r.reload_ms);
    row("reload A, wall (adds evicting B)", &r.reload_wall_ms);
    row("evict one model", &r.evict_ms);
}
