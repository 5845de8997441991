//! The `[tools]` and `[approval]` sections: what the workers' tools may do
//! (output size, process limits, hosts, search provider, git remote) and
//! which tool calls need a person's approval.
//!
//! Raw types (serde, every field optional) sit next to their resolved twins
//! here rather than in `raw.rs`/`resolved.rs` so that the tools crate's whole
//! configuration reads in one file.

use crate::load::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Bytes of tool output the model sees before it is truncated.
pub const DEFAULT_OUTPUT_MAX_BYTES: usize = 16 * 1024;
/// Seconds a shell command runs when the call names no timeout.
pub const DEFAULT_SHELL_TIMEOUT_S: u64 = 60;
/// The longest timeout a call may ask for.
pub const DEFAULT_SHELL_MAX_TIMEOUT_S: u64 = 600;
/// CPU seconds a child process may use (RLIMIT_CPU).
pub const DEFAULT_CPU_SECONDS: u64 = 300;
/// Address space a child process may map, in MiB (RLIMIT_AS).
pub const DEFAULT_MEMORY_MB: u64 = 4096;
/// Open files a child process may hold (RLIMIT_NOFILE).
pub const DEFAULT_OPEN_FILES: u64 = 256;
/// Largest HTTP response body read, in bytes.
pub const DEFAULT_HTTP_MAX_BYTES: usize = 1024 * 1024;
/// Seconds an HTTP request may take.
pub const DEFAULT_HTTP_TIMEOUT_S: u64 = 30;
/// DuckDuckGo's HTML endpoint.
pub const DEFAULT_SEARCH_BASE_URL: &str = "https://html.duckduckgo.com/html/";

/// `[tools]` as written on disk.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTools {
    /// Bytes of a tool's output shown to the model.
    pub output_max_bytes: Option<usize>,
    /// The Python interpreter venvs are made from.
    pub python: Option<String>,
    /// `[tools.shell]`
    #[serde(default)]
    pub shell: RawShell,
    /// `[tools.http]`
    #[serde(default)]
    pub http: RawHttp,
    /// `[tools.search]`
    #[serde(default)]
    pub search: RawSearch,
    /// `[tools.git]`
    #[serde(default)]
    pub git: RawGit,
    /// `[tools.sandbox]`
    #[serde(default)]
    pub sandbox: RawSandbox,
}

/// `[tools.sandbox]`: the sandbox every process a tool starts runs in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    /// `required`, `best_effort` or `off`.
    pub mode: Option<String>,
    /// Per tool: whether it may reach the network (`python_install = true`).
    pub network: Option<BTreeMap<String, bool>>,
    /// More directories tools may read and execute.
    pub extra_read: Option<Vec<PathBuf>>,
    /// More directories tools may write.
    pub extra_write: Option<Vec<PathBuf>>,
    /// Processes (and threads) one tool call may have at once.
    pub processes: Option<u64>,
    /// Memory of all of one call's processes together, MiB.
    pub memory_mb: Option<u64>,
}

/// `[tools.shell]`: limits for every process a tool starts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShell {
    /// Seconds a command runs when the call names no timeout.
    pub timeout_s: Option<u64>,
    /// The longest timeout a call may ask for.
    pub max_timeout_s: Option<u64>,
    /// RLIMIT_CPU, seconds.
    pub cpu_seconds: Option<u64>,
    /// RLIMIT_AS, MiB.
    pub memory_mb: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
}

/// `[tools.http]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Hosts the http tools may reach: `docs.rs` or `*.python.org`.
    pub allow_hosts: Option<Vec<String>>,
    /// Largest response body read, in bytes.
    pub max_bytes: Option<usize>,
    /// Seconds a request may take.
    pub timeout_s: Option<u64>,
}

/// `[tools.search]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// `duckduckgo` or `none`.
    pub provider: Option<String>,
    /// The provider's endpoint.
    pub base_url: Option<String>,
}

/// `[tools.git]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGit {
    /// The remote `git_clone`, `git_pull` and `git_push` talk to.
    pub remote: Option<String>,
}

/// `[approval]` as written on disk.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    /// Policy for tools that only read.
    pub read: Option<String>,
    /// Policy for tools that change the workspace.
    pub write: Option<String>,
    /// Policy for tools that run programs.
    pub execute: Option<String>,
    /// Policy for tools that reach the network.
    pub network: Option<String>,
    /// Per-tool overrides: `shell = "deny"`.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

