//! Confinement: turning a path the model wrote into a real path that is
//! guaranteed to lie inside the workspace.
//!
//! The path is walked one component at a time against the file system, the
//! way the kernel would: `..` steps up from the real directory reached so far
//! (never above the workspace root), and each symlink met is read and its
//! target walked in turn, so a link pointing out of the workspace is refused
//! even when it is dangling or buried in the middle of the path. Components
//! past the first one that does not exist cannot be links, so a target that
//! is about to be created is checked through its existing parent.
//!
//! A `.git` anywhere on the path is refused too: the workspace's own holds
//! the checkpoints that pause/resume and crash recovery depend on, and a
//! nested one written by a tool (`x/.git/config` with `worktree = /`, or a
//! `.git` file saying `gitdir: /elsewhere`) would point the git tools at
//! the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (the kernel's limit is 40).
const MAX_LINKS: usize = 40;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfinementError {
    /// The path was empty.
    #[error("the path is empty")]
    Empty,
    /// `..` climbs above the workspace root.
    #[error("`{path}` leads outside the workspace through `..`")]
    ParentEscape {
        /// The path as requested.
        path: String,
    },
    /// An absolute path that is not inside the workspace.
    #[error("`{path}` is an absolute path outside the workspace")]
    AbsoluteOutside {
        /// The path as requested.
        path: String,
    },
    /// A symlink on the way leads out of the workspace.
    #[error("`{path}` goes through the symlink `{link}`, which leads outside the workspace")]
    SymlinkOutside {
        /// The path as requested.
        path: String,
        /// The link, relative to the workspace.
        link: String,
    },
    /// Too many symlinks (probably a loop).
    #[error("`{path}` goes through more than {MAX_LINKS} symlinks")]
    TooManyLinks {
        /// The path as requested.
        path: String,
    },
    /// A `.git` on the path: the workspace's own (troupe's checkpoints) or a
    /// nested one, which could point git at a repository outside.
    #[error("`{path}` is or lies inside a .git (git's metadata), which tools may not create, change or read; the workspace's own holds troupe's checkpoints")]
    GitDir {
        /// The path as requested.
        path: String,
    },
    /// A name with a control character (a newline, a tab, …) or a Unicode
    /// direction override, which make a listing or a diff show something
    /// other than what is there.
    #[error("`{path}` has a {what} in a file name; names may not hold control or text-direction characters")]
    UnsafeName {
        /// The path as requested (escaped).
        path: String,
        /// What was found.
        what: &'static str,
    },
    /// A component could not be inspected.
    #[error("cannot inspect `{path}`: {reason}")]
    Inspect {
        /// The path as requested.
        path: String,
        /// The I/O error, in words.
        reason: String,
    },
}

/// What makes a file name unsafe to show, if anything: control characters
/// (a newline splits a listing line; an escape sequence rewrites the
/// terminal) and the Unicode direction marks and overrides (U+200E/F,
/// U+202A–U+202E, U+2066–U+2069) that make `txt.exe` read as `exe.txt`.
fn unsafe_char(text: &str) -> Option<&'static str> {
    text.chars().find_map(|c| match c {
        '\n' | '\r' => Some("line break"),
        c if c.is_control() => Some("control character"),
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
            Some("text-direction character")
        }
        _ => None,
    })
}

enum Step {
    Up,
    Name(OsString),
}

fn steps(path: &Path, out: &mut VecDeque<Step>, front: bool) {
    let mut list: Vec<Step> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => list.push(Step::Up),
            Component::Normal(n) => list.push(Step::Name(n.to_os_string())),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    if front {
        for s in list.into_iter().rev() {
            out.push_front(s);
        }
    } else {
        out.extend(list);
    }
}

/// The part of absolute `path` below `root` (canonical) or `alias` (the root
/// as it was named before canonicalising), if it is below either.
fn below<'a>(path: &'a Path, root: &Path, alias: &Path) -> Option<&'a Path> {
    path.strip_prefix(root)
        .ok()
        .or_else(|| path.strip_prefix(alias).ok())
}

/// Resolves `requested` inside the workspace whose canonical root is `root`
/// (`alias` is the same directory as first named, which absolute paths may
/// also use).
pub fn resolve(root: &Path, alias: &Path, requested: &str) -> Result<PathBuf, ConfinementError> {
    if requested.is_empty() {
        return Err(ConfinementError::Empty);
    }
    if let Some(what) = unsafe_char(requested) {
        return Err(ConfinementError::UnsafeName {
            path: requested.escape_debug().to_string(),
            what,
        });
    }
    let req = Path::new(requested);
    let mut pending = VecDeque::new();
    if req.is_absolute() {
        match below(req, root, alias) {
            Some(rest) => steps(rest, &mut pending, false),
            None => {
                return Err(ConfinementError::AbsoluteOutside {
                    path: requested.to_string(),
                })
            }
        }
    } else {
        steps(req, &mut pending, false);
    }
    let mut cur = root.to_path_buf();
    let mut exists = true;
    let mut links = 0usize;
    let mut via_link: Option<String> = None;
    while let Some(step) = pending.pop_front() {
        let name = match step {
            Step::Up => {
                if cur == root {
                    return Err(match via_link {
                        Some(link) => ConfinementError::SymlinkOutside {
                            path: requested.to_string(),
                            link,
                        },
                        None => ConfinementError::ParentEscape {
                            path: requested.to_string(),
                        },
                    });
                }
                cur.pop();
                continue;
            }
            Step::Name(n) => n,
        };
        let next = cur.join(&name);
        if !exists {
            cur = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ConfinementError::TooManyLinks {
                        path: requested.to_string(),
                    });
                }
                let link_name = next
                    .strip_prefix(root)
                    .unwrap_or(&next)
                    .display()
                    .to_string();
                let target = std::fs::read_link(&next).map_err(|e| ConfinementError::Inspect {
                    path: requested.to_string(),
                    reason: e.to_string(),
                })?;
                if target.is_absolute() {
                    match below(&target, root, alias) {
                        Some(rest) => {
                            cur = root.to_path_buf();
                            steps(rest, &mut pending, true);
                        }
                        None => {
                            return Err(ConfinementError::SymlinkOutside {
                                path: requested.to_string(),
                                link: link_name,
                            })
                        }
                    }
                } else {
                    steps(&target, &mut pending, true);
                }
                via_link = Some(link_name);
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                exists = false;
                cur = next;
            }
            Err(e) => {
                return Err(ConfinementError::Inspect {
                    path: requested.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
    if cur.strip_prefix(root).is_ok_and(|rest| {
        rest.components()
            .any(|c| c.as_os_str().to_string_lossy().eq_ignore_ascii_case(".git"))
    }) {
        return Err(ConfinementError::GitDir {
            path: requested.to_string(),
        });
    }
    Ok(cur)
}
