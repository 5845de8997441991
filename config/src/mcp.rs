//! The `[mcp]` section: MCP servers troupe connects to at boot. Their tools
//! join the workers' registry as `<server>__<tool>`, go through the same
//! approval policy at the server's risk level, and are restarted with
//! backoff when the server dies.
//!
//! ```toml
//! [[mcp.servers]]
//! name = "everything"              # letters, digits, `-`, `_`; prefixes its tools
//! command = "npx"                  # a program started with stdio as the protocol…
//! args = ["-y", "@modelcontextprotocol/server-everything"]
//! env = { LOG_LEVEL = "warn" }     # its environment: these, PATH, HOME, LANG, TERM
//! cwd = "."                        # relative to this file
//! read = ["/opt/mcp"]              # the sandbox: more read-and-execute paths,
//! write = ["notes"]                # …writable paths (relative to this file),
//! network = false                  # …and the network (default: risk = "network")
//! risk = "execute"                 # read | write | execute (default) | network
//! enabled = true
//! backoff_ms = 500                 # first restart delay, doubled per failure…
//! backoff_max_ms = 30000           # …up to this
//! startup_timeout_s = 60           # boot waits this long for the first connection
//! call_timeout_s = 120             # one tool call may take this long
//!
//! [[mcp.servers]]
//! name = "remote"
//! url = "http://127.0.0.1:3001/mcp"  # …or a streamable HTTP endpoint
//! bearer_token = "…"                 # sent as `Authorization: Bearer …`
//! risk = "network"
//! ```
//!
//! Raw and resolved types sit together here, as in [`crate::tools`].

use crate::backoff::resolve_backoff;
use crate::load::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// First restart delay unless configured.
pub const DEFAULT_BACKOFF_MS: u64 = 500;
/// Largest restart delay unless configured.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
/// Seconds boot waits for a server's first connection unless configured.
pub const DEFAULT_STARTUP_TIMEOUT_S: u64 = 60;
/// Seconds one tool call may take unless configured.
pub const DEFAULT_CALL_TIMEOUT_S: u64 = 120;

/// `[mcp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// `[[mcp.servers]]`
    #[serde(default)]
    pub servers: Vec<RawMcpServer>,
}

/// `[[mcp.servers]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpServer {
    /// The server's name; its tools are called `<name>__<tool>`.
    pub name: Option<String>,
    /// The program to start (stdio transport).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Option<Vec<String>>,
    /// Environment variables added for it.
    pub env: Option<BTreeMap<String, String>>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Paths the sandboxed server may read and execute.
    pub read: Option<Vec<PathBuf>>,
    /// Paths the sandboxed server may write.
    pub write: Option<Vec<PathBuf>>,
    /// Whether the sandboxed server may reach the network.
    pub network: Option<bool>,
    /// A streamable HTTP endpoint (instead of `command`).
    pub url: Option<String>,
    /// Bearer token sent to `url`.
    pub bearer_token: Option<String>,
    /// `read`, `write`, `execute` or `network`.
    pub risk: Option<String>,
    /// `false` keeps the entry but does not start it.
    pub enabled: Option<bool>,
    /// First restart delay, ms.
    pub backoff_ms: Option<u64>,
    /// Largest restart delay, ms.
    pub backoff_max_ms: Option<u64>,
    /// Seconds boot waits for the first connection.
    pub startup_timeout_s: Option<u64>,
    /// Seconds one tool call may take.
    pub call_timeout_s: Option<u64>,
}

/// `[mcp]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct McpConfig {
    /// The servers, enabled or not, in file order.
    pub servers: Vec<McpServerConfig>,
}

impl McpConfig {
    /// The servers to start.
    pub fn enabled(&self) -> impl Iterator<Item = &McpServerConfig> {
        self.servers.iter().filter(|s| s.enabled)
    }
}

/// How much harm an MCP server's tools can do (troupe-tools' risk levels;
/// named again here because config sits below tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpRisk {
    /// Only reads.
    Read,
    /// Changes things.
    Write,
    /// Runs programs (the default: an MCP tool can do anything).
    Execute,
    /// Reaches other machines.
    Network,
}

/// How troupe talks to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpTransport {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its environment besides `PATH`, `HOME`, `LANG` and `TERM`.
        env: BTreeMap<String, String>,
        /// Working directory; none: troupe's.
        cwd: Option<PathBuf>,
        /// What it may reach inside `[tools.sandbox]`'s sandbox.
        sandbox: ServerSandbox,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// Sent as `Authorization: Bearer <token>`.
        bearer_token: Option<String>,
    },
}

/// What a stdio server's sandbox grants besides the system directories,
/// its program's prefix and its working directory (read) and a private
/// `/tmp` that is its HOME (write). The server gets `PATH`, `HOME`, `LANG`,
/// `TERM` and its `env`, nothing else of troupe's environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerSandbox {
    /// More read-and-execute paths (absolute).
    pub read: Vec<PathBuf>,
    /// Writable paths (absolute).
    pub write: Vec<PathBuf>,
    /// Whether it may reach the network (default: its risk is `network`).
    pub network: bool,
}

/// One MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpServerConfig {
    /// Its name, the prefix of its tools' names.
    pub name: String,
    /// How troupe reaches it.
    pub transport: McpTransport,
    /// The risk level of every tool it offers.
    pub risk: McpRisk,
    /// Whether it is started at boot.
    pub enabled: bool,
    /// First restart delay.
    pub backoff: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
    /// How long boot waits for the first connection.
    pub startup_timeout: Duration,
    /// How long one tool call may take.
    pub call_timeout: Duration,
}

