//! troupe-tools: what the workers act with, and the workspace they act in.
//!
//! # Layout
//! - [`tool`]: the [`Tool`] trait, [`RiskLevel`], [`ToolContext`] and
//!   [`ToolError`] (faults of troupe, not of the model's request).
//! - [`observation`]: [`Observation`], what the model sees, and truncation.
//! - [`registry`]: [`ToolRegistry`]: validation, approval, truncation, and
//!   the tool list for prompts.
//! - [`approval`]: [`ApprovalPolicy`] (allow / ask / deny per risk level and
//!   per tool) and [`ApprovalRequest`].
//! - [`workspace`] and [`confine`]: a task's workspace (layout, git
//!   checkpoints, restore) and the path confinement every tool goes through.
//! - [`process`]: running a program in its own process group with rlimits,
//!   a scrubbed environment, capped output and a timeout.
//! - The built-in tools: [`files`], [`paths`] and [`files_search`], [`shell`], [`git`],
//!   [`python`], [`http`], [`search`], [`ask_user`], [`memory`]. [`builtin`] registers
//!   them from the configuration.

pub mod approval;
pub mod ask_user;
pub mod builtin;
pub mod confine;
pub mod files;
pub mod files_search;
pub mod git;
pub mod http;
pub mod memory;
pub mod observation;
pub mod paths;
pub mod process;
pub mod python;
pub mod registry;
use troupe_schema::args as schema;
pub mod search;
pub mod shell;
pub mod tool;
pub mod workspace;
pub mod workspace_sync;

pub use approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, Policy};
pub use ask_user::{AskError, UserChannel};
pub use builtin::{builtin_registry, BuildError, Builtins};
pub use confine::ConfinementError;
pub use observation::Observation;
pub use registry::{action_schema_of, render_tools, RegistryError, ToolOutcome, ToolRegistry};
pub use tool::{RiskLevel, Tool, ToolContext, ToolError};
pub use workspace::{Checkpoint, CheckpointId, Refusal, StepLock, Workspace, WorkspaceError};
pub use workspace_sync::FileChange;
