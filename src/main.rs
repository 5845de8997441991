//! The `troupe` binary: a thin command line over the library crates. Each
//! subcommand lives in its own file under `src/cli/`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
