//! `troupe learner stats`: what the Learner has learned in a data dir, per
//! task kind × complexity band × model: successes, failures, budget hits,
//! tokens (mean and the budget quantile), latency and cost; then each
//! model's load times. Read from the store's outcomes with the same code
//! the Learner rebuilds itself with, without booting troupe.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use troupe::agents::learner::{LearnerState, LoadRow, StatsRow};
use troupe::config::Config;
use troupe::store::{Store, DATABASE_FILE};

use super::live;

#[derive(Debug, Args)]
pub(super) struct LearnerArgs {
    /// Where troupe keeps its database (default: the configured `data_dir`).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: LearnerCommand,
}

#[derive(Debug, Subcommand)]
enum LearnerCommand {
    /// The table of outcomes per task kind, complexity and model.
    Stats {
        /// The rows as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct StatsJson {
    calls: Vec<StatsRow>,
    loads: Vec<LoadRow>,
}

pub(super) async fn run(args: LearnerArgs, mut config: Config) -> anyhow::Result<()> {
    live::override_data_dir(&mut config, args.data_dir);
    match args.command {
        LearnerCommand::Stats { json } => stats(&config, json).await,
    }
}

async fn stats(config: &Config, json: bool) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    let (loads, outcomes) = if dir.join(DATABASE_FILE).exists() {
        let store = Store::open(dir)?;
        let past = (store.loads().await?, store.outcomes().await?);
        store.close().await?;
        past
    } else {
        (Vec::new(), Vec::new())
    };
    let state = LearnerState::rebuild(
        config.agents.clone(),
        config.learner.clone(),
        &loads,
        &outcomes,
    );
    let (rows, loads) = (state.rows(), state.stats().load_rows());
    if json {
        let text = serde_json::to_string_pretty(&StatsJson { calls: rows, loads })?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", table(&rows, &loads, config.learner.quantile, dir)?);
    Ok(())
}

fn table(
    rows: &[StatsRow],
    loads: &[LoadRow],
    quantile: f64,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let mut out = String::new();
    if rows.is_empty() && loads.is_empty() {
        writeln!(out, "no outcomes recorded in {} yet", dir.display())?;
        return Ok(out);
    }
    let q = format!("p{:.0}", quantile * 100.0);
    writeln!(
        out,
        "{:<9} {:<10} {:<22} {:>6} {:>6} {:>6} {:>5} {:>8} {:>8} {:>9} {:>10}",
        "KIND", "COMPLEXITY", "MODEL", "CALLS", "OK", "FAIL", "HIT", "TOKENS", q, "LATENCY", "COST"
    )?;
    for r in rows {
        let model = match r.thinking {
            Some(true) => format!("{} (thinking)", r.model),
            Some(false) => format!("{} (no thinking)", r.model),
            None => r.model.clone(),
        };
        writeln!(
            out,
            "{:<9} {:<10} {:<22} {:>6} {:>6} {:>6} {:>5} {:>8} {:>8} {:>8.2}s {:>10.3e}",
            r.kind,
            r.complexity,
            model,
            r.calls,
            r.successes,
            r.failures,
            r.budget_hits,
            r.mean_tokens,
            r.quantile_tokens.map_or("-".to_string(), |t| t.to_string()),
            r.mean_latency_ms as f64 / 1000.0,
            r.mean_cost
        )
        .context("formatting the table")?;
    }
    if !loads.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<22} {:>6} {:>10} {:>10} {:>10}",
            "MODEL", "LOADS", "MEAN", "LAST", "MEMORY"
        )?;
        for l in loads {
            writeln!(
                out,
                "{:<22} {:>6} {:>9.2}s {:>9.2}s {:>10}",
                l.model,
                l.loads,
                l.mean_ms as f64 / 1000.0,
                l.last_ms as f64 / 1000.0,
                troupe::config::size::format_bytes(l.memory_bytes)
            )?;
        }
    }
    Ok(out)
}
