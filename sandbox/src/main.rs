//! `troupe-sandbox __troupe-sandbox <policy JSON> -- <program> [args…]`:
//! the sandbox helper on its own (troupe itself is one too). Linking the
//! crate is what makes it one: `troupe_sandbox::EARLY_HELPER` runs the
//! helper before `main` when the first argument asks for it.

fn main() {
    // Keeps the .init_array entry linked into this binary.
    std::hint::black_box(&troupe_sandbox::EARLY_HELPER);
    eprintln!(
        "troupe-sandbox is started by troupe: troupe-sandbox {} <policy JSON> -- <program> [args...]",
        troupe_sandbox::HELPER_ARG
    );
    std::process::exit(2);
}
