//! GGUF files in the Hugging Face hub cache, found through hf-hub's own cache
//! scan.
//!
//! The layout is `models--{org}--{name}/snapshots/{commit}/{file}`, each file a
//! symlink into `blobs/`, with `refs/{branch}` naming commits. hf-hub's scan
//! reads only `snapshots/`, which is what makes downloads in progress
//! (`blobs/*.incomplete`) and orphaned blobs invisible here: a file exists for
//! the catalog once hf-hub has linked it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use hf_hub::cache::{CachedFileInfo, CachedRevisionInfo};
use hf_hub::HFClient;

use super::{has_gguf_extension, Catalog, ModelSource};

/// Adds the GGUF files cached under `cache` to `catalog`.
pub(super) fn scan(cache: &Path, catalog: &mut Catalog) {
    if !cache.is_dir() {
        return;
    }
    let client = match HFClient::builder().cache_dir(cache).build() {
        Ok(client) => client,
        Err(e) => {
            catalog.problem(cache, format!("cannot read the Hugging Face cache: {e}"));
            return;
        }
    };
    // The scan future only does blocking file-system calls and never waits
    // on a reactor, so a plain executor runs it, also from inside a runtime.
    let info = match futures::executor::block_on(client.scan_cache().send()) {
        Ok(info) => info,
        Err(e) => {
            catalog.problem(cache, format!("cannot scan the Hugging Face cache: {e}"));
            return;
        }
    };
    for warning in &info.warnings {
        // Dangling snapshot links: a GGUF one is a model that was expected
        // here; others (configs, READMEs) are not the catalog's business.
        if warning.contains(".gguf") {
            catalog.problem(cache, warning.clone());
        } else {
            tracing::debug!(%warning, "Hugging Face cache warning");
        }
    }
    let mut repos: Vec<_> = info
        .repos
        .iter()
        .filter(|r| r.repo_type == "model")
        .collect();
    repos.sort_by(|a, b| a.repo_id.cmp(&b.repo_id));
    for repo in repos {
        let chosen = newest_per_file(&repo.revisions);
        let single = chosen.len() == 1;
        for (file_name, (revision, file)) in chosen {
            let name = if single {
                repo.repo_id.clone()
            } else {
                format!("{}:{}", repo.repo_id, strip_gguf(&file_name))
            };
            let source = ModelSource::HuggingFace {
                repo: repo.repo_id.clone(),
                revision: revision.commit_hash.clone(),
            };
            catalog.add(&file.file_path, name, source);
        }
    }
}

/// For each `.gguf` file name in a repository, the revision to list it from:
/// the one `main` points at, else one any ref points at, else the newest.
fn newest_per_file(
    revisions: &[CachedRevisionInfo],
) -> BTreeMap<String, (&CachedRevisionInfo, &CachedFileInfo)> {
    fn rank(rev: &CachedRevisionInfo) -> (bool, bool, SystemTime) {
        (
            rev.refs.iter().any(|r| r == "main"),
            !rev.refs.is_empty(),
            rev.last_modified,
        )
    }
    let mut chosen: BTreeMap<String, (&CachedRevisionInfo, &CachedFileInfo)> = BTreeMap::new();
    for rev in revisions {
        for file in &rev.files {
            if !has_gguf_extension(Path::new(&file.file_name)) {
                continue;
            }
            let better = chosen
                .get(&file.file_name)
                .is_none_or(|(current, _)| rank(rev) > rank(current));
            if better {
                chosen.insert(file.file_name.clone(), (rev, file));
            }
        }
    }
    chosen
}

fn strip_gguf(file_name: &str) -> &str {
    let cut = file_name.len().saturating_sub(".gguf".len());
    match file_name.get(cut..) {
        Some(ext) if ext.eq_ignore_ascii_case(".gguf") => &file_name[..cut],
        _ => file_name,
    }
}
