//! troupe-actors: the UX, Director, Worker, ModelHost and Learner actors
//! (ractor), one file or folder per actor with its messages and typed handle.
//!
//! Not written yet: the ModelHost issue and the agent-runtime issue fill it.
//! Until then troupe is driven through `troupe-inference` directly (the
//! `troupe generate` and `troupe bench` commands).
