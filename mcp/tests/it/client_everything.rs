//! troupe-mcp against real MCP servers troupe did not write, from the npm
//! registry: `@modelcontextprotocol/server-everything` and
//! `@modelcontextprotocol/server-filesystem`, started as child processes
//! with `node`. `scripts/fetch-mcp-servers.sh` installs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use troupe_config::{load, Config, LoadOptions};
use troupe_mcp::{attach, Launch, McpTools, ServerPhase, ServerStatus};
use troupe_tools::{
    ApprovalPolicy, Observation, ToolContext, ToolOutcome, ToolRegistry, Workspace,
};

fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/mcp-servers/node_modules/@modelcontextprotocol")
}

/// The entry script of an installed server package; fails the test, saying
/// what to run, when it is missing.
fn server_script(package: &str) -> PathBuf {
    let script = servers_dir().join(package).join("dist/index.js");
    assert!(
        script.is_file(),
        "{} is missing: run scripts/fetch-mcp-servers.sh (needs node and npm) to install the MCP servers these tests use",
        script.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is not on PATH; install Node.js >= 18 (scripts/fetch-mcp-servers.sh needs it too)"
    );
    script
}

struct Setup {
    registry: ToolRegistry,
    mcp: Arc<McpTools>,
    ctx: ToolContext,
    _dir: tempfile::TempDir,
}

/// A registry with nothing but the MCP servers of `toml` (troupe.toml text).
async fn setup(toml: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("troupe.toml");
    std::fs::write(
        &path,
        format!("data_dir = \"{}\"\n{toml}", dir.path().display()),
    )
    .unwrap();
    let config: Config = load(&LoadOptions {
        explicit: Some(path),
        env: Vec::new(),
        platform_default: false,
    })
    .unwrap();
    let mut registry = ToolRegistry::new(ApprovalPolicy::from_config(&config.approval), 16 * 1024);
    let launch = Launch::from_config(&config.tools);
    let mcp = attach(&config.mcp, &launch, &mut registry)
        .await
        .expect("a server is configured");
    let workspace = Workspace::create(&config.data_dir, "mcp-test").unwrap();
    Setup {
        registry,
        mcp,
        ctx: ToolContext::new(Arc::new(workspace)),
        _dir: dir,
    }
}

/// The installed packages: what a sandboxed server must be granted to read
/// (its script and the modules it imports).
fn packages_root() -> PathBuf {
    servers_dir().join("../..").canonicalize().unwrap()
}

fn everything_toml(extra: &str) -> String {
    let script = server_script("server-everything");
    format!(
        "[[mcp.servers]]\nname = \"everything\"\ncommand = \"node\"\nargs = [\"{}\", \"stdio\"]\nread = [\"{}\"]\n{extra}\n",
        script.display(),
        packages_root().display()
    )
}

/// Host processes whose environment holds `marker` (found through /proc).
fn processes_marked(marker: &str) -> Vec<u32> {
    let needle = format!("TROUPE_TEST_MARKER={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

async fn call(s: &Setup, tool: &str, args: serde_json::Value) -> Observation {
    match s.registry.call(&s.ctx, tool, args).await.unwrap() {
        ToolOutcome::Done(obs) => obs,
        ToolOutcome::NeedsApproval(req) => panic!("{tool} unexpectedly needs approval: {req:?}"),
    }
}

/// Waits (with a generous guard against a hang) for a status change.
async fn wait_for(
    mcp: &McpTools,
    server: &str,
    what: impl Fn(&ServerStatus) -> bool,
) -> ServerStatus {
    let mut rx = mcp.subscribe(server).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(120), rx.wait_for(|s| what(s)))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{server} never reached the expected state: {:?}",
                mcp.status(server)
            )
        })
        .unwrap()
        .clone();
    seen
}

