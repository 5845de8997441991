//! troupe's MCP server driven by real MCP clients troupe did not write: the
//! official TypeScript SDK over stdio (`troupe mcp serve`, through
//! tests/mcp_client.mjs) and rmcp's client over streamable HTTP (`/mcp`
//! under `troupe serve`, behind the bearer key). troupe runs on the scripted
//! backend replaying examples/fib-script.json.

use std::path::{Path, PathBuf};
use std::process::Command;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use troupe::config::{load, LoadOptions};
use troupe::http::{serve, AppState, RunningTroupe};
use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};
use troupe::Troupe;

const JOB: &str = "write a Python fibonacci function with tests";
const API_KEY: &str = "mcp-test-key-71c2";

/// A model dir, the fib script, a troupe.toml and a data dir. Shell calls
/// are allowed (the fib job runs its tests); network calls still ask.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// `extra` is appended to troupe.toml.
    fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let spec = SynthSpec {
            shape: SynthShape::Tiny,
            quant: SynthQuant::F32,
            seed: 1,
        };
        write_synthetic(&models.join("small.gguf"), &spec).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json");
        let config = format!(
            "data_dir = {data:?}\n\
             [models]\ndirs = [{models:?}]\n\
             [agents]\nmodel = \"small\"\n\
             [inference]\nbackend = \"scripted\"\nscript = {script:?}\n\
             [approval]\nexecute = \"allow\"\n{extra}\n",
            data = dir.path().join("data"),
        );
        std::fs::write(dir.path().join("troupe.toml"), config).unwrap();
        Env { dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("troupe.toml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// The installed TypeScript SDK; fails, saying what to run, when missing.
fn sdk_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/mcp-servers/node_modules/@modelcontextprotocol/sdk");
    assert!(
        dir.join("dist/esm/client/stdio.js").is_file(),
        "{} is missing: run scripts/fetch-mcp-servers.sh (needs node and npm) to install the MCP client this test uses",
        dir.display()
    );
    dir
}

fn names(tools: &[Value]) -> Vec<&str> {
    tools.iter().filter_map(|t| t["name"].as_str()).collect()
}

#[test]
fn the_typescript_sdk_drives_troupe_mcp_serve_over_stdio() {
    let env = Env::new("");
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.mjs"))
        .arg(sdk_dir())
        .arg(env!("CARGO_BIN_EXE_troupe"))
        .arg(env.config_path())
        .arg(env.data())
        .arg(JOB)
        .env_remove("TROUPE_CONFIG")
        .output()
        .expect("`node` runs (install Node.js >= 18)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the node client failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the client's report is not JSON ({e}):\n{stdout}\n{stderr}"));

    assert_eq!(report["server"]["name"], "troupe");
    let tools = report["tools"].as_array().unwrap();
    let listed = names(tools);
    for name in [
        "submit_task",
        "task_status",
        "ask",
        "read_file",
        "write_file",
        "shell",
    ] {
        assert!(listed.contains(&name), "{name} is not listed: {listed:?}");
    }
    let submit = tools.iter().find(|t| t["name"] == "submit_task").unwrap();
    assert_eq!(submit["required"], json!(["job"]));

    // A built-in tool the policy allows runs in the shared `mcp` workspace.
    assert_eq!(report["write"]["isError"], false, "{}", report["write"]);
    assert_eq!(report["read"]["isError"], false, "{}", report["read"]);
    assert!(report["read"]["text"]
        .as_str()
        .unwrap()
        .contains("hello from node"));
    let written = env.data().join("workspaces/mcp/notes/hello.txt");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "hello from node\n"
    );

    // One the policy would ask a person about is refused, saying how to allow it.
    let refused = &report["needsApproval"];
    assert_eq!(refused["isError"], true, "{refused}");
    let why = refused["text"].as_str().unwrap();
    assert!(why.contains("needs a person's approval"), "{why}");
    assert!(
        why.contains("[approval.tools] http_get = \"allow\""),
        "{why}"
    );
    assert_eq!(report["unknown"]["isError"], true);

    // The fib job runs to its end through submit_task and task_status.
    let id = report["submit"]["structured"]["id"]
        .as_str()
        .expect("a task id");
    assert!(!id.is_empty());
    let states: Vec<&str> = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(states.last(), Some(&"succeeded"), "states seen: {states:?}");
    let answer = report["status"]["structured"]["answer"].as_str().unwrap();
    assert!(answer.contains("src/fib.py"), "{answer}");
    let fib = env.data().join("workspaces").join(id).join("src/fib.py");
    assert!(fib.is_file(), "{} was not written", fib.display());

    // `ask` reaches the UX agent.
    assert_eq!(report["ask"]["isError"], false, "{}", report["ask"]);
    assert!(!report["ask"]["text"].as_str().unwrap().trim().is_empty());
}

