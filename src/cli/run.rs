//! `troupe run "job"`: one job from the command line. Prints `task <id>`,
//! then live progress, then the answer; exits non-zero unless the task
//! succeeded. Ctrl-C leaves the task to `troupe tasks resume`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use troupe::config::Config;
use troupe::supervision::BootOptions;
use troupe::TaskSpec;

use super::live::{self, FollowOptions};

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// Where troupe keeps its database and workspaces (default: the
    /// configured `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The model for every call of this task (a catalog name); default: the
    /// configured ones.
    #[arg(short, long)]
    model: Option<String>,
    /// Approve every tool call the task asks for instead of asking.
    #[arg(short = 'y', long)]
    yes: bool,
    /// The job, in plain words.
    job: String,
}

pub(super) async fn run(args: RunArgs, mut config: Config) -> anyhow::Result<()> {
    if args.job.trim().is_empty() {
        bail!(
            "the job is empty: say what to do, e.g. `troupe run \"write a Python fibonacci \
             function with tests\"`"
        );
    }
    live::override_data_dir(&mut config, args.data_dir);
    // Boot resumes every unfinished task; this command waits for its own.
    let troupe = live::start(config, BootOptions::default()).await?;
    let events = troupe.subscribe();
    let spec = TaskSpec {
        model: args.model,
        ..TaskSpec::new(args.job)
    };
    let id = match troupe.submit(spec).await {
        Ok(id) => id,
        Err(error) => {
            troupe.shutdown().await;
            return Err(error).context("cannot submit the job");
        }
    };
    println!("task {id}");
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    live::finish(
        troupe,
        events,
        &id,
        FollowOptions {
            approve_all: args.yes,
            show_history: true,
        },
    )
    .await
}