/// Limits and endpoints for the workers' tools.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolsConfig {
    /// Bytes of a tool's output shown to the model.
    pub output_max_bytes: usize,
    /// The Python interpreter venvs are made from.
    pub python: String,
    /// Process limits.
    pub shell: ShellConfig,
    /// HTTP access.
    pub http: HttpConfig,
    /// Web search.
    pub search: SearchConfig,
    /// The git remote.
    pub git: GitConfig,
    /// The sandbox around every process a tool starts.
    pub sandbox: SandboxConfig,
}

/// Processes one tool call may have at once, by default.
pub const DEFAULT_SANDBOX_PROCESSES: u64 = 256;
/// Memory (anonymous, resident) of all of one call's processes together,
/// MiB, by default.
pub const DEFAULT_SANDBOX_MEMORY_MB: u64 = 4096;

/// The tools that start processes, which `[tools.sandbox.network]` may name,
/// with whether each reaches the network by default.
pub const SANDBOXED_TOOLS: [(&str, bool); 4] = [
    ("shell", false),
    ("python_venv", false),
    ("python_run", false),
    ("python_install", true),
];

/// How strictly the sandbox is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Every layer (namespaces, Landlock, seccomp, limits), or the tool
    /// does not run and the error names what the kernel lacks.
    Required,
    /// Every layer the kernel offers; troupe warns once about the others.
    BestEffort,
    /// No sandbox: tools run with troupe's own rights.
    Off,
}

impl SandboxMode {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best_effort",
            SandboxMode::Off => "off",
        }
    }
}

/// `[tools.sandbox]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// How strictly.
    pub mode: SandboxMode,
    /// Whether each process-starting tool may reach the network (every
    /// name of [`SANDBOXED_TOOLS`] present).
    pub network: BTreeMap<String, bool>,
    /// More read-and-execute directories (absolute).
    pub extra_read: Vec<PathBuf>,
    /// More writable directories (absolute).
    pub extra_write: Vec<PathBuf>,
    /// Processes one call may have at once.
    pub processes: u64,
    /// Memory of all of one call's processes together, MiB.
    pub memory_mb: u64,
}

impl SandboxConfig {
    /// Whether `tool` may reach the network (false for a tool not listed).
    pub fn network_for(&self, tool: &str) -> bool {
        self.network.get(tool).copied().unwrap_or(false)
    }
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            mode: SandboxMode::Required,
            network: SANDBOXED_TOOLS
                .iter()
                .map(|(name, on)| (name.to_string(), *on))
                .collect(),
            extra_read: Vec::new(),
            extra_write: Vec::new(),
            processes: DEFAULT_SANDBOX_PROCESSES,
            memory_mb: DEFAULT_SANDBOX_MEMORY_MB,
        }
    }
}

/// Limits for every process a tool starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShellConfig {
    /// Timeout when the call names none.
    pub default_timeout: Duration,
    /// The longest timeout a call may ask for.
    pub max_timeout: Duration,
    /// RLIMIT_CPU, seconds.
    pub cpu_seconds: u64,
    /// RLIMIT_AS, MiB.
    pub memory_mb: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
}

/// HTTP access for the http tools.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Allowed hosts, lower case: exact names or `*.domain`.
    pub allow_hosts: Vec<String>,
    /// Largest response body read.
    pub max_bytes: usize,
    /// Time a request may take.
    pub timeout: Duration,
}

/// Which web search backend the `web_search` tool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchProviderKind {
    /// No search tool.
    None,
    /// DuckDuckGo's HTML endpoint.
    DuckDuckGo,
}

/// Web search.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchConfig {
    /// The backend.
    pub provider: SearchProviderKind,
    /// The backend's endpoint.
    pub base_url: String,
}

/// The git remote the git network tools use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GitConfig {
    /// A URL or path; `None` leaves out clone, pull and push.
    pub remote: Option<String>,
}

/// What happens when a tool is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Run it.
    Allow,
    /// Ask the person first.
    Ask,
    /// Refuse; the model is told why.
    Deny,
}

impl Policy {
    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Ask => "ask",
            Policy::Deny => "deny",
        }
    }
}

/// Approval policies per risk level, with per-tool overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalConfig {
    /// Tools that only read.
    pub read: Policy,
    /// Tools that change the workspace.
    pub write: Policy,
    /// Tools that run programs.
    pub execute: Policy,
    /// Tools that reach the network.
    pub network: Policy,
    /// Overrides by tool name.
    pub tools: BTreeMap<String, Policy>,
}

