//! Downloads a GGUF model from a Hugging Face endpoint into the hub cache,
//! through hf-hub.
//!
//! hf-hub writes the cache layout the catalog reads
//! (`models--{org}--{name}/{blobs,snapshots,refs}`), so a pulled model shows up
//! in `troupe models` without further bookkeeping. What hf-hub does not do is
//! guarantee that what it left there is loadable: it links a blob into
//! `snapshots/` as soon as the body stream ends, and leaves `*.incomplete`
//! blobs behind when a connection drops. [`pull`] therefore validates the file
//! once hf-hub returns and removes whatever it wrote when the file is short or
//! not a model llama.cpp can load, so the catalog never lists half a model.

mod progress;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hf_hub::{HFClient, HFError};

use crate::gguf::{GgufError, GgufFile};
use progress::ProgressBridge;

/// The branch pulled when a request names none.
pub const DEFAULT_REVISION: &str = "main";

/// What to download and where to put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Repository id, `owner/name` (or a legacy short id such as `gpt2`).
    pub repo: String,
    /// File in the repository; `None` picks the repository's only `.gguf`
    /// (or the only one whose name holds `quant`).
    pub file: Option<String>,
    /// A quantization tag (`Q4_K_M`, as Ollama's `hf.co/OWNER/REPO:Q4_K_M`
    /// names one) choosing among several `.gguf` files when `file` is
    /// `None`: the one whose name contains it, ignoring case.
    pub quant: Option<String>,
    /// Branch, tag or commit; `None` means [`DEFAULT_REVISION`].
    pub revision: Option<String>,
    /// Hub base URL; `None` means hf-hub's default (`HF_ENDPOINT`, else
    /// `https://huggingface.co`).
    pub endpoint: Option<String>,
    /// The hub cache directory (`$HF_HOME/hub` by default).
    pub cache_dir: PathBuf,
}

impl PullRequest {
    /// Parses `REPO[:FILE]` (as typed after `troupe pull`) into a request for
    /// the default revision and endpoint.
    pub fn parse_spec(spec: &str, cache_dir: impl Into<PathBuf>) -> Result<Self, PullError> {
        let invalid = |reason: &str| PullError::InvalidSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (repo, file) = match spec.split_once(':') {
            Some((repo, file)) => (repo.trim(), Some(file.trim())),
            None => (spec.trim(), None),
        };
        if repo.is_empty() {
            return Err(invalid(
                "the repository id is empty (expected OWNER/NAME[:FILE])",
            ));
        }
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 2
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(invalid("a repository id is OWNER/NAME"));
        }
        if repo.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("a repository id has no spaces"));
        }
        let file = match file {
            Some("") => return Err(invalid("the file name after ':' is empty")),
            Some(f) if f.split('/').any(|p| p.is_empty() || p == "." || p == "..") => {
                return Err(invalid(
                    "the file name must be a path inside the repository",
                ));
            }
            other => other.map(str::to_owned),
        };
        Ok(Self {
            repo: repo.to_owned(),
            file,
            quant: None,
            revision: None,
            endpoint: None,
            cache_dir: cache_dir.into(),
        })
    }

    fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }
}

/// Receives download progress; the CLI draws it as a progress bar.
pub trait PullProgress: Send + Sync {
    /// The download of `file` (of `total` bytes; 0 when unknown) begins.
    fn start(&self, file: &str, total: u64);
    /// `bytes` more bytes arrived.
    fn advance(&self, bytes: u64);
    /// The download ended, successfully or not; called once after `start`.
    fn finish(&self);
}

