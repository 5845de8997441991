//! The integration tests of `troupe-tools`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod common;

mod files;
mod memory_tool;
mod paths;
mod processes;
mod registry;
mod remote;
mod workspace;
mod workspace_sync;