impl Default for ToolsConfig {
    fn default() -> ToolsConfig {
        ToolsConfig {
            output_max_bytes: DEFAULT_OUTPUT_MAX_BYTES,
            python: "python3".to_string(),
            shell: ShellConfig {
                default_timeout: Duration::from_secs(DEFAULT_SHELL_TIMEOUT_S),
                max_timeout: Duration::from_secs(DEFAULT_SHELL_MAX_TIMEOUT_S),
                cpu_seconds: DEFAULT_CPU_SECONDS,
                memory_mb: DEFAULT_MEMORY_MB,
                open_files: DEFAULT_OPEN_FILES,
            },
            http: HttpConfig {
                allow_hosts: Vec::new(),
                max_bytes: DEFAULT_HTTP_MAX_BYTES,
                timeout: Duration::from_secs(DEFAULT_HTTP_TIMEOUT_S),
            },
            search: SearchConfig {
                provider: SearchProviderKind::DuckDuckGo,
                base_url: DEFAULT_SEARCH_BASE_URL.to_string(),
            },
            git: GitConfig::default(),
            sandbox: SandboxConfig::default(),
        }
    }
}

impl Default for ApprovalConfig {
    fn default() -> ApprovalConfig {
        ApprovalConfig {
            read: Policy::Allow,
            write: Policy::Allow,
            execute: Policy::Ask,
            network: Policy::Ask,
            tools: BTreeMap::new(),
        }
    }
}

pub(crate) fn resolve_tools(
    raw: RawTools,
    source: &ConfigSource,
) -> Result<ToolsConfig, ConfigError> {
    let d = ToolsConfig::default();
    let output_max_bytes = raw.output_max_bytes.unwrap_or(d.output_max_bytes);
    if !(256..=64 << 20).contains(&output_max_bytes) {
        return Err(source.invalid(
            "tools.output_max_bytes",
            &format!("{output_max_bytes} is outside 256..=67108864"),
        ));
    }
    let python = raw.python.unwrap_or(d.python);
    if python.trim().is_empty() {
        return Err(source.invalid("tools.python", "must not be empty"));
    }
    let shell = resolve_shell(raw.shell, d.shell, source)?;
    let sandbox = resolve_sandbox(raw.sandbox, d.sandbox, source)?;
    let http = resolve_http(raw.http, d.http, source)?;
    let provider = match raw.search.provider.as_deref() {
        None | Some("duckduckgo") => SearchProviderKind::DuckDuckGo,
        Some("none") => SearchProviderKind::None,
        Some(other) => {
            return Err(source.invalid(
                "tools.search.provider",
                &format!("`{other}` is not one of duckduckgo, none"),
            ))
        }
    };
    let base_url = raw.search.base_url.unwrap_or(d.search.base_url);
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(source.invalid(
            "tools.search.base_url",
            &format!("`{base_url}` is not an http:// or https:// URL"),
        ));
    }
    let remote = match raw.git.remote {
        Some(r) if r.trim().is_empty() => {
            return Err(source.invalid("tools.git.remote", "must not be empty"))
        }
        other => other,
    };
    Ok(ToolsConfig {
        output_max_bytes,
        python,
        shell,
        http,
        search: SearchConfig { provider, base_url },
        git: GitConfig { remote },
        sandbox,
    })
}

fn resolve_sandbox(
    raw: RawSandbox,
    d: SandboxConfig,
    source: &ConfigSource,
) -> Result<SandboxConfig, ConfigError> {
    let mode = match raw.mode.as_deref() {
        None => d.mode,
        Some("required") => SandboxMode::Required,
        Some("best_effort") => SandboxMode::BestEffort,
        Some("off") => SandboxMode::Off,
        Some(other) => {
            return Err(source.invalid(
                "tools.sandbox.mode",
                &format!("`{other}` is not one of required, best_effort, off"),
            ))
        }
    };
    let mut network = d.network;
    for (tool, on) in raw.network.unwrap_or_default() {
        if !SANDBOXED_TOOLS.iter().any(|(name, _)| *name == tool) {
            let names: Vec<&str> = SANDBOXED_TOOLS.iter().map(|(n, _)| *n).collect();
            return Err(source.invalid(
                &format!("tools.sandbox.network.{tool}"),
                &format!("`{tool}` starts no process; one of {}", names.join(", ")),
            ));
        }
        network.insert(tool, on);
    }
    let paths = |key: &str, list: Option<Vec<PathBuf>>| -> Result<Vec<PathBuf>, ConfigError> {
        let list = list.unwrap_or_default();
        for p in &list {
            if !p.is_absolute() {
                return Err(
                    source.invalid(key, &format!("`{}` is not an absolute path", p.display()))
                );
            }
            if p == std::path::Path::new("/") {
                return Err(source.invalid(key, "`/` would open the whole machine"));
            }
        }
        Ok(list)
    };
    let extra_read = paths("tools.sandbox.extra_read", raw.extra_read)?;
    let extra_write = paths("tools.sandbox.extra_write", raw.extra_write)?;
    let at_least = |key: &str, value: Option<u64>, default: u64, min: u64, what: &str| match value {
        None => Ok(default),
        Some(n) if n < min => {
            Err(source.invalid(key, &format!("{n} is too {what} (at least {min})")))
        }
        Some(n) => Ok(n),
    };
    let processes = at_least(
        "tools.sandbox.processes",
        raw.processes,
        d.processes,
        8,
        "few to run a shell pipeline",
    )?;
    let memory_mb = at_least(
        "tools.sandbox.memory_mb",
        raw.memory_mb,
        d.memory_mb,
        64,
        "little to start an interpreter (MiB)",
    )?;
    Ok(SandboxConfig {
        mode,
        network,
        extra_read,
        extra_write,
        processes,
        memory_mb,
    })
}

