//! The sandbox against what a hostile command tries, and the honest work
//! that must still run inside it. Every layer is required here: a kernel
//! that lacks one fails these tests instead of skipping them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use troupe_sandbox::{wrap, Limits, Mode, Policy};

/// The helper: this package's binary, or `SANDBOX_TEST_HELPER` when the
/// tests run as another user from a copy (scripts/sandbox-unprivileged.sh).
fn helper() -> PathBuf {
    std::env::var_os("SANDBOX_TEST_HELPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_troupe-sandbox")))
}

struct Rig {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    home: PathBuf,
    outside: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        // Under the target directory, not /tmp: the sandbox mounts a
        // private /tmp when no policy path lies there, which is what
        // troupe's own data directory looks like.
        let base = std::env::var_os("SANDBOX_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
        let dir = tempfile::tempdir_in(base).unwrap();
        let workspace = dir.path().join("ws");
        let home = dir.path().join("home");
        let outside = dir.path().join("outside");
        for d in [&workspace, &home, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::create_dir_all(workspace.join(".git")).unwrap();
        std::fs::write(workspace.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(outside.join("secret.txt"), "the secret\n").unwrap();
        Rig {
            _dir: dir,
            workspace,
            home,
            outside,
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            mode: Mode::Required,
            read: Vec::new(),
            write: vec![self.workspace.clone(), self.home.clone()],
            read_only: vec![self.workspace.join(".git")],
            network: false,
            connect_ports: Vec::new(),
            limits: Limits {
                cpu_seconds: 60,
                memory_mb: 2048,
                open_files: 256,
                processes: 64,
                total_memory_mb: 0,
            },
            lifeline_fd: None,
        }
    }

    fn command(&self, policy: &Policy, script: &str) -> Command {
        let (program, args) = wrap(
            &helper(),
            policy,
            "/bin/sh".as_ref(),
            &["-c".into(), script.into()],
        )
        .unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.workspace)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("OUTSIDE", &self.outside)
            .env("WS", &self.workspace)
            .stdin(Stdio::piped());
        cmd
    }

    fn sh_with(&self, policy: &Policy, script: &str) -> Output {
        let child = self
            .command(policy, script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // stdin (the lifeline) stays open until the command is done
        // (wait_with_output would close it first).
        let mut child = child;
        let lifeline = child.stdin.take();
        let out = child.wait_with_output().unwrap();
        drop(lifeline);
        out
    }

    fn sh(&self, script: &str) -> Output {
        self.sh_with(&self.policy(), script)
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_workspace_is_writable_and_nothing_else_is() {
    let rig = Rig::new();
    let out =
        rig.sh("echo hi > \"$WS/made.txt\" && echo home > \"$HOME/h\" && cat \"$WS/made.txt\"");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(rig.workspace.join("made.txt")).unwrap(),
        "hi\n"
    );

    for script in [
        "cat \"$OUTSIDE/secret.txt\"",
        "echo x > \"$OUTSIDE/new.txt\"",
        "rm \"$OUTSIDE/secret.txt\"",
        "ls \"$OUTSIDE\"",
        "echo x > /etc/troupe-escape",
    ] {
        let out = rig.sh(script);
        assert!(!out.status.success(), "{script} must fail: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            // Refused, or not there at all when the rig lies under /tmp
            // (the sandbox's own /tmp carries only the policy's paths).
            stderr.contains("Permission denied")
                || stderr.contains("Read-only")
                || stderr.contains("No such file")
                || stderr.contains("Directory nonexistent"),
            "{script}: {}",
            text(&out)
        );
    }
    assert!(rig.outside.join("secret.txt").exists());
    assert!(!rig.outside.join("new.txt").exists());
    assert!(!Path::new("/etc/troupe-escape").exists());
}

#[test]
fn the_checkpoint_repository_is_read_only() {
    let rig = Rig::new();
    let out = rig.sh("echo evil > \"$WS/.git/HEAD\"");
    assert!(!out.status.success(), "{}", text(&out));
    let out = rig.sh("mkdir \"$WS/.git/hooks\"");
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(rig.workspace.join(".git/HEAD")).unwrap(),
        "ref: refs/heads/main\n"
    );
}

#[test]
fn the_command_sees_only_its_own_processes() {
    let rig = Rig::new();
    // The test process's environment (where troupe keeps its keys) must be
    // out of reach: its pid does not exist in the sandbox's /proc.
    let me = std::process::id();
    let out = rig.sh(&format!(
        "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; cat /proc/{me}/environ"
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<u32> = stdout
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(pids.contains(&1), "{}", text(&out));
    // PID 1, the shell and its pipeline; nothing of the host's.
    assert!(
        pids.len() <= 8,
        "only the sandbox's processes: {}",
        text(&out)
    );
    assert!(
        pids.iter().all(|&p| p < 64),
        "the sandbox's own numbering: {}",
        text(&out)
    );
    assert!(
        !out.status.success(),
        "reading /proc/{me}/environ: {}",
        text(&out)
    );
}

#[test]
fn a_detached_process_dies_with_the_command() {
    let rig = Rig::new();
    let started = Instant::now();
    let out = rig.sh("setsid sh -c 'sleep 1; echo late > \"$WS/late.txt\"' & echo started");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the helper must not wait for the orphan"
    );
    std::thread::sleep(Duration::from_millis(1800));
    assert!(
        !rig.workspace.join("late.txt").exists(),
        "a setsid child outlived its command"
    );
}

#[test]
fn closing_the_lifeline_kills_the_command() {
    let rig = Rig::new();
    let mut child = rig
        .command(&rig.policy(), "sleep 30; echo done > \"$WS/done.txt\"")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    // What troupe dying does: its end of the pipe closes.
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{status:?}");
    assert!(!status.success());
    assert!(!rig.workspace.join("done.txt").exists());
}

#[test]
fn the_memory_of_all_processes_together_is_capped() {
    let rig = Rig::new();
    let mut policy = rig.policy();
    policy.limits.total_memory_mb = 200;
    // 80 MiB each, touched: one fits, four together do not.
    let hog = "python3 -c 'import time; b = bytearray(80 << 20); time.sleep(3)'";
    let one = rig.sh_with(&policy, hog);
    assert!(one.status.success(), "{}", text(&one));

    let started = Instant::now();
    let four = rig.sh_with(
        &policy,
        &format!("{hog} & {hog} & {hog} & {hog} & wait; echo survived"),
    );
    assert!(!four.status.success(), "{}", text(&four));
    assert!(!String::from_utf8_lossy(&four.stdout).contains("survived"));
    assert!(
        String::from_utf8_lossy(&four.stderr).contains("used more than 200 MiB of memory together"),
        "{}",
        text(&four)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Pages a fork shares copy-on-write count once: 120 MiB touched, then
    // seven forked processes that only sleep, stay under a 200 MiB cap.
    let forks = "python3 -c '
import os, time
b = bytearray(120 << 20)
kids = [os.fork() for _ in range(3)]
if 0 in kids:
    time.sleep(1.5); os._exit(0)
for k in kids: os.waitpid(k, 0)
print(\"forks survived\")'";
    let shared = rig.sh_with(&policy, forks);
    assert!(shared.status.success(), "{}", text(&shared));
    assert!(String::from_utf8_lossy(&shared.stdout).contains("forks survived"));
}

#[test]
fn a_read_path_under_the_hosts_tmp_stays_read_only() {
    // The private /tmp is writable; a read grant that lies under the host's
    // /tmp is bound into it and must not take on that write access.
    let rig = Rig::new();
    let shared = tempfile::tempdir_in("/tmp").unwrap();
    let shared_dir = shared.path().canonicalize().unwrap();
    std::fs::write(shared_dir.join("lib.txt"), "library\n").unwrap();
    let mut policy = rig.policy();
    policy.read.push(shared_dir.clone());
    let script = format!(
        "cat '{dir}/lib.txt' && (echo x > '{dir}/new.txt' && echo WROTE; echo y >> '{dir}/lib.txt' && echo APPENDED; true)",
        dir = shared_dir.display()
    );
    let out = rig.sh_with(&policy, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("library"), "{}", text(&out));
    assert!(
        !stdout.contains("WROTE") && !stdout.contains("APPENDED"),
        "{}",
        text(&out)
    );
    assert!(!shared_dir.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(shared_dir.join("lib.txt")).unwrap(),
        "library\n"
    );
}

#[test]
fn a_lifeline_on_its_own_descriptor_leaves_stdio_to_the_command() {
    // As a stdio MCP server runs: stdin and stdout carry a protocol, the
    // lifeline is descriptor 3.
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let rig = Rig::new();
    let mut policy = rig.policy();
    policy.lifeline_fd = Some(troupe_sandbox::LIFELINE_FD);
    let (read, write) = troupe_sandbox::lifeline_pipe().unwrap();
    let read_fd = read.as_raw_fd();
    let mut cmd = rig.command(
        &policy,
        "while read line; do echo \"got $line\"; done; echo eof > \"$WS/eof.txt\"",
    );
    // SAFETY: inherit_lifeline only calls dup2/fcntl.
    unsafe {
        cmd.pre_exec(move || troupe_sandbox::inherit_lifeline(read_fd));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(read);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "ping").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "got ping\n", "stdin and stdout reach the command");

    // stdin stays open: only the lifeline closing ends the command.
    let started = Instant::now();
    drop(write);
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{status:?}");
    assert!(!status.success(), "killed, not ended: {status:?}");
    assert!(!rig.workspace.join("eof.txt").exists());
    drop(stdin);

    // A helper told to use a descriptor it did not inherit refuses to run.
    let out = rig.sh_with(&policy, "echo ran");
    assert_eq!(
        out.status.code(),
        Some(troupe_sandbox::SETUP_FAILED),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the lifeline on descriptor 3"),
        "{}",
        text(&out)
    );
}

#[test]
fn there_is_no_network_but_loopback() {
    let rig = Rig::new();
    // A server on the host's loopback: unreachable from the sandbox.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "python3 -c '
import socket, sys
s = socket.socket()
s.settimeout(2)
try:
    s.connect((\"127.0.0.1\", {port}))
    print(\"host reached\")
except OSError as e:
    print(\"host unreachable:\", e)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b\"x\", (\"1.1.1.1\", 53))
    print(\"udp sent\")
except OSError as e:
    print(\"udp refused:\", e)
srv = socket.socket(); srv.bind((\"127.0.0.1\", 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname(), timeout=2)
print(\"loopback inside works\")
'"
    );
    let out = rig.sh(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("host unreachable"), "{}", text(&out));
    assert!(stdout.contains("udp refused"), "{}", text(&out));
    assert!(stdout.contains("loopback inside works"), "{}", text(&out));
    drop(listener);
}

#[test]
fn dangerous_system_calls_are_refused() {
    let rig = Rig::new();
    let script = "python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for name, call in [(\"ptrace\", lambda: libc.ptrace(16, 1, 0, 0)),
                   (\"unshare\", lambda: libc.unshare(0x10000000)),
                   (\"mount\", lambda: libc.mount(b\"none\", b\"/mnt\", b\"tmpfs\", 0, None)),
                   (\"bpf\", lambda: libc.syscall(321, 0, 0, 0)),
                   (\"io_uring_setup\", lambda: libc.syscall(425, 1, 0))]:
    rc = call()
    print(name, rc, os.strerror(ctypes.get_errno()))
'";
    let out = rig.sh(script);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["ptrace", "unshare", "mount", "bpf", "io_uring_setup"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {}", text(&out)));
        assert!(line.contains(" -1 "), "{name} must fail: {line}");
    }
    // The same through the tool a person would use.
    let out = rig.sh("unshare -U true");
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn the_process_count_is_capped() {
    let rig = Rig::new();
    let mut policy = rig.policy();
    policy.limits.processes = 16;
    let out = rig.sh_with(
        &policy,
        "python3 -c '
import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(3); os._exit(0)
        n += 1
except OSError as e:
    print(\"refused after\", n, e)
'",
    );
    // Two ways the cap holds: RLIMIT_NPROC refuses the fork (any user but
    // the host's root), or the sandbox's init sees too many processes and
    // kills the call (root, whom the kernel exempts from RLIMIT_NPROC).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("refused after") {
        let n: u32 = stdout
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(n < 16, "{}", text(&out));
    } else {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc_sigkill()), "{}", text(&out));
        assert!(stderr.contains("more than 16 processes"), "{}", text(&out));
    }
}

fn libc_sigkill() -> i32 {
    9
}

#[test]
fn honest_work_runs_inside() {
    let rig = Rig::new();
    let out = rig.sh(
        "set -e
python3 -m venv \"$WS/venv\"
\"$WS/venv/bin/python\" -c 'open(\"from_python.txt\", \"w\").write(\"ok\")'
mkdir proj && cd proj && git init -q . && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m first
echo tmp > \"${TMPDIR:-/tmp}/t\" && cat \"${TMPDIR:-/tmp}/t\"",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(rig.workspace.join("from_python.txt")).unwrap(),
        "ok"
    );
    assert!(rig.workspace.join("proj/.git").is_dir());
}

#[test]
fn exit_codes_and_signals_come_through() {
    let rig = Rig::new();
    let out = rig.sh("exit 7");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let out = rig.sh("kill -SEGV $$");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigsegv()), "{}", text(&out));
    let out = rig.sh("/no/such/program");
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
}

fn libc_sigsegv() -> i32 {
    11
}

#[test]
fn the_probe_finds_every_layer_on_this_kernel() {
    let support = troupe_sandbox::probe(&helper());
    assert!(support.complete(), "{support:?}");
    assert!(support.landlock_abi >= 1, "{support:?}");
}
