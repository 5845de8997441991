//! File tools that read or change one file: `read_file`, `write_file`,
//! `edit_file` (exact search/replace) and `delete_path`. Every path goes
//! through [`crate::Workspace::resolve`].

use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, blocking, RiskLevel, Tool, ToolContext, ToolError};
use crate::workspace::Workspace;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Lines of a file collected for one read stop growing past this; the
/// registry cuts the observation much earlier, this only bounds memory.
const READ_COLLECT_CAP: usize = 8 << 20;

/// Resolves `requested`, or gives the observation explaining the refusal.
pub(crate) fn resolve(ws: &Workspace, requested: &str) -> Result<PathBuf, Observation> {
    ws.resolve(requested).map_err(|e| {
        Observation::error_with(e.to_string(), json!({ "refused": true, "path": requested }))
    })
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> ToolError {
    ToolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

macro_rules! tool_header {
    ($name:literal, $risk:expr, $desc:literal) => {
        fn name(&self) -> &str {
            $name
        }
        fn description(&self) -> &str {
            $desc
        }
        fn risk(&self) -> RiskLevel {
            $risk
        }
    };
}
pub(crate) use tool_header;

/// `read_file`: a text file, whole or a range of lines.
#[derive(Debug, Clone, Default)]
pub struct ReadFile;

#[async_trait::async_trait]
impl Tool for ReadFile {
    tool_header!(
        "read_file",
        RiskLevel::Read,
        "Reads a UTF-8 text file in the workspace, whole or lines start_line..=end_line (1-based)."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "path": { "type": "string", "description": "File path relative to the workspace." },
                "start_line": { "type": "integer", "minimum": 1, "description": "First line to read (default 1)." },
                "end_line": { "type": "integer", "minimum": 1, "description": "Last line to read (default: the end)." }
            }),
            &["path"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("read_file", move || {
            let requested = args::string(&a, "path");
            let path = match resolve(&ws, &requested) {
                Ok(p) => p,
                Err(obs) => return Ok(obs),
            };
            let start = args::u64(&a, "start_line").unwrap_or(1).max(1);
            let end = args::u64(&a, "end_line").unwrap_or(u64::MAX);
            if end < start {
                return Ok(Observation::error(format!(
                    "`end_line` ({end}) is before `start_line` ({start})"
                )));
            }
            read_lines(&ws, &requested, &path, start, end)
        })
        .await
    }
}

fn read_lines(
    ws: &Workspace,
    requested: &str,
    path: &Path,
    start: u64,
    end: u64,
) -> Result<Observation, ToolError> {
    if path.is_dir() {
        return Ok(Observation::error(format!(
            "`{requested}` is a directory; use list_dir to see what is in it"
        )));
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Observation::error(format!(
                "the file `{requested}` does not exist"
            )))
        }
        Err(e) => return Err(io_err("open", path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut out = String::new();
    let mut total = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        total += 1;
        let Ok(text) = std::str::from_utf8(&line) else {
            return Ok(Observation::error(format!(
                "`{requested}` is not UTF-8 text (line {total} has invalid bytes); it may be binary"
            )));
        };
        if text.contains('\0') {
            return Ok(Observation::error(format!(
                "`{requested}` looks binary (it contains NUL bytes)"
            )));
        }
        if total >= start && total <= end && out.len() < READ_COLLECT_CAP {
            out.push_str(text);
        }
    }
    if start > total.max(1) {
        return Ok(Observation::error(format!(
            "`{requested}` has {total} lines; start_line {start} is past the end"
        )));
    }
    let last = end.min(total);
    let whole = start == 1 && last == total;
    let text = if whole {
        out
    } else {
        format!("[{requested}: lines {start}-{last} of {total}]\n{out}")
    };
    Ok(Observation::ok(
        text,
        json!({ "path": ws.display(path), "start_line": start, "end_line": last, "total_lines": total }),
    ))
}

/// `write_file`: creates or replaces a file.
#[derive(Debug, Clone, Default)]
pub struct WriteFile;

#[async_trait::async_trait]
impl Tool for WriteFile {
    tool_header!(
        "write_file",
        RiskLevel::Write,
        "Creates or replaces a text file in the workspace (parent folders are created)."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "path": { "type": "string", "description": "File path relative to the workspace." },
                "content": { "type": "string", "description": "The whole new content." }
            }),
            &["path", "content"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("write_file", move || {
            let requested = args::string(&a, "path");
            let path = match resolve(&ws, &requested) {
                Ok(p) => p,
                Err(obs) => return Ok(obs),
            };
            if path.is_dir() {
                return Ok(Observation::error(format!(
                    "`{requested}` is a directory, not a file"
                )));
            }
            let content = args::string(&a, "content");
            let existed = path.exists();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
            }
            std::fs::write(&path, &content).map_err(|e| io_err("write", &path, e))?;
            let verb = if existed { "replaced" } else { "created" };
            Ok(Observation::ok(
                format!("{verb} `{}` ({} bytes)", ws.display(&path), content.len()),
                json!({ "path": ws.display(&path), "bytes": content.len(), "created": !existed }),
            ))
        })
        .await
    }
}

/// `edit_file`: replaces one exact occurrence of a text.
#[derive(Debug, Clone, Default)]
pub struct EditFile;

