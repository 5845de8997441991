//! The integration tests of `troupe-agents`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod common;

mod learner;
mod remote_worker;
mod router;
mod worker;
