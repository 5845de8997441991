//! The integration tests of `troupe-memory`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod common;

mod service;
mod store;
