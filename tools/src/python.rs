//! Python tools: `python_venv` makes a virtual environment in
//! `<workspace>/.venv`, `python_install` installs packages into it with pip,
//! and `python_run` runs a script or snippet with its interpreter. All three
//! run under the same limits and scrubbed environment as the shell tool;
//! install and run make the venv first when there is none.

use crate::files::resolve;
use crate::observation::Observation;
use crate::process::{self, ProcessSpec};
use crate::schema::object_schema;
use crate::shell::{render_outcome, RunSettings};
use crate::tool::{args, RiskLevel, Tool, ToolContext, ToolError};
use crate::workspace::Workspace;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The venv folder inside the workspace.
pub const VENV_DIR: &str = ".venv";

/// What the python tools share: the interpreter venvs are made from and the
/// process settings.
#[derive(Debug)]
pub struct PythonEnv {
    interpreter: String,
    settings: RunSettings,
    // The configured name may be a launcher shim (pyenv, asdf) that needs the
    // parent's environment; the real executable it runs does not.
    real: OnceCell<Result<PathBuf, String>>,
}

impl PythonEnv {
    /// Python tools using `interpreter` (`[tools] python`, e.g. `python3`).
    pub fn new(interpreter: &str, settings: RunSettings) -> Arc<PythonEnv> {
        Arc::new(PythonEnv {
            interpreter: interpreter.to_string(),
            settings,
            real: OnceCell::new(),
        })
    }