fn resolve_shell(
    raw: RawShell,
    d: ShellConfig,
    source: &ConfigSource,
) -> Result<ShellConfig, ConfigError> {
    let positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(source.invalid(key, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let timeout = positive(
        "tools.shell.timeout_s",
        raw.timeout_s,
        d.default_timeout.as_secs(),
    )?;
    let max = positive(
        "tools.shell.max_timeout_s",
        raw.max_timeout_s,
        d.max_timeout.as_secs(),
    )?;
    if timeout > max {
        return Err(source.invalid(
            "tools.shell.timeout_s",
            &format!("{timeout} is more than tools.shell.max_timeout_s ({max})"),
        ));
    }
    let memory_mb = positive("tools.shell.memory_mb", raw.memory_mb, d.memory_mb)?;
    if memory_mb < 64 {
        return Err(source.invalid(
            "tools.shell.memory_mb",
            &format!("{memory_mb} MiB is too little to start a shell (at least 64)"),
        ));
    }
    let open_files = positive("tools.shell.open_files", raw.open_files, d.open_files)?;
    if open_files < 16 {
        return Err(source.invalid(
            "tools.shell.open_files",
            &format!("{open_files} is too few to start a shell (at least 16)"),
        ));
    }
    Ok(ShellConfig {
        default_timeout: Duration::from_secs(timeout),
        max_timeout: Duration::from_secs(max),
        cpu_seconds: positive("tools.shell.cpu_seconds", raw.cpu_seconds, d.cpu_seconds)?,
        memory_mb,
        open_files,
    })
}

fn resolve_http(
    raw: RawHttp,
    d: HttpConfig,
    source: &ConfigSource,
) -> Result<HttpConfig, ConfigError> {
    let mut allow_hosts = Vec::new();
    for host in raw.allow_hosts.unwrap_or_default() {
        let h = host.trim().to_ascii_lowercase();
        let bare = h.strip_prefix("*.").unwrap_or(&h);
        let valid = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':');
        if !valid {
            return Err(source.invalid(
                "tools.http.allow_hosts",
                &format!("`{host}` is not a host name or `*.domain` pattern"),
            ));
        }
        allow_hosts.push(h);
    }
    let max_bytes = raw.max_bytes.unwrap_or(d.max_bytes);
    if max_bytes == 0 {
        return Err(source.invalid("tools.http.max_bytes", "must be at least 1"));
    }
    let timeout = match raw.timeout_s {
        Some(0) => return Err(source.invalid("tools.http.timeout_s", "must be at least 1")),
        Some(n) => Duration::from_secs(n),
        None => d.timeout,
    };
    Ok(HttpConfig {
        allow_hosts,
        max_bytes,
        timeout,
    })
}

pub(crate) fn resolve_approval(
    raw: RawApproval,
    source: &ConfigSource,
) -> Result<ApprovalConfig, ConfigError> {
    let d = ApprovalConfig::default();
    let policy = |key: &str, v: Option<&str>, default: Policy| match v {
        None => Ok(default),
        Some("allow") => Ok(Policy::Allow),
        Some("ask") => Ok(Policy::Ask),
        Some("deny") => Ok(Policy::Deny),
        Some(other) => {
            Err(source.invalid(key, &format!("`{other}` is not one of allow, ask, deny")))
        }
    };
    let mut tools = BTreeMap::new();
    for (name, value) in &raw.tools {
        let key = format!("approval.tools.{name}");
        tools.insert(name.clone(), policy(&key, Some(value), Policy::Ask)?);
    }
    Ok(ApprovalConfig {
        read: policy("approval.read", raw.read.as_deref(), d.read)?,
        write: policy("approval.write", raw.write.as_deref(), d.write)?,
        execute: policy("approval.execute", raw.execute.as_deref(), d.execute)?,
        network: policy("approval.network", raw.network.as_deref(), d.network)?,
        tools,
    })
}
