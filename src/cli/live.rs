//! Live progress of one task, shared by `troupe run` and `troupe tasks
//! resume`: indicatif spinners when stdout is a terminal, one plain line per
//! journal event worth seeing otherwise (so scripts and tests can read it),
//! tool-call approvals, Ctrl-C, and the ending (answer on stdout, exit
//! status).

mod screen;

use std::collections::{HashSet, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tokio::sync::{broadcast, mpsc};
use troupe::agents::runtime::TroupeEvent;
use troupe::config::Config;
use troupe::store::{JournalEntry, TaskEvent, TaskRecord, TaskState};
use troupe::tools::ApprovalRequest;
use troupe::Troupe;

use screen::Screen;

/// How a follow treats tool calls that need a person.
#[derive(Debug, Clone, Copy)]
pub(super) struct FollowOptions {
    /// Approve every call without asking (`--yes`).
    pub approve_all: bool,
    /// Show the journal entries already there when the follow starts (a
    /// new task: they came after the subscription), rather than only
    /// counting them (a resumed task's history).
    pub show_history: bool,
}

/// Why following a task stopped.
enum Ending {
    /// It finished, or was paused.
    Ended(TaskRecord),
    /// The person pressed Ctrl-C.
    Interrupted,
    /// The root supervisor gave up (a child kept failing).
    SupervisorStopped,
}

/// Sets `config.data_dir` from `--data-dir` when given.
pub(super) fn override_data_dir(config: &mut Config, dir: Option<PathBuf>) {
    if let Some(dir) = dir {
        config.data_dir = dir;
    }
}

/// Starts troupe on `config.data_dir` (created when missing).
pub(super) async fn start(
    config: Config,
    opts: troupe::supervision::BootOptions,
) -> anyhow::Result<Troupe> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Troupe::start_with(config, opts)
        .await
        .with_context(|| format!("cannot start troupe on {}", dir.display()))
}

/// Shows task `id`'s progress until it ends, is paused, or the person
/// presses Ctrl-C; then shuts troupe down and reports: the answer on stdout
/// and `Ok` when it succeeded, an error naming its state otherwise.
///
/// `events` must have been subscribed before anything was asked of the
/// task, so that nothing between the two is missed.
pub(super) async fn finish(
    mut troupe: Troupe,
    events: broadcast::Receiver<TroupeEvent>,
    id: &str,
    opts: FollowOptions,
) -> anyhow::Result<()> {
    let mut screen = Screen::new(id);
    let ending = follow(&mut troupe, events, id, opts, &mut screen).await;
    screen.close();
    troupe.shutdown().await;
    let unfinished = format!("`troupe tasks resume {id}` continues it");
    match ending? {
        Ending::Ended(task) if task.state == TaskState::Succeeded => {
            println!("{}", task.answer.unwrap_or_default().trim_end());
            Ok(())
        }
        Ending::Ended(task) if task.state == TaskState::Paused => {
            bail!("task {id} paused; {unfinished}")
        }
        Ending::Ended(task) => bail!(
            "task {id} {}: {}",
            task.state,
            task.error.as_deref().unwrap_or("no reason recorded")
        ),
        Ending::Interrupted => bail!("interrupted: task {id} is unfinished; {unfinished}"),
        Ending::SupervisorStopped => bail!(
            "troupe's supervisor stopped (an agent kept failing; see the log): task {id} is \
             unfinished; {unfinished}"
        ),
    }
}

