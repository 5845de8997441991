//! The helper process: a fresh single-threaded process that sets up the
//! sandbox and starts the command (see the crate docs for the order).
//!
//! Three processes take part:
//! - the helper, in troupe's PID namespace: creates the user namespace and
//!   the others, forks the init, watches the lifeline and reports the
//!   command's end as its own;
//! - the init, PID 1 of the new PID namespace: mounts, limits, capabilities,
//!   Landlock and seccomp (so it is confined too), forks the command, reaps
//!   orphans, and reports the command's wait status on a pipe. When it
//!   exits, the kernel kills everything left in the namespace;
//! - the command, which is not PID 1 and so gets signals as usual.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use crate::layers::{self, Layer};
use crate::{Mode, Policy, Support, SETUP_FAILED};

/// The argument after [`crate::HELPER_ARG`] that asks for a probe.
pub(crate) const PROBE_ARG: &str = "--probe";

/// The helper's entry: `args` are what followed [`crate::HELPER_ARG`]:
/// the policy as JSON, `--`, then the program and its arguments (or
/// [`PROBE_ARG`] alone). Never returns.
pub fn main(args: Vec<OsString>) -> ! {
    if args.first().and_then(|a| a.to_str()) == Some(PROBE_ARG) {
        probe_main();
    }
    let (policy, command) = match parse(args) {
        Ok(parsed) => parsed,
        Err(e) => fail(&e),
    };
    run(&policy, &command)
}

fn parse(args: Vec<OsString>) -> Result<(Policy, Vec<OsString>), String> {
    let mut args = args.into_iter();
    let json = args.next().ok_or("no policy given")?;
    let json = json.to_str().ok_or("the policy is not UTF-8")?;
    let policy: Policy =
        serde_json::from_str(json).map_err(|e| format!("the policy is not valid: {e}"))?;
    if args.next().as_deref() != Some(std::ffi::OsStr::new("--")) {
        return Err("`--` must follow the policy".into());
    }
    let command: Vec<OsString> = args.collect();
    if command.is_empty() {
        return Err("no command given".into());
    }
    Ok((policy, command))
}

fn fail(message: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "troupe sandbox: {message}");
    std::process::exit(SETUP_FAILED)
}

/// Whether a failed layer ends the run (required mode) or is skipped.
fn check(mode: Mode, layer: Layer, result: Result<(), String>, missing: &mut Vec<String>) {
    if let Err(why) = result {
        let text = format!("{}: {why}", layer.name());
        if mode == Mode::Required {
            fail(&format!(
                "the sandbox is required but {text} ([tools.sandbox] mode = \"best_effort\" \
                 runs without what this kernel lacks)"
            ));
        }
        missing.push(text);
    }
}

fn run(policy: &Policy, command: &[OsString]) -> ! {
    // The lifeline: a pipe troupe keeps open while the call runs, on stdin
    // (the command reads /dev/null instead) or on the descriptor named.
    let lifeline = match policy.lifeline_fd {
        None => layers::take_stdin_as_lifeline(),
        Some(fd) => layers::take_fd_as_lifeline(fd),
    }
    .unwrap_or_else(|e| fail(&e));
    // SAFETY: setsid takes no arguments; failing (already a leader) is fine.
    unsafe { libc::setsid() };
    let mut missing = Vec::new();
    let namespaces = layers::enter_namespaces(policy.network);
    let in_namespaces = namespaces.is_ok();
    check(policy.mode, Layer::Namespaces, namespaces, &mut missing);

    let (status_read, status_write) = layers::pipe().unwrap_or_else(|e| fail(&e));
    let init = fork_or_fail();
    if init == 0 {
        drop(lifeline);
        drop(status_read);
        init_main(policy, command, in_namespaces, status_write, missing);
    }
    drop(status_write);
    let init_status = layers::wait_with_lifeline(init, &lifeline);
    let mut reported = [0u8; 4];
    let mut status_read = std::fs::File::from(status_read);
    let status = match status_read.read_exact(&mut reported) {
        Ok(()) => i32::from_ne_bytes(reported),
        // The init ended before the command did (a setup failure, or it was
        // killed): its own status tells.
        Err(_) => init_status,
    };
    layers::exit_like(status)
}

/// What [`apply_layers`] set up that later steps depend on.
struct Applied {
    /// The namespace has its own /proc (the process cap counts in it).
    own_proc: bool,
    /// The Landlock ABI in force (0: none).
    landlock_abi: i32,
}

