//! troupe-actors: the UX, Director, Worker, ModelHost and Learner actors
//! (ractor), one file or folder per actor with its messages and typed handle.
//!
//! # Layout
//! - [`model_host`]: owns every loaded model under a memory budget; loads on
//!   demand, evicts idle models to make room, and streams generations. Its
//!   [`model_host::ModelHostHandle`] is the public way in.
//!
//! The UX, Director, Worker and Learner actors are not written yet (the
//! agent-runtime issue fills them).

pub mod model_host;
