//! The `shell` tool: runs a command with `/bin/sh -c` in the workspace under
//! the limits of [`crate::process`].

use crate::observation::{truncation_note, Observation};
use crate::process::{self, ProcessLimits, ProcessOutcome, ProcessSpec, Sandboxing};
use crate::schema::object_schema;
use crate::tool::{args, RiskLevel, Tool, ToolContext, ToolError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use troupe_config::tools::{SandboxConfig, SandboxMode};

/// Settings shared by the tools that run programs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Timeout when a call names none.
    pub default_timeout: Duration,
    /// The longest timeout a call may ask for.
    pub max_timeout: Duration,
    /// rlimits.
    pub limits: ProcessLimits,
    /// Bytes of output the model sees (split between stdout and stderr).
    pub output_max_bytes: usize,
    /// `PATH` for the child.
    pub path_var: String,
    /// The sandbox around every process.
    pub sandbox: SandboxSettings,
}

/// `[tools.sandbox]` and the helper that sets the sandbox up.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The configuration.
    pub config: SandboxConfig,
    /// The helper: this executable (every program linking
    /// [`troupe_sandbox`] is one), or why it cannot be found.
    pub helper: Result<PathBuf, String>,
}

impl SandboxSettings {
    /// The sandbox `config` asks for, with this executable as the helper.
    pub fn from_config(config: &SandboxConfig) -> SandboxSettings {
        SandboxSettings {
            config: config.clone(),
            helper: troupe_sandbox::helper_path()
                .map_err(|e| format!("this program's own path is unknown: {e}")),
        }
    }

    /// No sandbox (`mode = "off"`).
    pub fn off() -> SandboxSettings {
        let mut config = SandboxConfig::default();
        config.mode = SandboxMode::Off;
        SandboxSettings {
            config,
            helper: Err("the sandbox is off".to_string()),
        }
    }

    /// The sandbox for one call of `tool` working in `workspace` with
    /// `home` as its HOME; `read` adds read-and-execute paths (an
    /// interpreter's prefix). `Ok(None)`: run without one (mode off, or
    /// best effort where no helper can be found); `Err`: the sandbox is
    /// required and cannot be had.
    pub fn for_call(
        &self,
        tool: &str,
        workspace: &Path,
        home: &Path,
        read: Vec<PathBuf>,
        limits: ProcessLimits,
    ) -> Result<Option<Sandboxing>, String> {
        self.sandboxing(Grant {
            read,
            write: vec![workspace.to_path_buf(), home.to_path_buf()],
            // The checkpoint history recovery depends on.
            read_only: vec![workspace.join(".git")],
            network: self.config.network_for(tool),
            limits: troupe_sandbox::Limits {
                cpu_seconds: limits.cpu_seconds,
                memory_mb: limits.memory_mb,
                open_files: limits.open_files,
                processes: self.config.processes,
                total_memory_mb: self.config.memory_mb,
            },
            lifeline_fd: None,
        })
    }

    /// The sandbox for a long-running server that speaks a protocol on its
    /// stdio (a stdio MCP server): `read` and `write` as configured for
    /// it, its own private `/tmp` as HOME, the network only when `network`.
    /// Its lifeline is [`troupe_sandbox::LIFELINE_FD`]; no CPU-time limit
    /// (it runs as long as troupe does). `Ok(None)` and `Err` as in
    /// [`SandboxSettings::for_call`].
    pub fn for_server(
        &self,
        read: Vec<PathBuf>,
        write: Vec<PathBuf>,
        network: bool,
        limits: ProcessLimits,
    ) -> Result<Option<Sandboxing>, String> {
        self.sandboxing(Grant {
            read,
            write,
            read_only: Vec::new(),
            network,
            limits: troupe_sandbox::Limits {
                cpu_seconds: u64::MAX,
                memory_mb: limits.memory_mb,
                open_files: limits.open_files,
                processes: self.config.processes,
                total_memory_mb: self.config.memory_mb,
            },
            lifeline_fd: Some(troupe_sandbox::LIFELINE_FD),
        })
    }

