//! Models in Ollama's store.
//!
//! Ollama keeps one JSON manifest per tag at
//! `manifests/{host}/{namespace}/{model}/{tag}`; its layer with media type
//! `application/vnd.ollama.image.model` names the GGUF blob by digest
//! (`sha256:<hex>` → `blobs/sha256-<hex>`). The other layers (template,
//! parameters, license) are Ollama's own and not needed to load the weights.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Catalog, ModelSource};

/// Media type of the layer holding the GGUF weights.
const MODEL_LAYER: &str = "application/vnd.ollama.image.model";
/// Host and namespace of Ollama's public library, left out of names.
const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
/// Manifests are a few hundred bytes; anything much larger is not one.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
}

/// Adds the models in the Ollama store at `root` to `catalog`.
pub(super) fn scan(root: &Path, catalog: &mut Catalog) {
    let manifests = root.join("manifests");
    if !manifests.is_dir() {
        return;
    }
    for (path, parts) in manifest_files(&manifests) {
        let [host, namespace, model, tag] = parts;
        let model = match (host.as_str(), namespace.as_str()) {
            (DEFAULT_HOST, DEFAULT_NAMESPACE) => model,
            (DEFAULT_HOST, _) => format!("{namespace}/{model}"),
            _ => format!("{host}/{namespace}/{model}"),
        };
        match model_blob(root, &path) {
            Ok(blob) => {
                let name = format!("{model}:{tag}");
                catalog.add(&blob, name, ModelSource::Ollama { model, tag });
            }
            Err(reason) => catalog.problem(&path, reason),
        }
    }
}

/// Files exactly four levels below `manifests/`, with those four names.
fn manifest_files(manifests: &Path) -> Vec<(PathBuf, [String; 4])> {
    let mut found = Vec::new();
    let mut stack = vec![(manifests.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, names)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let mut names = names.clone();
            names.push(entry.file_name().to_string_lossy().into_owned());
            if kind.is_dir() && names.len() < 4 {
                stack.push((entry.path(), names));
            } else if kind.is_file() {
                if let Ok(parts) = <[String; 4]>::try_from(names) {
                    found.push((entry.path(), parts));
                }
            }
        }
    }
    found.sort();
    found
}

/// The blob a manifest names as its model layer, or why there is none.
fn model_blob(root: &Path, manifest: &Path) -> Result<PathBuf, String> {
    let mut text = Vec::new();
    std::fs::File::open(manifest)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut text))
        .map_err(|e| format!("cannot read Ollama manifest: {e}"))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "not an Ollama manifest: larger than {MAX_MANIFEST_BYTES} bytes"
        ));
    }
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| format!("not a valid Ollama manifest: {e}"))?;
    let layer = manifest
        .layers
        .iter()
        .find(|l| l.media_type == MODEL_LAYER)
        .ok_or_else(|| format!("Ollama manifest has no {MODEL_LAYER} layer"))?;
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            format!(
                "Ollama manifest's model digest {:?} is not sha256:<64 hex digits>",
                layer.digest
            )
        })?;
    let blob = root.join("blobs").join(format!("sha256-{hex}"));
    if !blob.is_file() {
        return Err(format!(
            "model blob {} named by the manifest is missing",
            blob.display()
        ));
    }
    Ok(blob)
}
