//! `troupe-sandbox __troupe-sandbox <policy JSON> -- <program> [args…]`:
//! the sandbox helper on its own (troupe itself is one too).

fn main() {
    troupe_sandbox::run_helper_if_requested();
    eprintln!(
        "troupe-sandbox is started by troupe: troupe-sandbox {} <policy JSON> -- <program> [args...]",
        troupe_sandbox::HELPER_ARG
    );
    std::process::exit(2);
}
