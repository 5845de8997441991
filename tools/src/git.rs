//! Git tools: `git_status`, `git_diff`, `git_log` and `git_commit` on the
//! workspace repository (or a repository cloned inside it), and `git_clone`,
//! `git_pull` and `git_push` against the one remote set in `[tools.git]`.
//! All through libgit2; there are no credentials, so only remotes that need
//! none (paths, file:// URLs, and https ones where libgit2 was built with it).

use crate::files::resolve;
use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, blocking, RiskLevel, Tool, ToolContext, ToolError};
use crate::workspace::{commit_all, Workspace, CHECKPOINT_PREFIX};
use git2::{build::CheckoutBuilder, Delta, DiffFormat, DiffOptions, Repository, StatusOptions};
use serde_json::{json, Value};
use std::sync::Arc;

/// Which git operation a [`GitTool`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GitOp {
    /// `git_status`
    Status,
    /// `git_diff`
    Diff,
    /// `git_log`
    Log,
    /// `git_commit`
    Commit,
    /// `git_clone` (needs a remote)
    Clone,
    /// `git_pull` (needs a remote)
    Pull,
    /// `git_push` (needs a remote)
    Push,
}

impl GitOp {
    /// Every local operation.
    pub const LOCAL: [GitOp; 4] = [GitOp::Status, GitOp::Diff, GitOp::Log, GitOp::Commit];
    /// Every operation that talks to the remote.
    pub const REMOTE: [GitOp; 3] = [GitOp::Clone, GitOp::Pull, GitOp::Push];
}

/// One git operation as a tool.
#[derive(Debug, Clone)]
pub struct GitTool {
    op: GitOp,
    remote: Option<Arc<str>>,
}

impl GitTool {
    /// A tool for `op`; `remote` is the URL or path of `[tools.git] remote`
    /// (the remote operations report an error without one).
    pub fn new(op: GitOp, remote: Option<&str>) -> GitTool {
        GitTool {
            op,
            remote: remote.map(Arc::from),
        }
    }
}

const REPO_ARG: &str =
    "Repository folder relative to the workspace (default: the workspace itself).";

#[async_trait::async_trait]
impl Tool for GitTool {
    fn name(&self) -> &str {
        match self.op {
            GitOp::Status => "git_status",
            GitOp::Diff => "git_diff",
            GitOp::Log => "git_log",
            GitOp::Commit => "git_commit",
            GitOp::Clone => "git_clone",
            GitOp::Pull => "git_pull",
            GitOp::Push => "git_push",
        }
    }

    fn description(&self) -> &str {
        match self.op {
            GitOp::Status => "Lists files changed, added or deleted since the last commit.",
            GitOp::Diff => "Shows the changes since the last commit as a unified diff.",
            GitOp::Log => "Lists recent commits, newest first.",
            GitOp::Commit => "Commits every change in the repository with a message.",
            GitOp::Clone => {
                "Clones the configured remote repository into a new folder of the workspace."
            }
            GitOp::Pull => "Fetches the current branch from the configured remote and merges it.",
            GitOp::Push => "Pushes the current branch to the configured remote.",
        }
    }

    fn risk(&self) -> RiskLevel {
        match self.op {
            GitOp::Status | GitOp::Diff | GitOp::Log => RiskLevel::Read,
            GitOp::Commit => RiskLevel::Write,
            GitOp::Clone | GitOp::Pull | GitOp::Push => RiskLevel::Network,
        }
    }