#[tokio::test]
async fn server_tools_join_the_registry_and_round_trip() {
    let s = setup(&everything_toml("risk = \"read\"")).await;
    let status = s.mcp.status("everything").unwrap();
    assert_eq!(status.phase, ServerPhase::Ready, "{status:?}");
    assert!(
        status.tools.contains(&"everything__echo".to_string()),
        "{:?}",
        status.tools
    );

    let listed = s.registry.render_for_prompt();
    assert!(listed.contains("- everything__echo [read]: "), "{listed}");
    assert!(listed.contains("message (string, required)"), "{listed}");
    let schema = s.registry.action_schema().to_string();
    assert!(schema.contains("everything__get-sum"), "{schema}");
    assert!(
        !schema.contains("$schema"),
        "the server's $schema must not reach the grammar"
    );

    let echo = call(&s, "everything__echo", json!({"message": "hello troupe"})).await;
    assert!(!echo.is_error, "{echo:?}");
    assert_eq!(echo.text, "Echo: hello troupe");

    let sum = call(&s, "everything__get-sum", json!({"a": 2, "b": 40})).await;
    assert!(!sum.is_error, "{sum:?}");
    assert!(sum.text.contains("42"), "{sum:?}");

    // troupe validates against the server's schema before calling it.
    let bad = call(&s, "everything__echo", json!({})).await;
    assert!(bad.is_error && bad.text.contains("message"), "{bad:?}");
}

#[tokio::test]
async fn execute_risk_is_the_default_and_asks_for_approval() {
    // No `risk`: an MCP tool is "execute", and `[approval] execute` is "ask"
    // by default.
    let s = setup(&everything_toml("")).await;
    let outcome = s
        .registry
        .call(&s.ctx, "everything__echo", json!({"message": "ok?"}))
        .await
        .unwrap();
    let ToolOutcome::NeedsApproval(request) = outcome else {
        panic!("an execute tool must need approval, got {outcome:?}");
    };
    assert_eq!(request.tool, "everything__echo");
    let obs = s.registry.call_approved(&s.ctx, &request).await.unwrap();
    assert_eq!(obs.text, "Echo: ok?");

    let denied = setup(&format!(
        "[approval.tools]\neverything__echo = \"deny\"\n{}",
        everything_toml("")
    ))
    .await;
    let obs = call(&denied, "everything__echo", json!({"message": "no"})).await;
    assert!(obs.is_error && obs.data["denied"] == json!(true), "{obs:?}");
}

#[tokio::test]
async fn a_killed_server_is_restarted_and_its_tools_come_back() {
    // A long first backoff, so the restarting state can be seen and called.
    let s = setup(&everything_toml("risk = \"read\"\nbackoff_ms = 3000")).await;
    let before = s.mcp.status("everything").unwrap();
    let pid = before.pid.expect("a stdio server has a pid");
    assert_eq!(before.connections, 1);

    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let down = wait_for(&s.mcp, "everything", |st| {
        matches!(st.phase, ServerPhase::Restarting { .. })
    })
    .await;
    assert_eq!(down.pid, None);
    let obs = call(&s, "everything__echo", json!({"message": "anyone?"})).await;
    assert!(obs.is_error, "{obs:?}");
    assert!(
        obs.text.contains("`everything` is restarting"),
        "the model should be told the server restarts: {}",
        obs.text
    );
    assert!(
        !s.registry.render_for_prompt().contains("everything__echo"),
        "a restarting server's tools are left out of the prompt"
    );

    let back = wait_for(&s.mcp, "everything", |st| st.phase == ServerPhase::Ready).await;
    assert_eq!(back.connections, 2);
    assert_ne!(back.pid, Some(pid));
    let obs = call(&s, "everything__echo", json!({"message": "back"})).await;
    assert_eq!(obs.text, "Echo: back", "{obs:?}");
    assert!(s.registry.render_for_prompt().contains("everything__echo"));
}

#[tokio::test]
async fn filesystem_server_reads_a_file() {
    let script = server_script("server-filesystem");
    let files = tempfile::tempdir().unwrap();
    let root = files.path().canonicalize().unwrap();
    std::fs::write(root.join("notes.txt"), "troupe was here\n").unwrap();
    let s = setup(&format!(
        "[[mcp.servers]]\nname = \"fs\"\ncommand = \"node\"\nargs = [\"{}\", \"{}\"]\nrisk = \"read\"\nread = [\"{}\", \"{}\"]\n",
        script.display(),
        root.display(),
        packages_root().display(),
        root.display()
    ))
    .await;
    let obs = call(
        &s,
        "fs__read_text_file",
        json!({"path": root.join("notes.txt").display().to_string()}),
    )
    .await;
    assert!(!obs.is_error, "{obs:?}");
    assert!(obs.text.contains("troupe was here"), "{obs:?}");
    let outside = call(&s, "fs__read_text_file", json!({"path": "/etc/hostname"})).await;
    assert!(
        outside.is_error,
        "the server refuses paths outside its root: {outside:?}"
    );
}

