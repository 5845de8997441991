//! One configured MCP server: connecting to it (a child process on stdio or
//! a streamable HTTP endpoint), the state its tools read, and the task that
//! keeps it running, restarting it with exponential backoff.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::service::{Peer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{watch, Notify};
use troupe_config::mcp::{McpServerConfig, McpTransport, ServerSandbox};
use troupe_tools::process::ProcessLimits;
use troupe_tools::shell::SandboxSettings;

use crate::tool::{McpTool, NAME_SEPARATOR};

/// Why a server could not be connected to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The stdio server's program could not be started.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The MCP handshake failed (the program is not an MCP server, the URL
    /// answers something else, ...).
    #[error("the MCP handshake failed: {0}")]
    Initialize(String),
    /// The server did not list its tools.
    #[error("listing its tools failed: {0}")]
    ListTools(String),
    /// It did not get this far within `startup_timeout_s`.
    #[error("it did not finish starting within {0} s")]
    Timeout(u64),
}

/// What a server is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerPhase {
    /// The first connection is being made.
    Starting,
    /// Connected; its tools can be called.
    Ready,
    /// The connection ended or failed; the next attempt is after a delay.
    Restarting {
        /// Failed attempts in a row (1 after a working connection ended).
        attempt: u32,
        /// Why the last connection ended or failed.
        reason: String,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// Shut down with troupe.
    Stopped,
}

/// A server's state, as [`crate::McpTools::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStatus {
    /// The configured name.
    pub name: String,
    /// What it is doing.
    pub phase: ServerPhase,
    /// The child process of a stdio server while it runs.
    pub pid: Option<u32>,
    /// Its tools' troupe names, as last listed.
    pub tools: Vec<String>,
    /// Connections made so far (1 after boot, 2 after the first restart, ...).
    pub connections: u64,
}

/// How stdio servers are started: in `[tools.sandbox]`'s sandbox, under
/// `[tools.shell]`'s memory and file limits.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The sandbox settings (mode, helper, extra paths, process cap).
    pub sandbox: SandboxSettings,
    /// Address space and open files per process (no CPU-time limit: a
    /// server runs as long as troupe does).
    pub limits: ProcessLimits,
}

impl Launch {
    /// What `[tools]` sets.
    pub fn from_config(tools: &troupe_config::ToolsConfig) -> Launch {
        Launch {
            sandbox: SandboxSettings::from_config(&tools.sandbox),
            limits: ProcessLimits::from_config(&tools.shell),
        }
    }
}

/// The server as its tools and its supervisor see it.
pub(crate) struct ServerShared {
    pub(crate) config: McpServerConfig,
    launch: Launch,
    // A std Mutex: held to clone or swap the connection, never across an await.
    conn: Mutex<Conn>,
    status: watch::Sender<ServerStatus>,
    broken: Notify,
}

#[derive(Default)]
struct Conn {
    peer: Option<Peer<RoleClient>>,
    tools: Vec<Arc<McpTool>>,
}

impl ServerShared {
    pub(crate) fn new(config: McpServerConfig, launch: Launch) -> Arc<ServerShared> {
        let status = ServerStatus {
            name: config.name.clone(),
            phase: ServerPhase::Starting,
            pid: None,
            tools: Vec::new(),
            connections: 0,
        };
        Arc::new(ServerShared {
            config,
            launch,
            conn: Mutex::new(Conn::default()),
            status: watch::Sender::new(status),
            broken: Notify::new(),
        })
    }

