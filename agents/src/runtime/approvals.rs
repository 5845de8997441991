//! Tool calls waiting for a person: a Worker parks a call here and waits;
//! the UX, the HTTP API or an embedding program decides it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use troupe_store::{Approver, SubtaskId, TaskId};
use troupe_tools::ApprovalRequest;

/// The person's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Yes or no.
    pub approved: bool,
    /// Why, if they said.
    pub reason: Option<String>,
    /// Who answered (journaled with the answer).
    #[serde(default = "embedder")]
    pub by: Approver,
}

fn embedder() -> Approver {
    Approver::Embedder
}

/// One call waiting.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PendingApproval {
    /// The task.
    pub task_id: TaskId,
    /// The subtask.
    pub subtask: SubtaskId,
    /// The call.
    pub request: ApprovalRequest,
}

/// No call waits under that id.
#[derive(Debug, thiserror::Error)]
#[error("no tool call is waiting for approval under id `{0}`")]
pub struct UnknownApproval(pub String);

struct Waiting {
    pending: PendingApproval,
    reply: oneshot::Sender<Decision>,
}

/// Every call waiting for a person. Cheap to clone.
#[derive(Clone, Default)]
pub struct Approvals {
    // A std Mutex: held only to insert or remove, never across an await.
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("pending", &self.pending().len())
            .finish()
    }
}

impl Approvals {
    /// Parks a call; the receiver gets the decision. Dropping the receiver
    /// (the worker stopped) withdraws it.
    pub fn ask(&self, pending: PendingApproval) -> oneshot::Receiver<Decision> {
        let (reply, rx) = oneshot::channel();
        let id = pending.request.id.clone();
        if let Ok(mut w) = self.waiting.lock() {
            w.retain(|_, v| !v.reply.is_closed());
            w.insert(id, Waiting { pending, reply });
        }
        rx
    }

    /// Decides the call `id` (an unambiguous prefix of it is enough).
    ///
    /// # Errors
    /// [`UnknownApproval`] when no call, or more than one, matches.
    pub fn decide(&self, id: &str, decision: Decision) -> Result<PendingApproval, UnknownApproval> {
        let mut w = self
            .waiting
            .lock()
            .map_err(|_| UnknownApproval(id.to_string()))?;
        w.retain(|_, v| !v.reply.is_closed());
        let matches: Vec<String> = w.keys().filter(|k| k.starts_with(id)).cloned().collect();
        let [key] = matches.as_slice() else {
            return Err(UnknownApproval(id.to_string()));
        };
        let waiting = w
            .remove(key)
            .ok_or_else(|| UnknownApproval(id.to_string()))?;
        let _ = waiting.reply.send(decision);
        Ok(waiting.pending)
    }

    /// The calls waiting now, oldest id order.
    pub fn pending(&self) -> Vec<PendingApproval> {
        let Ok(w) = self.waiting.lock() else {
            return Vec::new();
        };
        let mut out: Vec<PendingApproval> = w
            .values()
            .filter(|v| !v.reply.is_closed())
            .map(|v| v.pending.clone())
            .collect();
        out.sort_by(|a, b| a.request.id.cmp(&b.request.id));
        out
    }
}