    fn schema(&self) -> Value {
        let repo = json!({ "type": "string", "description": REPO_ARG });
        match self.op {
            GitOp::Status | GitOp::Pull | GitOp::Push => {
                object_schema(json!({ "repo": repo }), &[])
            }
            GitOp::Diff => object_schema(
                json!({ "repo": repo, "path": { "type": "string", "description": "Only this file or folder (relative to the repository)." } }),
                &[],
            ),
            GitOp::Log => object_schema(
                json!({ "repo": repo, "max_count": { "type": "integer", "minimum": 1, "maximum": 200, "description": "How many commits (default 20)." } }),
                &[],
            ),
            GitOp::Commit => object_schema(
                json!({ "repo": repo, "message": { "type": "string", "description": "The commit message." } }),
                &["message"],
            ),
            GitOp::Clone => object_schema(
                json!({ "dest": { "type": "string", "description": "New folder to clone into, relative to the workspace." } }),
                &["dest"],
            ),
        }
    }

    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let ws = ctx.workspace.clone();
        let op = self.op;
        let remote = self.remote.clone();
        let name = self.name().to_string();
        blocking(&name, move || {
            let remote = remote.as_deref();
            let needs_remote = GitOp::REMOTE.contains(&op);
            let url = match (needs_remote, remote) {
                (true, None) => {
                    return Ok(Observation::error(
                        "no git remote is configured ([tools.git] remote), so there is nothing to clone, pull or push",
                    ))
                }
                (_, url) => url.unwrap_or_default(),
            };
            let repo_arg = args::str(&a, "repo").unwrap_or(".");
            let with_repo = |f: &dyn Fn(&Repository) -> Result<Observation, git2::Error>| match open(
                &ws, repo_arg,
            ) {
                Ok(repo) => f(&repo)
                    .unwrap_or_else(|e| Observation::error(format!("git: {}", e.message()))),
                Err(obs) => obs,
            };
            Ok(match op {
                GitOp::Clone => clone(&ws, &args::string(&a, "dest"), url),
                GitOp::Status => with_repo(&status),
                GitOp::Diff => with_repo(&|r| diff(r, args::str(&a, "path"))),
                GitOp::Log => with_repo(&|r| log(r, args::u64(&a, "max_count").unwrap_or(20))),
                // The workspace's checkpoint lock: a commit writes the index
                // a checkpoint or restore may be writing.
                GitOp::Commit | GitOp::Pull => match ws.lock() {
                    Err(e) => Observation::error(e.to_string()),
                    Ok(_lock) if op == GitOp::Commit => {
                        with_repo(&|r| commit(r, &args::string(&a, "message")))
                    }
                    Ok(_lock) => with_repo(&|r| pull(r, url)),
                },
                GitOp::Push => with_repo(&|r| push(r, url)),
            })
        })
        .await
    }
}

/// Opens the repository at `requested` (a directory of the workspace):
/// only there, never a parent found by discovery, and only when its git
/// dir and its working tree both lie in the workspace. A nested `.git` a
/// tool wrote (a `gitdir:` file, `core.worktree = /` in its config) would
/// otherwise point git at the host.
fn open(ws: &Workspace, requested: &str) -> Result<Repository, Observation> {
    let dir = resolve(ws, requested)?;
    // The workspace itself: troupe's own repository, whose git dir lies
    // outside the workspace on purpose.
    if dir == ws.root() {
        return ws
            .repo()
            .map_err(|e| Observation::error(format!("the workspace's repository: {e}")));
    }
    let no_discovery = git2::RepositoryOpenFlags::NO_SEARCH;
    let repo = Repository::open_ext(&dir, no_discovery, std::iter::empty::<&std::ffi::OsStr>())
        .map_err(|_| Observation::error(format!("`{requested}` is not a git repository")))?;
    let root = ws.root();
    let inside = |p: &std::path::Path| std::fs::canonicalize(p).is_ok_and(|p| p.starts_with(root));
    if !inside(repo.path()) {
        return Err(Observation::error(format!(
            "`{requested}`'s git directory lies outside the workspace; git tools open only repositories inside it"
        )));
    }
    match repo.workdir() {
        Some(tree) if inside(tree) && std::fs::canonicalize(tree).ok() == std::fs::canonicalize(&dir).ok() => Ok(repo),
        Some(_) => Err(Observation::error(format!(
            "`{requested}`'s working tree is set elsewhere (core.worktree); git tools open only repositories whose working tree is the folder named"
        ))),
        None => Err(Observation::error(format!(
            "`{requested}` is a bare repository; git tools work on a folder with its files"
        ))),
    }
}