impl McpServerConfig {
    /// A stdio server with every default (for tests and embedding).
    pub fn stdio(name: &str, command: &str, args: &[&str]) -> McpServerConfig {
        McpServerConfig::with_transport(
            name,
            McpTransport::Stdio {
                command: command.to_string(),
                args: args.iter().map(|a| a.to_string()).collect(),
                env: BTreeMap::new(),
                cwd: None,
                sandbox: ServerSandbox::default(),
            },
        )
    }

    /// A streamable HTTP server with every default.
    pub fn http(name: &str, url: &str) -> McpServerConfig {
        McpServerConfig::with_transport(
            name,
            McpTransport::Http {
                url: url.to_string(),
                bearer_token: None,
            },
        )
    }

    fn with_transport(name: &str, transport: McpTransport) -> McpServerConfig {
        McpServerConfig {
            name: name.to_string(),
            transport,
            risk: McpRisk::Execute,
            enabled: true,
            backoff: Duration::from_millis(DEFAULT_BACKOFF_MS),
            backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
            startup_timeout: Duration::from_secs(DEFAULT_STARTUP_TIMEOUT_S),
            call_timeout: Duration::from_secs(DEFAULT_CALL_TIMEOUT_S),
        }
    }
}

pub(crate) fn resolve_mcp(
    raw: RawMcp,
    base: &Path,
    source: &ConfigSource,
) -> Result<McpConfig, ConfigError> {
    let mut servers: Vec<McpServerConfig> = Vec::new();
    for (i, raw) in raw.servers.into_iter().enumerate() {
        let server = resolve_server(raw, i, base, source)?;
        if servers.iter().any(|s| s.name == server.name) {
            return Err(source.invalid(
                &format!("mcp.servers[{i}].name"),
                &format!("`{}` names two servers", server.name),
            ));
        }
        servers.push(server);
    }
    Ok(McpConfig { servers })
}

fn resolve_server(
    raw: RawMcpServer,
    i: usize,
    base: &Path,
    source: &ConfigSource,
) -> Result<McpServerConfig, ConfigError> {
    let key = |field: &str| format!("mcp.servers[{i}].{field}");
    let name = raw
        .name
        .ok_or_else(|| source.invalid(&key("name"), "is required"))?;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(source.invalid(
            &key("name"),
            &format!("`{name}` must be 1-64 letters, digits, `-` or `_`"),
        ));
    }
    let risk = resolve_risk(raw.risk.as_deref(), &key, source)?;
    let absolute = |c: PathBuf| if c.is_absolute() { c } else { base.join(c) };
    let transport = match (raw.command, raw.url) {
        (Some(_), Some(_)) => {
            return Err(source.invalid(
                &key("url"),
                "a server has either `command` (stdio) or `url` (HTTP), not both",
            ))
        }
        (None, None) => {
            return Err(source.invalid(
                &key("command"),
                "a server needs `command` (stdio) or `url` (streamable HTTP)",
            ))
        }
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err(source.invalid(&key("command"), "must not be empty"));
            }
            if raw.bearer_token.is_some() {
                return Err(source.invalid(&key("bearer_token"), "is only sent to a `url`"));
            }
            McpTransport::Stdio {
                command,
                args: raw.args.unwrap_or_default(),
                env: raw.env.unwrap_or_default(),
                cwd: raw.cwd.map(absolute),
                sandbox: ServerSandbox {
                    read: raw
                        .read
                        .unwrap_or_default()
                        .into_iter()
                        .map(absolute)
                        .collect(),
                    write: raw
                        .write
                        .unwrap_or_default()
                        .into_iter()
                        .map(absolute)
                        .collect(),
                    network: raw.network.unwrap_or(risk == McpRisk::Network),
                },
            }
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(source.invalid(
                    &key("url"),
                    &format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
            for (field, set) in [
                ("args", raw.args.is_some()),
                ("env", raw.env.is_some()),
                ("cwd", raw.cwd.is_some()),
                ("read", raw.read.is_some()),
                ("write", raw.write.is_some()),
                ("network", raw.network.is_some()),
            ] {
                if set {
                    return Err(
                        source.invalid(&key(field), "is only read for a `command` (stdio) server")
                    );
                }
            }
            McpTransport::Http {
                url,
                bearer_token: raw.bearer_token,
            }
        }
    };
    let (backoff, backoff_max) = resolve_backoff(
        raw.backoff_ms,
        raw.backoff_max_ms,
        (DEFAULT_BACKOFF_MS, DEFAULT_BACKOFF_MAX_MS),
        key,
        source,
    )?;
    let seconds = |field: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(source.invalid(&key(field), "must be at least 1")),
        Some(n) => Ok(Duration::from_secs(n)),
        None => Ok(Duration::from_secs(default)),
    };
    Ok(McpServerConfig {
        name,
        transport,
        risk,
        enabled: raw.enabled.unwrap_or(true),
        backoff,
        backoff_max,
        startup_timeout: seconds(
            "startup_timeout_s",
            raw.startup_timeout_s,
            DEFAULT_STARTUP_TIMEOUT_S,
        )?,
        call_timeout: seconds("call_timeout_s", raw.call_timeout_s, DEFAULT_CALL_TIMEOUT_S)?,
    })
}

fn resolve_risk(
    risk: Option<&str>,
    key: &impl Fn(&str) -> String,
    source: &ConfigSource,
) -> Result<McpRisk, ConfigError> {
    Ok(match risk {
        None | Some("execute") => McpRisk::Execute,
        Some("read") => McpRisk::Read,
        Some("write") => McpRisk::Write,
        Some("network") => McpRisk::Network,
        Some(other) => {
            return Err(source.invalid(
                &key("risk"),
                &format!("`{other}` is not one of read, write, execute, network"),
            ))
        }
    })
}
