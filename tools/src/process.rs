//! Running a program for a tool, safely: its own session and process group
//! (so a timeout kills everything it started), rlimits on CPU time, address
//! space and open files, a scrubbed environment, output read with a cap (the
//! rest is counted and dropped, never buffered), and a timeout.
//!
//! The shell and python tools both run through [`run`]. With a
//! [`Sandboxing`] the program is started through troupe's sandbox helper
//! ([`troupe_sandbox`]): its own user, PID, mount, IPC and network
//! namespaces, Landlock, seccomp and a process cap; the helper's stdin is a
//! pipe held here, so when troupe dies the sandbox dies with it.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long readers may keep draining pipes after the process group is gone;
/// only a process that escaped the group (a new `setsid`) can hold them open.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// rlimits applied to a child and everything it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// RLIMIT_CPU, seconds.
    pub cpu_seconds: u64,
    /// RLIMIT_AS, MiB.
    pub memory_mb: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
}

impl ProcessLimits {
    /// The limits `[tools.shell]` sets.
    pub fn from_config(cfg: &troupe_config::tools::ShellConfig) -> ProcessLimits {
        ProcessLimits {
            cpu_seconds: cfg.cpu_seconds,
            memory_mb: cfg.memory_mb,
            open_files: cfg.open_files,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program (a path, or a name looked up in `PATH` of `env`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The whole environment the child gets (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// rlimits.
    pub limits: ProcessLimits,
    /// Bytes kept of each of stdout and stderr.
    pub output_cap: usize,
    /// The sandbox to run it in; `None` runs it with troupe's own rights.
    pub sandbox: Option<Sandboxing>,
}

/// A sandbox for one run: the helper executable and what the command may do.
#[derive(Debug, Clone)]
pub struct Sandboxing {
    /// The executable that acts as the helper (troupe itself, see
    /// [`troupe_sandbox::helper_path`]).
    pub helper: PathBuf,
    /// What the command may do.
    pub policy: troupe_sandbox::Policy,
}

/// One output stream: the first bytes kept, and how many there were in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// Up to the cap.
    pub head: Vec<u8>,
    /// Bytes the process wrote in all.
    pub total: usize,
}

impl Captured {
    /// The kept bytes as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// Whether bytes were dropped.
    pub fn cut(&self) -> bool {
        self.total > self.head.len()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// The exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Whether the timeout fired (and the group was killed).
    pub timed_out: bool,
    /// stdout.
    pub stdout: Captured,
    /// stderr.
    pub stderr: Captured,
    /// For a sandboxed run that failed with an error the sandbox may have
    /// caused: one line naming the rule.
    pub sandbox_note: Option<String>,
}

impl ProcessOutcome {
    /// Exited with code 0 within the timeout.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// The environment a child gets: `PATH` as given, `HOME` as given (the
/// task's tool home, outside the workspace),
/// a UTF-8 locale and a dumb terminal. Nothing else from the parent, so
/// tokens and keys in troupe's own environment never reach a tool.
pub fn scrubbed_env(path_var: &str, home: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("PATH".to_string(), path_var.to_string()),
        ("HOME".to_string(), home.display().to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("TERM".to_string(), "dumb".to_string()),
    ]
}

/// The parent's `PATH`, or a usual default.
pub fn parent_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_string())
}

async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, cap: usize) -> Captured {
    let mut out = Captured::default();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.total += n;
                let room = cap.saturating_sub(out.head.len());
                out.head.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct passed; it is async-signal-safe.
    if unsafe { libc::setrlimit(resource, &lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks until `pid` has exited, without reaping it, so that its process
/// group id cannot be reused before the group is killed.
fn wait_exit_unreaped(pid: libc::pid_t) {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only to `info`.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg takes plain integers. ESRCH (group already gone) is fine.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Runs `spec` to completion or timeout. Afterwards no process of its group
/// is left: background children are killed when the main process exits.
/// An `Err` means the program could not be started.
pub async fn run(spec: ProcessSpec) -> io::Result<ProcessOutcome> {
    let sandbox = spec
        .sandbox
        .as_ref()
        .filter(|s| s.policy.mode != troupe_sandbox::Mode::Off);
    let (program, args) = match sandbox {
        Some(s) => troupe_sandbox::wrap(&s.helper, &s.policy, &spec.program, &spec.args)
            .map_err(io::Error::other)?,
        None => (spec.program.clone(), spec.args.clone()),
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // The helper's stdin is its lifeline: held open here until the run
        // is over; the command itself reads /dev/null.
        .stdin(if sandbox.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let limits = spec.limits;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setsid, setrlimit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            set_limit(
                libc::RLIMIT_CPU,
                limits.cpu_seconds,
                limits.cpu_seconds.saturating_add(1),
            )?;
            let bytes = limits.memory_mb.saturating_mul(1024 * 1024);
            set_limit(libc::RLIMIT_AS, bytes, bytes)?;
            set_limit(libc::RLIMIT_NOFILE, limits.open_files, limits.open_files)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let lifeline = child.stdin.take();
    let pid = child
        .id()
        .and_then(|p| libc::pid_t::try_from(p).ok())
        .ok_or_else(|| io::Error::other("the child has no pid"))?;
    let stdout = child
        .stdout
        .take()
        .map(|r| tokio::spawn(read_capped(r, spec.output_cap)));
    let stderr = child
        .stderr
        .take()
        .map(|r| tokio::spawn(read_capped(r, spec.output_cap)));
    let exited = tokio::task::spawn_blocking(move || wait_exit_unreaped(pid));
    let timed_out = tokio::time::timeout(spec.timeout, exited).await.is_err();
    if timed_out {
        tracing::info!(pid, timeout = ?spec.timeout, "process timed out; killing its group");
    }
    // The group is killed whether or not the timeout fired: anything the
    // command left running in the background must not outlive the call.
    kill_group(pid);
    let status = child.wait().await?;
    drop(lifeline);
    let collect = |h: Option<tokio::task::JoinHandle<Captured>>| async move {
        match h {
            Some(mut h) => match tokio::time::timeout(DRAIN_GRACE, &mut h).await {
                Ok(Ok(captured)) => captured,
                _ => {
                    h.abort();
                    Captured::default()
                }
            },
            None => Captured::default(),
        }
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    use std::os::unix::process::ExitStatusExt;
    let sandbox_note = match sandbox {
        Some(s) if !status.success() => troupe_sandbox::denial_note(&s.policy, &stderr.text()),
        _ => None,
    };
    Ok(ProcessOutcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout,
        stderr,
        sandbox_note,
    })
}
