//! What the terminal view shows and how keys change it. Pure state: the
//! event loop (`mod.rs`) feeds it troupe's events, store reads and
//! ModelHost status, and carries out the [`Action`]s its keys return; the
//! renderer (`ui.rs`) only reads it.

use std::collections::VecDeque;

use troupe::agents::runtime::{PendingApproval, TroupeEvent};
use troupe::host::HostStatus;
use troupe::store::{
    JournalEntry, SubtaskId, SubtaskRecord, SubtaskState, TaskEvent, TaskId, TaskKind, TaskRecord,
    TaskState, TokenTally,
};
use troupe::tools::ApprovalRequest;

use crate::cli::live::short;

use super::journal::{follow, sub_mut};
use crate::cli::summary::EventText;

/// How many event-log lines are kept.
const LOG_LINES: usize = 500;

/// The pane that takes keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Focus {
    /// The input line (typing goes there; Up/Down scroll the conversation).
    Input,
    /// The task tree (`p`, `r`, `c`, and `a`/`d` on the selected approval).
    Tasks,
    /// The pending approvals (`a`, `d`).
    Approvals,
}

impl Focus {
    fn next(self) -> Focus {
        match self {
            Focus::Input => Focus::Tasks,
            Focus::Tasks => Focus::Approvals,
            Focus::Approvals => Focus::Input,
        }
    }

    fn previous(self) -> Focus {
        match self {
            Focus::Input => Focus::Approvals,
            Focus::Tasks => Focus::Input,
            Focus::Approvals => Focus::Tasks,
        }
    }
}

/// A key, as the view understands it (`keys.rs` maps the terminal's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Backspace.
    Backspace,
    /// Tab: the next pane.
    Tab,
    /// Shift-Tab: the previous pane.
    BackTab,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up: the conversation scrolls back.
    PageUp,
    /// Page down.
    PageDown,
    /// Esc or Ctrl-C: leave.
    Quit,
}

/// What a key asks of troupe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Say this to the UX.
    Say(String),
    /// Pause the task.
    Pause(String),
    /// Resume the task.
    Resume(String),
    /// Cancel the task.
    Cancel(String),
    /// Answer the tool call waiting under `id`.
    Decide {
        /// The approval request's id.
        id: String,
        /// Yes or no.
        approved: bool,
    },
    /// Leave the view.
    Quit,
}

/// Who said a conversation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Speaker {
    /// The person.
    You,
    /// The UX.
    Troupe,
    /// The view itself (an action's result, an error).
    Note,
}

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChatLine {
    /// Who said it.
    pub who: Speaker,
    /// What was said.
    pub text: String,
}

/// A subtask in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SubtaskNode {
    /// `s1`, `s2`, ...
    pub id: SubtaskId,
    /// Which specialist takes it.
    pub kind: TaskKind,
    /// What to do.
    pub description: String,
    /// Where it is.
    pub state: SubtaskState,
    /// The step and tool it is at, while running.
    pub doing: Option<String>,
}

/// A task in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskNode {
    /// Its id.
    pub id: String,
    /// The job.
    pub request: String,
    /// Where it is.
    pub state: TaskState,
    /// Its current plan's subtasks (and earlier plans' dropped ones).
    pub subtasks: Vec<SubtaskNode>,
    /// Tokens used so far: the larger of what its progress reports last
    /// said and what its journal adds up to.
    pub tokens: u64,
    /// The journal's count of them.
    pub tally: TokenTally,
}

/// A tool call waiting for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApprovalItem {
    /// The request's id (what `decide` takes).
    pub id: String,
    /// The task.
    pub task_id: String,
    /// The tool.
    pub tool: String,
    /// Its arguments, on one line.
    pub args: String,
    /// Its risk level.
    pub risk: String,
}

