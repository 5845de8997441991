//! The sandbox every process a tool starts runs in.
//!
//! troupe is multi-threaded, and what a sandbox needs (new namespaces, a
//! fork, mounts, Landlock, seccomp) is neither safe nor possible between
//! `fork` and `exec` of such a process. So the program is started through a
//! helper: troupe executes itself (or the `troupe-sandbox` binary) with
//! [`HELPER_ARG`], a [`Policy`] as JSON and the command. The helper is a
//! fresh, single-threaded process; [`helper::main`] sets up, in order:
//!
//! 1. its own session, and a lifeline: its stdin (or, for a command that
//!    speaks a protocol on stdio, [`LIFELINE_FD`]) is a pipe troupe holds,
//!    so when troupe dies (even by SIGKILL) the helper kills the command;
//! 2. namespaces: user (always; the command has no power over the host even
//!    when troupe runs as root), PID (the command is PID 1 of its own tree,
//!    so every process it starts dies with it, `setsid` or not), mount (a
//!    fresh `/proc`, private `/tmp` and `/dev/shm`), IPC, and network unless
//!    the policy allows it (only loopback inside, no route out);
//! 3. limits: CPU seconds, address space and open files per process, a
//!    process count and a memory cap for all of them together (counted by
//!    the init, as cgroups are rarely delegated), no core files;
//! 4. `PR_SET_NO_NEW_PRIVS`, every capability dropped;
//! 5. Landlock: read and execute the system directories and the policy's
//!    read paths, read and write the policy's write paths, nothing else;
//!    signals and abstract Unix sockets scoped to the sandbox; TCP connect
//!    only to the policy's ports when the network is on;
//! 6. seccomp: `ptrace`, `process_vm_*`, `io_uring_*`, `bpf`,
//!    `perf_event_open`, module and kexec calls, keyrings, `userfaultfd`,
//!    the mount family, `unshare`, `setns`, `chroot` and new namespaces
//!    through `clone` are refused; `clone3` reports "not implemented" so
//!    that the C library falls back to `clone`, whose flags can be checked.
//!
//! then `exec`s the command. The helper itself stays outside the PID
//! namespace, waits for the command and exits the way it did.
//!
//! [`Mode::Required`] fails the call, naming the missing kernel feature, when
//! a layer cannot be set up; [`Mode::BestEffort`] runs without that layer
//! (troupe warns once, see [`probe`]).

#![deny(unsafe_op_in_unsafe_fn)]

mod helper;
mod layers;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use helper::main as helper_main;

/// The first argument that makes a troupe executable act as the helper.
pub const HELPER_ARG: &str = "__troupe-sandbox";

/// The exit code of the helper when it could not set up the sandbox (as
/// `env` and `nice` use 125 for their own failures).
pub const SETUP_FAILED: i32 = 125;

/// How strictly the sandbox is applied (`[tools.sandbox] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every layer or the tool does not run.
    Required,
    /// Every layer the kernel offers; a missing one is skipped.
    BestEffort,
    /// No sandbox: the command runs with troupe's own rights.
    Off,
}

impl Mode {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::BestEffort => "best_effort",
            Mode::Off => "off",
        }
    }
}

/// Limits for one command and everything it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// RLIMIT_CPU per process, seconds.
    pub cpu_seconds: u64,
    /// RLIMIT_AS per process, MiB.
    pub memory_mb: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// Processes (threads count) the command may have at once.
    pub processes: u64,
    /// Anonymous resident memory of all the command's processes together,
    /// MiB (0: no cap besides `memory_mb` per process). The sandbox's init
    /// adds it up from `/proc` every 10 ms and kills them all past it.
    #[serde(default)]
    pub total_memory_mb: u64,
}

/// What one sandboxed command may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How strictly to apply it.
    pub mode: Mode,
    /// Read and execute, besides [`system_read_paths`].
    pub read: Vec<PathBuf>,
    /// Read, write, create and delete (the workspace, the tool's home and
    /// its tmp).
    pub write: Vec<PathBuf>,
    /// Paths inside a write path that stay read-only (the checkpoint
    /// repository's `.git`).
    pub read_only: Vec<PathBuf>,
    /// Whether the command may reach the network. Off: a network namespace
    /// with only loopback.
    pub network: bool,
    /// TCP ports the command may connect to when the network is on (where
    /// the kernel's Landlock handles TCP).
    pub connect_ports: Vec<u16>,
    /// Limits.
    pub limits: Limits,
    /// Where the helper's lifeline is: `None`, its stdin (the command
    /// then reads /dev/null); `Some(fd)`, that inherited descriptor (see
    /// [`inherit_lifeline`]), so the command keeps stdin and stdout for a
    /// protocol, as a stdio MCP server does.
    #[serde(default)]
    pub lifeline_fd: Option<i32>,
}

/// The descriptor [`inherit_lifeline`] puts a lifeline on.
pub const LIFELINE_FD: i32 = 3;

/// A lifeline for a helper that keeps its stdin: (read end for the child,
/// write end troupe holds while the command should run). Both are
/// close-on-exec; [`inherit_lifeline`] passes the read end on.
pub fn lifeline_pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    layers::pipe().map_err(std::io::Error::other)
}

