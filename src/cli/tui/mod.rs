//! `troupe chat --tui`: a live terminal view of a running troupe. The
//! conversation and its input line on the left; pending approvals, the task
//! tree and the ModelHost (models, memory against the budget, slots) on the
//! right; the event log at the bottom. Keys pause, resume and cancel the
//! selected task and approve or deny the selected tool call.
//!
//! # Layout
//! - `app.rs`: the state and what keys do to it (pure, unit-tested).
//! - `journal.rs`: what journal entries do to the task tree and the log.
//! - `ui.rs`: drawing it with ratatui.
//! - `keys.rs`: reading the terminal on its own thread.
//! - `stderr.rs`: the log goes to a file while the view owns the screen.
//! - here: the loop that joins events, keys, a tick and troupe's answers.

mod app;
mod journal;
mod keys;
mod stderr;
mod ui;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ratatui::DefaultTerminal;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use troupe::agents::runtime::{AgentError, TroupeEvent};
use troupe::agents::ux::UxReply;
use troupe::host::{HostError, HostStatus};
use troupe::store::now_ms;
use troupe::Troupe;

use app::{Action, App, ApprovalItem, HostView, Speaker};
use keys::{Input, InputReader};

/// How often the ModelHost's status and the pending approvals are read.
const TICK: Duration = Duration::from_millis(250);
/// Finished tasks from earlier sessions shown at the start.
const EARLIER_FINISHED: usize = 5;

/// Something troupe answered to an action started from the loop.
enum Done {
    Replied(Result<UxReply, AgentError>),
    Controlled {
        verb: &'static str,
        id: String,
        result: Result<(), AgentError>,
    },
    Host(Result<HostStatus, HostError>),
}

/// Runs the view on `troupe` until the person quits, then shuts troupe
/// down (unfinished tasks resume at the next start). Stderr goes to
/// `log_file` meanwhile.
///
/// # Errors
/// Stdin or stdout is not a terminal; the terminal fails; the event stream
/// closes.
pub(super) async fn run(troupe: Troupe, conversation: &str, log_file: &Path) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        troupe.shutdown().await;
        bail!("`troupe chat --tui` needs a terminal; plain `troupe chat` reads lines from a pipe");
    }
    let troupe = Arc::new(troupe);
    // Subscribed before the store is read, so nothing between is missed.
    let events = troupe.subscribe();
    let mut app = App::new(conversation);
    app.say(
        Speaker::Note,
        "Say a job and press Enter; `help` and `status` work as in `troupe chat`.",
    );
    app.log_line(now_ms(), format!("the log goes to {}", log_file.display()));
    load(&troupe, &mut app).await;
    let mut jobs = JoinSet::new();
    let result = show(&troupe, &mut app, events, &mut jobs, log_file).await;
    // The screen is the shell's again here.
    jobs.shutdown().await;
    for task in &app.tasks {
        if app.started.iter().any(|id| *id == task.id) && !task.state.is_finished() {
            println!(
                "task {} is unfinished; `troupe tasks resume {}` continues it",
                task.id, task.id
            );
        }
    }
    match Arc::try_unwrap(troupe) {
        Ok(troupe) => troupe.shutdown().await,
        Err(_) => tracing::warn!("troupe is still in use; it stops with the process"),
    }
    result
}

/// The screen, given back to the shell when dropped (also on an error).
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        // `try_init` also installs a panic hook that restores the terminal.
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(error) => {
                ratatui::restore();
                Err(error)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}