/// A [`PullProgress`] that ignores everything, for callers without a display.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn start(&self, _file: &str, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The `REPO[:FILE]` spec could not be parsed.
    #[error("invalid model spec {spec:?}: {reason}")]
    InvalidSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// hf-hub could not build a client (bad endpoint URL, TLS setup).
    #[error("cannot set up a Hugging Face client for {endpoint}: {source}")]
    Client {
        /// The endpoint asked for.
        endpoint: String,
        /// hf-hub's error.
        #[source]
        source: Box<HFError>,
    },
    /// The endpoint answered 404 for the repository, revision or file.
    #[error("repository or file not found: {what}")]
    NotFound {
        /// `REPO`, or `REPO:FILE`, and the revision.
        what: String,
    },
    /// No file was named and the repository holds no `.gguf` file (none
    /// whose name holds the quantization asked for).
    #[error("{repo} at {revision} holds no .gguf file{} (files: {})", matching(.quant.as_deref()), list(.files))]
    NoGguf {
        /// Repository id.
        repo: String,
        /// Revision listed.
        revision: String,
        /// The quantization tag asked for.
        quant: Option<String>,
        /// Every file the repository holds.
        files: Vec<String>,
    },
    /// No file was named and the repository holds several `.gguf` files.
    #[error("{repo} at {revision} holds several .gguf files; name one as {repo}:FILE: {}", list(.candidates))]
    SeveralGguf {
        /// Repository id.
        repo: String,
        /// Revision listed.
        revision: String,
        /// The `.gguf` files to choose from.
        candidates: Vec<String>,
    },
    /// The connection broke (or the body ended early) mid-file.
    #[error("download of {file} interrupted after {received} of {} bytes", total_text(*.total))]
    Interrupted {
        /// File being downloaded.
        file: String,
        /// Bytes that arrived.
        received: u64,
        /// Size the server announced, when it did.
        total: Option<u64>,
        /// The transport error, when there was one (a short body has none).
        #[source]
        source: Option<Box<HFError>>,
    },
    /// The endpoint answered an HTTP error other than 404.
    #[error("{url} answered HTTP {status}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// HTTP status code.
        status: u16,
        /// URL requested.
        url: String,
        /// The server's explanation, when it gave one.
        message: Option<String>,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach {endpoint}: {source}")]
    Network {
        /// The endpoint.
        endpoint: String,
        /// hf-hub's error.
        #[source]
        source: Box<HFError>,
    },
    /// The file arrived but is not a model llama.cpp can load; it was removed.
    #[error("{file} from {repo} is not a model llama.cpp can load, so it was removed from the cache: {source}")]
    InvalidModel {
        /// Repository id.
        repo: String,
        /// File name in the repository.
        file: String,
        /// What the GGUF validation found.
        #[source]
        source: Box<GgufError>,
    },
    /// Any other hf-hub failure (cache lock timeout, malformed response, ...).
    #[error("Hugging Face download of {what} failed: {source}")]
    Hub {
        /// `REPO` or `REPO:FILE`.
        what: String,
        /// hf-hub's error.
        #[source]
        source: Box<HFError>,
    },
    /// A local file operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn matching(quant: Option<&str>) -> String {
    quant.map_or_else(String::new, |q| format!(" matching {q:?}"))
}

fn total_text(total: Option<u64>) -> String {
    total.map_or_else(|| "an unknown number of".to_owned(), |t| t.to_string())
}

/// Downloads the requested GGUF into `req.cache_dir`, validates it, and
/// returns its path in `snapshots/` (the path the catalog lists).
///
/// On any failure nothing new is left linked in `snapshots/`: an interrupted
/// download's `*.incomplete` blob is removed, and a file that is short or fails
/// [`GgufFile::validate_for_llama`] is unlinked and its blob deleted.
pub async fn pull(
    req: &PullRequest,
    progress: Arc<dyn PullProgress>,
) -> Result<PathBuf, PullError> {
    let mut builder = HFClient::builder().cache_dir(&req.cache_dir);
    if let Some(endpoint) = &req.endpoint {
        builder = builder.endpoint(endpoint.clone());
    }
    let client = builder.build().map_err(|source| PullError::Client {
        endpoint: req
            .endpoint
            .clone()
            .unwrap_or_else(|| "the default endpoint".to_owned()),
        source: Box::new(source),
    })?;
    let (owner, name) = hf_hub::split_id(&req.repo);
    let repo = client.model(owner, name);
    let revision = req.revision();
    let endpoint = client.endpoint().to_owned();

    let file = match &req.file {
        Some(file) => file.clone(),
        None => {
            let info = repo
                .info()
                .revision(revision)
                .send()
                .await
                .map_err(|source| {
                    classify(
                        source,
                        &endpoint,
                        &format!("{} (revision {revision})", req.repo),
                    )
                })?;
            let files: Vec<String> = info
                .siblings
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.rfilename)
                .collect();
            pick_gguf(&req.repo, revision, req.quant.as_deref(), files)?
        }
    };
    let what = format!("{}:{file} (revision {revision})", req.repo);

    let bridge = Arc::new(ProgressBridge::new(&file, progress));
    tracing::info!(repo = %req.repo, %file, %revision, %endpoint, "pulling model");
    let downloaded = repo
        .download_file()
        .filename(&file)
        .revision(revision)
        .progress(hf_hub::progress::Progress::from(Arc::clone(&bridge)))
        .send()
        .await;
    bridge.finish();

    let repo_dir = req.cache_dir.join(repo_folder_name(&req.repo));
    let path = match downloaded {
        Ok(path) => path,
        Err(source) => {
            remove_abandoned_partials(&req.cache_dir, &req.repo);
            if bridge.started() && matches!(source, HFError::Request { .. } | HFError::Io(_)) {
                return Err(PullError::Interrupted {
                    file,
                    received: bridge.received(),
                    total: bridge.total(),
                    source: Some(Box::new(source)),
                });
            }
            return Err(classify(source, &endpoint, &what));
        }
    };

    // hf-hub does not compare what it wrote with the announced size, so a
    // body that ended cleanly but early would otherwise stay linked.
    let on_disk = std::fs::metadata(&path)
        .map_err(|source| PullError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    if let Some(total) = bridge.total().filter(|&t| t != on_disk) {
        remove_pulled_file(&path, &repo_dir);
        return Err(PullError::Interrupted {
            file,
            received: on_disk,
            total: Some(total),
            source: None,
        });
    }

    let check_path = path.clone();
    let checked =
        tokio::task::spawn_blocking(move || GgufFile::open(&check_path)?.validate_for_llama())
            .await;
    match checked {
        Ok(Ok(())) => {
            tracing::info!(path = %path.display(), bytes = on_disk, "model pulled");
            Ok(path)
        }
        Ok(Err(source)) => {
            remove_pulled_file(&path, &repo_dir);
            Err(PullError::InvalidModel {
                repo: req.repo.clone(),
                file,
                source: Box::new(source),
            })
        }
        Err(join) => {
            remove_pulled_file(&path, &repo_dir);
            Err(PullError::Io {
                path,
                source: std::io::Error::other(format!("GGUF validation task failed: {join}")),
            })
        }
    }
}