/// logging/setLevel: before it, no log messages; after it, those at the
/// level or worse, the change itself first.
async fn check_logging(
    client: &rmcp::service::RunningService<rmcp::RoleClient, LogRecorder>,
    logged: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    assert!(logged.try_recv().is_err(), "log messages before setLevel");
    // The change is told at info: a client that asked for warnings and
    // worse does not hear it.
    set_level(client, "warning").await;
    let echoed = client
        .call_tool(params("everything__echo", json!({"message": "quiet"})))
        .await
        .unwrap();
    assert_ne!(echoed.is_error, Some(true));
    let missing = client
        .call_tool(params("task_status", json!({"id": "no-such-task"})))
        .await
        .unwrap();
    assert_eq!(missing.is_error, Some(true));
    // The echo (info) was below the level; the failed call (warning) is next.
    let warned = next_log(logged).await;
    assert_eq!(warned["level"], "warning", "{warned}");
    assert_eq!(warned["data"]["tool"], "task_status", "{warned}");
    set_level(client, "debug").await;
    let set = next_log(logged).await;
    assert_eq!(
        (set["level"].as_str(), set["data"]["message"].as_str()),
        (Some("info"), Some("log level set")),
        "{set}"
    );
    client
        .call_tool(params("everything__echo", json!({"message": "loud"})))
        .await
        .unwrap();
    let info = next_log(logged).await;
    assert_eq!(
        (info["level"].as_str(), info["data"]["tool"].as_str()),
        (Some("info"), Some("everything__echo")),
        "{info}"
    );
}

/// An MCP client that passes on every log message it is sent, as JSON.
#[derive(Clone)]
struct LogRecorder(tokio::sync::mpsc::UnboundedSender<Value>);

// MCP logging is deprecated in rmcp by SEP-2577 but still in the spec
// troupe serves (and the conformance suite checks).
#[allow(deprecated)]
impl rmcp::ClientHandler for LogRecorder {
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let _ = self
            .0
            .send(serde_json::to_value(params).unwrap_or_default());
    }
}

/// `logging/setLevel` to `level` (`"debug"`, `"warning"`, ...).
#[allow(deprecated)]
async fn set_level(
    client: &rmcp::service::RunningService<rmcp::RoleClient, LogRecorder>,
    level: &str,
) {
    let level: rmcp::model::LoggingLevel = serde_json::from_value(json!(level)).unwrap();
    client
        .set_level(rmcp::model::SetLevelRequestParams::new(level))
        .await
        .expect("logging/setLevel answered");
}

/// The next log message, waited for at most a minute.
async fn next_log(logged: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(std::time::Duration::from_secs(60), logged.recv())
        .await
        .expect("a log message came")
        .expect("the client is running")
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn params(name: &'static str, args: Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name);
    params.arguments = args.as_object().cloned();
    params
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mcp_needs_the_bearer_key_and_serves_the_agents() {
    // troupe itself uses an MCP server (troupe did not write it): its tools
    // join troupe's registry at boot and are served on to troupe's clients.
    let everything = sdk_dir().join("../server-everything/dist/index.js");
    assert!(
        everything.is_file(),
        "{} is missing: run scripts/fetch-mcp-servers.sh",
        everything.display()
    );
    // It runs in troupe's sandbox, granted the installed packages.
    let packages = sdk_dir().join("../../..").canonicalize().unwrap();
    let env = Env::new(&format!(
        "[[mcp.servers]]\nname = \"everything\"\ncommand = \"node\"\nargs = [{everything:?}, \"stdio\"]\nread = [{packages:?}]\nrisk = \"read\"\n"
    ));
    let config = load(&LoadOptions {
        explicit: Some(env.config_path()),
        env: Vec::new(),
        platform_default: false,
    })
    .unwrap();
    let troupe = Troupe::start(config).await.unwrap();
    let running = RunningTroupe::new(troupe);
    let mut state = AppState::with_troupe(running.clone());
    state.api_key = Some(API_KEY.to_string());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));

    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "curl", "version": "1"}},
    });
    let http = reqwest::Client::new();
    for key in [None, Some("wrong-key")] {
        let mut request = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "key {key:?}");
    }

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(API_KEY),
    );
    let (log, mut logged) = tokio::sync::mpsc::unbounded_channel();
    let client = LogRecorder(log)
        .serve(transport)
        .await
        .expect("the MCP handshake with the key");
    let tools = client.list_all_tools().await.unwrap();
    let listed: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for name in [
        "submit_task",
        "task_status",
        "ask",
        "list_dir",
        "everything__echo",
    ] {
        assert!(listed.contains(&name), "{name} is not listed: {listed:?}");
    }

    let echoed = client
        .call_tool(params("everything__echo", json!({"message": "via troupe"})))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "Echo: via troupe");

    let submitted = client
        .call_tool(params("submit_task", json!({"job": JOB})))
        .await
        .unwrap();
    assert_ne!(submitted.is_error, Some(true), "{}", text(&submitted));
    let id = submitted.structured_content.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = client
        .call_tool(params("task_status", json!({"id": id})))
        .await
        .unwrap();
    assert!(
        text(&status).starts_with(&format!("task {id}: ")),
        "{}",
        text(&status)
    );
    let missing = client
        .call_tool(params("task_status", json!({"id": "no-such-task"})))
        .await
        .unwrap();
    assert_eq!(missing.is_error, Some(true));

    let reply = client
        .call_tool(params("ask", json!({"message": "hello"})))
        .await
        .unwrap();
    assert_ne!(reply.is_error, Some(true), "{}", text(&reply));
    assert!(!text(&reply).trim().is_empty());

    check_logging(&client, &mut logged).await;

    let _ = client.cancel().await;
    // Stopping the server ends the MCP sessions' streams too, so the
    // graceful shutdown finishes.
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