#[async_trait::async_trait]
impl Tool for EditFile {
    tool_header!(
        "edit_file",
        RiskLevel::Write,
        "Replaces an exact piece of text in a file. `search` must occur exactly once \
         (include surrounding lines to make it unique) unless replace_all is true."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "path": { "type": "string", "description": "File path relative to the workspace." },
                "search": { "type": "string", "description": "The exact text to find, whitespace included." },
                "replace": { "type": "string", "description": "The text to put in its place." },
                "replace_all": { "type": "boolean", "description": "Replace every occurrence (default false)." }
            }),
            &["path", "search", "replace"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("edit_file", move || edit(&ws, &a)).await
    }
}

fn edit(ws: &Workspace, a: &Value) -> Result<Observation, ToolError> {
    let requested = args::string(a, "path");
    let path = match resolve(ws, &requested) {
        Ok(p) => p,
        Err(obs) => return Ok(obs),
    };
    let search = args::string(a, "search");
    let replace = args::string(a, "replace");
    if search.is_empty() {
        return Ok(Observation::error(
            "`search` is empty; say which text to replace",
        ));
    }
    let text = match std::fs::read(&path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return Ok(Observation::error(format!(
                    "`{requested}` is not UTF-8 text"
                )))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Observation::error(format!(
                "the file `{requested}` does not exist"
            )))
        }
        Err(e) if path.is_dir() => {
            return Ok(Observation::error(format!(
                "`{requested}` is a directory ({e})"
            )))
        }
        Err(e) => return Err(io_err("read", &path, e)),
    };
    let at: Vec<usize> = text.match_indices(&search).map(|(i, _)| i).collect();
    if at.is_empty() {
        let hint = if text.contains(search.trim()) {
            " (it does occur with different leading/trailing whitespace)"
        } else {
            ""
        };
        return Ok(Observation::error(format!(
            "the search text was not found in `{requested}`{hint}; nothing was changed. \
             Read the file and copy the text exactly."
        )));
    }
    if at.len() > 1 && !args::bool(a, "replace_all") {
        let lines: Vec<String> = at
            .iter()
            .map(|&i| (text[..i].matches('\n').count() + 1).to_string())
            .collect();
        return Ok(Observation::error_with(
            format!(
                "the search text occurs {} times in `{requested}` (at lines {}); nothing was changed. \
                 Include more surrounding text so it matches once, or set replace_all.",
                at.len(),
                lines.join(", ")
            ),
            json!({ "occurrences": at.len() }),
        ));
    }
    let new_text = text.replace(&search, &replace);
    std::fs::write(&path, &new_text).map_err(|e| io_err("write", &path, e))?;
    let line = text[..at[0]].matches('\n').count() + 1;
    Ok(Observation::ok(
        format!(
            "edited `{}`: replaced {} occurrence(s), first at line {line}",
            ws.display(&path),
            at.len()
        ),
        json!({ "path": ws.display(&path), "replacements": at.len(), "line": line }),
    ))
}

/// `delete_path`: removes a file, a symlink, or a folder.
#[derive(Debug, Clone, Default)]
pub struct DeletePath;

#[async_trait::async_trait]
impl Tool for DeletePath {
    tool_header!(
        "delete_path",
        RiskLevel::Write,
        "Deletes a file or symlink in the workspace, or a folder (set recursive for a folder that is not empty)."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "path": { "type": "string", "description": "Path relative to the workspace." },
                "recursive": { "type": "boolean", "description": "Delete a folder and everything in it (default false)." }
            }),
            &["path"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("delete_path", move || delete(&ws, &a)).await
    }
}

fn delete(ws: &Workspace, a: &Value) -> Result<Observation, ToolError> {
    let requested = args::string(a, "path");
    // The last component is not followed: deleting a symlink removes the
    // link, not what it points to. Its parent is resolved as usual.
    let req = Path::new(&requested);
    let target = match (req.parent(), req.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = parent.to_str().filter(|p| !p.is_empty()).unwrap_or(".");
            match resolve(ws, parent) {
                Ok(p) => p.join(name),
                Err(obs) => return Ok(obs),
            }
        }
        _ => match resolve(ws, &requested) {
            Ok(p) => p,
            Err(obs) => return Ok(obs),
        },
    };
    if target == ws.root() || target == ws.root().join(".git") {
        let e = if target == ws.root() {
            "the workspace root cannot be deleted"
        } else {
            "the workspace's .git directory holds troupe's checkpoints and cannot be deleted"
        };
        return Ok(Observation::error(e));
    }
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Observation::error(format!("`{requested}` does not exist")))
        }
        Err(e) => return Err(io_err("inspect", &target, e)),
    };
    let shown = ws.display(&target);
    if meta.is_dir() {
        let empty = std::fs::read_dir(&target)
            .map_err(|e| io_err("list", &target, e))?
            .next()
            .is_none();
        if !empty && !args::bool(a, "recursive") {
            return Ok(Observation::error(format!(
                "`{requested}` is a folder that is not empty; set recursive to delete it and everything in it"
            )));
        }
        std::fs::remove_dir_all(&target).map_err(|e| io_err("delete", &target, e))?;
        Ok(Observation::ok(
            format!("deleted the folder `{shown}`"),
            json!({ "path": shown, "kind": "folder" }),
        ))
    } else {
        std::fs::remove_file(&target).map_err(|e| io_err("delete", &target, e))?;
        Ok(Observation::ok(
            format!("deleted `{shown}`"),
            json!({ "path": shown, "kind": "file" }),
        ))
    }
}