/// For `pre_exec` of the helper's `Command`: makes `read` (the read end of
/// [`lifeline_pipe`]) the child's [`LIFELINE_FD`], kept across `exec`.
/// Only `dup2` and `fcntl`, so it is async-signal-safe.
///
/// # Safety
/// Call it only between `fork` and `exec`, with `read` open in the child.
pub unsafe fn inherit_lifeline(read: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: plain descriptor calls on descriptors the child owns.
    let rc = unsafe {
        if read == LIFELINE_FD {
            libc::fcntl(read, libc::F_SETFD, 0)
        } else {
            libc::dup2(read, LIFELINE_FD)
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Why a command could not be wrapped or sandboxed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The policy could not be written for the helper.
    #[error("cannot encode the sandbox policy: {0}")]
    Encode(#[from] serde_json::Error),
    /// A required layer is missing on this kernel.
    #[error("the sandbox is required ([tools.sandbox] mode = \"required\") but {0}")]
    Missing(String),
}

/// Read-and-execute paths every command gets: the system's programs,
/// libraries and configuration. Only those that exist.
pub fn system_read_paths() -> Vec<PathBuf> {
    [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/etc",
        "/opt",
        "/nix/store",
        "/sys",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect()
}

/// The program and arguments that run `program args` through `helper`
/// under `policy`.
pub fn wrap(
    helper: &Path,
    policy: &Policy,
    program: &OsStr,
    args: &[OsString],
) -> Result<(OsString, Vec<OsString>), SandboxError> {
    std::hint::black_box(&EARLY_HELPER);
    let mut argv: Vec<OsString> = vec![
        HELPER_ARG.into(),
        serde_json::to_string(policy)?.into(),
        "--".into(),
        program.to_owned(),
    ];
    argv.extend(args.iter().cloned());
    Ok((helper.as_os_str().to_owned(), argv))
}

/// The helper's entry before `main`, from the ELF `.init_array`: the C
/// library calls it with `argc`, `argv` and `envp` while the process is
/// still single-threaded, before Rust's runtime or any `#[tokio::main]`
/// starts a thread. This makes every executable linking the crate (troupe,
/// an embedding program, each test binary) its own sandbox helper, with no
/// second binary to install or find. It returns at once unless the first
/// argument is [`HELPER_ARG`].
#[used]
#[link_section = ".init_array"]
pub static EARLY_HELPER: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = early_helper;

extern "C" fn early_helper(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    use std::os::unix::ffi::OsStrExt;
    if argc < 2 || argv.is_null() {
        return;
    }
    let arg = |i: usize| -> &'static [u8] {
        // SAFETY: the C library passes argv with argc valid NUL-terminated
        // strings that live as long as the process; i < argc.
        unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) }.to_bytes()
    };
    if arg(1) != HELPER_ARG.as_bytes() {
        return;
    }
    let args = (2..argc as usize)
        .map(|i| OsStr::from_bytes(arg(i)).to_owned())
        .collect();
    helper::main(args);
}

/// The executable to run as the helper: this one, which links the crate and
/// so answers [`HELPER_ARG`] before `main` ([`EARLY_HELPER`]).
pub fn helper_path() -> std::io::Result<PathBuf> {
    // Keep the .init_array entry linked into every program that wraps.
    std::hint::black_box(&EARLY_HELPER);
    std::env::current_exe()
}

/// What this kernel offers the sandbox, found by running the helper once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Support {
    /// Layers that could not be set up, each with the reason.
    pub missing: Vec<String>,
    /// The Landlock ABI version (0: none).
    pub landlock_abi: i32,
}

impl Support {
    /// Whether every layer works.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Runs the helper in probe mode: it sets up every layer (best effort) in a
/// throwaway child and reports which failed. Blocking; a few milliseconds.
pub fn probe(helper: &Path) -> Support {
    let out = std::process::Command::new(helper)
        .args([HELPER_ARG, helper::PROBE_ARG])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| Support {
                missing: vec![format!("the helper's report could not be read: {e}")],
                landlock_abi: 0,
            })
        }
        Ok(out) => Support {
            missing: vec![format!(
                "the sandbox helper {} failed ({}): {}",
                helper.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )],
            landlock_abi: 0,
        },
        Err(e) => Support {
            missing: vec![format!(
                "the sandbox helper {} could not be started: {e}",
                helper.display()
            )],
            landlock_abi: 0,
        },
    }
}

/// One line for the model after a sandboxed command failed with an error
/// the sandbox may have caused; `None` when the output shows none.
pub fn denial_note(policy: &Policy, stderr: &str) -> Option<String> {
    const SIGNS: [&str; 5] = [
        "Permission denied",
        "Operation not permitted",
        "Read-only file system",
        "Network is unreachable",
        "Temporary failure in name resolution",
    ];
    if !SIGNS.iter().any(|s| stderr.contains(s)) {
        return None;
    }
    let network = if policy.network {
        "the network is open"
    } else {
        "there is no network but loopback"
    };
    Some(format!(
        "(sandbox: this tool may write only in the workspace and its HOME/TMPDIR, read the system \
         directories, and {network}; the workspace's .git is read-only; ptrace, mounts and new \
         namespaces are refused)"
    ))
}
