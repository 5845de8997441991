//! A task's workspace: `DATA_DIR/workspaces/<task-id>/` with `src/`,
//! `output/`, `research/` and a `README.md` the agent keeps its notes in. It
//! is the work tree of a git repository whose git dir lies outside it, in
//! `DATA_DIR/git/<task-id>.git`, so that nothing a tool does in the
//! workspace (sandboxed or not) can rewrite the history recovery depends
//! on; a checkpoint is a commit made after each completed step, and
//! restoring one is how pause/resume and crash recovery put the files back.
//! Workspaces made before the git dir moved keep theirs in `.git`.
//!
//! libgit2 calls block; async callers run them on a blocking thread.

use crate::confine::{self, ConfinementError};
use git2::{build::CheckoutBuilder, IndexAddOption, Repository, ResetType, Signature, Sort};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The folder under the data dir that holds every task's workspace.
pub const WORKSPACES_DIR: &str = "workspaces";
/// The folder beside it that holds the `HOME` of each task's tool processes:
/// outside the workspace, so what programs drop in `HOME` (caches, rc files,
/// `.rustup/settings.toml`) is never committed into a checkpoint.
pub const HOMES_DIR: &str = "homes";
/// The folder beside it that holds each workspace's git dir
/// (`<task-id>.git`).
pub const GIT_DIRS_DIR: &str = "git";
/// Every checkpoint commit's message starts with this.
pub const CHECKPOINT_PREFIX: &str = "checkpoint: ";
/// The folders every workspace starts with.
pub const LAYOUT_DIRS: [&str; 3] = ["src", "output", "research"];
const AUTHOR_NAME: &str = "troupe";
const AUTHOR_EMAIL: &str = "troupe@localhost";
const GITIGNORE: &str =
    "# Environments and caches are rebuilt, not checkpointed.\n.venv/\n.cache/\n__pycache__/\n";

