//! `troupe chat`: a line-based conversation with the UX in the terminal
//! (conversation `terminal`). Each line goes to the UX and its answer is
//! printed; meanwhile the UX's own messages (progress, approvals, tasks'
//! ends) are printed as they come. `exit`, `quit` or the end of input end
//! it; at the end of input the tasks this session started are waited for,
//! so `echo "job" | troupe chat` runs a job to its end.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::{broadcast, Notify};
use troupe::agents::runtime::TroupeEvent;
use troupe::config::Config;
use troupe::store::{TaskEvent, TaskId, TaskState};
use troupe::supervision::BootOptions;
use troupe::Troupe;

use super::live;

/// The conversation this front door speaks in.
const CONVERSATION: &str = "terminal";
/// How long a finished task's end message may take to come from the UX
/// before it is printed from the store instead.
const END_MESSAGE_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(super) struct ChatArgs {
    /// Where troupe keeps its database and workspaces (default: the
    /// configured `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A live terminal view instead of lines: the conversation, the task
    /// tree, the ModelHost and the event log, with keys to pause, resume,
    /// cancel, approve and deny (the log goes to `<data dir>/tui.log`).
    #[arg(long)]
    tui: bool,
}

/// Tasks whose end the UX has announced, shared with the printer.
#[derive(Default)]
struct Ends {
    finished: Mutex<HashSet<TaskId>>,
    announced: Mutex<HashSet<TaskId>>,
    changed: Notify,
}

impl Ends {
    fn announced(&self, id: &str) -> bool {
        self.announced.lock().is_ok_and(|a| a.contains(id))
    }
}

pub(super) async fn run(args: ChatArgs, mut config: Config) -> anyhow::Result<()> {
    live::override_data_dir(&mut config, args.data_dir);
    let dir = config.data_dir.clone();
    let troupe = live::start(config, BootOptions::default()).await?;
    if args.tui {
        return super::tui::run(troupe, CONVERSATION, &dir.join("tui.log")).await;
    }
    let ends = Arc::new(Ends::default());
    let printer = tokio::spawn(print_events(troupe.subscribe(), Arc::clone(&ends)));
    let interactive = std::io::stdin().is_terminal();
    println!(
        "troupe chat on {}: say a job, `help`, `status`; `exit` or end of input to leave.",
        dir.display()
    );
    let result = converse(&troupe, &ends, interactive).await;
    printer.abort();
    troupe.shutdown().await;
    result
}

/// Reads lines and answers them; at the end of input waits for the tasks
/// it started.
async fn converse(troupe: &Troupe, ends: &Ends, interactive: bool) -> anyhow::Result<()> {
    let mut lines = live::stdin_lines();
    let mut started: Vec<TaskId> = Vec::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if interactive {
            print!("you> ");
            let _ = std::io::stdout().flush();
        }
        let line = tokio::select! {
            line = lines.recv() => line,
            _ = &mut ctrl_c => {
                say_unfinished(troupe, &started).await;
                return Ok(());
            }
        };
        let Some(line) = line else { break };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if matches!(
            text.to_ascii_lowercase().as_str(),
            "exit" | "quit" | "/exit" | "/quit"
        ) {
            say_unfinished(troupe, &started).await;
            return Ok(());
        }
        let reply = troupe
            .chat(CONVERSATION, text)
            .await
            .context("the UX did not answer")?;
        println!("troupe> {}", reply.text);
        if let Some(id) = reply.task_id {
            started.push(id);
        }
    }
    // End of input: the jobs asked for still get done.
    tokio::select! {
        result = wait_for_ends(troupe, ends, &started) => result,
        _ = &mut ctrl_c => {
            say_unfinished(troupe, &started).await;
            Ok(())
        }
    }
}

async fn wait_for_ends(troupe: &Troupe, ends: &Ends, started: &[TaskId]) -> anyhow::Result<()> {
    for id in started {
        let task = troupe.wait(id).await?;
        // The UX announces the end just after the journal has it; print it
        // from the store if that does not come.
        let announced = tokio::time::timeout(END_MESSAGE_GRACE, async {
            loop {
                let changed = ends.changed.notified();
                if ends.announced(id) {
                    return;
                }
                changed.await;
            }
        })
        .await;
        if announced.is_err() {
            match task.state {
                TaskState::Succeeded => println!(
                    "troupe> Task {id} succeeded: {}",
                    task.answer.as_deref().unwrap_or_default()
                ),
                TaskState::Paused => println!(
                    "troupe> Task {id} is paused; `troupe tasks resume {id}` continues it."
                ),
                state => println!(
                    "troupe> Task {id} {state}: {}",
                    task.error.as_deref().unwrap_or("no reason recorded")
                ),
            }
        }
    }
    Ok(())
}

async fn say_unfinished(troupe: &Troupe, started: &[TaskId]) {
    for id in started {
        if let Ok(Some(view)) = troupe.task(id).await {
            if !view.task.state.is_finished() {
                println!("task {id} is unfinished; `troupe tasks resume {id}` continues it");
            }
        }
    }
}

/// Prints what the UX says to this conversation or to no one in
/// particular, and notes which tasks' ends it announced.
async fn print_events(mut events: broadcast::Receiver<TroupeEvent>, ends: Arc<Ends>) {
    loop {
        match events.recv().await {
            Ok(TroupeEvent::Journal(entry)) => {
                if matches!(entry.event, TaskEvent::Finished { .. }) {
                    if let Ok(mut f) = ends.finished.lock() {
                        f.insert(entry.task_id);
                    }
                }
            }
            Ok(TroupeEvent::Ux { conversation, text })
                if conversation == CONVERSATION || conversation.is_empty() =>
            {
                println!("troupe> {text}");
                note_end(&ends, &text);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// An end message is `Task <id> <state>: ...` and comes after the task's
/// `finished` entry (progress reports read `Task <id>: ...`).
fn note_end(ends: &Ends, text: &str) {
    let Some(rest) = text.strip_prefix("Task ") else {
        return;
    };
    let Some((id, _)) = rest.split_once(' ') else {
        return;
    };
    let finished = ends.finished.lock().is_ok_and(|f| f.contains(id));
    if finished {
        if let Ok(mut a) = ends.announced.lock() {
            a.insert(id.into());
        }
        ends.changed.notify_waiters();
    }
}
