//! The event stream everything that watches troupe subscribes to: the UX,
//! the TUI, the HTTP SSE endpoint and tests.
//!
//! Journal entries are published only after they are durable, so a
//! subscriber never sees an event that a crash could take back.

use serde::Serialize;
use tokio::sync::broadcast;
use troupe_store::{JournalEntry, SubtaskId, TaskId};
use troupe_tools::ApprovalRequest;

/// Events buffered per subscriber before the slowest one starts missing some.
const CAPACITY: usize = 8192;

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TroupeEvent {
    /// A journal entry, once durable.
    Journal(JournalEntry),
    /// Live progress that is not journaled (a step being generated).
    Progress {
        /// The task.
        task_id: TaskId,
        /// The subtask, if any.
        subtask: Option<SubtaskId>,
        /// What is going on.
        text: String,
        /// Tokens the task has used so far.
        tokens: u64,
    },
    /// The UX said something in a conversation.
    Ux {
        /// The conversation.
        conversation: String,
        /// What it said.
        text: String,
    },
    /// A tool call waits for the person's approval.
    ApprovalPending {
        /// The task.
        task_id: TaskId,
        /// The call.
        request: ApprovalRequest,
    },
}

impl TroupeEvent {
    /// The task the event is about, if any.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            TroupeEvent::Journal(e) => Some(&e.task_id),
            TroupeEvent::Progress { task_id, .. }
            | TroupeEvent::ApprovalPending { task_id, .. } => Some(task_id),
            TroupeEvent::Ux { .. } => None,
        }
    }
}

/// The broadcast every event goes through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<TroupeEvent>,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new()
    }
}

impl EventBus {
    /// A bus with no subscribers yet.
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx }
    }

    /// Sends `event` to every subscriber (none is no error).
    pub fn publish(&self, event: TroupeEvent) {
        let _ = self.tx.send(event);
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TroupeEvent> {
        self.tx.subscribe()
    }
}