impl ApprovalItem {
    fn new(task_id: &str, request: &ApprovalRequest) -> ApprovalItem {
        ApprovalItem {
            id: request.id.clone(),
            task_id: task_id.to_string(),
            tool: request.tool.clone(),
            args: short(&request.args.to_string(), 200),
            risk: request.risk.to_string(),
        }
    }
}

impl From<&PendingApproval> for ApprovalItem {
    fn from(p: &PendingApproval) -> ApprovalItem {
        ApprovalItem::new(&p.task_id, &p.request)
    }
}

/// One loaded model as the ModelHost pane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ModelRow {
    /// Its catalog name.
    pub name: String,
    /// Memory it holds.
    pub bytes: u64,
    /// Slots running a request.
    pub busy: u32,
    /// Slots in all.
    pub slots: u32,
    /// Requests waiting for a slot.
    pub queued: u32,
    /// Never evicted.
    pub pinned: bool,
}

/// The ModelHost as last asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct HostView {
    /// The memory budget.
    pub budget: u64,
    /// Memory held by loaded models.
    pub used: u64,
    /// Loaded models.
    pub models: Vec<ModelRow>,
    /// Models being loaded.
    pub loading: Vec<String>,
    /// Loads waiting for memory.
    pub queued_loads: usize,
}

impl From<&HostStatus> for HostView {
    fn from(s: &HostStatus) -> HostView {
        HostView {
            budget: s.budget_bytes,
            used: s.used_bytes,
            models: s
                .models
                .iter()
                .map(|m| ModelRow {
                    name: m.name.clone(),
                    bytes: m.memory.total(),
                    busy: m.slots_in_use,
                    slots: m.slots,
                    queued: m.queued_requests,
                    pinned: m.pinned,
                })
                .collect(),
            loading: s.loading.clone(),
            queued_loads: s.queued_loads,
        }
    }
}

/// One event-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogLine {
    /// When, in ms since the epoch.
    pub time_ms: u64,
    /// What happened.
    pub text: String,
}

/// The whole view's state.
#[derive(Debug)]
pub(super) struct App {
    /// The conversation this view speaks in.
    pub conversation_name: String,
    /// What was said.
    pub conversation: Vec<ChatLine>,
    /// Lines scrolled back from the newest (0: following).
    pub scroll_back: usize,
    /// The input line.
    pub input: String,
    /// Tasks, oldest first.
    pub tasks: Vec<TaskNode>,
    /// Tool calls waiting, oldest first.
    pub approvals: Vec<ApprovalItem>,
    /// The ModelHost, once asked.
    pub host: Option<HostView>,
    /// Recent events, oldest first.
    pub log: VecDeque<LogLine>,
    /// The pane that takes keys.
    pub focus: Focus,
    /// Tasks this view started, to name the unfinished ones at the end.
    pub started: Vec<TaskId>,
    selected_task: Option<TaskId>,
    selected_approval: Option<String>,
    /// The event lines of the log (one text per event, as everywhere).
    event_text: EventText,
}

impl App {
    /// An empty view for `conversation`.
    pub(super) fn new(conversation: &str) -> App {
        App {
            conversation_name: conversation.to_string(),
            conversation: Vec::new(),
            scroll_back: 0,
            input: String::new(),
            tasks: Vec::new(),
            approvals: Vec::new(),
            host: None,
            log: VecDeque::new(),
            focus: Focus::Input,
            started: Vec::new(),
            selected_task: None,
            selected_approval: None,
            event_text: EventText::default(),
        }
    }

    /// Index of the selected task in [`App::tasks`].
    pub(super) fn selected_task(&self) -> Option<usize> {
        let id = self.selected_task.as_deref()?;
        self.tasks.iter().position(|t| t.id == id)
    }

    /// Index of the selected approval in [`App::approvals`].
    pub(super) fn selected_approval(&self) -> Option<usize> {
        let id = self.selected_approval.as_deref()?;
        self.approvals.iter().position(|a| a.id == id)
    }

