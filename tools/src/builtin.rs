//! The built-in tools, registered from the configuration.

use crate::approval::ApprovalPolicy;
use crate::ask_user::{AskUser, UserChannel};
use crate::files::{DeletePath, EditFile, ReadFile, WriteFile};
use crate::files_search::{Glob, Grep, ListDir};
use crate::git::{GitOp, GitTool};
use crate::http::{HttpEnv, HttpSetupError, HttpTool};
use crate::paths::{AppendFile, CopyPath, MakeDir, MovePath};
use crate::python::{PythonEnv, PythonOp, PythonTool};
use crate::registry::{RegistryError, ToolRegistry};
use crate::search::{DuckDuckGoHtml, WebSearch};
use crate::shell::{RunSettings, ShellTool};
use crate::tool::Tool;
use std::sync::Arc;
use troupe_config::tools::SearchProviderKind;
use troupe_config::{ApprovalConfig, ToolsConfig};

/// Why the built-in tools could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    /// The search client could not be built.
    #[error("cannot build the web search client: {0}")]
    Search(reqwest::Error),
    /// Two tools share a name.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What [`builtin_registry`] is built from.
#[derive(Debug, Clone)]
pub struct Builtins<'a> {
    /// `[tools]`
    pub tools: &'a ToolsConfig,
    /// `[approval]`
    pub approval: &'a ApprovalConfig,
    /// Where `ask_user` questions go; without one there is no `ask_user`.
    pub user: Option<Arc<dyn UserChannel>>,
    /// Long-term memory; without it there are no `memory_search` and
    /// `memory_store`.
    pub memory: Option<Arc<troupe_memory::Memory>>,
}

/// Every built-in tool the configuration enables, in the order they are
/// listed to the model: files, shell, git, python, http, search, ask_user.
/// The git remote tools need `[tools.git] remote`; `web_search` needs a
/// search provider.
pub fn builtin_tools(
    cfg: &ToolsConfig,
    user: Option<Arc<dyn UserChannel>>,
) -> Result<Vec<Arc<dyn Tool>>, BuildError> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(ReadFile),
        Arc::new(WriteFile),
        Arc::new(EditFile),
        Arc::new(ListDir),
        Arc::new(Glob),
        Arc::new(Grep),
        Arc::new(DeletePath),
        Arc::new(MovePath),
        Arc::new(CopyPath),
        Arc::new(AppendFile),
        Arc::new(MakeDir),
    ];
    let run = RunSettings::from_config(cfg);
    tools.push(Arc::new(ShellTool::new(run.clone())));
    for op in GitOp::LOCAL {
        tools.push(Arc::new(GitTool::new(op, None)));
    }
    if let Some(remote) = cfg.git.remote.as_deref() {
        for op in GitOp::REMOTE {
            tools.push(Arc::new(GitTool::new(op, Some(remote))));
        }
    }
    let python = PythonEnv::new(&cfg.python, run);
    for op in [PythonOp::Venv, PythonOp::Install, PythonOp::Run] {
        tools.push(Arc::new(PythonTool::new(op, python.clone())));
    }
    let http = HttpEnv::from_config(&cfg.http)?;
    tools.push(Arc::new(HttpTool::get(http.clone())));
    tools.push(Arc::new(HttpTool::post(http)));
    if cfg.search.provider == SearchProviderKind::DuckDuckGo {
        let ddg = DuckDuckGoHtml::new(&cfg.search.base_url, cfg.http.timeout, cfg.http.max_bytes)
            .map_err(BuildError::Search)?;
        tools.push(Arc::new(WebSearch::new(Arc::new(ddg))));
    }
    if let Some(channel) = user {
        tools.push(Arc::new(AskUser::new(channel)));
    }
    Ok(tools)
}

/// A registry of the built-in tools under the configured approval policy.
pub fn builtin_registry(b: Builtins<'_>) -> Result<ToolRegistry, BuildError> {
    let mut registry = ToolRegistry::new(
        ApprovalPolicy::from_config(b.approval),
        b.tools.output_max_bytes,
    );
    for tool in builtin_tools(b.tools, b.user)? {
        registry.register(tool)?;
    }
    for tool in b.memory.iter().flat_map(crate::memory::MemoryTool::both) {
        registry.register(tool)?;
    }
    registry.unknown_overrides();
    Ok(registry)
}
