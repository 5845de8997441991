//! Finds the GGUF models on this machine: in model directories, in the
//! Hugging Face hub cache and in Ollama's store.
//!
//! Every candidate file goes through [`GgufFile::open`] and
//! [`GgufFile::validate_for_llama`] during the scan, so an entry is a file
//! llama.cpp can load; a file that fails is reported as a
//! [`CatalogProblem`] instead, and a scan never fails as a whole. Names are
//! what a user types: a file stem for directories, `org/name[:file]` for the
//! Hugging Face cache and `model:tag` for Ollama.

mod hf_cache;
mod ollama;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::gguf::{GgufError, GgufFile};

/// How deep below a model directory the scan looks for `*.gguf` files.
pub const MAX_DIR_DEPTH: usize = 6;

/// Where to look for models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSources {
    /// Directories searched recursively (up to [`MAX_DIR_DEPTH`]) for `*.gguf`.
    pub model_dirs: Vec<PathBuf>,
    /// The Hugging Face hub cache (the folder holding `models--*`).
    pub hf_cache: Option<PathBuf>,
    /// Ollama's model store (the folder holding `manifests/` and `blobs/`).
    pub ollama_models: Option<PathBuf>,
}

/// Where a catalog entry was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A `*.gguf` file in a model directory (or a path given directly).
    Directory,
    /// A file in the Hugging Face hub cache.
    HuggingFace {
        /// Repository id, `org/name`.
        repo: String,
        /// Commit hash of the snapshot holding the file.
        revision: String,
    },
    /// A model in Ollama's store.
    Ollama {
        /// Model name (with namespace and host when not the public library).
        model: String,
        /// Tag.
        tag: String,
    },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Directory => f.write_str("dir"),
            ModelSource::HuggingFace { repo, .. } => write!(f, "hf:{repo}"),
            ModelSource::Ollama { model, tag } => write!(f, "ollama:{model}:{tag}"),
        }
    }
}

/// One loadable model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    /// The name to ask for it by.
    pub name: String,
    /// The file to load (a snapshot link for the Hugging Face cache).
    pub path: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// Number of weights.
    pub parameters: u64,
    /// Quantization as llama.cpp names it (`Q4_0`, `F16`, ...).
    pub quantization: String,
    /// Context length it was trained with, when the file says.
    pub context_length: Option<u64>,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Whether it carries a chat template.
    pub has_chat_template: bool,
    /// Where it was found.
    pub source: ModelSource,
}

impl ModelEntry {
    /// Opens and validates `path`, describing it as `name` from `source`.
    ///
    /// # Errors
    /// The [`GgufError`] that makes the file unusable by llama.cpp.
    pub fn from_file(path: &Path, name: String, source: ModelSource) -> Result<Self, GgufError> {
        let file = GgufFile::open(path)?;
        file.validate_for_llama()?;
        Ok(Self {
            name,
            path: path.to_path_buf(),
            architecture: file.architecture()?.to_owned(),
            parameters: file.parameter_count(),
            quantization: file.quantization(),
            context_length: file.context_length(),
            file_size: file.file_size,
            has_chat_template: file.chat_template().is_some(),
            source,
        })
    }
}

/// A file that looked like a model but cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogProblem {
    /// The file (or manifest, or directory).
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a name or path does not resolve to one model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No entry matches the name, and it is not a file.
    #[error("no model named {name:?} ({known} models known; `troupe models` lists them)")]
    NotFound {
        /// The name asked for.
        name: String,
        /// How many entries the catalog holds.
        known: usize,
    },
    /// Several entries match the name.
    #[error("{name:?} matches several models: {}; use a longer name", .candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The matching entries' names (with paths when names repeat).
        candidates: Vec<String>,
    },
    /// The name is that of a file the scan skipped as unusable.
    #[error("{name:?} is {}, which troupe cannot load: {reason}", .path.display())]
    Skipped {
        /// The name asked for.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why the scan skipped it.
        reason: String,
    },
    /// The path given is a file, but not a model llama.cpp can load.
    #[error("{} is not a usable model: {source}", .path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What the validation found.
        #[source]
        source: GgufError,
    },
}

