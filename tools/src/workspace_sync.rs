//! Moving a workspace's files between machines: a snapshot of the files at
//! a checkpoint, the changes between two checkpoints, and applying either
//! to another workspace.
//!
//! A cluster peer that runs a subtask works in its own copy of the task's
//! workspace: it starts from the owner's snapshot, and each step's changes
//! come back to be applied and checkpointed in the owner's workspace. Git
//! objects never cross: the owner's history stays the owner's, and a change
//! is plain files, so it applies on top of whatever other subtasks wrote
//! meanwhile (the step's version of a file wins, as it would locally).

use std::path::{Component, Path};

use git2::{Delta, DiffOptions, ObjectType, TreeWalkMode, TreeWalkResult};
use serde::{Deserialize, Serialize};

use crate::workspace::{CheckpointId, Workspace, WorkspaceError};

/// One file's new state: its content, or `None` when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// The path relative to the workspace root, `/`-separated.
    pub path: String,
    /// The content (base64 on the wire); `None`: the file is gone.
    #[serde(with = "content_b64")]
    pub content: Option<Vec<u8>>,
    /// Whether the file is executable.
    #[serde(default)]
    pub executable: bool,
}

impl FileChange {
    /// Bytes of content this change carries.
    pub fn size(&self) -> usize {
        self.content.as_ref().map_or(0, Vec::len)
    }
}

mod content_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

const EXECUTABLE_MODE: i32 = 0o100_755;

impl Workspace {
    /// The checkpoint the workspace is at (its HEAD commit).
    ///
    /// # Errors
    /// [`WorkspaceError::Git`] when the repository has no commit.
    pub fn head(&self) -> Result<CheckpointId, WorkspaceError> {
        let repo = self.repo()?;
        let head = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| self.git("head", e))?;
        Ok(CheckpointId(head.id().to_string()))
    }

    /// Every file of checkpoint `at` (what a peer needs to start from).
    ///
    /// # Errors
    /// [`WorkspaceError::UnknownCheckpoint`], or libgit2's.
    pub fn snapshot(&self, at: &CheckpointId) -> Result<Vec<FileChange>, WorkspaceError> {
        let repo = self.repo()?;
        let tree = self.tree_of(&repo, at)?;
        let mut files = Vec::new();
        let mut failed = None;
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            let Some(name) = entry.name() else {
                return TreeWalkResult::Skip;
            };
            match repo.find_blob(entry.id()) {
                Ok(blob) => files.push(FileChange {
                    path: format!("{dir}{name}"),
                    content: Some(blob.content().to_vec()),
                    executable: entry.filemode() == EXECUTABLE_MODE,
                }),
                Err(e) => {
                    failed = Some(e);
                    return TreeWalkResult::Abort;
                }
            }
            TreeWalkResult::Ok
        })
        .map_err(|e| self.git("snapshot", e))?;
        if let Some(e) = failed {
            return Err(self.git("snapshot", e));
        }
        Ok(files)
    }

    /// The files that differ between checkpoints `from` and `to`, as their
    /// state at `to` (renames are a deletion and an addition).
    ///
    /// # Errors
    /// [`WorkspaceError::UnknownCheckpoint`], or libgit2's.
    pub fn changes(
        &self,
        from: &CheckpointId,
        to: &CheckpointId,
    ) -> Result<Vec<FileChange>, WorkspaceError> {
        let repo = self.repo()?;
        let old = self.tree_of(&repo, from)?;
        let new = self.tree_of(&repo, to)?;
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let diff = repo
            .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut opts))
            .map_err(|e| self.git("diff", e))?;
        let mut out = Vec::new();
        for delta in diff.deltas() {
            if delta.status() == Delta::Deleted {
                if let Some(path) = delta.old_file().path() {
                    out.push(FileChange {
                        path: slashed(path),
                        content: None,
                        executable: false,
                    });
                }
                continue;
            }
            let file = delta.new_file();
            let Some(path) = file.path() else { continue };
            let blob = repo.find_blob(file.id()).map_err(|e| self.git("diff", e))?;
            out.push(FileChange {
                path: slashed(path),
                content: Some(blob.content().to_vec()),
                executable: i32::from(file.mode()) == EXECUTABLE_MODE,
            });
        }
        Ok(out)
    }

    /// Writes (or deletes) each file. With `exact`, files the workspace's
    /// HEAD holds that `changes` does not name are removed too, so the
    /// files become exactly the snapshot `changes` is. Nothing is
    /// committed; a checkpoint after this records it.
    ///
    /// # Errors
    /// [`WorkspaceError::RefusedChange`] for a path that is absolute, has
    /// `..` or lands in `.git` (checked for every change before any file is
    /// touched), else the first I/O error.
    pub fn apply(&self, changes: &[FileChange], exact: bool) -> Result<(), WorkspaceError> {
        for change in changes {
            check_path(&change.path)?;
        }
        if exact {
            let head = self.head()?;
            let named: std::collections::HashSet<&str> =
                changes.iter().map(|c| c.path.as_str()).collect();
            for file in self.snapshot(&head)? {
                if !named.contains(file.path.as_str()) {
                    remove(&self.root().join(&file.path))?;
                }
            }
        }
        for change in changes {
            let path = self.root().join(&change.path);
            let Some(content) = &change.content else {
                remove(&path)?;
                continue;
            };
            if let Some(dir) = path.parent() {
                // A file that a change turns into a directory (or back).
                if dir.is_file() {
                    remove(dir)?;
                }
                std::fs::create_dir_all(dir).map_err(|source| WorkspaceError::Io {
                    op: "create",
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path).map_err(|source| WorkspaceError::Io {
                    op: "remove",
                    path: path.clone(),
                    source,
                })?;
            }
            std::fs::write(&path, content).map_err(|source| WorkspaceError::Io {
                op: "write",
                path: path.clone(),
                source,
            })?;
            set_executable(&path, change.executable)?;
        }
        Ok(())
    }

    fn tree_of<'r>(
        &self,
        repo: &'r git2::Repository,
        id: &CheckpointId,
    ) -> Result<git2::Tree<'r>, WorkspaceError> {
        let commit = self.commit_of(repo, id)?;
        commit.tree().map_err(|e| self.git("tree", e))
    }
}

/// `path` with `/` separators, as git names it.
fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Refuses a path that leaves the workspace or touches its repository.
fn check_path(path: &str) -> Result<(), WorkspaceError> {
    let refuse = |reason: &str| WorkspaceError::RefusedChange {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.is_empty() {
        return Err(refuse("is empty"));
    }
    let p = Path::new(path);
    for component in p.components() {
        match component {
            Component::Normal(name) if name == ".git" => {
                return Err(refuse("is inside the workspace's .git"))
            }
            Component::Normal(_) => {}
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is absolute")),
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), WorkspaceError> {
    let result = if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(WorkspaceError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(unix)]
fn set_executable(path: &Path, executable: bool) -> Result<(), WorkspaceError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| WorkspaceError::Io {
        op: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    let mut perms = meta.permissions();
    let mode = if executable {
        perms.mode() | 0o111
    } else {
        perms.mode() & !0o111
    };
    perms.set_mode(mode);
    std::fs::set_permissions(path, perms).map_err(|source| WorkspaceError::Io {
        op: "chmod",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(not(unix))]
fn set_executable(_path: &Path, _executable: bool) -> Result<(), WorkspaceError> {
    Ok(())
}
