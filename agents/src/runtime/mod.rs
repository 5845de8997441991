//! What the agent actors share: the event bus, the task journal, task
//! controls (pause/resume/cancel), approvals waiting for a person, and the
//! runtime's errors.

pub mod approvals;
pub mod control;
pub mod error;
pub mod events;
pub mod journal;
pub(crate) mod sampling;
pub mod slot;

pub use approvals::{Approvals, Decision, PendingApproval, UnknownApproval};
pub use control::{Control, ControlWatch, TaskControl};
pub use error::AgentError;
pub use events::{EventBus, TroupeEvent};
pub use journal::TaskJournal;
pub use slot::ActorSlot;