/// The models found by one scan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    /// Loadable models, sorted by name.
    pub entries: Vec<ModelEntry>,
    /// Files that were skipped, and why.
    pub problems: Vec<CatalogProblem>,
}

impl Catalog {
    /// Scans every source. Missing default locations are skipped silently; a
    /// configured model directory that does not exist is a problem.
    pub fn scan(sources: &CatalogSources) -> Catalog {
        let mut catalog = Catalog::default();
        // The same directory named twice (`--models-dir` also in `[models]
        // dirs`, or through a symlink) is one source, not two copies of
        // every model.
        let mut seen = std::collections::HashSet::new();
        for dir in &sources.model_dirs {
            if seen.insert(dir.canonicalize().unwrap_or_else(|_| dir.clone())) {
                catalog.scan_dir(dir);
            }
        }
        if let Some(cache) = &sources.hf_cache {
            hf_cache::scan(cache, &mut catalog);
        }
        if let Some(root) = &sources.ollama_models {
            ollama::scan(root, &mut catalog);
        }
        catalog
            .entries
            .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
        tracing::debug!(
            entries = catalog.entries.len(),
            problems = catalog.problems.len(),
            "model catalog scanned"
        );
        catalog
    }

    /// The entry called `name`: an exact name, else the one entry whose name
    /// matches ignoring case, a `.gguf` suffix, Ollama's `:latest` and
    /// `hf.co/` (see [`names`]), else a pulled file named by its
    /// repository and a tag its file name holds (`hf.co/o/r:Q8_0`), else
    /// the one entry whose name matches by a leading or trailing part
    /// (`tinyllama` finds `TheBloke/TinyLlama-GGUF:tinyllama-q4_0` when
    /// nothing else matches). `None` when nothing or several match; use
    /// [`Catalog::resolve`] to learn which.
    pub fn find(&self, name: &str) -> Option<&ModelEntry> {
        self.lookup(name).ok()
    }

    /// Resolves a model name (as [`Catalog::find`]) or the path of a GGUF
    /// file, which is opened and validated.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::Ambiguous`] listing the
    /// candidates, or [`CatalogError::InvalidFile`] for a file that fails
    /// validation.
    pub fn resolve(&self, name_or_path: &str) -> Result<ModelEntry, CatalogError> {
        let path = Path::new(name_or_path);
        if path.is_file() {
            let name = path.file_stem().map_or_else(
                || name_or_path.to_owned(),
                |s| s.to_string_lossy().into_owned(),
            );
            return ModelEntry::from_file(path, name, ModelSource::Directory).map_err(|source| {
                CatalogError::InvalidFile {
                    path: path.to_path_buf(),
                    source,
                }
            });
        }
        self.lookup(name_or_path).cloned()
    }

    fn lookup(&self, name: &str) -> Result<&ModelEntry, CatalogError> {
        let query = normalize(name);
        let tiers: [&dyn Fn(&ModelEntry) -> bool; 4] = [
            &|e| e.name == name,
            &|e| normalize(&e.name) == query,
            &|e| names_by_tag(e, &query),
            &|e| {
                let n = normalize(&e.name);
                !query.is_empty() && (n.starts_with(&query) || n.ends_with(&query))
            },
        ];
        for matches in tiers {
            let found: Vec<&ModelEntry> = self.entries.iter().filter(|e| matches(e)).collect();
            match found.as_slice() {
                [] => continue,
                [one] => return Ok(one),
                several => {
                    let repeated = several.windows(2).any(|w| w[0].name == w[1].name);
                    let candidates = several
                        .iter()
                        .map(|e| {
                            if repeated {
                                format!("{} ({})", e.name, e.path.display())
                            } else {
                                e.name.clone()
                            }
                        })
                        .collect();
                    return Err(CatalogError::Ambiguous {
                        name: name.to_owned(),
                        candidates,
                    });
                }
            }
        }
        // A file by that name the scan had to skip: say why, rather than
        // that no such model exists.
        if let Some(problem) = self.problems.iter().find(|p| {
            p.path
                .file_stem()
                .is_some_and(|stem| normalize(&stem.to_string_lossy()) == query)
        }) {
            return Err(CatalogError::Skipped {
                name: name.to_owned(),
                path: problem.path.clone(),
                reason: problem.reason.clone(),
            });
        }
        Err(CatalogError::NotFound {
            name: name.to_owned(),
            known: self.entries.len(),
        })
    }

