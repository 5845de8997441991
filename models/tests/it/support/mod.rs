//! Helpers shared by the troupe-models integration tests.
//!
//! Each test binary compiles this module on its own and uses only part of it,
//! hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod layouts;
pub(crate) mod llama;
