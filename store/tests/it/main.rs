//! The integration tests of `troupe-store`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod outcome_fields;
mod store;
