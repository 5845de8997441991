//! What the sandbox adds to a tool call: the median of 100 `shell` calls of
//! `true` with `[tools.sandbox] mode = "required"` and with `"off"`,
//! alternating one call of each so that a machine getting busier weighs on
//! both alike. Target: at most 5 ms more (issue 15).
//!
//! `cargo bench --bench sandbox_overhead` (this bench binary is its own
//! sandbox helper, as troupe is).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use troupe_config::tools::{SandboxConfig, SandboxMode};
use troupe_tools::process::ProcessLimits;
use troupe_tools::shell::{RunSettings, SandboxSettings, ShellTool};
use troupe_tools::{ApprovalPolicy, Policy, ToolContext, ToolOutcome, ToolRegistry, Workspace};

const CALLS: usize = 100;

fn registry(mode: SandboxMode) -> ToolRegistry {
    let mut config = SandboxConfig::default();
    config.mode = mode;
    let settings = RunSettings {
        default_timeout: Duration::from_secs(20),
        max_timeout: Duration::from_secs(60),
        limits: ProcessLimits {
            cpu_seconds: 60,
            memory_mb: 4096,
            open_files: 256,
        },
        output_max_bytes: 16 * 1024,
        path_var: "/usr/local/bin:/usr/bin:/bin".to_string(),
        sandbox: SandboxSettings::from_config(&config),
    };
    let mut r = ToolRegistry::new(ApprovalPolicy::uniform(Policy::Allow), 64 * 1024);
    r.register(Arc::new(ShellTool::new(settings)))
        .expect("register shell");
    r
}

async fn call(r: &ToolRegistry, ctx: &ToolContext) -> Duration {
    let start = Instant::now();
    match r.call(ctx, "shell", json!({ "command": "true" })).await {
        Ok(ToolOutcome::Done(obs)) => assert!(!obs.is_error, "{}", obs.text),
        other => panic!("shell `true` did not run: {other:?}"),
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().expect("temp dir");
    let ws = Arc::new(Workspace::create(data.path(), "bench").expect("workspace"));
    let ctx = ToolContext::new(ws);
    let sandboxed = registry(SandboxMode::Required);
    let plain = registry(SandboxMode::Off);
    // Warm-up: page cache, the first probe.
    for _ in 0..5 {
        call(&sandboxed, &ctx).await;
        call(&plain, &ctx).await;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..CALLS {
        if i % 2 == 0 {
            with.push(call(&sandboxed, &ctx).await);
            without.push(call(&plain, &ctx).await);
        } else {
            without.push(call(&plain, &ctx).await);
            with.push(call(&sandboxed, &ctx).await);
        }
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let (w, wo) = (median(with), median(without));
    println!("sandbox overhead: {CALLS} `shell` calls of `true` each, alternating; {cpu}");
    println!("| mode | median ms |");
    println!("|---|---:|");
    println!("| required (sandboxed) | {:.2} |", ms(w));
    println!("| off | {:.2} |", ms(wo));
    println!(
        "| added by the sandbox | {:.2} | (target ≤ 5 ms: {})",
        ms(w) - ms(wo),
        if w.saturating_sub(wo) <= Duration::from_millis(5) {
            "met"
        } else {
            "NOT met"
        }
    );
}
