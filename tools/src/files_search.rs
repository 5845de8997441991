//! File tools that look across the workspace: `list_dir`, `glob` and `grep`.
//! Walks never follow symlinks (a link cannot lead a search out of the
//! workspace) and skip `.git`; `.venv` is skipped unless asked for.

use crate::files::{resolve, tool_header};
use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, blocking, RiskLevel, Tool, ToolContext, ToolError};
use crate::workspace::Workspace;
use serde_json::{json, Value};
use std::path::Path;

/// Most entries `list_dir` and `glob` return.
const MAX_ENTRIES: usize = 1000;
/// Most matching lines `grep` returns.
const MAX_MATCHES: usize = 500;
/// Longest line `grep` shows.
const MAX_LINE: usize = 300;
/// Files larger than this are not searched by `grep`.
const MAX_GREP_FILE: u64 = 4 << 20;

fn skipped(ws: &Workspace, path: &Path, include_venv: bool) -> bool {
    let Ok(rel) = path.strip_prefix(ws.root()) else {
        return false;
    };
    rel.starts_with(".git") || (!include_venv && rel.starts_with(".venv"))
}

fn walk<'a>(
    ws: &'a Workspace,
    from: &Path,
    include_venv: bool,
) -> impl Iterator<Item = walkdir::DirEntry> + 'a {
    walkdir::WalkDir::new(from)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |e| !skipped(ws, e.path(), include_venv))
        .filter_map(Result::ok)
}

/// `list_dir`: what is in a folder.
#[derive(Debug, Clone, Default)]
pub struct ListDir;

#[async_trait::async_trait]
impl Tool for ListDir {
    tool_header!(
        "list_dir",
        RiskLevel::Read,
        "Lists a folder of the workspace: sub-folders (ending in /), files with their sizes, and symlinks."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({ "path": { "type": "string", "description": "Folder relative to the workspace (default: the workspace)." } }),
            &[],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("list_dir", move || {
            let requested = args::str(&a, "path").unwrap_or(".").to_string();
            let dir = match resolve(&ws, &requested) {
                Ok(p) => p,
                Err(obs) => return Ok(obs),
            };
            if !dir.is_dir() {
                let what = if dir.exists() {
                    "is not a folder"
                } else {
                    "does not exist"
                };
                return Ok(Observation::error(format!("`{requested}` {what}")));
            }
            let mut lines = Vec::new();
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| ToolError::Io {
                    op: "list",
                    path: dir.clone(),
                    source: e,
                })?
                .filter_map(Result::ok)
                .filter(|e| !skipped(&ws, &e.path(), true))
                .collect();
            entries.sort_by_key(|e| e.file_name());
            let count = entries.len();
            for e in entries.iter().take(MAX_ENTRIES) {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_symlink() {
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    lines.push(format!("{name} -> {}", target.display()));
                } else if ft.is_dir() {
                    lines.push(format!("{name}/"));
                } else {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    lines.push(format!("{name} ({size} bytes)"));
                }
            }
            let mut text = if lines.is_empty() {
                format!("`{requested}` is empty")
            } else {
                lines.join("\n")
            };
            if count > MAX_ENTRIES {
                text.push_str(&format!(
                    "\n[{} more entries not shown]",
                    count - MAX_ENTRIES
                ));
            }
            Ok(Observation::ok(
                text,
                json!({ "path": ws.display(&dir), "entries": count }),
            ))
        })
        .await
    }
}

/// `glob`: files whose workspace-relative path matches a pattern.
#[derive(Debug, Clone, Default)]
pub struct Glob;

