//! troupe-supervision: the root supervisor, restart policies from config,
//! and the boot that assembles the actor tree and resumes unfinished tasks.
//!
//! # Layout
//! - [`policy`]: [`RestartPolicy`]: at most N restarts within T, with
//!   exponential backoff, then escalate. Pure data and arithmetic.
//! - [`supervisor`]: [`RootSupervisor`], the ractor actor that starts its
//!   children linked, restarts a failed one by the policy (after its
//!   backoff, off the mailbox) and stops itself to escalate.
//! - [`Troupe`]: the running system as one handle (submit, chat, approve,
//!   shut down); [`Troupe::start`] boots it.
//! - [`boot`]: opens the store, starts the ModelHost and the worker pools,
//!   then the supervisor, which links them and starts the Learner,
//!   Director and UX; the Director resumes every unfinished task.

pub mod boot;
pub mod policy;
pub mod supervisor;
mod troupe;

pub use boot::{backend_for, BootError, BootOptions};
pub use policy::{RestartDecision, RestartPolicy};
pub use supervisor::{ChildSpec, ChildStatus, RootSupervisor, SupervisorHandle, SupervisorMsg};
pub use troupe::{task_view, TaskSpec, TaskView, Troupe};