    async fn real_interpreter(&self) -> Result<PathBuf, String> {
        self.real
            .get_or_init(|| async {
                let out = tokio::process::Command::new(&self.interpreter)
                    .args(["-c", "import sys; print(sys.executable)"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| format!("cannot run `{}`: {e}", self.interpreter))?;
                let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() || path.is_empty() {
                    return Err(format!(
                        "`{}` did not report its executable: {}",
                        self.interpreter,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Ok(PathBuf::from(path))
            })
            .await
            .clone()
    }

    fn venv_python(ws: &Workspace) -> PathBuf {
        ws.root().join(VENV_DIR).join("bin").join("python")
    }

    fn env(&self, ws: &Workspace, home: &std::path::Path) -> Vec<(String, String)> {
        let venv = ws.root().join(VENV_DIR);
        let path = format!("{}:{}", venv.join("bin").display(), self.settings.path_var);
        let mut env = process::scrubbed_env(&path, home);
        env.push(("VIRTUAL_ENV".to_string(), venv.display().to_string()));
        env.push(("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()));
        env.push(("PYTHONUNBUFFERED".to_string(), "1".to_string()));
        env
    }

    async fn run(
        &self,
        ws: &Workspace,
        program: PathBuf,
        argv: Vec<OsString>,
        timeout: std::time::Duration,
        label: &str,
        tool: &str,
    ) -> Observation {
        let home = match ws.tool_home() {
            Ok(home) => home,
            Err(e) => return Observation::error(format!("could not prepare HOME: {e}")),
        };
        // The interpreter's own prefix (a pyenv or uv Python outside the
        // system directories) must be readable inside the sandbox.
        let prefix = self
            .real
            .get()
            .and_then(|r| r.as_ref().ok())
            .and_then(|real| real.parent()?.parent().map(std::path::Path::to_path_buf));
        let sandbox = match self.settings.sandbox.for_call(
            tool,
            ws.root(),
            &home,
            prefix.into_iter().collect(),
            self.settings.limits,
        ) {
            Ok(sandbox) => sandbox,
            Err(e) => return Observation::error(e),
        };
        let spec = ProcessSpec {
            program: program.clone().into_os_string(),
            args: argv,
            cwd: ws.root().to_path_buf(),
            env: self.env(ws, &home),
            timeout,
            limits: self.settings.limits,
            output_cap: self.settings.output_max_bytes / 2,
            sandbox,
        };
        match process::run(spec).await {
            Ok(outcome) => render_outcome(label, &outcome, timeout),
            Err(e) => Observation::error(
                ws.without_host_paths(&format!("could not start {}: {e}", program.display())),
            ),
        }
    }

    /// Makes `.venv` unless it exists; `None` when it is ready.
    async fn ensure_venv(&self, ws: &Workspace) -> Option<Observation> {
        if PythonEnv::venv_python(ws).exists() {
            return None;
        }
        let real = match self.real_interpreter().await {
            Ok(p) => p,
            Err(e) => return Some(Observation::error(e)),
        };
        let obs = self
            .run(
                ws,
                real,
                vec![
                    "-m".into(),
                    "venv".into(),
                    ws.root().join(VENV_DIR).into_os_string(),
                ],
                self.settings.max_timeout,
                "creating the virtual environment",
                "python_venv",
            )
            .await;
        if obs.is_error {
            return Some(obs);
        }
        None
    }
}

/// Which python operation a [`PythonTool`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PythonOp {
    /// `python_venv`
    Venv,
    /// `python_install`
    Install,
    /// `python_run`
    Run,
}

/// One python operation as a tool.
#[derive(Debug, Clone)]
pub struct PythonTool {
    op: PythonOp,
    env: Arc<PythonEnv>,
}

impl PythonTool {
    /// A tool for `op` sharing `env` with the other python tools.
    pub fn new(op: PythonOp, env: Arc<PythonEnv>) -> PythonTool {
        PythonTool { op, env }
    }
}

/// A pip requirement must not be an option (`--index-url`, `-r file`).
fn requirement_ok(spec: &str) -> bool {
    !spec.is_empty()
        && !spec.starts_with('-')
        && spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-[],<>=!~*;:'\"".contains(c))
}

#[async_trait::async_trait]
impl Tool for PythonTool {
    fn name(&self) -> &str {
        match self.op {
            PythonOp::Venv => "python_venv",
            PythonOp::Install => "python_install",
            PythonOp::Run => "python_run",
        }
    }

    fn description(&self) -> &str {
        match self.op {
            PythonOp::Venv => "Creates the workspace's Python virtual environment (.venv) if there is none.",
            PythonOp::Install => "Installs Python packages into the workspace's virtual environment with pip: \
                                  names with optional versions (`requests==2.32`), or paths to local \
                                  package folders or wheels in the workspace (`./src/mypkg`).",
            PythonOp::Run => "Runs a Python script file or a code snippet with the workspace's virtual \
                              environment; returns its exit code and output.",
        }
    }

    fn risk(&self) -> RiskLevel {
        match self.op {
            PythonOp::Venv | PythonOp::Run => RiskLevel::Execute,
            PythonOp::Install => RiskLevel::Network,
        }
    }

    fn schema(&self) -> Value {
        match self.op {
            PythonOp::Venv => object_schema(json!({}), &[]),
            PythonOp::Install => object_schema(
                json!({
                    "packages": { "type": "array", "items": { "type": "string" }, "description": "Requirements or workspace paths." },
                    "offline": { "type": "boolean", "description": "Do not use the package index; install only local paths (default false)." }
                }),
                &["packages"],
            ),
            PythonOp::Run => object_schema(
                json!({
                    "path": { "type": "string", "description": "Script relative to the workspace." },
                    "code": { "type": "string", "description": "Python code to run instead of a script." },
                    "args": { "type": "array", "items": { "type": "string" }, "description": "Command-line arguments." },
                    "timeout_s": { "type": "integer", "minimum": 1, "description": "Seconds before it is killed." }
                }),
                &[],
            ),
        }
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = &ctx.workspace;
        let existed = PythonEnv::venv_python(ws).exists();
        if let Some(failed) = self.env.ensure_venv(ws).await {
            return Ok(failed);
        }
        let python = PythonEnv::venv_python(ws);
        match self.op {
            PythonOp::Venv => {
                let what = if existed {
                    "already exists"
                } else {
                    "was created"
                };
                Ok(Observation::ok(
                    format!("the virtual environment {VENV_DIR} {what}"),
                    json!({ "venv": VENV_DIR, "created": !existed }),
                ))
            }
            PythonOp::Install => {
                let mut argv: Vec<OsString> = [
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--no-cache-dir",
                ]
                .iter()
                .map(OsString::from)
                .collect();
                if args::bool(&a, "offline") {
                    argv.push("--no-index".into());
                    argv.push("--no-build-isolation".into());
                }
                let packages = args::strings(&a, "packages");
                if packages.is_empty() {
                    return Ok(Observation::error("`packages` is empty"));
                }
                for spec in &packages {
                    if spec.starts_with('-') {
                        return Ok(Observation::error(format!(
                            "`{spec}` is not a package requirement (pip options are not allowed)"
                        )));
                    }
                    if spec.starts_with('.') || spec.contains('/') {
                        match resolve(ws, spec) {
                            Ok(p) if p.exists() => argv.push(p.into_os_string()),
                            Ok(_) => {
                                return Ok(Observation::error(format!(
                                    "`{spec}` does not exist in the workspace"
                                )))
                            }
                            Err(obs) => return Ok(obs),
                        }
                    } else if requirement_ok(spec) {
                        argv.push(spec.into());
                    } else {
                        return Ok(Observation::error(format!(
                            "`{spec}` is not a package requirement (pip options are not allowed)"
                        )));
                    }
                }
                let timeout = self.env.settings.max_timeout;
                Ok(self
                    .env
                    .run(ws, python, argv, timeout, "pip install", "python_install")
                    .await)
            }
            PythonOp::Run => {
                let timeout = self.env.settings.timeout_for(args::u64(&a, "timeout_s"));
                let mut argv: Vec<OsString> = Vec::new();
                match (args::str(&a, "path"), args::str(&a, "code")) {
                    (Some(p), None) => match resolve(ws, p) {
                        Ok(script) if script.is_file() => argv.push(script.into_os_string()),
                        Ok(_) => {
                            return Ok(Observation::error(format!(
                                "the script `{p}` does not exist"
                            )))
                        }
                        Err(obs) => return Ok(obs),
                    },
                    (None, Some(code)) => {
                        argv.push("-c".into());
                        argv.push(code.into());
                    }
                    _ => return Ok(Observation::error("give exactly one of `path` and `code`")),
                }
                argv.extend(args::strings(&a, "args").into_iter().map(OsString::from));
                Ok(self
                    .env
                    .run(ws, python, argv, timeout, "the script", "python_run")
                    .await)
            }
        }
    }
}