/// Picks the one `.gguf` among a repository's files (among those whose name
/// contains `quant`, when given).
fn pick_gguf(
    repo: &str,
    revision: &str,
    quant: Option<&str>,
    files: Vec<String>,
) -> Result<String, PullError> {
    let lower_quant = quant.map(str::to_ascii_lowercase);
    let mut ggufs: Vec<String> = files
        .iter()
        .filter(|f| {
            let lower = f.to_ascii_lowercase();
            // A vision projector (`mmproj-*.gguf`) is not a model to load.
            lower.ends_with(".gguf")
                && !lower.contains("mmproj")
                && lower_quant
                    .as_ref()
                    .is_none_or(|q| lower.contains(q.as_str()))
        })
        .cloned()
        .collect();
    match ggufs.len() {
        1 => Ok(ggufs.remove(0)),
        0 => Err(PullError::NoGguf {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
            quant: quant.map(str::to_owned),
            files,
        }),
        _ => {
            ggufs.sort();
            Err(PullError::SeveralGguf {
                repo: repo.to_owned(),
                revision: revision.to_owned(),
                candidates: ggufs,
            })
        }
    }
}

/// Turns an hf-hub error into the [`PullError`] a user can act on.
fn classify(source: HFError, endpoint: &str, what: &str) -> PullError {
    match source {
        HFError::RepoNotFound { .. }
        | HFError::RevisionNotFound { .. }
        | HFError::EntryNotFound { .. } => PullError::NotFound {
            what: what.to_owned(),
        },
        HFError::Http { context }
        | HFError::AuthRequired { context }
        | HFError::Forbidden { context }
        | HFError::Conflict { context }
        | HFError::RateLimited { context, .. } => {
            if context.status.as_u16() == 404 {
                return PullError::NotFound {
                    what: what.to_owned(),
                };
            }
            PullError::Status {
                status: context.status.as_u16(),
                url: context.url.clone(),
                message: context.server_message.clone(),
            }
        }
        HFError::Request { .. } => PullError::Network {
            endpoint: endpoint.to_owned(),
            source: Box::new(source),
        },
        other => PullError::Hub {
            what: what.to_owned(),
            source: Box::new(other),
        },
    }
}

/// `models--{owner}--{name}`: hf-hub's folder for a model repository.
fn repo_folder_name(repo: &str) -> String {
    std::iter::once("models")
        .chain(repo.split('/'))
        .collect::<Vec<_>>()
        .join("--")
}

/// Removes a pulled model from the hub cache: `path` (a file in one of
/// `repo`'s snapshots, as the catalog lists it), the same file in the
/// repository's other snapshots (else an older revision would take its
/// place in the catalog), and the blobs they point at.
///
/// # Errors
/// `path` is not in `repo`'s snapshots, or a link cannot be removed.
pub fn remove_cached(cache_dir: &Path, repo: &str, path: &Path) -> std::io::Result<()> {
    let repo_dir = cache_dir.join(repo_folder_name(repo));
    let snapshots = repo_dir.join("snapshots");
    let in_snapshot = path.strip_prefix(&snapshots).ok().map(|inside| {
        let mut parts = inside.components();
        parts.next();
        parts.as_path().to_path_buf()
    });
    let Some(file) = in_snapshot.filter(|file| !file.as_os_str().is_empty()) else {
        return Err(std::io::Error::other(format!(
            "{} is not a file in {}",
            path.display(),
            snapshots.display()
        )));
    };
    for snapshot in std::fs::read_dir(&snapshots)? {
        let link = snapshot?.path().join(&file);
        if link.symlink_metadata().is_ok() {
            remove_pulled_file(&link, &repo_dir);
            if link.symlink_metadata().is_ok() {
                return Err(std::io::Error::other(format!(
                    "cannot remove {}",
                    link.display()
                )));
            }
        }
    }
    Ok(())
}

