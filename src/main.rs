//! The `troupe` binary: a thin command line over the library crates. Each
//! subcommand lives in its own file under `src/cli/`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // troupe is also the sandbox helper for the processes its tools start
    // (`troupe __troupe-sandbox …`): troupe_sandbox::EARLY_HELPER takes
    // such a start over before main runs.
    // Not dumpable: no process of this user (a tool's, say) may read
    // /proc/<troupe>/environ, mem or maps, or attach to it; the keys troupe
    // holds stay in troupe.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain, so that "cannot load model" says why.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
