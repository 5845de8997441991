//! What a follow shows: indicatif spinners with history lines above them
//! when stdout is a terminal, one plain line per journal event worth seeing
//! otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use troupe::store::{JournalEntry, SubtaskId, SubtaskRecord, SubtaskState, TaskEvent, TokenTally};

use super::short;
use crate::cli::summary::EventText;

/// Where progress goes: spinners on a terminal, plain lines elsewhere.
pub(super) struct Screen {
    id: String,
    /// The next journal entry not yet shown.
    pub(super) next_seq: u64,
    tokens: TokenTally,
    done: usize,
    total: usize,
    phase: &'static str,
    /// The event lines (it knows each started step's tool).
    text: EventText,
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    subtasks: BTreeMap<SubtaskId, ProgressBar>,
}

impl Screen {
    pub(super) fn new(id: &str) -> Screen {
        let bars = std::io::stdout().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let header = multi.add(spinner());
            Bars {
                multi,
                header,
                subtasks: BTreeMap::new(),
            }
        });
        let screen = Screen {
            id: id.to_string(),
            next_seq: 0,
            tokens: TokenTally::default(),
            done: 0,
            total: 0,
            phase: "queued",
            text: EventText::default(),
            bars,
        };
        screen.header();
        screen
    }

    /// Counts what the journal already holds, showing nothing of it.
    pub(super) fn catch_up(&mut self, entries: &[JournalEntry], subtasks: &[SubtaskRecord]) {
        for entry in entries {
            self.count(entry);
            // Not shown, but later lines name these steps' tools.
            self.text.note(&entry.event);
        }
        let live = subtasks
            .iter()
            .filter(|s| s.state != SubtaskState::Cancelled);
        self.total = live.clone().count();
        self.done = live.filter(|s| s.state == SubtaskState::Succeeded).count();
        if let Some(bars) = &mut self.bars {
            for s in subtasks {
                if matches!(s.state, SubtaskState::Pending | SubtaskState::Running) {
                    let bar = bars.multi.add(spinner());
                    bar.set_message(format!(
                        "{} [{}] {}",
                        s.id,
                        s.kind,
                        short(&s.description, 60)
                    ));
                    bars.subtasks.insert(s.id.clone(), bar);
                }
            }
        }
        self.header();
    }

    /// Updates the counts for `entry`.
    fn count(&mut self, entry: &JournalEntry) {
        self.next_seq = self.next_seq.max(entry.seq + 1);
        self.tokens.add(&entry.event);
        match &entry.event {
            TaskEvent::Planned { subtasks, .. } => {
                self.total = self.done + subtasks.len();
                self.phase = "running";
            }
            TaskEvent::SubtaskFinished { success: true, .. } => self.done += 1,
            TaskEvent::Replanning { .. } => self.phase = "re-planning",
            TaskEvent::Paused => self.phase = "paused",
            TaskEvent::Resumed | TaskEvent::Recovered { .. } => self.phase = "running",
            TaskEvent::Finished { state, .. } => self.phase = state.as_str(),
            _ => {}
        }
        if self.phase == "queued" && !matches!(entry.event, TaskEvent::Submitted { .. }) {
            self.phase = "planning";
        }
    }

    pub(super) fn show(&mut self, entry: &JournalEntry) {
        self.count(entry);
        for line in self.describe(&entry.event) {
            self.line(&line);
        }
        if let Some(bars) = &mut self.bars {
            bars.update(&entry.event);
        }
        self.header();
    }

    /// A line of history: above the spinners, or on its own.
    pub(super) fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => bars.multi.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    pub(super) fn progress(&mut self, subtask: Option<&str>, text: &str) {
        if let (Some(bars), Some(subtask)) = (&self.bars, subtask) {
            if let Some(bar) = bars.subtasks.get(subtask) {
                bar.set_message(text.to_string());
            }
        }
    }

    fn header(&self) {
        if let Some(bars) = &self.bars {
            bars.header.set_message(format!(
                "{} {} · {}/{} subtasks · {} tokens",
                self.id,
                self.phase,
                self.done,
                self.total,
                self.tokens.total()
            ));
        }
    }

    /// Hides the spinners while a question waits for an answer.
    pub(super) fn pause(&self) {
        if let Some(bars) = &self.bars {
            bars.multi.set_draw_target(ProgressDrawTarget::hidden());
        }
    }

    pub(super) fn resume(&self) {
        if let Some(bars) = &self.bars {
            bars.multi.set_draw_target(ProgressDrawTarget::stdout());
        }
    }

    /// Takes the spinners away; the history lines above them already say
    /// what they said, and a summary line replaces them.
    pub(super) fn close(&mut self) {
        if let Some(bars) = self.bars.take() {
            for bar in bars.subtasks.values() {
                bar.finish_and_clear();
            }
            bars.header.finish_and_clear();
            let _ = bars.multi.clear();
            println!(
                "{} {} · {}/{} subtasks · {} tokens",
                self.id,
                self.phase,
                self.done,
                self.total,
                self.tokens.total()
            );
        }
    }

    /// The lines the live view prints for `event`: the shared event line
    /// (with the task's running token count after a commit or the end), and
    /// a plan's subtasks under it. Steps starting and tools returning show
    /// only on the spinners; an error shows here too.
    fn describe(&mut self, event: &TaskEvent) -> Vec<String> {
        let line = self.text.line(event);
        match event {
            TaskEvent::Planned { subtasks, .. } => {
                let mut lines = vec![line];
                for s in subtasks {
                    let after = if s.depends_on.is_empty() {
                        String::new()
                    } else {
                        format!(", after {}", s.depends_on.join(", "))
                    };
                    lines.push(format!(
                        "  {} [{}, complexity {}{after}] {}",
                        s.id,
                        s.kind,
                        s.complexity,
                        short(&s.description, 100)
                    ));
                }
                lines
            }
            TaskEvent::StepCommitted { .. } | TaskEvent::Finished { .. } => {
                vec![format!("{line} · {} tokens", self.tokens.total())]
            }
            TaskEvent::StepObserved { is_error: true, .. }
            | TaskEvent::SubtaskStarted { .. }
            | TaskEvent::SubtaskFinished { .. }
            | TaskEvent::FailedOver { .. }
            | TaskEvent::Delegated { .. }
            | TaskEvent::Replanning { .. }
            | TaskEvent::Paused
            | TaskEvent::Resumed
            | TaskEvent::Recovered { .. } => vec![line],
            _ => Vec::new(),
        }
    }
}

