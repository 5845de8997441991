//! The harness of the tests that run the real `troupe` binary as a child
//! process (`tests/it/cluster.rs`, `tests/it/failover.rs`,
//! `tests/it/remote_troupe.rs`), over `troupe_testkit`: a node directory on
//! the scripted backend with synthetic models, and this package's binary.

use std::path::Path;
use std::process::Command;

pub(crate) use troupe_testkit::process::Node;
pub(crate) use troupe_testkit::{free_port, write_node, WAIT};

/// The text of `examples/fib-script.json`.
pub(crate) fn fib_script_text() -> String {
    std::fs::read_to_string(troupe_testkit::fib_script()).expect("examples/fib-script.json")
}

/// `troupe --config CONFIG` (see [`troupe_testkit::process::troupe`]).
pub(crate) fn troupe(config: &Path) -> Command {
    troupe_testkit::process::troupe(Path::new(env!("CARGO_BIN_EXE_troupe")), config)
}