fn status(repo: &Repository) -> Result<Observation, git2::Error> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut lines = Vec::new();
    for entry in statuses.iter() {
        let s = entry.status();
        let what = if s.is_wt_new() || s.is_index_new() {
            "new"
        } else if s.is_wt_deleted() || s.is_index_deleted() {
            "deleted"
        } else if s.is_wt_renamed() || s.is_index_renamed() {
            "renamed"
        } else if s.is_conflicted() {
            "conflicted"
        } else if s.is_ignored() {
            continue;
        } else {
            "modified"
        };
        lines.push(format!("{what}: {}", entry.path().unwrap_or("?")));
    }
    let count = lines.len();
    let text = if lines.is_empty() {
        "nothing changed since the last commit".to_string()
    } else {
        lines.join("\n")
    };
    Ok(Observation::ok(text, json!({ "changed": count })))
}

fn diff(repo: &Repository, path: Option<&str>) -> Result<Observation, git2::Error> {
    let head = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .show_untracked_content(true)
        .recurse_untracked_dirs(true);
    if let Some(p) = path {
        opts.pathspec(p);
    }
    let d = repo.diff_tree_to_workdir_with_index(head.as_ref(), Some(&mut opts))?;
    let files = d
        .deltas()
        .filter(|d| d.status() != Delta::Unmodified)
        .count();
    let mut text = String::new();
    d.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            text.push(line.origin());
        }
        text.push_str(&String::from_utf8_lossy(line.content()));
        true
    })?;
    if text.is_empty() {
        text = "no changes since the last commit".to_string();
    }
    Ok(Observation::ok(text, json!({ "files": files })))
}

fn log(repo: &Repository, max: u64) -> Result<Observation, git2::Error> {
    let mut walk = repo.revwalk()?;
    if walk.push_head().is_err() {
        return Ok(Observation::ok("no commits yet", json!({ "commits": 0 })));
    }
    let mut lines = Vec::new();
    for oid in walk.take(usize::try_from(max).unwrap_or(20)) {
        let c = repo.find_commit(oid?)?;
        let id = c.id().to_string();
        lines.push(format!(
            "{} {} ({}): {}",
            &id[..id.len().min(10)],
            c.time().seconds(),
            c.author().name().unwrap_or("?"),
            c.summary().unwrap_or("")
        ));
    }
    let n = lines.len();
    Ok(Observation::ok(lines.join("\n"), json!({ "commits": n })))
}

fn commit(repo: &Repository, message: &str) -> Result<Observation, git2::Error> {
    let message = message.trim();
    if message.is_empty() {
        return Ok(Observation::error("`message` is empty"));
    }
    if message.starts_with(CHECKPOINT_PREFIX.trim_end()) {
        return Ok(Observation::error(format!(
            "messages starting with `{}` are reserved for troupe's checkpoints",
            CHECKPOINT_PREFIX.trim_end()
        )));
    }
    let oid = commit_all(repo, message)?;
    Ok(Observation::ok(
        format!("committed {oid}: {message}"),
        json!({ "commit": oid.to_string() }),
    ))
}

fn clone(ws: &Workspace, dest: &str, url: &str) -> Observation {
    let target = match resolve(ws, dest) {
        Ok(p) => p,
        Err(obs) => return obs,
    };
    if target == ws.root() {
        return Observation::error("clone into a new folder, not the workspace itself");
    }
    let occupied = std::fs::read_dir(&target)
        .map(|mut d| d.next().is_some())
        .unwrap_or(target.exists());
    if occupied {
        return Observation::error(format!("`{dest}` already exists and is not empty"));
    }
    match git2::build::RepoBuilder::new().clone(url, &target) {
        Ok(repo) => {
            let head = repo
                .head()
                .ok()
                .and_then(|h| h.shorthand().map(str::to_string))
                .unwrap_or_else(|| "(empty repository)".to_string());
            Observation::ok(
                format!(
                    "cloned the remote into `{}` (branch {head})",
                    ws.display(&target)
                ),
                json!({ "path": ws.display(&target), "branch": head }),
            )
        }
        Err(e) => Observation::error(format!("could not clone the remote: {}", e.message())),
    }
}

