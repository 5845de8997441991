//! `troupe bench learner`: the Learner on a seeded simulated workload (see
//! `troupe_agents::learner::sim`), reported after 50, 200 and 1000 tasks:
//! success rate against an oracle that knows every model's success
//! probability, cost against always using the strongest model, regret,
//! and the tokens its budgets allocate against a fixed maximum. Writes
//! `learner.md` (the table) and `learner.svg` (the curves) to `--out`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use plotters::prelude::*;
use troupe::agents::learner::sim::{simulate, Checkpoint, SimReport, Workload};
use troupe_config::Config;

/// The checkpoints the issue asks for.
const CHECKPOINTS: [usize; 3] = [50, 200, 1000];

#[derive(Debug, Args)]
pub(crate) struct LearnerArgs {
    /// Seeds the workload and the Learner's sampler.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where `learner.md` and `learner.svg` go.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: LearnerArgs, config: &Config) -> anyhow::Result<()> {
    let workload = Workload::standard();
    let tasks = CHECKPOINTS[CHECKPOINTS.len() - 1];
    let report = simulate(
        &workload,
        &config.learner,
        args.seed,
        tasks,
        &CHECKPOINTS,
        10,
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let md = markdown(&report, &workload, config);
    let md_path = args.out.join("learner.md");
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let svg_path = args.out.join("learner.svg");
    plot(&report, &svg_path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report.checkpoints));
        println!("wrote {} and {}", md_path.display(), svg_path.display());
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn table(points: &[Checkpoint]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| tasks | success (learner / oracle / strongest) | vs oracle (≥ 95%) | cost vs strongest (≤ 40%) | regret | budget coverage (≥ 90%) | tokens vs fixed max (≤ 50%) | explored | targets |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for c in points {
        let _ = writeln!(
            out,
            "| {} | {} / {} / {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            c.tasks,
            pct(c.success_rate),
            pct(c.oracle_success_rate),
            pct(c.strongest_success_rate),
            pct(c.success_vs_oracle()),
            pct(c.cost_vs_strongest()),
            c.regret,
            pct(c.budget_coverage),
            pct(c.tokens_vs_fixed()),
            c.explored,
            if c.meets_targets() { "met" } else { "missed" }
        );
    }
    out
}

fn markdown(report: &SimReport, w: &Workload, config: &Config) -> String {
    let l = &config.learner;
    let mut out = String::new();
    let _ = writeln!(out, "# troupe bench learner (seed {})\n", report.seed);
    let _ = writeln!(
        out,
        "Simulated subtasks run through the Learner's own policy (`LearnerState`). \
         Models, weakest first: {}. Configured model: {}; fixed maximum {} tokens. \
         Learner: explore {}, explore_after {}, cost_penalty {}, prior {}, budget p{:.0} × {}, \
         min_samples {}.\n",
        w.models
            .iter()
            .map(|m| match m.price_per_token {
                Some(p) => format!("{} (remote, {p:.1e}/token)", m.name),
                None => format!(
                    "{} ({} GiB, {} tokens/s)",
                    m.name, m.memory_gib, m.tokens_per_s
                ),
            })
            .collect::<Vec<_>>()
            .join(", "),
        w.configured,
        w.fixed_max,
        l.explore,
        l.explore_after,
        l.cost_penalty,
        l.prior,
        l.quantile * 100.0,
        l.margin,
        l.min_samples
    );
    out.push_str(&table(&report.checkpoints));
    let _ = writeln!(
        out,
        "\nSuccess counts a subtask done after at most one retry (up the ladder, or with the \
         full budget after a learned one ran out); the oracle and the strongest model get the \
         same retries and random draws. Regret sums, over tasks, the oracle's expected \
         success minus cost penalty less that of the Learner's first choice. Curves: \
         learner.svg."
    );
    out
}

fn plot(report: &SimReport, path: &Path) -> anyhow::Result<()> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((2, 2));
        let curve = &report.curve;
        let max_x = curve.last().map_or(1.0, |c| c.tasks as f64);
        type Series<'a> = (&'a str, RGBColor, Box<dyn Fn(&Checkpoint) -> f64>);
        let specs: Vec<(&str, f64, Vec<Series>)> = vec![
            (
                "success rate",
                1.0,
                vec![
                    ("learner", BLUE, Box::new(|c: &Checkpoint| c.success_rate)),
                    (
                        "oracle",
                        GREEN,
                        Box::new(|c: &Checkpoint| c.oracle_success_rate),
                    ),
                    (
                        "strongest",
                        RED,
                        Box::new(|c: &Checkpoint| c.strongest_success_rate),
                    ),
                ],
            ),
            (
                "cost ÷ always strongest",
                1.0,
                vec![
                    (
                        "learner",
                        BLUE,
                        Box::new(|c: &Checkpoint| c.cost_vs_strongest()),
                    ),
                    (
                        "oracle",
                        GREEN,
                        Box::new(|c: &Checkpoint| {
                            c.oracle_cost / c.strongest_cost.max(f64::MIN_POSITIVE)
                        }),
                    ),
                    ("target 0.4", BLACK, Box::new(|_: &Checkpoint| 0.4)),
                ],
            ),
            (
                "cumulative regret",
                curve.iter().fold(1.0f64, |a, c| a.max(c.regret * 1.1)),
                vec![("learner", BLUE, Box::new(|c: &Checkpoint| c.regret))],
            ),
            (
                "token budgets",
                1.0,
                vec![
                    (
                        "coverage",
                        BLUE,
                        Box::new(|c: &Checkpoint| c.budget_coverage),
                    ),
                    (
                        "allocated ÷ fixed max",
                        MAGENTA,
                        Box::new(|c: &Checkpoint| c.tokens_vs_fixed()),
                    ),
                ],
            ),
        ];
        for (area, (title, top, series)) in panels.iter().zip(specs) {
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..max_x, 0.0..top)?;
            chart.configure_mesh().x_desc("tasks").draw()?;
            for (label, color, f) in series {
                chart
                    .draw_series(LineSeries::new(
                        curve.iter().map(|c| (c.tasks as f64, f(c))),
                        color.stroke_width(2),
                    ))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))
}