/// Sets up, in this process, every layer after the namespaces, in the
/// crate documentation's order; a failed one ends the run in required mode
/// (see [`check`]) or is added to `missing`.
fn apply_layers(policy: &Policy, in_namespaces: bool, missing: &mut Vec<String>) -> Applied {
    let mode = policy.mode;
    let mut own_proc = false;
    if in_namespaces {
        let mounted = layers::mounts(policy);
        own_proc = mounted.is_ok();
        check(mode, Layer::Mounts, mounted, missing);
        if !policy.network {
            check(mode, Layer::Loopback, layers::loopback_up(), missing);
        }
    }
    check(mode, Layer::Limits, layers::limits(&policy.limits), missing);
    check(mode, Layer::NoNewPrivs, layers::no_new_privs(), missing);
    if in_namespaces {
        check(
            mode,
            Layer::Capabilities,
            layers::drop_capabilities(),
            missing,
        );
    }
    let landlock = layers::landlock(policy);
    let landlock_abi = *landlock.as_ref().unwrap_or(&0);
    check(mode, Layer::Landlock, landlock.map(|_| ()), missing);
    check(mode, Layer::Seccomp, layers::seccomp(), missing);
    Applied {
        own_proc,
        landlock_abi,
    }
}

/// `fork`, or the end of the helper when it fails.
fn fork_or_fail() -> libc::pid_t {
    // SAFETY: the helper is single-threaded (a fresh exec, and every child
    // it forks stays so), so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(&format!("fork: {}", std::io::Error::last_os_error()));
    }
    pid
}

/// PID 1 of the sandbox (or a plain child where there are no namespaces).
fn init_main(
    policy: &Policy,
    command: &[OsString],
    in_namespaces: bool,
    status_write: OwnedFd,
    mut missing: Vec<String>,
) -> ! {
    layers::die_with_parent();
    let applied = apply_layers(policy, in_namespaces, &mut missing);
    let child = fork_or_fail();
    if child == 0 {
        drop(status_write);
        let error = std::process::Command::new(&command[0])
            .args(&command[1..])
            .exec();
        let _ = writeln!(
            std::io::stderr(),
            "troupe sandbox: cannot run {}: {error}",
            command[0].to_string_lossy()
        );
        // 127 as a shell reports a command it cannot find.
        std::process::exit(127);
    }
    // The caps need this namespace's own /proc to count in.
    let caps = applied.own_proc.then_some(layers::Caps {
        processes: policy.limits.processes,
        memory_bytes: (policy.limits.total_memory_mb > 0)
            .then(|| policy.limits.total_memory_mb.saturating_mul(1 << 20)),
    });
    let status = layers::reap_until(child, caps);
    let mut out = std::fs::File::from(status_write);
    let _ = out.write_all(&status.to_ne_bytes());
    drop(out);
    // The command's end is reported; exiting kills what it left behind.
    std::process::exit(0)
}

/// Sets up every layer in a throwaway init and prints a [`Support`] as
/// JSON.
fn probe_main() -> ! {
    let policy = Policy {
        mode: Mode::BestEffort,
        read: Vec::new(),
        write: Vec::new(),
        read_only: Vec::new(),
        network: false,
        connect_ports: Vec::new(),
        limits: crate::Limits {
            cpu_seconds: 10,
            memory_mb: 1024,
            open_files: 64,
            processes: 64,
            total_memory_mb: 0,
        },
        lifeline_fd: None,
    };
    let mut missing = Vec::new();
    let namespaces = layers::enter_namespaces(false);
    let in_namespaces = namespaces.is_ok();
    check(
        Mode::BestEffort,
        Layer::Namespaces,
        namespaces,
        &mut missing,
    );
    let (report_read, report_write) = layers::pipe().unwrap_or_else(|e| fail(&e));
    let child = fork_or_fail();
    if child == 0 {
        drop(report_read);
        layers::die_with_parent();
        let applied = apply_layers(&policy, in_namespaces, &mut missing);
        let report = Support {
            missing,
            landlock_abi: applied.landlock_abi,
        };
        let mut out = std::fs::File::from(report_write);
        let _ = out.write_all(
            serde_json::to_string(&report)
                .unwrap_or_default()
                .as_bytes(),
        );
        std::process::exit(0);
    }
    drop(report_write);
    let mut text = String::new();
    let _ = std::fs::File::from(report_read).read_to_string(&mut text);
    let _ = layers::reap_until(child, None);
    println!("{text}");
    std::process::exit(0)
}

// `OwnedFd` from a raw descriptor, used by `layers::pipe`.
pub(crate) fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: called only with a descriptor just returned by the kernel and
    // owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub(crate) fn raw(fd: &OwnedFd) -> libc::c_int {
    fd.as_raw_fd()
}