#[async_trait::async_trait]
impl Tool for Glob {
    tool_header!(
        "glob",
        RiskLevel::Read,
        "Finds files whose path relative to the workspace matches a glob such as `src/**/*.py` \
         (`*` stays within one folder, `**` crosses folders)."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({ "pattern": { "type": "string", "description": "The glob, relative to the workspace." } }),
            &["pattern"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("glob", move || {
            let pattern = args::string(&a, "pattern");
            let pattern = pattern.trim_start_matches("./");
            let matcher = match globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
            {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    return Ok(Observation::error(format!(
                        "`pattern` is not a valid glob: {e}"
                    )))
                }
            };
            let mut found = Vec::new();
            let mut count = 0usize;
            for entry in walk(&ws, ws.root(), pattern.starts_with(".venv")) {
                if entry.file_type().is_dir() {
                    continue;
                }
                let Ok(rel) = entry.path().strip_prefix(ws.root()) else {
                    continue;
                };
                if matcher.is_match(rel) {
                    count += 1;
                    if found.len() < MAX_ENTRIES {
                        found.push(rel.display().to_string());
                    }
                }
            }
            let mut text = if found.is_empty() {
                format!("no files match `{pattern}`")
            } else {
                found.join("\n")
            };
            if count > found.len() {
                text.push_str(&format!(
                    "\n[{} more matches not shown]",
                    count - found.len()
                ));
            }
            Ok(Observation::ok(
                text,
                json!({ "pattern": pattern, "matches": count }),
            ))
        })
        .await
    }
}

/// `grep`: lines matching a regular expression.
#[derive(Debug, Clone, Default)]
pub struct Grep;

#[async_trait::async_trait]
impl Tool for Grep {
    tool_header!(
        "grep",
        RiskLevel::Read,
        "Searches text files for a regular expression (Rust regex syntax) and lists matching \
         lines as path:line: text."
    );

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "pattern": { "type": "string", "description": "The regular expression." },
                "path": { "type": "string", "description": "File or folder to search (default: the workspace)." },
                "glob": { "type": "string", "description": "Only search files whose path matches this glob, e.g. `**/*.rs`." },
                "ignore_case": { "type": "boolean", "description": "Match regardless of case (default false)." }
            }),
            &["pattern"],
        )
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        blocking("grep", move || grep(&ws, &a)).await
    }
}

fn grep(ws: &Workspace, a: &Value) -> Result<Observation, ToolError> {
    let pattern = args::string(a, "pattern");
    let re = match regex::RegexBuilder::new(&pattern)
        .case_insensitive(args::bool(a, "ignore_case"))
        .size_limit(1 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Ok(Observation::error(format!(
                "`pattern` is not a valid regular expression: {e}"
            )))
        }
    };
    let filter = match args::str(a, "glob") {
        Some(g) => match globset::GlobBuilder::new(g.trim_start_matches("./"))
            .literal_separator(true)
            .build()
        {
            Ok(g) => Some(g.compile_matcher()),
            Err(e) => {
                return Ok(Observation::error(format!(
                    "`glob` is not a valid glob: {e}"
                )))
            }
        },
        None => None,
    };
    let requested = args::str(a, "path").unwrap_or(".").to_string();
    let from = match resolve(ws, &requested) {
        Ok(p) => p,
        Err(obs) => return Ok(obs),
    };
    if !from.exists() {
        return Ok(Observation::error(format!("`{requested}` does not exist")));
    }
    let mut lines = Vec::new();
    let mut count = 0usize;
    let mut files = 0usize;
    for entry in walk(ws, &from, requested.starts_with(".venv")) {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(ws.root()) else {
            continue;
        };
        if filter.as_ref().is_some_and(|f| !f.is_match(rel)) {
            continue;
        }
        if entry
            .metadata()
            .map(|m| m.len() > MAX_GREP_FILE)
            .unwrap_or(true)
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if text.contains('\0') {
            continue;
        }
        files += 1;
        for (i, line) in text.lines().enumerate() {
            if re.is_match(line) {
                count += 1;
                if lines.len() < MAX_MATCHES {
                    let shown = crate::observation::utf8_prefix(line, MAX_LINE);
                    lines.push(format!("{}:{}: {shown}", rel.display(), i + 1));
                }
            }
        }
    }
    let mut text = if lines.is_empty() {
        format!("no lines match `{pattern}` ({files} files searched)")
    } else {
        lines.join("\n")
    };
    if count > lines.len() {
        text.push_str(&format!(
            "\n[{} more matching lines not shown]",
            count - lines.len()
        ));
    }
    Ok(Observation::ok(
        text,
        json!({ "matches": count, "files_searched": files }),
    ))
}
