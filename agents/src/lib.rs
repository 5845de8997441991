//! troupe-agents: the UX, Director, Worker and Learner actors (ractor), one
//! file or folder per actor with its messages and typed handle, and the
//! router their model calls go through. The models themselves are
//! `troupe-host`'s ModelHost, which knows nothing of agents.
//!
//! # Layout
//! - [`runtime`]: what the agent actors share: the event bus, the task
//!   journal (store + bus), pause/resume/cancel controls, approvals.
//! - [`router`]: per role, the chain a model request follows when the
//!   local host cannot serve it: cluster peers, then remote providers.
//! - [`learner`]: records outcomes and learns from them which model to use
//!   (a bandit starting from the configuration rules) and how many tokens
//!   to give it; also the seeded simulation `troupe bench learner` runs.
//! - [`director`]: plans tasks, runs their subtasks on the worker pools,
//!   retries, re-plans and answers.
//! - [`worker`]: the specialists' tool loop, as ractor factory pools.
//! - [`ux`]: the person's companion: answers at once, tells chat from work
//!   from commands, reports progress.

pub mod director;
pub mod learner;
pub mod memory;
pub mod router;
pub mod runtime;
pub mod ux;
pub mod worker;