    /// Adds `path` as `name`, or records why it cannot be used.
    fn add(&mut self, path: &Path, name: String, source: ModelSource) {
        match ModelEntry::from_file(path, name, source) {
            Ok(entry) => self.entries.push(entry),
            Err(e) => self.problem(path, e.to_string()),
        }
    }

    fn problem(&mut self, path: &Path, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::debug!(path = %path.display(), %reason, "skipping model file");
        self.problems.push(CatalogProblem {
            path: path.to_path_buf(),
            reason,
        });
    }

    fn scan_dir(&mut self, dir: &Path) {
        if !dir.is_dir() {
            self.problem(dir, "model directory does not exist or is not a directory");
            return;
        }
        let mut stack = vec![(dir.to_path_buf(), 0usize)];
        while let Some((current, depth)) = stack.pop() {
            let entries = match std::fs::read_dir(&current) {
                Ok(entries) => entries,
                Err(e) => {
                    self.problem(&current, format!("cannot list directory: {e}"));
                    continue;
                }
            };
            let mut files = Vec::new();
            for entry in entries.flatten() {
                let path = entry.path();
                // Directory symlinks are not followed, so a link cycle cannot
                // loop the scan; file symlinks are (model dirs often hold them).
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if depth < MAX_DIR_DEPTH {
                        stack.push((path, depth + 1));
                    }
                } else if has_gguf_extension(&path) && path.is_file() {
                    files.push(path);
                }
            }
            files.sort();
            for path in files {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.add(&path, name, ModelSource::Directory);
            }
        }
    }
}

/// Lower case, without a `.gguf` suffix, Ollama's `:latest` tag or its
/// `hf.co/` prefix for a Hugging Face model: how names are compared
/// loosely.
fn normalize(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    let lower = ["hf.co/", "huggingface.co/"]
        .iter()
        .find_map(|prefix| lower.strip_prefix(prefix))
        .unwrap_or(&lower);
    let lower = lower.strip_suffix(":latest").unwrap_or(lower);
    lower.strip_suffix(".gguf").unwrap_or(lower).to_owned()
}

