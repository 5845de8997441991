//! Where a sentence embedder's files are: a plain directory, or a
//! repository's snapshot in the Hugging Face hub cache, looked up through
//! hf-hub with no network access.

use std::path::{Path, PathBuf};

use hf_hub::{HFClient, HFError};

use super::EmbedError;

/// The revision looked up in the hub cache when none is named.
pub const DEFAULT_REVISION: &str = "main";

/// Where [`super::SentenceEmbedder::load`] finds a model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbedderSource {
    /// A directory holding `config.json`, `tokenizer.json`,
    /// `model.safetensors` and the sentence-transformers files, laid out as
    /// in the model's repository.
    Dir(PathBuf),
    /// A repository in the Hugging Face hub cache. Nothing is downloaded: the
    /// files must already be there (`huggingface-cli download`, or
    /// `scripts/fetch-minilm.sh` for all-MiniLM-L6-v2).
    HubCache {
        /// Repository id, `owner/name`.
        repo: String,
        /// Branch, tag or commit; `None` means [`DEFAULT_REVISION`].
        revision: Option<String>,
        /// The cache; `None` means hf-hub's own choice: `$HF_HUB_CACHE`, else
        /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
        cache_dir: Option<PathBuf>,
    },
}

impl EmbedderSource {
    /// `repo` in the default hub cache, at [`DEFAULT_REVISION`].
    pub fn hub(repo: impl Into<String>) -> Self {
        Self::HubCache {
            repo: repo.into(),
            revision: None,
            cache_dir: None,
        }
    }

    /// `repo` in the hub cache at `cache_dir`, at [`DEFAULT_REVISION`].
    pub fn hub_in(repo: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Self::HubCache {
            repo: repo.into(),
            revision: None,
            cache_dir: Some(cache_dir.into()),
        }
    }

    /// A spec as people write it: an existing directory (or anything that
    /// starts like a path: `/`, `./`, `../`, `~`) is a [`Self::Dir`];
    /// anything else is a repository id in the default hub cache.
    pub fn parse(spec: &str) -> Self {
        let path = Path::new(spec);
        let looks_like_path = spec.starts_with('/')
            || spec.starts_with("./")
            || spec.starts_with("../")
            || spec.starts_with('~');
        if looks_like_path || path.is_dir() {
            Self::Dir(path.to_path_buf())
        } else {
            Self::hub(spec)
        }
    }

    /// A name for the model: the repository id, or the directory's name.
    pub fn model_id(&self) -> String {
        match self {
            Self::Dir(dir) => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            Self::HubCache { repo, .. } => repo.clone(),
        }
    }
}

/// Finds the files of one model, wherever its [`EmbedderSource`] says.
pub(crate) enum ModelFiles {
    Dir(PathBuf),
    Hub {
        client: HFClient,
        owner: String,
        name: String,
        repo: String,
        revision: String,
    },
}

impl ModelFiles {
    /// Checks that the source is there at all, so that a wrong path or an
    /// uncached repository is one clear error rather than "config.json is
    /// missing".
    pub(crate) fn open(source: &EmbedderSource) -> Result<Self, EmbedError> {
        match source {
            EmbedderSource::Dir(dir) => {
                if dir.is_dir() {
                    Ok(Self::Dir(dir.clone()))
                } else {
                    Err(EmbedError::NotADirectory { path: dir.clone() })
                }
            }
            EmbedderSource::HubCache {
                repo,
                revision,
                cache_dir,
            } => {
                let (owner, name) = match repo.split_once('/') {
                    Some((owner, name)) => (owner.to_owned(), name.to_owned()),
                    None => (String::new(), repo.clone()),
                };
                if name.is_empty() || name.contains('/') || repo.contains("..") {
                    return Err(EmbedError::Cache {
                        repo: repo.clone(),
                        reason: "a repository id is OWNER/NAME".to_owned(),
                    });
                }
                let mut builder = HFClient::builder();
                if let Some(dir) = cache_dir {
                    builder = builder.cache_dir(dir);
                }
                let client = builder.build().map_err(|e| EmbedError::Cache {
                    repo: repo.clone(),
                    reason: e.to_string(),
                })?;
                let searched = client.cache_dir().to_path_buf();
                let revision = revision
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REVISION.to_owned());
                let files = Self::Hub {
                    client,
                    owner,
                    name,
                    repo: repo.clone(),
                    revision: revision.clone(),
                };
                if files.find("config.json")?.is_none() {
                    return Err(EmbedError::NotCached {
                        repo: repo.clone(),
                        revision,
                        cache_dir: searched,
                    });
                }
                Ok(files)
            }
        }
    }

    /// The path of `file` (relative to the model's root), or `None` when
    /// the model does not have it.
    pub(crate) fn find(&self, file: &str) -> Result<Option<PathBuf>, EmbedError> {
        match self {
            Self::Dir(dir) => {
                let path = dir.join(file);
                Ok(path.is_file().then_some(path))
            }
            Self::Hub {
                client,
                owner,
                name,
                repo,
                revision,
            } => {
                let handle = client.model(owner.as_str(), name.as_str());
                let lookup = handle
                    .download_file()
                    .filename(file)
                    .revision(revision.as_str())
                    .local_files_only(true)
                    .send();
                // With `local_files_only` hf-hub only reads the file system
                // (refs/ and snapshots/), no I/O driver is needed, so a
                // plain executor runs it from any thread, inside a tokio
                // runtime's blocking pool or not.
                match futures::executor::block_on(lookup) {
                    Ok(path) => Ok(Some(path)),
                    Err(HFError::LocalEntryNotFound { .. } | HFError::EntryNotFound { .. }) => {
                        Ok(None)
                    }
                    Err(e) => Err(EmbedError::Cache {
                        repo: repo.clone(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
    }

    /// The path of `file`, which the model must have.
    pub(crate) fn require(&self, file: &str) -> Result<PathBuf, EmbedError> {
        self.find(file)?.ok_or_else(|| EmbedError::MissingFile {
            file: file.to_owned(),
            place: self.place(),
        })
    }

    /// Where the files are, for error messages.
    pub(crate) fn place(&self) -> String {
        match self {
            Self::Dir(dir) => dir.display().to_string(),
            Self::Hub {
                client,
                repo,
                revision,
                ..
            } => format!(
                "the Hugging Face cache entry of {repo} (revision {revision}) in {}",
                client.cache_dir().display()
            ),
        }
    }
}
