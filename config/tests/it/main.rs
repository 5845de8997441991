//! The integration tests of `troupe-config`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod common;

mod agents_section;
mod cluster_section;
mod learner_section;
mod load;
mod mcp_section;
mod memory_section;
mod providers_section;
mod size;
mod tools_section;