async fn follow(
    troupe: &mut Troupe,
    mut events: broadcast::Receiver<TroupeEvent>,
    id: &str,
    opts: FollowOptions,
    screen: &mut Screen,
) -> anyhow::Result<Ending> {
    let view = troupe
        .task(id)
        .await?
        .with_context(|| format!("there is no task `{id}`"))?;
    // The subscription delivers these again; they are skipped by seq then.
    if opts.show_history {
        for entry in &view.events {
            screen.show(entry);
        }
    } else {
        screen.catch_up(&view.events, &view.subtasks);
    }
    // Only a finished task ends the follow here: a paused one may have just
    // been resumed, and its run writes `resumed` a moment later.
    if view.task.state.is_finished() {
        return Ok(Ending::Ended(view.task));
    }
    let mut approvals = ApprovalQueue::new(opts);
    for pending in troupe.pending_approvals() {
        if pending.task_id == id {
            approvals.arrived(troupe, screen, pending.request).await;
        }
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(TroupeEvent::Journal(entry)) if entry.task_id == id => {
                    if let Some(end) = seen(troupe, screen, &entry).await? {
                        return Ok(end);
                    }
                }
                Ok(TroupeEvent::Progress { task_id, subtask, text, .. }) if task_id == id => {
                    screen.progress(subtask.as_deref(), &text);
                }
                Ok(TroupeEvent::ApprovalPending { task_id, request }) if task_id == id => {
                    approvals.arrived(troupe, screen, request).await;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed events are in the journal.
                    for entry in troupe.store().journal(id, screen.next_seq).await? {
                        if let Some(end) = seen(troupe, screen, &entry).await? {
                            return Ok(end);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => bail!("troupe's event stream closed"),
            },
            line = approvals.answer(), if approvals.waiting() => {
                approvals.answered(troupe, screen, line).await;
            }
            _ = &mut ctrl_c => return Ok(Ending::Interrupted),
            _ = troupe.supervisor_stopped() => return Ok(Ending::SupervisorStopped),
        }
    }
}

/// Shows one journal entry; the task's record when it ended the follow.
async fn seen(
    troupe: &Troupe,
    screen: &mut Screen,
    entry: &JournalEntry,
) -> anyhow::Result<Option<Ending>> {
    if entry.seq < screen.next_seq {
        return Ok(None);
    }
    screen.show(entry);
    if !matches!(entry.event, TaskEvent::Finished { .. } | TaskEvent::Paused) {
        return Ok(None);
    }
    let task = troupe
        .store()
        .task(&entry.task_id)
        .await?
        .with_context(|| format!("task {} vanished from the store", entry.task_id))?;
    Ok(is_over(&task).then_some(Ending::Ended(task)))
}

fn is_over(task: &TaskRecord) -> bool {
    task.state.is_finished() || task.state == TaskState::Paused
}

/// Tool calls waiting for the person, asked one at a time on stdin.
struct ApprovalQueue {
    opts: FollowOptions,
    queue: VecDeque<ApprovalRequest>,
    handled: HashSet<String>,
    stdin: Option<mpsc::UnboundedReceiver<String>>,
    stdin_closed: bool,
}

impl ApprovalQueue {
    fn new(opts: FollowOptions) -> ApprovalQueue {
        ApprovalQueue {
            opts,
            queue: VecDeque::new(),
            handled: HashSet::new(),
            stdin: None,
            stdin_closed: false,
        }
    }

    fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    async fn arrived(&mut self, troupe: &Troupe, screen: &mut Screen, request: ApprovalRequest) {
        if !self.handled.insert(request.id.clone()) {
            return;
        }
        if self.opts.approve_all {
            screen.line(&format!(
                "approved {} {} (--yes)",
                request.tool,
                short(&request.args.to_string(), 100)
            ));
            decide(troupe, screen, &request.id, true, None).await;
            return;
        }
        self.queue.push_back(request);
        if self.queue.len() == 1 {
            self.ask(screen);
        }
    }

    fn ask(&mut self, screen: &mut Screen) {
        let Some(request) = self.queue.front() else {
            return;
        };
        screen.pause();
        println!("{} Approve? [y/N]", request.question());
        self.stdin.get_or_insert_with(stdin_lines);
    }

    /// The next line of stdin; `None` at its end.
    async fn answer(&mut self) -> Option<String> {
        match &mut self.stdin {
            Some(lines) => lines.recv().await,
            None => None,
        }
    }

    async fn answered(&mut self, troupe: &Troupe, screen: &mut Screen, line: Option<String>) {
        let Some(request) = self.queue.pop_front() else {
            return;
        };
        let (approved, reason) = match line {
            Some(line) => {
                let word = line.trim().to_ascii_lowercase();
                (matches!(word.as_str(), "y" | "yes"), None)
            }
            None => {
                if !self.stdin_closed {
                    self.stdin_closed = true;
                    println!("(standard input is closed: denied; `--yes` approves every call)");
                }
                (
                    false,
                    Some("no one could answer: standard input is closed".to_string()),
                )
            }
        };
        screen.resume();
        screen.line(&format!(
            "{} {}",
            if approved { "approved" } else { "denied" },
            request.tool
        ));
        decide(troupe, screen, &request.id, approved, reason).await;
        self.ask(screen);
    }
}

/// Decides a waiting call. The worker publishes its question just before
/// it parks the call, so an answer given at once can come too early: try
/// again for a while.
async fn decide(
    troupe: &Troupe,
    screen: &mut Screen,
    id: &str,
    approved: bool,
    reason: Option<String>,
) {
    // The worker registers a call before announcing it, so an id from an
    // event or from the pending list can be decided at once.
    if let Err(error) = troupe.decide(id, approved, reason, troupe_store::Approver::Terminal) {
        screen.line(&format!("could not answer the approval: {error}"));
    }
}

/// The lines of stdin, read on a plain thread: a blocking read cannot be
/// cancelled, and a tokio blocking task would hold the runtime's shutdown
/// until the person pressed enter.
pub(super) fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".to_string())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot read standard input");
    }
    rx
}

/// `text` on one line, cut to `max` characters.
pub(super) fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