    /// Whether commands run sandboxed (the mode is not `off`).
    pub fn is_on(&self) -> bool {
        self.config.mode != SandboxMode::Off
    }

    fn sandboxing(&self, grant: Grant) -> Result<Option<Sandboxing>, String> {
        let mode = match self.config.mode {
            SandboxMode::Off => return Ok(None),
            SandboxMode::Required => troupe_sandbox::Mode::Required,
            SandboxMode::BestEffort => troupe_sandbox::Mode::BestEffort,
        };
        let helper = match &self.helper {
            Ok(helper) => helper.clone(),
            Err(why) if mode == troupe_sandbox::Mode::Required => {
                return Err(format!(
                    "the sandbox is required ([tools.sandbox] mode = \"required\") but {why}"
                ))
            }
            Err(why) => {
                warn_once(&format!("tools run WITHOUT a sandbox: {why}"));
                return Ok(None);
            }
        };
        if mode == troupe_sandbox::Mode::BestEffort {
            static PROBED: OnceLock<()> = OnceLock::new();
            PROBED.get_or_init(|| {
                let support = troupe_sandbox::probe(&helper);
                if !support.complete() {
                    warn_once(&format!(
                        "the sandbox runs without what this kernel lacks ([tools.sandbox] mode = \"best_effort\"): {}",
                        support.missing.join("; ")
                    ));
                }
            });
        }
        let Grant {
            mut read,
            mut write,
            read_only,
            network,
            limits,
            lifeline_fd,
        } = grant;
        write.extend(self.config.extra_write.iter().cloned());
        read.extend(self.config.extra_read.iter().cloned());
        Ok(Some(Sandboxing {
            helper,
            policy: troupe_sandbox::Policy {
                mode,
                read,
                write,
                read_only,
                network,
                connect_ports: Vec::new(),
                limits,
                lifeline_fd,
            },
        }))
    }
}

/// What one sandboxed command is granted, before `[tools.sandbox]`'s extra
/// paths are added.
struct Grant {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    network: bool,
    limits: troupe_sandbox::Limits,
    lifeline_fd: Option<i32>,
}

/// Says `message` once per process, loudly.
fn warn_once(message: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| tracing::warn!("SANDBOX: {message}"));
}

impl RunSettings {
    /// Settings from `[tools]`, with the parent's `PATH`.
    pub fn from_config(cfg: &troupe_config::ToolsConfig) -> RunSettings {
        RunSettings {
            default_timeout: cfg.shell.default_timeout,
            max_timeout: cfg.shell.max_timeout,
            limits: ProcessLimits::from_config(&cfg.shell),
            output_max_bytes: cfg.output_max_bytes,
            path_var: process::parent_path(),
            sandbox: SandboxSettings::from_config(&cfg.sandbox),
        }
    }

    /// The timeout for a call that asked for `requested` seconds.
    pub fn timeout_for(&self, requested: Option<u64>) -> Duration {
        requested
            .map(Duration::from_secs)
            .unwrap_or(self.default_timeout)
            .min(self.max_timeout)
    }
}