fn current_branch(repo: &Repository) -> Result<String, git2::Error> {
    let head = repo.find_reference("HEAD")?;
    let target = head
        .symbolic_target()
        .ok_or_else(|| git2::Error::from_str("HEAD is detached; check out a branch first"))?;
    Ok(target.trim_start_matches("refs/heads/").to_string())
}

fn pull(repo: &Repository, url: &str) -> Result<Observation, git2::Error> {
    let branch = current_branch(repo)?;
    let mut remote = repo.remote_anonymous(url)?;
    remote.fetch(&[format!("refs/heads/{branch}")], None, None)?;
    let fetched = repo.find_reference("FETCH_HEAD")?.peel_to_commit()?;
    let annotated = repo.find_annotated_commit(fetched.id())?;
    let (analysis, _) = repo.merge_analysis(&[&annotated])?;
    let refname = format!("refs/heads/{branch}");
    if analysis.is_up_to_date() {
        return Ok(Observation::ok(
            format!("`{branch}` is already up to date"),
            json!({ "result": "up_to_date" }),
        ));
    }
    if analysis.is_fast_forward() || analysis.is_unborn() {
        // Checking out first (safely) means local edits that would be
        // overwritten stop the pull before the branch moves.
        repo.checkout_tree(fetched.as_object(), Some(CheckoutBuilder::new().safe()))?;
        match repo.find_reference(&refname) {
            Ok(mut r) => {
                r.set_target(fetched.id(), "pull: fast-forward")?;
            }
            Err(_) => {
                repo.reference(&refname, fetched.id(), true, "pull: initial")?;
            }
        }
        return Ok(Observation::ok(
            format!("fast-forwarded `{branch}` to {}", fetched.id()),
            json!({ "result": "fast_forward", "commit": fetched.id().to_string() }),
        ));
    }
    let ours = repo.head()?.peel_to_commit()?;
    let mut index = repo.merge_commits(&ours, &fetched, None)?;
    if index.has_conflicts() {
        let paths: Vec<String> = index
            .conflicts()?
            .filter_map(Result::ok)
            .filter_map(|c| c.our.or(c.their))
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        return Ok(Observation::error_with(
            format!(
                "pulling `{branch}` needs a merge with conflicts in: {}; nothing was changed",
                paths.join(", ")
            ),
            json!({ "result": "conflict", "paths": paths }),
        ));
    }
    let tree = repo.find_tree(index.write_tree_to(repo)?)?;
    repo.checkout_tree(tree.as_object(), Some(CheckoutBuilder::new().safe()))?;
    let sig = crate::workspace::signature()?;
    let oid = repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        &format!("Merge remote branch {branch}"),
        &tree,
        &[&ours, &fetched],
    )?;
    Ok(Observation::ok(
        format!("merged the remote `{branch}` into the local one ({oid})"),
        json!({ "result": "merge", "commit": oid.to_string() }),
    ))
}

fn push(repo: &Repository, url: &str) -> Result<Observation, git2::Error> {
    let branch = current_branch(repo)?;
    let mut remote = repo.remote_anonymous(url)?;
    let mut rejected: Option<String> = None;
    let mut callbacks = git2::RemoteCallbacks::new();
    callbacks.push_update_reference(|_, status| {
        if let Some(s) = status {
            rejected = Some(s.to_string());
        }
        Ok(())
    });
    let mut opts = git2::PushOptions::new();
    opts.remote_callbacks(callbacks);
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    remote.push(&[spec.as_str()], Some(&mut opts))?;
    drop(opts);
    if let Some(why) = rejected {
        return Ok(Observation::error(format!(
            "the remote refused the push of `{branch}`: {why} (pull first if it has commits you do not have)"
        )));
    }
    let head = repo.head()?.peel_to_commit()?.id();
    Ok(Observation::ok(
        format!("pushed `{branch}` ({head}) to the remote"),
        json!({ "branch": branch, "commit": head.to_string() }),
    ))
}