/// Why a workspace operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// The task id cannot be a directory name.
    #[error("task id `{id}` cannot name a workspace: {reason}")]
    InvalidTaskId {
        /// The id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// `create` found a workspace already there.
    #[error("a workspace already exists at {path}")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// `open` found no workspace.
    #[error("no workspace at {path}")]
    NotFound {
        /// The directory.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// libgit2 failed.
    #[error("git {op} in {path}: {source}")]
    Git {
        /// The operation.
        op: &'static str,
        /// The workspace.
        path: PathBuf,
        /// libgit2's error.
        source: git2::Error,
    },
    /// No checkpoint with this id.
    #[error("no checkpoint {id} in the workspace of task {task}")]
    UnknownCheckpoint {
        /// The id asked for.
        id: String,
        /// The task.
        task: String,
    },
    /// A file change from elsewhere (a cluster peer) names a path that
    /// would land outside the workspace or in its `.git`.
    #[error("a synced file change names `{path}`, which {reason}")]
    RefusedChange {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A checkpoint's id: the commit hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CheckpointId(pub String);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One checkpoint, as listed by [`Workspace::checkpoints`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The commit hash.
    pub id: CheckpointId,
    /// The step it was made after (the message without its prefix).
    pub step: String,
    /// The whole commit message.
    pub message: String,
    /// When it was made (to the second).
    pub time: SystemTime,
}

/// A path a tool asked for and was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The path as the model wrote it.
    pub requested: String,
    /// Why it was refused.
    pub error: ConfinementError,
}

/// A task's workspace.
#[derive(Debug)]
pub struct Workspace {
    task_id: String,
    root: PathBuf,
    alias: PathBuf,
    /// The repository's git dir: `DATA_DIR/git/<task-id>.git`, or the
    /// workspace's own `.git` for one made before the git dir moved.
    git_dir: PathBuf,
    // A std Mutex: it is held only to push or copy, never across an await.
    refusals: Mutex<Vec<Refusal>>,
}

fn check_task_id(id: &str) -> Result<(), WorkspaceError> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > 128 {
        Some("it is longer than 128 characters")
    } else if id == "." || id == ".." {
        Some("it is a relative directory name")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("only letters, digits, `-`, `_` and `.` are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(WorkspaceError::InvalidTaskId {
            id: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn readme(task_id: &str) -> String {
    format!(
        "# Task {task_id}\n\n\
         Notes and progress for this task. The agent keeps this file up to date:\n\
         what was asked, what has been done, what is left, and anything learned\n\
         along the way.\n\n\
         ## Layout\n\n\
         - `src/`: code written for the task\n\
         - `output/`: what the task delivers\n\
         - `research/`: notes and material gathered\n\n\
         ## Progress\n\n"
    )
}

impl Workspace {
    /// The directory of `task_id`'s workspace under `data_dir`.
    pub fn path_for(data_dir: &Path, task_id: &str) -> PathBuf {
        data_dir.join(WORKSPACES_DIR).join(task_id)
    }

    /// The git dir of `task_id`'s workspace under `data_dir`.
    pub fn git_dir_for(data_dir: &Path, task_id: &str) -> PathBuf {
        data_dir.join(GIT_DIRS_DIR).join(format!("{task_id}.git"))
    }

    /// Creates the workspace of `task_id`: the layout, README.md, a git
    /// repository and an initial checkpoint.
    pub fn create(data_dir: &Path, task_id: &str) -> Result<Workspace, WorkspaceError> {
        check_task_id(task_id)?;
        let dir = Workspace::path_for(data_dir, task_id);
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| WorkspaceError::Io { op, path, source }
        };
        if dir.exists() {
            return Err(WorkspaceError::AlreadyExists { path: dir });
        }
        let git_dir = Workspace::git_dir_for(data_dir, task_id);
        if git_dir.exists() {
            return Err(WorkspaceError::AlreadyExists { path: git_dir });
        }
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        for sub in LAYOUT_DIRS {
            let keep = dir.join(sub).join(".gitkeep");
            std::fs::create_dir_all(dir.join(sub)).map_err(io("create", &dir.join(sub)))?;
            std::fs::write(&keep, "").map_err(io("write", &keep))?;
        }
        let readme_path = dir.join("README.md");
        std::fs::write(&readme_path, readme(task_id)).map_err(io("write", &readme_path))?;
        let ignore = dir.join(".gitignore");
        std::fs::write(&ignore, GITIGNORE).map_err(io("write", &ignore))?;
        let dir_canonical = dir.canonicalize().map_err(io("canonicalize", &dir))?;
        let git_parent = data_dir.join(GIT_DIRS_DIR);
        std::fs::create_dir_all(&git_parent).map_err(io("create", &git_parent))?;
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main")
            .no_dotgit_dir(true)
            .workdir_path(&dir_canonical);
        Repository::init_opts(&git_dir, &opts).map_err(|source| WorkspaceError::Git {
            op: "init",
            path: git_dir.clone(),
            source,
        })?;
        // libgit2 links the work tree to its git dir with a `.git` file;
        // troupe opens the git dir itself, and the workspace holds no git
        // metadata at all.
        let link = dir.join(".git");
        if link.is_file() {
            std::fs::remove_file(&link).map_err(io("remove", &link))?;
        }
        let ws = Workspace::at(task_id, &dir, git_dir)?;
        ws.checkpoint(&format!("workspace created for task {task_id}"))?;
        tracing::info!(task = task_id, path = %ws.root.display(), "workspace created");
        Ok(ws)
    }

    /// Opens the existing workspace of `task_id`.
    pub fn open(data_dir: &Path, task_id: &str) -> Result<Workspace, WorkspaceError> {
        check_task_id(task_id)?;
        let dir = Workspace::path_for(data_dir, task_id);
        let git_dir = Workspace::git_dir_for(data_dir, task_id);
        if dir.is_dir() && git_dir.is_dir() {
            return Workspace::at(task_id, &dir, git_dir);
        }
        // A workspace made before the git dir moved out of it.
        if dir.join(".git").is_dir() {
            return Workspace::at(task_id, &dir, dir.join(".git"));
        }
        Err(WorkspaceError::NotFound { path: dir })
    }

    fn at(task_id: &str, dir: &Path, git_dir: PathBuf) -> Result<Workspace, WorkspaceError> {
        let root = dir.canonicalize().map_err(|source| WorkspaceError::Io {
            op: "canonicalize",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Workspace {
            task_id: task_id.to_string(),
            root,
            alias: dir.to_path_buf(),
            git_dir,
            refusals: Mutex::new(Vec::new()),
        })
    }

    /// The `HOME` of this task's tool processes, created on first use:
    /// `DATA_DIR/homes/<task-id>`, beside (never inside) the workspace.
    pub fn tool_home(&self) -> Result<PathBuf, WorkspaceError> {
        let data_dir = self.data_dir();
        let home = data_dir.join(HOMES_DIR).join(&self.task_id);
        std::fs::create_dir_all(&home).map_err(|source| WorkspaceError::Io {
            op: "create",
            path: home.clone(),
            source,
        })?;
        Ok(home)
    }

    /// `text` (an error about to reach the model) without host paths:
    /// the workspace as `.` and paths below it relative to it, the rest of
    /// the data directory (the tool's home, the checkpoint repository) as
    /// `$DATA_DIR`. The model works in the workspace; where troupe keeps
    /// it on the host is none of its business.
    pub fn without_host_paths(&self, text: &str) -> String {
        let data_dir = self.data_dir();
        let mut out = text.to_string();
        for root in [&self.root, &self.alias] {
            let root = root.display().to_string();
            if root.len() > 1 {
                out = replace_path(&out, &format!("{root}/"), "");
                out = replace_path(&out, &root, ".");
            }
        }
        // The data dir as the workspace lies in it, and as configured (the
        // git dir is named from the configured one, which may be a link).
        let configured = self.git_dir.parent().and_then(Path::parent);
        for data in [Some(data_dir), configured].into_iter().flatten() {
            let data = data.display().to_string();
            if data.len() > 1 {
                out = replace_path(&out, &data, "$DATA_DIR");
            }
        }
        out
    }

    /// The data dir this workspace lies in (`DATA_DIR/workspaces/<task>`).
    fn data_dir(&self) -> &Path {
        self.root
            .parent()
            .and_then(Path::parent)
            .unwrap_or(&self.root)
    }

    /// The task this workspace belongs to.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The workspace directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository's git dir (outside the workspace, see the module
    /// documentation).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Resolves a path the model wrote to a real path inside the workspace,
    /// refusing (and recording) anything that would lead out of it.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, ConfinementError> {
        confine::resolve(&self.root, &self.alias, requested).inspect_err(|error| {
            tracing::warn!(task = %self.task_id, requested, %error, "path refused");
            if let Ok(mut list) = self.refusals.lock() {
                list.push(Refusal {
                    requested: requested.to_string(),
                    error: error.clone(),
                });
            }
        })
    }

    /// Every path refused so far, oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.refusals.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `path` relative to the workspace root, for messages (`.` for the root).
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// Holds the workspace's checkpoint lock until dropped: one checkpoint
    /// or restore at a time, across every `Workspace` value and process
    /// that opens this workspace (subtasks sharing it, a recovery racing a
    /// worker's checkpoint). An exclusive `flock` on `troupe.lock` in the
    /// git dir, which the kernel releases when the holder dies.
    pub(crate) fn lock(&self) -> Result<WorkspaceLock, WorkspaceError> {
        self.flock(
            "troupe.lock",
            ["open the checkpoint lock", "take the checkpoint lock"],
        )
        .map(|file| WorkspaceLock { _file: file })
    }

    /// Holds the workspace's step lock until dropped, blocking until it is
    /// free. Workers that share a workspace run each step's tool, and make
    /// its checkpoint, under it (and a recovery restores under it), so a
    /// checkpoint holds whole steps: never half of another subtask's step,
    /// which recovery would then redo on top of its own effects. Model
    /// calls run outside it, in parallel. Separate from the checkpoint lock
    /// (`troupe-step.lock`), so a tool holding it may still checkpoint or
    /// commit.
    pub fn step_lock(&self) -> Result<StepLock, WorkspaceError> {
        self.flock(
            "troupe-step.lock",
            ["open the step lock", "take the step lock"],
        )
        .map(|file| StepLock { _file: file })
    }

    /// An exclusive `flock` on `name` in the git dir; `ops` name the open
    /// and the lock in errors.
    fn flock(&self, name: &str, ops: [&'static str; 2]) -> Result<std::fs::File, WorkspaceError> {
        use std::os::fd::AsRawFd;
        let path = self.git_dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| WorkspaceError::Io {
                op: ops[0],
                path: path.clone(),
                source,
            })?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(file);
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(WorkspaceError::Io {
                    op: ops[1],
                    path,
                    source: error,
                });
            }
        }
    }

    /// The workspace's repository (opened through its git dir, whose
    /// `core.worktree` names the workspace).
    pub fn repo(&self) -> Result<Repository, WorkspaceError> {
        let repo = Repository::open(&self.git_dir).map_err(|e| self.git("open", e))?;
        // The work tree is the workspace wherever the data dir now lies
        // (core.worktree keeps the path it was created under).
        repo.set_workdir(&self.root, false)
            .map_err(|e| self.git("open", e))?;
        Ok(repo)
    }

    pub(crate) fn git(&self, op: &'static str, source: git2::Error) -> WorkspaceError {
        WorkspaceError::Git {
            op,
            path: self.root.clone(),
            source,
        }
    }

    /// Commits every change in the workspace (new, changed and deleted
    /// files; ignored ones such as `.venv/` and repositories cloned inside
    /// the workspace excepted) as a checkpoint after
    /// `step`. A checkpoint is made even when nothing changed, so every step
    /// has one to return to.
    pub fn checkpoint(&self, step: &str) -> Result<CheckpointId, WorkspaceError> {
        let _lock = self.lock()?;
        let repo = self.repo()?;
        let message = format!("{CHECKPOINT_PREFIX}{}", step.trim());
        // Another subtask's tool may be writing a file of the shared
        // workspace while it is read ("file changed before we could read
        // it", or gone by the time it is read): read again, a few times.
        let mut attempt = 0;
        let id = loop {
            match commit_all(&repo, &message) {
                Ok(id) => break id,
                Err(e)
                    if matches!(
                        e.class(),
                        git2::ErrorClass::Filesystem | git2::ErrorClass::Os
                    ) && attempt < 10 =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(5 * attempt));
                }
                Err(e) => return Err(self.git("commit", e)),
            }
        };
        tracing::debug!(task = %self.task_id, %id, step, "checkpoint");
        Ok(CheckpointId(id.to_string()))
    }

    /// The checkpoints on the current branch, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, WorkspaceError> {
        let repo = self.repo()?;
        let mut walk = repo.revwalk().map_err(|e| self.git("log", e))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME | Sort::REVERSE)
            .map_err(|e| self.git("log", e))?;
        walk.push_head().map_err(|e| self.git("log", e))?;
        let mut out = Vec::new();
        for oid in walk {
            let oid = oid.map_err(|e| self.git("log", e))?;
            let commit = repo.find_commit(oid).map_err(|e| self.git("log", e))?;
            let message = commit.message().unwrap_or_default().to_string();
            let Some(step) = step_of(&message) else {
                continue;
            };
            let secs = u64::try_from(commit.time().seconds()).unwrap_or(0);
            out.push(Checkpoint {
                id: CheckpointId(oid.to_string()),
                step,
                message: message.clone(),
                time: UNIX_EPOCH + Duration::from_secs(secs),
            });
        }
        Ok(out)
    }

    /// The step label of checkpoint `id` (as [`Checkpoint::step`]); `None`
    /// for a commit that is not a checkpoint.
    ///
    /// # Errors
    /// [`WorkspaceError::UnknownCheckpoint`], or libgit2's.
    pub fn checkpoint_step(&self, id: &CheckpointId) -> Result<Option<String>, WorkspaceError> {
        let repo = self.repo()?;
        let commit = self.commit_of(&repo, id)?;
        Ok(step_of(commit.message().unwrap_or_default()))
    }

    /// The commit of checkpoint `id`.
    pub(crate) fn commit_of<'r>(
        &self,
        repo: &'r Repository,
        id: &CheckpointId,
    ) -> Result<git2::Commit<'r>, WorkspaceError> {
        let unknown = || WorkspaceError::UnknownCheckpoint {
            id: id.0.clone(),
            task: self.task_id.clone(),
        };
        let oid = git2::Oid::from_str(&id.0).map_err(|_| unknown())?;
        repo.find_commit(oid).map_err(|_| unknown())
    }

    /// Puts the workspace back exactly as it was at checkpoint `id`: the
    /// branch, index and files are reset to that commit, and files that are
    /// not in it are removed. Ignored paths (`.venv/`) and repositories
    /// cloned inside the workspace, which checkpoints do not record, stay.
    pub fn restore(&self, id: &CheckpointId) -> Result<(), WorkspaceError> {
        let _lock = self.lock()?;
        let repo = self.repo()?;
        let commit = self.commit_of(&repo, id)?;
        let mut checkout = CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        repo.reset(commit.as_object(), ResetType::Hard, Some(&mut checkout))
            .map_err(|e| self.git("reset", e))?;
        // libgit2's hard reset keeps untracked files whatever the checkout
        // options say, so they are removed here.
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .include_ignored(false)
            .recurse_untracked_dirs(false);
        let statuses = repo
            .statuses(Some(&mut opts))
            .map_err(|e| self.git("status", e))?;
        for entry in statuses.iter().filter(|e| e.status().is_wt_new()) {
            let Some(rel) = entry.path() else { continue };
            if is_nested_repo(&self.root, Path::new(rel)) {
                continue;
            }
            let path = self.root.join(rel);
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|source| WorkspaceError::Io {
                op: "remove untracked",
                path: path.clone(),
                source,
            })?;
        }
        tracing::info!(task = %self.task_id, %id, "workspace restored");
        Ok(())
    }
}