/// Whether `query` (normalized) names a pulled model as Ollama's pull did:
/// `OWNER/REPO:TAG` for the one file of that repository whose name holds
/// the tag.
fn names_by_tag(entry: &ModelEntry, query: &str) -> bool {
    let ModelSource::HuggingFace { repo, .. } = &entry.source else {
        return false;
    };
    let Some((wanted, tag)) = query.rsplit_once(':') else {
        return false;
    };
    let file = entry
        .path
        .file_name()
        .map(|f| f.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    !tag.is_empty() && repo.to_lowercase() == wanted && file.contains(tag)
}

/// Whether `name` names `entry` exactly: its name, or its name compared
/// loosely (case, `.gguf`, `:latest`, `hf.co/`), or a pull's
/// `hf.co/OWNER/REPO:TAG`. No partial match: for deleting and copying.
pub fn names(entry: &ModelEntry, name: &str) -> bool {
    let query = normalize(name);
    entry.name == name || normalize(&entry.name) == query || names_by_tag(entry, &query)
}

fn has_gguf_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_at(name: &str, path: &str, source: ModelSource) -> ModelEntry {
        ModelEntry {
            name: name.to_owned(),
            path: PathBuf::from(path),
            architecture: "llama".to_owned(),
            parameters: 1,
            quantization: "Q8_0".to_owned(),
            context_length: None,
            file_size: 1,
            has_chat_template: false,
            source,
        }
    }

    #[test]
    fn ollama_names_name_entries_exactly_or_not_at_all() {
        let dir = entry_at("smollm2", "/m/smollm2.gguf", ModelSource::Directory);
        assert!(names(&dir, "smollm2"));
        assert!(names(&dir, "SmolLM2:latest"));
        assert!(!names(&dir, "smol"));
        let ollama = entry_at(
            "llama3.2:latest",
            "/o/blob",
            ModelSource::Ollama {
                model: "llama3.2".to_owned(),
                tag: "latest".to_owned(),
            },
        );
        assert!(names(&ollama, "llama3.2:latest") && names(&ollama, "llama3.2"));
        let pulled = entry_at(
            "o/r",
            "/hf/models--o--r/snapshots/abc/r.Q8_0.gguf",
            ModelSource::HuggingFace {
                repo: "o/r".to_owned(),
                revision: "abc".to_owned(),
            },
        );
        for name in [
            "o/r",
            "hf.co/o/r",
            "hf.co/o/r:q8_0",
            "hf.co/O/R:Q8_0",
            "o/r:latest",
        ] {
            assert!(names(&pulled, name), "{name}");
        }
        assert!(!names(&pulled, "hf.co/o/r:Q4_K_M"));
        assert!(!names(&pulled, "hf.co/o/other:q8_0"));
        let catalog = Catalog {
            entries: vec![dir, ollama, pulled],
            ..Catalog::default()
        };
        assert_eq!(catalog.find("hf.co/o/r:Q8_0").unwrap().name, "o/r");
        assert_eq!(catalog.find("smollm2:latest").unwrap().name, "smollm2");
        assert_eq!(
            catalog.find("llama3.2:latest").unwrap().name,
            "llama3.2:latest"
        );
    }

    fn entry(name: &str) -> ModelEntry {
        ModelEntry {
            name: name.to_owned(),
            path: PathBuf::from(format!("/m/{name}.gguf")),
            architecture: "llama".to_owned(),
            parameters: 1,
            quantization: "F16".to_owned(),
            context_length: None,
            file_size: 1,
            has_chat_template: false,
            source: ModelSource::Directory,
        }
    }

    fn catalog(names: &[&str]) -> Catalog {
        Catalog {
            entries: names.iter().map(|n| entry(n)).collect(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn exact_then_case_insensitive_then_partial() {
        let c = catalog(&[
            "Tiny",
            "tiny",
            "org/repo:small-q8_0",
            "qwen2.5:latest",
            "qwen3:8b",
        ]);
        assert_eq!(c.find("tiny").map(|e| e.name.as_str()), Some("tiny"));
        assert_eq!(
            c.find("small-q8_0.gguf").map(|e| e.name.as_str()),
            Some("org/repo:small-q8_0")
        );
        assert_eq!(
            c.find("QWEN2.5").map(|e| e.name.as_str()),
            Some("qwen2.5:latest")
        );
        assert!(
            c.find("TINY").is_none(),
            "two entries match TINY ignoring case"
        );
        match c.resolve("qwen") {
            Err(CatalogError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, ["qwen2.5:latest", "qwen3:8b"]);
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert!(matches!(
            c.resolve("mistral"),
            Err(CatalogError::NotFound { known: 5, .. })
        ));
    }

    #[test]
    fn repeated_names_list_their_paths() {
        let mut c = catalog(&["same"]);
        let mut other = entry("same");
        other.path = PathBuf::from("/elsewhere/same.gguf");
        c.entries.push(other);
        let err = c.resolve("same").unwrap_err().to_string();
        assert!(
            err.contains("/m/same.gguf") && err.contains("/elsewhere/same.gguf"),
            "{err}"
        );
    }
}