    pub(crate) fn status(&self) -> ServerStatus {
        self.status.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ServerStatus> {
        self.status.subscribe()
    }

    /// The connection to call tools on, or why there is none.
    pub(crate) fn peer(&self) -> Result<Peer<RoleClient>, String> {
        let peer = self.conn.lock().ok().and_then(|c| c.peer.clone());
        peer.ok_or_else(|| self.unavailable_reason())
    }

    /// The tools callable now (none while the server is down).
    pub(crate) fn available(&self) -> Vec<Arc<McpTool>> {
        match self.conn.lock() {
            Ok(c) if c.peer.is_some() => c.tools.clone(),
            _ => Vec::new(),
        }
    }

    /// A tool of this server by troupe name; `Err` while the server is down.
    pub(crate) fn lookup(&self, name: &str) -> Option<Result<Arc<McpTool>, String>> {
        let (up, tool) = match self.conn.lock() {
            Ok(c) => (
                c.peer.is_some(),
                c.tools
                    .iter()
                    .find(|t: &&Arc<McpTool>| troupe_tools::Tool::name(t.as_ref()) == name)
                    .cloned(),
            ),
            Err(_) => (false, None),
        };
        match (up, tool) {
            (true, Some(tool)) => Some(Ok(tool)),
            (true, None) => None,
            // Down: a tool it had, or any name with its prefix when it never
            // listed its tools, gets the reason rather than "no such tool".
            (false, Some(_)) => Some(Err(self.unavailable_reason())),
            (false, None) => {
                let prefix = format!("{}{NAME_SEPARATOR}", self.config.name);
                name.starts_with(&prefix)
                    .then(|| Err(self.unavailable_reason()))
            }
        }
    }

    /// Called by a tool whose call found the transport gone.
    pub(crate) fn connection_broken(&self) {
        self.broken.notify_waiters();
    }

    fn unavailable_reason(&self) -> String {
        let name = &self.config.name;
        match self.status().phase {
            ServerPhase::Starting => format!(
                "the MCP server `{name}` is still starting; its tools are unavailable until it is up"
            ),
            ServerPhase::Restarting {
                reason, retry_in, ..
            } => format!(
                "the MCP server `{name}` is restarting ({reason}; next attempt in {} ms); its tools are unavailable until it is back",
                retry_in.as_millis()
            ),
            ServerPhase::Stopped => format!("the MCP server `{name}` has been stopped"),
            ServerPhase::Ready => {
                format!("the MCP server `{name}` is restarting; its tools are unavailable until it is back")
            }
        }
    }

    fn set_ready(
        self: &Arc<Self>,
        peer: Peer<RoleClient>,
        tools: &[rmcp::model::Tool],
        pid: Option<u32>,
    ) {
        let tools: Vec<Arc<McpTool>> = tools
            .iter()
            .map(|t| Arc::new(McpTool::new(Arc::clone(self), t)))
            .collect();
        let names = tools
            .iter()
            .map(|t| troupe_tools::Tool::name(t.as_ref()).to_string())
            .collect();
        if let Ok(mut c) = self.conn.lock() {
            *c = Conn {
                peer: Some(peer),
                tools,
            };
        }
        self.status.send_modify(|s| {
            s.phase = ServerPhase::Ready;
            s.pid = pid;
            s.tools = names;
            s.connections += 1;
        });
    }

    fn set_down(&self, phase: ServerPhase) {
        // The tools stay known, so that calls to them say why they fail.
        if let Ok(mut c) = self.conn.lock() {
            c.peer = None;
        }
        self.status.send_modify(|s| {
            s.phase = phase;
            s.pid = None;
        });
    }

    /// Breaks the tools' references back to this server (they hold an Arc
    /// of it) so that both can be freed.
    pub(crate) fn stop(&self) {
        if let Ok(mut c) = self.conn.lock() {
            *c = Conn::default();
        }
        self.status.send_modify(|s| {
            s.phase = ServerPhase::Stopped;
            s.pid = None;
        });
    }
}

/// Keeps `server` connected until the task is aborted: connect, list the
/// tools, wait for the connection to end, back off, again.
pub(crate) async fn supervise(server: Arc<ServerShared>) {
    let mut failures: u32 = 0;
    loop {
        let (was_ready, reason) = run_once(&server).await;
        failures = if was_ready {
            1
        } else {
            failures.saturating_add(1)
        };
        let retry_in = backoff(&server.config, failures);
        tracing::warn!(
            server = %server.config.name,
            %reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "MCP server is down; restarting"
        );
        server.set_down(ServerPhase::Restarting {
            attempt: failures,
            reason,
            retry_in,
        });
        tokio::time::sleep(retry_in).await;
    }
}

/// `backoff_ms` doubled per failure in a row, at most `backoff_max_ms`.
pub(crate) fn backoff(config: &McpServerConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    config
        .backoff
        .saturating_mul(1u32 << doublings)
        .min(config.backoff_max)
}

/// One connection, from start to end: whether it got ready, and why it ended.
async fn run_once(server: &Arc<ServerShared>) -> (bool, String) {
    let config = &server.config;
    let startup = config.startup_timeout;
    let timeout = ConnectError::Timeout(startup.as_secs());
    let connecting = connect(config, &server.launch);
    let connected = match tokio::time::timeout(startup, connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return (false, e.to_string()),
        Err(_) => return (false, timeout.to_string()),
    };
    // The lifeline lives until this connection is over.
    let Connected {
        service,
        pid,
        _lifeline: _lifeline_held,
    } = connected;
    let tools = match tokio::time::timeout(startup, service.peer().list_all_tools()).await {
        Ok(Ok(tools)) => tools,
        Ok(Err(e)) => return (false, ConnectError::ListTools(e.to_string()).to_string()),
        Err(_) => return (false, timeout.to_string()),
    };
    tracing::info!(server = %config.name, tools = tools.len(), ?pid, "MCP server connected");
    server.set_ready(service.peer().clone(), &tools, pid);
    let ended = tokio::select! {
        quit = service.waiting() => match quit {
            Ok(reason) => format!("the connection ended ({reason:?})"),
            Err(e) => format!("the connection's task failed: {e}"),
        },
        // Dropping the service (in the other branch's future) closes the
        // transport and kills a stdio child.
        () = server.broken.notified() => "the connection broke during a call".to_string(),
    };
    (true, ended)
}

type Client = RunningService<RoleClient, ()>;

async fn connect(config: &McpServerConfig, launch: &Launch) -> Result<Connected, ConnectError> {
    let init = |e: rmcp::service::ClientInitializeError| ConnectError::Initialize(e.to_string());
    match &config.transport {
        McpTransport::Stdio {
            command,
            args,
            env,
            cwd,
            sandbox,
        } => {
            let spawn = |source| ConnectError::Spawn {
                command: command.clone(),
                source,
            };
            let (cmd, lifeline) =
                stdio_command(command, args, env, cwd.as_deref(), sandbox, launch)
                    .map_err(spawn)?;
            let (process, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(spawn)?;
            // The child has its copy of the read end now.
            let lifeline = lifeline.map(|(_read, write)| write);
            let pid = process.id();
            if let Some(stderr) = stderr {
                tokio::spawn(forward_stderr(config.name.clone(), stderr));
            }
            let service = ().serve(process).await.map_err(init)?;
            Ok(Connected {
                service,
                pid,
                _lifeline: lifeline,
            })
        }
        McpTransport::Http { url, bearer_token } => {
            let mut transport = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            if let Some(token) = bearer_token {
                transport = transport.auth_header(token.clone());
            }
            let transport = StreamableHttpClientTransport::from_config(transport);
            let service = ().serve(transport).await.map_err(init)?;
            Ok(Connected {
                service,
                pid: None,
                _lifeline: None,
            })
        }
        #[allow(unreachable_patterns)]
        _ => Err(ConnectError::Initialize(
            "this transport is not supported".to_string(),
        )),
    }
}

/// A live connection. For a sandboxed stdio server, `_lifeline` is troupe's
/// end of the helper's lifeline: dropping it (with the connection) kills
/// the server and everything it started.
struct Connected {
    service: Client,
    pid: Option<u32>,
    _lifeline: Option<OwnedFd>,
}

/// The command that starts a stdio server: through the sandbox helper
/// unless `[tools.sandbox] mode = "off"`, with a scrubbed environment
/// (`PATH`, `HOME`, `LANG`, `TERM` and the server's `env`), so no key in
/// troupe's environment reaches it. With a sandbox, also the lifeline
/// pipe: (read end for the child, write end to hold).
fn stdio_command(
    command: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    cwd: Option<&Path>,
    grant: &ServerSandbox,
    launch: &Launch,
) -> std::io::Result<(tokio::process::Command, Option<(OwnedFd, OwnedFd)>)> {
    let path_var = troupe_tools::process::parent_path();
    // Found here, so a missing program is "could not start" whether or not
    // the helper stands between.
    let program = find_program(command, cwd, &path_var).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such program on PATH")
    })?;
    let mut read = grant.read.clone();
    read.extend(program_prefix(&program));
    read.extend(cwd.map(Path::to_path_buf));
    let sandboxing = launch
        .sandbox
        .for_server(read, grant.write.clone(), grant.network, launch.limits)
        .map_err(std::io::Error::other)?;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (program, argv) = match &sandboxing {
        Some(s) => troupe_sandbox::wrap(&s.helper, &s.policy, command.as_ref(), &args)
            .map_err(std::io::Error::other)?,
        None => (OsString::from(command), args),
    };
    // Inside the sandbox /tmp is the server's own (and HOME with it).
    let home = match &sandboxing {
        Some(_) => PathBuf::from("/tmp"),
        None => std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(argv)
        .env_clear()
        .envs(troupe_tools::process::scrubbed_env(&path_var, &home))
        .envs(env);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let lifeline = match sandboxing {
        Some(_) => {
            let (read, write) = troupe_sandbox::lifeline_pipe()?;
            let read_fd = read.as_raw_fd();
            // SAFETY: inherit_lifeline only calls dup2/fcntl, which are
            // async-signal-safe; `read` stays open in the parent until the
            // child has been spawned.
            unsafe {
                cmd.pre_exec(move || troupe_sandbox::inherit_lifeline(read_fd));
            }
            Some((read, write))
        }
        None => None,
    };
    Ok((cmd, lifeline))
}

/// `command` as a file: itself when it names a path (relative to the
/// server's `cwd`, where it will be started), else the first match in
/// `path_var`.
fn find_program(command: &str, cwd: Option<&Path>, path_var: &str) -> Option<PathBuf> {
    if command.contains('/') {
        let path = match cwd {
            Some(cwd) => cwd.join(command),
            None => PathBuf::from(command),
        };
        return path.is_file().then_some(path);
    }
    std::env::split_paths(path_var)
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// The installation prefix of `program` (`/opt/node` for
/// `/opt/node/bin/node`), so that an interpreter outside the system
/// directories can run; only its own directory when that is not a `bin`
/// of a prefix, or when the prefix would be `/` or the user's home (which
/// holds troupe's data and keys: `~/bin/server` grants `~/bin` alone).
fn program_prefix(program: &Path) -> Option<PathBuf> {
    let real = program.canonicalize().ok()?;
    let dir = real.parent()?;
    let home = std::env::var_os("HOME").and_then(|h| PathBuf::from(h).canonicalize().ok());
    let prefix = dir
        .parent()
        .filter(|_| dir.file_name().is_some_and(|n| n == "bin"))
        .filter(|p| p.parent().is_some() && Some(*p) != home.as_deref());
    Some(prefix.unwrap_or(dir).to_path_buf())
}

/// A stdio server's stderr goes to troupe's log (never to stdout, which may
/// be `troupe mcp serve`'s own protocol stream).
async fn forward_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(server = %server, "{line}");
    }
}