/// Removes `*.incomplete` blobs of `repo` that no download is writing.
///
/// hf-hub holds `.locks/{folder}/{etag}.lock` while it writes
/// `blobs/{etag}.incomplete`; a lock we can take means the writer is gone (this
/// pull's, or one that crashed), so its partial blob is garbage.
fn remove_abandoned_partials(cache_dir: &Path, repo: &str) {
    let folder = repo_folder_name(repo);
    let Ok(entries) = std::fs::read_dir(cache_dir.join(&folder).join("blobs")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(etag) = name.to_str().and_then(|n| n.strip_suffix(".incomplete")) else {
            continue;
        };
        let lock_path = cache_dir
            .join(".locks")
            .join(&folder)
            .join(format!("{etag}.lock"));
        let free = match File::open(&lock_path) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if free {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(path = %entry.path().display(), "removed partial download")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove partial download")
                }
            }
        }
    }
}

/// Unlinks a pulled file from `snapshots/` and deletes its blob, then drops
/// the snapshot directories left empty.
fn remove_pulled_file(link: &Path, repo_dir: &Path) {
    let blob = std::fs::canonicalize(link).ok();
    if let Err(e) = std::fs::remove_file(link) {
        tracing::warn!(path = %link.display(), error = %e, "cannot remove pulled file");
    }
    // Only a blob of this repository's cache is deleted; a snapshot entry
    // that is a plain copy (hf-hub on Windows) is gone with the link.
    let blobs_dir = std::fs::canonicalize(repo_dir.join("blobs")).ok();
    if let (Some(blob), Some(blobs_dir)) = (blob, blobs_dir) {
        if blob.starts_with(&blobs_dir) {
            if let Err(e) = std::fs::remove_file(&blob) {
                tracing::warn!(path = %blob.display(), error = %e, "cannot remove pulled blob");
            }
        }
    }
    let snapshots = repo_dir.join("snapshots");
    let mut dir = link.parent();
    while let Some(d) = dir {
        if !d.starts_with(&snapshots) || d == snapshots || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_and_file() {
        let req = PullRequest::parse_spec("org/model:sub/model-q4_0.gguf", "/c").unwrap();
        assert_eq!(req.repo, "org/model");
        assert_eq!(req.file.as_deref(), Some("sub/model-q4_0.gguf"));
        assert_eq!(req.revision(), "main");
        let req = PullRequest::parse_spec("org/model", "/c").unwrap();
        assert_eq!(req.file, None);
    }

    #[test]
    fn rejects_malformed_specs() {
        for spec in [
            "",
            ":x.gguf",
            "a/b/c",
            "org/",
            "org/m:",
            "org/m:../x.gguf",
            "org/m x",
        ] {
            let err = PullRequest::parse_spec(spec, "/c").unwrap_err();
            assert!(
                matches!(err, PullError::InvalidSpec { .. }),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn picks_the_only_gguf_and_lists_choices_otherwise() {
        let files = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_gguf("o/m", "main", None, files(&["README.md", "m.Q4_0.GGUF"])).unwrap(),
            "m.Q4_0.GGUF"
        );
        let err =
            pick_gguf("o/m", "main", None, files(&["b.gguf", "a.gguf", "x.json"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "o/m at main holds several .gguf files; name one as o/m:FILE: a.gguf, b.gguf"
        );
        let quants = files(&["m.Q4_K_M.gguf", "m.Q8_0.gguf", "mmproj-m-Q8_0.gguf"]);
        assert_eq!(
            pick_gguf("o/m", "main", Some("q8_0"), quants.clone()).unwrap(),
            "m.Q8_0.gguf"
        );
        let err = pick_gguf("o/m", "main", Some("Q2_K"), quants).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds no .gguf file matching \"Q2_K\" (files: m.Q4_K_M.gguf"),
            "{err}"
        );
        let err = pick_gguf("o/m", "main", None, files(&["x.json"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds no .gguf file (files: x.json)"),
            "{err}"
        );
    }
}
