//! The integration tests of `troupe-mcp`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod client_everything;
