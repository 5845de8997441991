//! The errors of the agent runtime.

use troupe_store::{StoreError, TaskId};
use troupe_tools::WorkspaceError;

use troupe_host::HostError;

/// Why the agent runtime could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ModelHost failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A task's workspace failed.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// No model is configured for a role.
    #[error(
        "no model is configured for {role}: pass --model, or set [agents] model (or a more \
         specific one) in troupe.toml"
    )]
    NoModel {
        /// The role (`planning`, `code subtasks`, ...).
        role: String,
    },
    /// No task has that id.
    #[error("there is no task `{0}`")]
    UnknownTask(TaskId),
    /// The task is not in a state that allows it.
    #[error("task {id} is {state}; cannot {action} it")]
    InvalidState {
        /// The task.
        id: TaskId,
        /// Its state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// A job that is empty or too long.
    #[error("the job is {0}")]
    BadRequest(String),
    /// An actor the call needs has stopped.
    #[error("the {0} has stopped")]
    Stopped(&'static str),
}
