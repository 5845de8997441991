//! File tools that move, copy, add to or make paths: `move_path`,
//! `copy_path`, `append_file` and `make_dir`. What a shell one-liner does
//! (`mv`, `cp`, `echo >>`, `mkdir -p`), as structured calls: a small model
//! fills two named arguments far more reliably than it writes shell syntax
//! (SmolLM2-135M asked to rename a file ran `rm`), and every path goes
//! through [`crate::Workspace::resolve`] like the other file tools.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::files::{resolve, tool_header};
use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, blocking, RiskLevel, Tool, ToolContext, ToolError};
use crate::workspace::Workspace;

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> ToolError {
    ToolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Resolves `key`'s path, refusing the workspace root and its `.git`
/// (troupe's checkpoints) as a source or destination.
fn resolve_movable(ws: &Workspace, a: &Value, key: &str) -> Result<PathBuf, Observation> {
    let requested = args::string(a, key);
    let path = resolve(ws, &requested)?;
    let git = ws.root().join(".git");
    if path == ws.root() || path.starts_with(&git) {
        return Err(Observation::error(format!(
            "`{requested}` is the workspace root or its .git (troupe's checkpoints); it cannot be moved, copied or replaced"
        )));
    }
    Ok(path)
}

fn make_parent(path: &Path) -> Result<(), ToolError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e)),
        None => Ok(()),
    }
}

fn from_to_schema(what: &str) -> Value {
    object_schema(
        json!({
            "from": { "type": "string", "description": format!("The {what} to take, relative to the workspace.") },
            "to": { "type": "string", "description": "Where it goes, relative to the workspace (must not exist yet)." }
        }),
        &["from", "to"],
    )
}

/// The two ends of a move or copy, or the observation refusing them.
fn ends(ws: &Workspace, a: &Value) -> Result<(PathBuf, PathBuf), Observation> {
    let from = resolve_movable(ws, a, "from")?;
    let to = resolve_movable(ws, a, "to")?;
    if std::fs::symlink_metadata(&from).is_err() {
        return Err(Observation::error(format!(
            "`{}` does not exist",
            args::string(a, "from")
        )));
    }
    if std::fs::symlink_metadata(&to).is_ok() {
        return Err(Observation::error(format!(
            "`{}` already exists; delete it first or choose another name",
            args::string(a, "to")
        )));
    }
    Ok((from, to))
}

/// `move_path`: renames or moves a file or folder.
#[derive(Debug, Clone, Default)]
pub struct MovePath;

#[async_trait::async_trait]
impl Tool for MovePath {
    tool_header!(
        "move_path",
        RiskLevel::Write,
        "Renames or moves a file or folder in the workspace (parent folders of `to` are created)."
    );

    fn schema(&self) -> Value {
        from_to_schema("file or folder")
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("move_path", move || {
            let (from, to) = match ends(&ws, &a) {
                Ok(ends) => ends,
                Err(obs) => return Ok(obs),
            };
            if to.starts_with(&from) {
                return Ok(Observation::error("a folder cannot be moved into itself"));
            }
            make_parent(&to)?;
            std::fs::rename(&from, &to).map_err(|e| io_err("move", &from, e))?;
            let (from, to) = (ws.display(&from), ws.display(&to));
            Ok(Observation::ok(
                format!("moved `{from}` to `{to}`"),
                json!({ "from": from, "to": to }),
            ))
        })
        .await
    }
}

/// `copy_path`: copies a file.
#[derive(Debug, Clone, Default)]
pub struct CopyPath;

#[async_trait::async_trait]
impl Tool for CopyPath {
    tool_header!(
        "copy_path",
        RiskLevel::Write,
        "Copies a file in the workspace to a new path (parent folders of `to` are created)."
    );

    fn schema(&self) -> Value {
        from_to_schema("file")
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("copy_path", move || {
            let (from, to) = match ends(&ws, &a) {
                Ok(ends) => ends,
                Err(obs) => return Ok(obs),
            };
            if !from.is_file() {
                return Ok(Observation::error(format!(
                    "`{}` is not a file; copy_path copies one file",
                    args::string(&a, "from")
                )));
            }
            make_parent(&to)?;
            let bytes = std::fs::copy(&from, &to).map_err(|e| io_err("copy", &from, e))?;
            let (from, to) = (ws.display(&from), ws.display(&to));
            Ok(Observation::ok(
                format!("copied `{from}` to `{to}` ({bytes} bytes)"),
                json!({ "from": from, "to": to, "bytes": bytes }),
            ))
        })
        .await
    }
}

/// `append_file`: adds a line (or lines) at the end of a text file.
#[derive(Debug, Clone, Default)]
pub struct AppendFile;

#[async_trait::async_trait]
impl Tool for AppendFile {
    tool_header!(
        "append_file",
        RiskLevel::Write,
        "Adds text as new line(s) at the end of a file in the workspace, creating it if missing."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "path": { "type": "string", "description": "File path relative to the workspace." },
                "text": { "type": "string", "description": "The line(s) to add; a newline ends them." }
            }),
            &["path", "text"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("append_file", move || {
            let path = match resolve_movable(&ws, &a, "path") {
                Ok(p) => p,
                Err(obs) => return Ok(obs),
            };
            if path.is_dir() {
                return Ok(Observation::error(format!(
                    "`{}` is a directory, not a file",
                    args::string(&a, "path")
                )));
            }
            let existing = std::fs::read(&path).unwrap_or_default();
            let mut text = args::string(&a, "text");
            // New lines start on a line of their own and end with a newline.
            if !existing.is_empty() && !existing.ends_with(b"\n") {
                text.insert(0, '\n');
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
            make_parent(&path)?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_err("open", &path, e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| io_err("append", &path, e))?;
            let shown = ws.display(&path);
            Ok(Observation::ok(
                format!("appended {} bytes to `{shown}`", text.len()),
                json!({ "path": shown, "bytes": text.len(), "created": existing.is_empty() }),
            ))
        })
        .await
    }
}

/// `make_dir`: makes a folder (and its parents).
#[derive(Debug, Clone, Default)]
pub struct MakeDir;

#[async_trait::async_trait]
impl Tool for MakeDir {
    tool_header!(
        "make_dir",
        RiskLevel::Write,
        "Makes a folder in the workspace, with any missing parent folders."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "path": { "type": "string", "description": "Folder path relative to the workspace." }
            }),
            &["path"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("make_dir", move || {
            let path = match resolve_movable(&ws, &a, "path") {
                Ok(p) => p,
                Err(obs) => return Ok(obs),
            };
            let shown = ws.display(&path);
            if path.is_dir() {
                return Ok(Observation::ok(
                    format!("the folder `{shown}` already exists"),
                    json!({ "path": shown, "created": false }),
                ));
            }
            if path.exists() {
                return Ok(Observation::error(format!(
                    "`{shown}` exists and is not a folder"
                )));
            }
            std::fs::create_dir_all(&path).map_err(|e| io_err("create", &path, e))?;
            // git keeps no empty folder: without a file in it, a checkpoint
            // (and a restore after a crash) would lose it.
            let keep = path.join(".gitkeep");
            std::fs::write(&keep, "").map_err(|e| io_err("write", &keep, e))?;
            Ok(Observation::ok(
                format!("made the folder `{shown}`"),
                json!({ "path": shown, "created": true }),
            ))
        })
        .await
    }
}