async fn show(
    troupe: &Arc<Troupe>,
    app: &mut App,
    mut events: broadcast::Receiver<TroupeEvent>,
    jobs: &mut JoinSet<Done>,
    log_file: &Path,
) -> anyhow::Result<()> {
    // Dropped in the reverse order: the reader stops before the screen is
    // restored, and stderr comes back last.
    let _stderr = stderr::StderrToFile::to(log_file)
        .with_context(|| format!("cannot send the log to {}", log_file.display()))?;
    let mut screen = Screen::enter().context("cannot take over the terminal")?;
    let (_reader, mut terminal_input) = InputReader::start().context("cannot read the terminal")?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut asking_host = false;
    loop {
        screen
            .terminal
            .draw(|frame| ui::draw(frame, app))
            .context("cannot draw")?;
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => app.apply(&event, now_ms()),
                // Missed events are in the store.
                Err(broadcast::error::RecvError::Lagged(_)) => load(troupe, app).await,
                Err(broadcast::error::RecvError::Closed) => bail!("troupe's event stream closed"),
            },
            input = terminal_input.recv() => match input {
                Some(Input::Key(key)) => match app.key(key) {
                    Some(Action::Quit) => return Ok(()),
                    Some(action) => act(troupe, app, jobs, action),
                    None => {}
                },
                Some(Input::Redraw) => {}
                Some(Input::Failed(error)) => {
                    return Err(error).context("cannot read the terminal");
                }
                None => bail!("the terminal reader stopped"),
            },
            _ = tick.tick() => {
                app.set_approvals(troupe.pending_approvals().iter().map(ApprovalItem::from).collect());
                if !asking_host {
                    asking_host = true;
                    let troupe = Arc::clone(troupe);
                    jobs.spawn(async move { Done::Host(troupe.model_host().status().await) });
                }
            }
            Some(done) = jobs.join_next(), if !jobs.is_empty() => match done {
                Ok(Done::Host(status)) => {
                    asking_host = false;
                    if let Ok(status) = status {
                        app.set_host(HostView::from(&status));
                    }
                }
                Ok(done) => answered(app, done),
                Err(error) => app.say(Speaker::Note, &format!("an action failed: {error}")),
            },
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

/// Starts what a key asked for; its answer comes back through `jobs`.
fn act(troupe: &Arc<Troupe>, app: &mut App, jobs: &mut JoinSet<Done>, action: Action) {
    let control = |verb: &'static str, id: String| {
        let troupe = Arc::clone(troupe);
        async move {
            let result = match verb {
                "pause" => troupe.pause(&id).await,
                "resume" => troupe.resume(&id).await,
                _ => troupe.cancel(&id).await,
            };
            Done::Controlled { verb, id, result }
        }
    };
    match action {
        Action::Say(text) => {
            let troupe = Arc::clone(troupe);
            let conversation = app.conversation_name.clone();
            jobs.spawn(async move { Done::Replied(troupe.chat(&conversation, &text).await) });
        }
        Action::Pause(id) => {
            jobs.spawn(control("pause", id));
        }
        Action::Resume(id) => {
            jobs.spawn(control("resume", id));
        }
        Action::Cancel(id) => {
            jobs.spawn(control("cancel", id));
        }
        Action::Decide { id, approved } => {
            let word = if approved { "approved" } else { "denied" };
            match troupe.decide(&id, approved, None, troupe_store::Approver::Terminal) {
                Ok(call) => {
                    app.decided(&id);
                    app.say(
                        Speaker::Note,
                        &format!(
                            "{word} {} for {} ({})",
                            call.request.tool, call.task_id, call.subtask
                        ),
                    );
                }
                Err(error) => app.say(Speaker::Note, &format!("not {word}: {error}")),
            }
        }
        Action::Quit => {}
    }
}

fn answered(app: &mut App, done: Done) {
    match done {
        Done::Replied(Ok(reply)) => {
            app.say(Speaker::Troupe, &reply.text);
            if let Some(id) = reply.task_id {
                app.started.push(id);
            }
        }
        Done::Replied(Err(error)) => {
            app.say(Speaker::Note, &format!("the UX did not answer: {error}"));
        }
        Done::Controlled {
            verb,
            id,
            result: Ok(()),
        } => {
            let when = if verb == "resume" {
                ""
            } else {
                " (at its next step boundary)"
            };
            app.say(Speaker::Note, &format!("{verb} asked of {id}{when}"));
        }
        Done::Controlled {
            verb,
            id,
            result: Err(error),
        } => app.say(Speaker::Note, &format!("cannot {verb} {id}: {error}")),
        Done::Host(_) => {}
    }
}

/// Reads the tasks worth showing from the store: the unfinished ones and
/// the latest finished ones.
async fn load(troupe: &Troupe, app: &mut App) {
    let tasks = match troupe.tasks().await {
        Ok(tasks) => tasks,
        Err(error) => {
            app.say(Speaker::Note, &format!("cannot read the tasks: {error}"));
            return;
        }
    };
    let recent_finished: Vec<&str> = tasks
        .iter()
        .rev()
        .filter(|t| t.state.is_finished())
        .take(EARLIER_FINISHED)
        .map(|t| t.id.as_str())
        .collect();
    for task in &tasks {
        let known = app.tasks.iter().any(|t| t.id == task.id);
        if task.state.is_finished() && !known && !recent_finished.contains(&task.id.as_str()) {
            continue;
        }
        if let Ok(Some(view)) = troupe.task(&task.id).await {
            app.load_task(&view.task, &view.subtasks);
        }
    }
    app.set_approvals(
        troupe
            .pending_approvals()
            .iter()
            .map(ApprovalItem::from)
            .collect(),
    );
}
