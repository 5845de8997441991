//! Synthetic models laid out the way model directories, the Hugging Face hub
//! cache and Ollama's store hold them.

use std::path::{Path, PathBuf};

use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// Writes a tiny F32 llama model (well under 1 MB) to `path`.
pub(crate) fn tiny_model(path: &Path, seed: u64) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create model dir");
    }
    write_synthetic(
        path,
        &SynthSpec {
            shape: SynthShape::Tiny,
            quant: SynthQuant::F32,
            seed,
        },
    )
    .expect("write tiny synthetic model");
    path.to_path_buf()
}

/// A 40-hex commit hash derived from `seed`.
pub(crate) fn commit(seed: u8) -> String {
    format!("{:02x}", seed).repeat(20)
}

/// Puts `content` into the hub cache as `repo`'s `file` at `commit`: a blob
/// named `etag` under `blobs/`, a relative symlink to it under
/// `snapshots/{commit}/`, and `refs/main` when `main` is set. Returns the
/// snapshot path.
pub(crate) fn hf_cache_file(
    cache: &Path,
    repo: &str,
    commit: &str,
    file: &str,
    content: &Path,
    main: bool,
) -> PathBuf {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let etag = format!("etag-{}", file.replace('/', "_"));
    let blob = repo_dir.join("blobs").join(&etag);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(content, &blob).expect("copy blob");
    let link = repo_dir.join("snapshots").join(commit).join(file);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let depth = file.matches('/').count() + 2;
    let target = PathBuf::from("../".repeat(depth)).join("blobs").join(&etag);
    std::os::unix::fs::symlink(target, &link).expect("symlink snapshot file");
    if main {
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs").join("main"), commit).unwrap();
    }
    link
}

/// Adds `content` to an Ollama store as `host/namespace/model:tag`, with a
/// manifest whose model layer points at a blob copied from `content`.
/// Returns the manifest path.
pub(crate) fn ollama_model(
    root: &Path,
    [host, namespace, model, tag]: [&str; 4],
    content: &Path,
    digest_seed: u8,
) -> PathBuf {
    let hex = format!("{:02x}", digest_seed).repeat(32);
    let blob = root.join("blobs").join(format!("sha256-{hex}"));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(content, &blob).expect("copy ollama blob");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 485 },
        "layers": [
            { "mediaType": "application/vnd.ollama.image.template", "digest": format!("sha256:{}", "1".repeat(64)), "size": 10 },
            { "mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{hex}"), "size": std::fs::metadata(content).unwrap().len() },
        ]
    });
    ollama_manifest(root, [host, namespace, model, tag], &manifest.to_string())
}

/// Writes a manifest file with the given text.
pub(crate) fn ollama_manifest(
    root: &Path,
    [host, namespace, model, tag]: [&str; 4],
    text: &str,
) -> PathBuf {
    let path = root
        .join("manifests")
        .join(host)
        .join(namespace)
        .join(model)
        .join(tag);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Every file (not directory) under `dir`, recursively, symlinks included.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