/// The checkpoint lock of a workspace, held while this lives (closing the
/// file releases the `flock`).
#[derive(Debug)]
pub(crate) struct WorkspaceLock {
    _file: std::fs::File,
}

/// The step lock of a workspace ([`Workspace::step_lock`]), held while
/// this lives.
#[derive(Debug)]
pub struct StepLock {
    _file: std::fs::File,
}

/// `text` with every occurrence of the path `from` replaced by `to`, where
/// the path ends there (`/data` in `/data/x` or `/data:`, not in
/// `/database`). A `from` ending in `/` always ends a path.
fn replace_path(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let ends = from.ends_with('/')
            || after
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
        out.push_str(&rest[..at]);
        out.push_str(if ends { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The step a checkpoint commit's message names; `None` for other commits.
fn step_of(message: &str) -> Option<String> {
    message
        .strip_prefix(CHECKPOINT_PREFIX)
        .map(|step| step.trim_end().to_string())
}

/// Whether `rel` (relative to `workdir`) is a git repository of its own.
fn is_nested_repo(workdir: &Path, rel: &Path) -> bool {
    !rel.as_os_str().is_empty() && workdir.join(rel).join(".git").exists()
}

/// The signature troupe commits with.
pub(crate) fn signature() -> Result<Signature<'static>, git2::Error> {
    Signature::now(AUTHOR_NAME, AUTHOR_EMAIL)
}

/// Stages everything (additions, changes, deletions) and commits it on HEAD.
pub(crate) fn commit_all(repo: &Repository, message: &str) -> Result<git2::Oid, git2::Error> {
    let mut index = repo.index()?;
    let workdir = repo.workdir().map(Path::to_path_buf);
    // A repository inside this one (a `git_clone` into the workspace) keeps
    // its own history; libgit2 refuses to add it, so it is skipped.
    let mut skip_nested = |path: &Path, _spec: &[u8]| -> i32 {
        match &workdir {
            Some(w) if is_nested_repo(w, path) => 1,
            _ => 0,
        }
    };
    index.add_all(["*"], IndexAddOption::DEFAULT, Some(&mut skip_nested))?;
    index.update_all(["*"], None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = signature()?;
    let parent = match repo.head() {
        Ok(head) => Some(head.peel_to_commit()?),
        Err(e)
            if e.code() == git2::ErrorCode::UnbornBranch
                || e.code() == git2::ErrorCode::NotFound =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
}