/// Formats a finished run for the model.
pub fn render_outcome(label: &str, outcome: &ProcessOutcome, timeout: Duration) -> Observation {
    let mut text = String::new();
    let status = if outcome.timed_out {
        format!(
            "{label} timed out after {} s; it and every process it started were killed",
            timeout.as_secs_f64()
        )
    } else if let Some(code) = outcome.exit_code {
        format!("{label} exited with code {code}")
    } else {
        let sig = outcome.signal.unwrap_or(0);
        let why = match sig {
            libc::SIGXCPU => " (CPU time limit reached)",
            libc::SIGKILL => " (killed; possibly the CPU time limit)",
            libc::SIGSEGV => " (segmentation fault; possibly the memory limit)",
            _ => "",
        };
        format!("{label} was killed by signal {sig}{why}")
    };
    text.push_str(&status);
    text.push('\n');
    for (name, stream) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
        if stream.total == 0 {
            continue;
        }
        text.push_str(&format!("--- {name} ---\n"));
        let body = stream.text();
        text.push_str(&body);
        if !body.ends_with('\n') {
            text.push('\n');
        }
        if stream.cut() {
            text.push_str(&truncation_note(stream.head.len(), stream.total));
            text.push('\n');
        }
    }
    if outcome.stdout.total == 0 && outcome.stderr.total == 0 {
        text.push_str("(no output)\n");
    }
    if let Some(note) = &outcome.sandbox_note {
        text.push_str(note);
        text.push('\n');
    }
    let data = json!({
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "timed_out": outcome.timed_out,
        "stdout_bytes": outcome.stdout.total,
        "stderr_bytes": outcome.stderr.total,
    });
    Observation {
        text,
        data,
        truncated: outcome.stdout.cut() || outcome.stderr.cut(),
        is_error: !outcome.success(),
    }
}

/// Runs shell commands in the workspace.
#[derive(Debug, Clone)]
pub struct ShellTool {
    settings: RunSettings,
}

impl ShellTool {
    /// A shell tool with these settings.
    pub fn new(settings: RunSettings) -> ShellTool {
        ShellTool { settings }
    }
}

#[async_trait::async_trait]
impl Tool for ShellTool {
    fn name(&self) -> &str {
        "shell"
    }

    fn description(&self) -> &str {
        "Runs a command with /bin/sh in the workspace (a clean environment; HOME is a \
         directory of the task's outside the workspace) and returns its exit code and output. Every process it starts is killed \
         at the timeout."
    }

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "command": { "type": "string", "description": "The shell command line." },
                "timeout_s": {
                    "type": "integer", "minimum": 1,
                    "description": format!(
                        "Seconds before it is killed (default {}, at most {}).",
                        self.settings.default_timeout.as_secs(),
                        self.settings.max_timeout.as_secs()
                    )
                },
                "cwd": { "type": "string", "description": "Directory to run in, relative to the workspace (default: the workspace)." }
            }),
            &["command"],
        )
    }

    fn risk(&self) -> RiskLevel {
        RiskLevel::Execute
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let command = args::string(&a, "command");
        if command.trim().is_empty() {
            return Ok(Observation::error("`command` is empty"));
        }
        let ws = &ctx.workspace;
        let cwd = match ws.resolve(args::str(&a, "cwd").unwrap_or(".")) {
            Ok(p) => p,
            Err(e) => return Ok(Observation::error(e.to_string())),
        };
        if !cwd.is_dir() {
            return Ok(Observation::error(format!(
                "`cwd` {} is not a directory in the workspace",
                ws.display(&cwd)
            )));
        }
        let timeout = self.settings.timeout_for(args::u64(&a, "timeout_s"));
        let home = match ws.tool_home() {
            Ok(home) => home,
            Err(e) => return Ok(Observation::error(format!("could not prepare HOME: {e}"))),
        };
        let sandbox = match self.settings.sandbox.for_call(
            "shell",
            ws.root(),
            &home,
            Vec::new(),
            self.settings.limits,
        ) {
            Ok(sandbox) => sandbox,
            Err(e) => return Ok(Observation::error(e)),
        };
        let spec = ProcessSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), command.clone().into()],
            cwd,
            env: process::scrubbed_env(&self.settings.path_var, &home),
            timeout,
            limits: self.settings.limits,
            output_cap: self.settings.output_max_bytes / 2,
            sandbox,
        };
        match process::run(spec).await {
            Ok(outcome) => Ok(render_outcome("the command", &outcome, timeout)),
            Err(e) => Ok(Observation::error(format!("could not start /bin/sh: {e}"))),
        }
    }
}
