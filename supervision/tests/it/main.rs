//! The integration tests of `troupe-supervision`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod policy;
mod supervisor;