    /// Adds a line to the conversation (and follows it).
    pub(super) fn say(&mut self, who: Speaker, text: &str) {
        self.conversation.push(ChatLine {
            who,
            text: text.to_string(),
        });
        self.scroll_back = 0;
    }

    /// Adds a line to the event log.
    pub(super) fn log_line(&mut self, time_ms: u64, text: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(LogLine { time_ms, text });
    }

    /// Puts a task read from the store in the tree (or refreshes it).
    pub(super) fn load_task(&mut self, task: &TaskRecord, subtasks: &[SubtaskRecord]) {
        let node = self.task_entry(&task.id, &task.request);
        node.state = task.state;
        node.subtasks = subtasks
            .iter()
            .map(|s| SubtaskNode {
                id: s.id.clone(),
                kind: s.kind,
                description: s.description.clone(),
                state: s.state,
                doing: None,
            })
            .collect();
        node.tokens = node.tokens.max(subtasks.iter().map(|s| s.tokens).sum());
        if self.selected_task.is_none() {
            self.selected_task = Some(task.id.clone());
        }
    }

    /// Replaces the approvals with what troupe says waits now, keeping
    /// the selection when it still waits.
    pub(super) fn set_approvals(&mut self, pending: Vec<ApprovalItem>) {
        self.approvals = pending;
        self.fix_approval_selection();
    }

    /// The ModelHost's latest status.
    pub(super) fn set_host(&mut self, host: HostView) {
        self.host = Some(host);
    }

    /// Takes in one of troupe's events; `now_ms` times those that carry
    /// no time of their own.
    pub(super) fn apply(&mut self, event: &TroupeEvent, now_ms: u64) {
        match event {
            TroupeEvent::Journal(entry) => self.journal(entry),
            TroupeEvent::Progress {
                task_id,
                subtask,
                text,
                tokens,
            } => {
                if let Some(task) = self.task_mut(task_id) {
                    task.tokens = task.tokens.max(*tokens);
                    if let Some(s) = subtask.as_deref().and_then(|s| sub_mut(task, s)) {
                        s.doing = Some(short(text, 60));
                    }
                }
            }
            TroupeEvent::Ux { conversation, text }
                if *conversation == self.conversation_name || conversation.is_empty() =>
            {
                self.say(Speaker::Troupe, text);
            }
            TroupeEvent::ApprovalPending { task_id, request } => {
                if !self.approvals.iter().any(|a| a.id == request.id) {
                    self.approvals.push(ApprovalItem::new(task_id, request));
                    self.log_line(
                        now_ms,
                        format!(
                            "{task_id} waits for approval: {} {}",
                            request.tool,
                            short(&request.args.to_string(), 80)
                        ),
                    );
                }
                self.fix_approval_selection();
            }
            _ => {}
        }
    }

    fn journal(&mut self, entry: &JournalEntry) {
        let id = entry.task_id.as_str();
        if let TaskEvent::Submitted { request } = &entry.event {
            self.task_entry(id, request);
            // A new task is what the person most likely wants to act on.
            self.selected_task = Some(id.into());
        }
        if let Some(task) = self.task_mut(id) {
            follow(task, &entry.event);
        }
        match &entry.event {
            TaskEvent::ApprovalDecided { request_id, .. } => {
                self.approvals.retain(|a| a.id != *request_id);
                self.fix_approval_selection();
            }
            TaskEvent::Finished { .. } => {
                self.approvals.retain(|a| a.task_id != id);
                self.fix_approval_selection();
            }
            _ => {}
        }
        let text = self.event_text.line(&entry.event);
        if !text.is_empty() {
            self.log_line(entry.time_ms, format!("{id} {text}"));
        }
    }

