//! `troupe tasks list | show | log | resume | cancel`: the tasks in a data
//! dir. The read-only commands open the store directly instead of booting
//! troupe; a troupe process running on the same data dir holds its lock, and
//! the "already in use" error reaches the person as it is.

use super::summary::EventText;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe::config::Config;
use troupe::store::{Store, SubtaskRecord, SubtaskState, TaskId, TaskRecord, DATABASE_FILE};
use troupe::supervision::BootOptions;
use troupe::tools::Workspace;
use troupe::{TaskView, Troupe};

use super::live::{self, short, FollowOptions};

#[derive(Debug, Args)]
pub(super) struct TasksArgs {
    /// Where troupe keeps its database and workspaces (default: the
    /// configured `data_dir`).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: TasksCommand,
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
    /// Every task: id, state, subtasks done, when it was created, the job.
    List,
    /// One task: its record, its plan with each subtask's state, the answer.
    Show {
        /// The task's id or an unambiguous prefix of it.
        id: String,
        /// The task, its subtasks and journal as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A task's journal, one line per entry.
    Log {
        /// The task's id or an unambiguous prefix of it.
        id: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Continue an unfinished or paused task and follow it to its end.
    Resume {
        /// The task's id or an unambiguous prefix of it.
        id: String,
        /// Approve every tool call the task asks for instead of asking.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Cancel a task for good.
    Cancel {
        /// The task's id or an unambiguous prefix of it.
        id: String,
    },
}

pub(super) async fn run(args: TasksArgs, mut config: Config) -> anyhow::Result<()> {
    live::override_data_dir(&mut config, args.data_dir);
    let dir = config.data_dir.clone();
    match args.command {
        TasksCommand::List => list(&dir).await,
        TasksCommand::Show { id, json } => show(&dir, &id, json).await,
        TasksCommand::Log { id, json } => log(&dir, &id, json).await,
        TasksCommand::Resume { id, yes } => resume(config, &id, yes).await,
        TasksCommand::Cancel { id } => cancel(config, &id).await,
    }
}

/// The store of `dir`, or none when troupe never ran there (opening would
/// create it).
fn open(dir: &Path) -> anyhow::Result<Option<Store>> {
    if !dir.join(DATABASE_FILE).exists() {
        return Ok(None);
    }
    Ok(Some(Store::open(dir)?))
}

/// The one task whose id is `prefix` or starts with it.
fn resolve(tasks: &[TaskRecord], prefix: &str, dir: &Path) -> anyhow::Result<TaskId> {
    if let Some(task) = tasks.iter().find(|t| t.id == prefix) {
        return Ok(task.id.clone());
    }
    let matches: Vec<&str> = tasks
        .iter()
        .map(|t| t.id.as_str())
        .filter(|id| !prefix.is_empty() && id.starts_with(prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).into()),
        [] => bail!("there is no task `{prefix}` in {}", dir.display()),
        many => bail!(
            "`{prefix}` matches {} tasks ({}); give more of the id",
            many.len(),
            many.join(", ")
        ),
    }
}

/// The view of the task `prefix` names, read from the store.
async fn view(dir: &Path, prefix: &str) -> anyhow::Result<TaskView> {
    let Some(store) = open(dir)? else {
        bail!(
            "there is no task `{prefix}` in {} (no tasks yet)",
            dir.display()
        );
    };
    let id = resolve(&store.tasks().await?, prefix, dir)?;
    troupe::task_view(&store, &id)
        .await?
        .with_context(|| format!("there is no task `{id}` in {}", dir.display()))
}

async fn list(dir: &Path) -> anyhow::Result<()> {
    let tasks = match open(dir)? {
        Some(store) => {
            let mut rows = Vec::new();
            for task in store.tasks().await? {
                let subtasks = store.subtasks(&task.id).await?;
                rows.push((task, subtasks));
            }
            rows
        }
        None => Vec::new(),
    };
    let mut out = String::new();
    if tasks.is_empty() {
        writeln!(out, "no tasks in {}", dir.display())?;
        return emit(&out);
    }
    writeln!(
        out,
        "{:<15} {:<10} {:<8}  {:<19}  REQUEST",
        "ID", "STATE", "SUBTASKS", "CREATED (UTC)"
    )?;
    for (task, subtasks) in &tasks {
        let (done, total) = progress(subtasks);
        writeln!(
            out,
            "{:<15} {:<10} {:<8}  {:<19}  {}",
            task.id,
            task.state.as_str(),
            format!("{done}/{total}"),
            utc_datetime(task.created_ms),
            short(&task.request, 60)
        )?;
    }
    emit(&out)
}

/// Subtasks succeeded and subtasks of the current plans.
fn progress(subtasks: &[SubtaskRecord]) -> (usize, usize) {
    let live = subtasks
        .iter()
        .filter(|s| s.state != SubtaskState::Cancelled);
    let total = live.clone().count();
    (
        live.filter(|s| s.state == SubtaskState::Succeeded).count(),
        total,
    )
}

async fn show(dir: &Path, prefix: &str, json: bool) -> anyhow::Result<()> {
    let view = view(dir, prefix).await?;
    let mut out = String::new();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return emit(&out);
    }
    let task = &view.task;
    let (done, total) = progress(&view.subtasks);
    let tokens =
        troupe::store::TokenTally::of(view.events.iter().map(|entry| &entry.event)).total();
    let model = task.model.as_deref().unwrap_or("(chosen per role)");
    writeln!(out, "task       {}", task.id)?;
    writeln!(out, "state      {}", task.state)?;
    writeln!(out, "request    {}", short(&task.request, 200))?;
    writeln!(out, "model      {model}")?;
    writeln!(out, "created    {} UTC", utc_datetime(task.created_ms))?;
    writeln!(out, "updated    {} UTC", utc_datetime(task.updated_ms))?;
    writeln!(out, "plans      {}", task.plans)?;
    writeln!(out, "subtasks   {done}/{total} succeeded")?;
    writeln!(out, "tokens     {tokens}")?;
    let workspace = Workspace::path_for(dir, &task.id);
    writeln!(out, "workspace  {}", workspace.display())?;
    if let Some(error) = &task.error {
        writeln!(out, "error      {error}")?;
    }
    if !view.subtasks.is_empty() {
        writeln!(out, "\nplan:")?;
    }
    for s in &view.subtasks {
        let after = if s.depends_on.is_empty() {
            String::new()
        } else {
            format!(", after {}", s.depends_on.join(", "))
        };
        writeln!(
            out,
            "  {} {:<9} [{}, complexity {}{after}] attempts {} · {} · {} tokens",
            s.id,
            s.state.as_str(),
            s.kind,
            s.complexity,
            s.attempts,
            s.model.as_deref().unwrap_or("-"),
            s.tokens
        )?;
        writeln!(out, "     {}", short(&s.description, 200))?;
        if let Some(result) = &s.result {
            writeln!(out, "     result: {}", short(result, 200))?;
        }
        if let Some(error) = &s.error {
            writeln!(out, "     error: {}", short(error, 200))?;
        }
    }
    if let Some(answer) = &task.answer {
        writeln!(out, "\nanswer:\n{}", answer.trim_end())?;
    }
    emit(&out)
}

async fn log(dir: &Path, prefix: &str, json: bool) -> anyhow::Result<()> {
    let view = view(dir, prefix).await?;
    let mut out = String::new();
    let mut text = EventText::default();
    for entry in &view.events {
        if json {
            writeln!(out, "{}", serde_json::to_string(entry)?)?;
        } else {
            writeln!(
                out,
                "{:>4} {} {:<18} {}",
                entry.seq,
                utc_time(entry.time_ms),
                entry.event.kind(),
                text.line(&entry.event)
            )?;
        }
    }
    emit(&out)
}

/// Writes `text` to stdout; a reader that went away (`| head`) is no error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

async fn resume(config: Config, prefix: &str, yes: bool) -> anyhow::Result<()> {
    let dir = config.data_dir.clone();
    // Boot resumes every unfinished task that is not paused.
    let troupe = live::start(config, BootOptions::default()).await?;
    let events = troupe.subscribe();
    let id = match prepare_resume(&troupe, prefix, &dir).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            troupe.shutdown().await;
            return Ok(());
        }
        Err(error) => {
            troupe.shutdown().await;
            return Err(error);
        }
    };
    println!("task {id}");
    live::finish(
        troupe,
        events,
        &id,
        FollowOptions {
            approve_all: yes,
            show_history: false,
        },
    )
    .await
}