impl Bars {
    fn update(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::Planned { subtasks, .. } => {
                for s in subtasks {
                    let bar = self.bar(&s.id);
                    bar.set_message(format!(
                        "{} [{}] waiting: {}",
                        s.id,
                        s.kind,
                        short(&s.description, 60)
                    ));
                }
            }
            TaskEvent::SubtaskStarted {
                subtask,
                attempt,
                model,
                ..
            } => self
                .bar(subtask)
                .set_message(format!("{subtask} attempt {attempt} on {model}")),
            TaskEvent::StepStarted {
                subtask,
                step,
                tool,
                ..
            } => self
                .bar(subtask)
                .set_message(format!("{subtask} step {step}: {tool}")),
            TaskEvent::SubtaskFinished {
                subtask,
                success,
                summary,
                ..
            } => {
                let mark = if *success { "✓" } else { "✗" };
                self.bar(subtask)
                    .finish_with_message(format!("{mark} {subtask} {}", short(summary, 80)));
            }
            TaskEvent::Replanning { .. } => {
                for bar in self.subtasks.values().filter(|b| !b.is_finished()) {
                    bar.abandon_with_message("replaced by a new plan");
                }
            }
            _ => {}
        }
    }

    /// The spinner of `subtask`, a new one if it has none or its last
    /// attempt ended.
    fn bar(&mut self, subtask: &str) -> &ProgressBar {
        let stale = self.subtasks.get(subtask).is_none_or(|b| b.is_finished());
        if stale {
            let bar = self.multi.add(spinner());
            self.subtasks.insert(subtask.into(), bar);
        }
        &self.subtasks[subtask]
    }
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner:.cyan} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