    /// Takes a key; what troupe should do about it, if anything.
    pub(super) fn key(&mut self, key: Key) -> Option<Action> {
        match key {
            Key::Quit => return Some(Action::Quit),
            Key::Tab => self.focus = self.focus.next(),
            Key::BackTab => self.focus = self.focus.previous(),
            Key::PageUp => self.scroll_back = self.scroll_back.saturating_add(10),
            Key::PageDown => self.scroll_back = self.scroll_back.saturating_sub(10),
            _ => {
                return match self.focus {
                    Focus::Input => self.input_key(key),
                    Focus::Tasks => self.tasks_key(key),
                    Focus::Approvals => self.approvals_key(key),
                }
            }
        }
        None
    }

    fn input_key(&mut self, key: Key) -> Option<Action> {
        match key {
            Key::Char(c) => self.input.push(c),
            Key::Backspace => {
                self.input.pop();
            }
            Key::Up => self.scroll_back = self.scroll_back.saturating_add(1),
            Key::Down => self.scroll_back = self.scroll_back.saturating_sub(1),
            Key::Enter => {
                let text = self.input.trim().to_string();
                self.input.clear();
                if !text.is_empty() {
                    self.say(Speaker::You, &text);
                    return Some(Action::Say(text));
                }
            }
            _ => {}
        }
        None
    }

    fn tasks_key(&mut self, key: Key) -> Option<Action> {
        let selected = self.selected_task();
        match key {
            Key::Up | Key::Down => {
                let at = step(selected, self.tasks.len(), key == Key::Up);
                self.selected_task = at.map(|i| self.tasks[i].id.as_str().into());
                None
            }
            Key::Char(c) => {
                let id = selected.map(|i| self.tasks[i].id.clone());
                match (c, id) {
                    ('p', Some(id)) => Some(Action::Pause(id)),
                    ('r', Some(id)) => Some(Action::Resume(id)),
                    ('c', Some(id)) => Some(Action::Cancel(id)),
                    ('a' | 'd', _) => self.decide(c == 'a'),
                    ('p' | 'r' | 'c', None) => {
                        self.say(Speaker::Note, "no task is selected");
                        None
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn approvals_key(&mut self, key: Key) -> Option<Action> {
        match key {
            Key::Up | Key::Down => {
                let at = step(
                    self.selected_approval(),
                    self.approvals.len(),
                    key == Key::Up,
                );
                self.selected_approval = at.map(|i| self.approvals[i].id.clone());
                None
            }
            Key::Char(c @ ('a' | 'd')) => self.decide(c == 'a'),
            _ => None,
        }
    }

    fn decide(&mut self, approved: bool) -> Option<Action> {
        let Some(i) = self.selected_approval() else {
            self.say(Speaker::Note, "no tool call waits for approval");
            return None;
        };
        Some(Action::Decide {
            id: self.approvals[i].id.clone(),
            approved,
        })
    }

    /// Notes that the call `id` was answered here (before its journal
    /// entry comes).
    pub(super) fn decided(&mut self, id: &str) {
        self.approvals.retain(|a| a.id != id);
        self.fix_approval_selection();
    }

    fn fix_approval_selection(&mut self) {
        if self.selected_approval().is_none() {
            self.selected_approval = self.approvals.first().map(|a| a.id.clone());
        }
    }

    fn task_entry(&mut self, id: &str, request: &str) -> &mut TaskNode {
        let at = match self.tasks.iter().position(|t| t.id == id) {
            Some(at) => at,
            None => {
                self.tasks.push(TaskNode {
                    id: id.to_string(),
                    request: request.to_string(),
                    state: TaskState::Queued,
                    subtasks: Vec::new(),
                    tokens: 0,
                    tally: TokenTally::default(),
                });
                self.tasks.len() - 1
            }
        };
        &mut self.tasks[at]
    }

    fn task_mut(&mut self, id: &str) -> Option<&mut TaskNode> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }
}

/// Moves a selection one up or down within `len` items (the last one
/// when there was none).
fn step(at: Option<usize>, len: usize, up: bool) -> Option<usize> {
    if len == 0 {
        return None;
    }
    Some(match at {
        None => len - 1,
        Some(i) if up => i.saturating_sub(1),
        Some(i) => (i + 1).min(len - 1),
    })
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
