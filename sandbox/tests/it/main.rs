//! The integration tests of `troupe-sandbox`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod escapes;