/// The task to follow, resumed if it was paused; none when it had already
/// succeeded (its answer is printed).
async fn prepare_resume(
    troupe: &Troupe,
    prefix: &str,
    dir: &Path,
) -> anyhow::Result<Option<TaskId>> {
    let id = resolve(&troupe.tasks().await?, prefix, dir)?;
    let task = troupe
        .task(&id)
        .await?
        .with_context(|| format!("there is no task `{id}`"))?
        .task;
    match task.state {
        troupe::store::TaskState::Succeeded => {
            eprintln!("task {id} had already succeeded");
            println!("{}", task.answer.unwrap_or_default().trim_end());
            Ok(None)
        }
        state if state.is_finished() => bail!(
            "task {id} is {state}: {}; there is nothing to resume",
            task.error.as_deref().unwrap_or("no reason recorded")
        ),
        troupe::store::TaskState::Paused => {
            troupe.resume(&id).await?;
            Ok(Some(id))
        }
        _ => Ok(Some(id)),
    }
}

async fn cancel(config: Config, prefix: &str) -> anyhow::Result<()> {
    let dir = config.data_dir.clone();
    // Nothing else resumes: this process only cancels.
    let opts = BootOptions {
        no_recover: true,
        ..BootOptions::default()
    };
    let troupe = live::start(config, opts).await?;
    let result = async {
        let id = resolve(&troupe.tasks().await?, prefix, &dir)?;
        troupe.cancel(&id).await?;
        troupe
            .task(&id)
            .await?
            .with_context(|| format!("there is no task `{id}`"))
    }
    .await;
    troupe.shutdown().await;
    let task = result?.task;
    println!("task {} {}", task.id, task.state);
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc_datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `HH:MM:SS.mmm` in UTC.
fn utc_time(ms: u64) -> String {
    let rest = ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_datetime(0), "1970-01-01 00:00:00");
        // 2024-02-29 12:34:56.789 UTC
        assert_eq!(utc_datetime(1_709_210_096_789), "2024-02-29 12:34:56");
        assert_eq!(utc_time(1_709_210_096_789), "12:34:56.789");
    }

    #[test]
    fn prefixes_resolve_to_one_task() {
        let task = |id: &str| TaskRecord {
            id: id.into(),
            request: "x".to_string(),
            model: None,
            priority: 0,
            state: troupe::store::TaskState::Queued,
            created_ms: 0,
            updated_ms: 0,
            answer: None,
            error: None,
            plans: 0,
        };
        let tasks = vec![task("t-aaa111"), task("t-aab222")];
        let dir = Path::new("/d");
        assert_eq!(resolve(&tasks, "t-aaa", dir).unwrap(), "t-aaa111");
        assert!(resolve(&tasks, "t-aa", dir)
            .unwrap_err()
            .to_string()
            .contains("matches 2 tasks"));
        assert!(resolve(&tasks, "t-zz", dir)
            .unwrap_err()
            .to_string()
            .contains("no task"));
    }
}