#[tokio::test]
async fn a_server_that_cannot_start_is_retried_and_its_tools_say_why() {
    // Needs no npm package: the program does not exist.
    let s = setup(
        "[[mcp.servers]]\nname = \"ghost\"\ncommand = \"/nonexistent/mcp-server\"\nbackoff_ms = 50\nbackoff_max_ms = 200\n",
    )
    .await;
    let st = wait_for(
        &s.mcp,
        "ghost",
        |st| matches!(st.phase, ServerPhase::Restarting { attempt, .. } if attempt >= 3),
    )
    .await;
    let ServerPhase::Restarting {
        reason, retry_in, ..
    } = &st.phase
    else {
        unreachable!()
    };
    assert!(
        reason.contains("could not start `/nonexistent/mcp-server`"),
        "{reason}"
    );
    assert!(
        *retry_in <= Duration::from_millis(200),
        "backoff is capped: {retry_in:?}"
    );
    let obs = call(&s, "ghost__anything", json!({})).await;
    assert!(
        obs.is_error && obs.text.contains("`ghost` is restarting"),
        "{obs:?}"
    );
    assert!(s.registry.available_tools().is_empty());
}

#[tokio::test]
async fn a_stdio_server_runs_sandboxed_with_a_scrubbed_environment() {
    // The filesystem server is told it may serve two directories; the
    // sandbox grants it only one, so the other is as good as absent.
    let script = server_script("server-filesystem");
    let granted = tempfile::tempdir().unwrap();
    let withheld = tempfile::tempdir().unwrap();
    let granted_root = granted.path().canonicalize().unwrap();
    let withheld_root = withheld.path().canonicalize().unwrap();
    std::fs::write(granted_root.join("ok.txt"), "granted\n").unwrap();
    std::fs::write(withheld_root.join("secret.txt"), "withheld\n").unwrap();
    let marker = format!("{}-{}", std::process::id(), line!());
    let s = setup(&format!(
        "[[mcp.servers]]\nname = \"fs\"\ncommand = \"node\"\nargs = [\"{script}\", \"{granted}\", \"{withheld}\"]\nrisk = \"read\"\nread = [\"{packages}\", \"{granted}\"]\nenv = {{ TROUPE_TEST_MARKER = \"{marker}\" }}\n{everything}",
        script = script.display(),
        granted = granted_root.display(),
        withheld = withheld_root.display(),
        packages = packages_root().display(),
        everything = everything_toml("risk = \"read\"\nenv = { ONLY_THIS = \"1\" }"),
    ))
    .await;
    let status = s.mcp.status("fs").unwrap();
    assert_eq!(status.phase, ServerPhase::Ready, "{status:?}");

    let ok = call(
        &s,
        "fs__read_text_file",
        json!({"path": granted_root.join("ok.txt").display().to_string()}),
    )
    .await;
    assert!(!ok.is_error && ok.text.contains("granted"), "{ok:?}");
    let secret = call(
        &s,
        "fs__read_text_file",
        json!({"path": withheld_root.join("secret.txt").display().to_string()}),
    )
    .await;
    assert!(
        secret.is_error && !secret.text.contains("withheld"),
        "the sandbox withholds what the server was not granted: {secret:?}"
    );
    // Nor can it write outside what it was granted, even where it may read.
    let write = call(
        &s,
        "fs__write_file",
        json!({"path": granted_root.join("new.txt").display().to_string(), "content": "x"}),
    )
    .await;
    assert!(write.is_error, "{write:?}");
    assert!(!granted_root.join("new.txt").exists());

    // The environment: PATH, HOME (its private /tmp), LANG, TERM and its
    // own `env`; nothing of this process's (CARGO_*, keys, ...).
    let env = call(&s, "everything__get-env", json!({})).await;
    assert!(!env.is_error, "{env:?}");
    let vars: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&env.text).unwrap_or_else(|e| panic!("{e}: {}", env.text));
    let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["HOME", "LANG", "ONLY_THIS", "PATH", "TERM"],
        "{vars:?}"
    );
    assert_eq!(vars["HOME"], "/tmp");

    // The server runs in its own PID namespace: stopping it (as a crash of
    // troupe closes the lifeline) leaves no process of it behind.
    let before = processes_marked(&marker);
    assert!(
        !before.is_empty(),
        "the marked server was not found in /proc"
    );
    s.mcp.shutdown();
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !processes_marked(&marker).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(processes_marked(&marker), Vec::<u32>::new(), "left running");
}
