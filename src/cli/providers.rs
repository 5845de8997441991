//! `troupe providers`: each role's chain, the configured remote providers
//! (the name of the variable their key comes from and whether it is set,
//! never the key), and what every provider served in a data dir: requests,
//! failures, tokens, cost and latency, from the store's provider calls.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use troupe::config::{ChainEntry, Config};
use troupe::store::{ProviderCall, Store, DATABASE_FILE};

use super::live;

#[derive(Debug, Args)]
pub(super) struct ProvidersArgs {
    /// Where troupe keeps its database (default: the configured `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Everything as JSON.
    #[arg(long)]
    json: bool,
}

/// What one provider served, added up per model.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(super) struct UsageRow {
    pub provider: String,
    pub model: String,
    pub requests: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub mean_latency_ms: f64,
    pub last_error: Option<String>,
}

#[derive(Serialize)]
struct ProviderJson {
    name: String,
    base_url: String,
    model: String,
    api_key_env: Option<String>,
    api_key_set: bool,
    enabled: bool,
}

#[derive(Serialize)]
struct Json {
    chains: BTreeMap<&'static str, Vec<String>>,
    providers: Vec<ProviderJson>,
    usage: Vec<UsageRow>,
}

pub(super) async fn run(args: ProvidersArgs, mut config: Config) -> anyhow::Result<()> {
    live::override_data_dir(&mut config, args.data_dir);
    let dir = &config.data_dir;
    let calls = if dir.join(DATABASE_FILE).exists() {
        let store = Store::open(dir)?;
        let calls = store.provider_calls().await?;
        store.close().await?;
        calls
    } else {
        Vec::new()
    };
    let routing = &config.providers.routing;
    let names = |chain: &[ChainEntry]| chain.iter().map(|e| e.name().to_owned()).collect();
    let json = Json {
        chains: BTreeMap::from([
            ("ux", names(&routing.ux)),
            ("director", names(&routing.director)),
            ("worker", names(&routing.worker)),
        ]),
        providers: config
            .providers
            .providers
            .iter()
            .map(|p| ProviderJson {
                name: p.name.clone(),
                base_url: p.base_url.clone(),
                model: p.model.clone(),
                api_key_env: p.api_key_env.clone(),
                api_key_set: p
                    .api_key_env
                    .as_deref()
                    .is_some_and(|var| std::env::var_os(var).is_some()),
                enabled: p.enabled,
            })
            .collect(),
        usage: usage(&calls),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", render(&json));
    }
    Ok(())
}

/// Adds the calls up per provider and model, in order of first use.
pub(super) fn usage(calls: &[ProviderCall]) -> Vec<UsageRow> {
    let mut rows: Vec<UsageRow> = Vec::new();
    let mut latency: Vec<u64> = Vec::new();
    for call in calls {
        let i = match rows
            .iter()
            .position(|r| r.provider == call.provider && r.model == call.model)
        {
            Some(i) => i,
            None => {
                rows.push(UsageRow {
                    provider: call.provider.clone(),
                    model: call.model.clone(),
                    ..UsageRow::default()
                });
                latency.push(0);
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        row.requests += 1;
        if call.ok {
            row.prompt_tokens += call.prompt_tokens;
            row.completion_tokens += call.completion_tokens;
            row.cost += call.cost;
        } else {
            row.failed += 1;
            row.last_error.clone_from(&call.error);
        }
        latency[i] += call.latency_ms;
    }
    for (row, total) in rows.iter_mut().zip(latency) {
        row.mean_latency_ms = total as f64 / row.requests.max(1) as f64;
    }
    rows
}

fn render(json: &Json) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "chains:");
    for (route, chain) in &json.chains {
        let _ = writeln!(out, "  {route:<9} {}", chain.join(" → "));
    }
    if json.providers.is_empty() {
        let _ = writeln!(out, "\nno [[providers]] configured");
    } else {
        let _ = writeln!(out, "\nproviders:");
        for p in &json.providers {
            let key = match &p.api_key_env {
                Some(var) if p.api_key_set => format!("key from ${var}"),
                Some(var) => format!("${var} is NOT set: left out of the chains"),
                None => "no key".to_owned(),
            };
            let state = if p.enabled { "" } else { " (disabled)" };
            let _ = writeln!(
                out,
                "  {:<12} {} model {} — {key}{state}",
                p.name, p.base_url, p.model
            );
        }
    }
    if json.usage.is_empty() {
        let _ = writeln!(out, "\nno requests recorded yet");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:<28} {:>8} {:>6} {:>10} {:>10} {:>10} {:>9}",
        "provider", "model", "requests", "failed", "prompt", "completion", "cost", "mean ms"
    );
    for r in &json.usage {
        let _ = writeln!(
            out,
            "{:<20} {:<28} {:>8} {:>6} {:>10} {:>10} {:>10.4} {:>9.0}",
            r.provider,
            r.model,
            r.requests,
            r.failed,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost,
            r.mean_latency_ms
        );
    }
    for r in json.usage.iter().filter(|r| r.last_error.is_some()) {
        let _ = writeln!(
            out,
            "last error of {}: {}",
            r.provider,
            r.last_error.as_deref().unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(provider: &str, ok: bool, tokens: u64, cost: f64) -> ProviderCall {
        ProviderCall {
            provider: provider.into(),
            model: "m".into(),
            ok,
            prompt_tokens: tokens,
            completion_tokens: tokens,
            cost,
            latency_ms: 10,
            error: (!ok).then(|| "HTTP 500".into()),
            ..ProviderCall::default()
        }
    }

    #[test]
    fn usage_adds_up_per_provider_and_counts_failures_without_their_tokens() {
        let rows = usage(&[
            call("local", false, 0, 0.0),
            call("groq", true, 100, 0.5),
            call("groq", true, 50, 0.25),
            call("groq", false, 7, 0.0),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].provider.as_str(), rows[0].failed), ("local", 1));
        let groq = &rows[1];
        assert_eq!((groq.requests, groq.failed), (3, 1));
        assert_eq!((groq.prompt_tokens, groq.completion_tokens), (150, 150));
        assert!((groq.cost - 0.75).abs() < 1e-9);
        assert_eq!(groq.last_error.as_deref(), Some("HTTP 500"));
    }
}
