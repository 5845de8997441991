//! Catalog scans of model directories, a Hugging Face cache and an Ollama
//! store laid out on disk with synthetic models.

use crate::support;

use std::path::Path;

use support::layouts::{
    commit, files_under, hf_cache_file, ollama_manifest, ollama_model, tiny_model,
};
use troupe_models::catalog::{Catalog, CatalogError, CatalogSources, ModelSource};
use troupe_models::synth::SynthShape;

fn names(catalog: &Catalog) -> Vec<&str> {
    catalog.entries.iter().map(|e| e.name.as_str()).collect()
}

fn dirs_only(dirs: &[&Path]) -> CatalogSources {
    CatalogSources {
        model_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        hf_cache: None,
        ollama_models: None,
    }
}

#[test]
fn model_directories_list_gguf_files_with_their_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    let tiny = tiny_model(&dir.join("tiny-f32.gguf"), 1);
    tiny_model(&dir.join("chat/nested/Other.GGUF"), 2);
    tiny_model(&dir.join("a/b/c/d/e/f/g/too-deep.gguf"), 3);
    std::fs::write(dir.join("broken.gguf"), b"this is not a model").unwrap();
    std::fs::write(dir.join("README.md"), b"# models").unwrap();

    let catalog = Catalog::scan(&dirs_only(&[&dir]));

    assert_eq!(names(&catalog), ["Other", "tiny-f32"]);
    let entry = catalog.find("tiny-f32").unwrap();
    assert_eq!(entry.path, tiny);
    assert_eq!(entry.architecture, "llama");
    assert_eq!(entry.parameters, SynthShape::Tiny.hparams().parameters());
    assert_eq!(entry.quantization, "F32");
    assert_eq!(
        entry.context_length,
        Some(SynthShape::Tiny.hparams().n_ctx_train)
    );
    assert_eq!(entry.file_size, std::fs::metadata(&tiny).unwrap().len());
    assert_eq!(entry.source, ModelSource::Directory);

    assert_eq!(catalog.problems.len(), 1, "{:?}", catalog.problems);
    assert_eq!(catalog.problems[0].path, dir.join("broken.gguf"));
    assert!(
        catalog.problems[0].reason.contains("not a GGUF file"),
        "{}",
        catalog.problems[0].reason
    );
}

#[test]
fn a_missing_model_directory_is_a_problem_not_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let catalog = Catalog::scan(&dirs_only(&[&missing]));
    assert!(catalog.entries.is_empty());
    assert_eq!(catalog.problems.len(), 1);
    assert_eq!(catalog.problems[0].path, missing);
}

#[test]
fn hugging_face_cache_lists_linked_snapshot_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("src/tiny.gguf"), 4);
    let cache = tmp.path().join("hub");
    // One GGUF: named after the repository. An older snapshot holds it too;
    // the one `main` points at wins.
    hf_cache_file(
        &cache,
        "TheOrg/Tiny-GGUF",
        &commit(1),
        "tiny-q8.gguf",
        &model,
        false,
    );
    let current = hf_cache_file(
        &cache,
        "TheOrg/Tiny-GGUF",
        &commit(2),
        "tiny-q8.gguf",
        &model,
        true,
    );
    hf_cache_file(
        &cache,
        "TheOrg/Tiny-GGUF",
        &commit(2),
        "config.json",
        &tmp.path().join("src/tiny.gguf"),
        true,
    );
    // Two GGUFs: `repo:stem` names.
    hf_cache_file(
        &cache,
        "TheOrg/Multi",
        &commit(3),
        "multi-a.gguf",
        &model,
        true,
    );
    hf_cache_file(
        &cache,
        "TheOrg/Multi",
        &commit(3),
        "sub/multi-b.gguf",
        &model,
        true,
    );
    // A download in progress and an orphaned blob: no snapshot link.
    let partial = cache.join("models--TheOrg--Partial/blobs");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::copy(&model, partial.join("abc.incomplete")).unwrap();
    std::fs::copy(&model, partial.join("def")).unwrap();
    // A dataset repository is not a model source.
    hf_cache_file(&cache, "x/y", &commit(4), "data.gguf", &model, true);
    std::fs::rename(cache.join("models--x--y"), cache.join("datasets--x--y")).unwrap();

    let catalog = Catalog::scan(&CatalogSources {
        model_dirs: vec![],
        hf_cache: Some(cache),
        ollama_models: None,
    });

    assert_eq!(
        names(&catalog),
        [
            "TheOrg/Multi:multi-a",
            "TheOrg/Multi:sub/multi-b",
            "TheOrg/Tiny-GGUF"
        ]
    );
    assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    let tiny = catalog.find("TheOrg/Tiny-GGUF").unwrap();
    assert_eq!(tiny.path, current);
    assert_eq!(
        tiny.source,
        ModelSource::HuggingFace {
            repo: "TheOrg/Tiny-GGUF".into(),
            revision: commit(2)
        }
    );
    assert_eq!(tiny.file_size, std::fs::metadata(&model).unwrap().len());
    assert_eq!(
        catalog.find("multi-b").unwrap().name,
        "TheOrg/Multi:sub/multi-b"
    );
    let json = serde_json::to_value(tiny).unwrap();
    assert_eq!(json["source"]["kind"], "hugging_face");
    assert_eq!(json["source"]["repo"], "TheOrg/Tiny-GGUF");
}

#[test]
fn ollama_store_names_models_by_tag_and_reports_bad_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("src/tiny.gguf"), 5);
    let root = tmp.path().join("ollama");
    ollama_model(
        &root,
        ["registry.ollama.ai", "library", "tiny", "latest"],
        &model,
        0xa1,
    );
    ollama_model(
        &root,
        ["registry.ollama.ai", "someone", "tiny", "q8"],
        &model,
        0xa2,
    );
    ollama_model(&root, ["hf.co", "org", "repo", "Q4_0"], &model, 0xa3);
    let broken = ollama_manifest(
        &root,
        ["registry.ollama.ai", "library", "broken", "latest"],
        "{ not json",
    );
    let no_blob = ollama_manifest(
        &root,
        ["registry.ollama.ai", "library", "gone", "latest"],
        &serde_json::json!({"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{}", "b".repeat(64))}]}).to_string(),
    );
    let text = tmp.path().join("src/notes.txt");
    std::fs::write(&text, b"plain text, not weights").unwrap();
    ollama_model(
        &root,
        ["registry.ollama.ai", "library", "notgguf", "latest"],
        &text,
        0xa4,
    );

    let catalog = Catalog::scan(&CatalogSources {
        model_dirs: vec![],
        hf_cache: None,
        ollama_models: Some(root.clone()),
    });

    assert_eq!(
        names(&catalog),
        ["hf.co/org/repo:Q4_0", "someone/tiny:q8", "tiny:latest"]
    );
    let tiny = catalog.find("tiny").unwrap();
    assert_eq!(
        tiny.path,
        root.join("blobs")
            .join(format!("sha256-{}", "a1".repeat(32)))
    );
    assert_eq!(
        tiny.source,
        ModelSource::Ollama {
            model: "tiny".into(),
            tag: "latest".into()
        }
    );
    let problem_paths: Vec<_> = catalog.problems.iter().map(|p| p.path.clone()).collect();
    assert_eq!(catalog.problems.len(), 3, "{:?}", catalog.problems);
    assert!(problem_paths.contains(&broken));
    assert!(problem_paths.contains(&no_blob));
    assert!(problem_paths.contains(
        &root
            .join("blobs")
            .join(format!("sha256-{}", "a4".repeat(32)))
    ));
    let broken_reason = &catalog
        .problems
        .iter()
        .find(|p| p.path == broken)
        .unwrap()
        .reason;
    assert!(
        broken_reason.contains("not a valid Ollama manifest"),
        "{broken_reason}"
    );
}

#[test]
fn resolve_takes_names_paths_and_explains_ambiguity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    let a = tiny_model(&dir.join("coder-q4.gguf"), 6);
    tiny_model(&dir.join("coder-q8.gguf"), 7);
    let outside = tiny_model(&tmp.path().join("elsewhere/loose.gguf"), 8);
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF but truncated").unwrap();
    let catalog = Catalog::scan(&dirs_only(&[&dir]));

    assert_eq!(catalog.resolve("Coder-Q4.gguf").unwrap().path, a);
    match catalog.resolve("coder") {
        Err(CatalogError::Ambiguous { candidates, .. }) => {
            assert_eq!(candidates, ["coder-q4", "coder-q8"])
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    let err = catalog.resolve("llama3").unwrap_err().to_string();
    assert!(err.contains("no model named \"llama3\""), "{err}");

    let loose = catalog.resolve(outside.to_str().unwrap()).unwrap();
    assert_eq!(loose.name, "loose");
    assert_eq!(loose.architecture, "llama");
    match catalog.resolve(junk.to_str().unwrap()) {
        Err(CatalogError::InvalidFile { path, .. }) => assert_eq!(path, junk),
        other => panic!("expected an invalid file, got {other:?}"),
    }
}

#[test]
fn every_problem_is_listed_in_the_hf_cache_too() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let junk = tmp.path().join("junk.bin");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let link = hf_cache_file(&cache, "org/junk", &commit(9), "junk.gguf", &junk, true);
    let catalog = Catalog::scan(&CatalogSources {
        model_dirs: vec![],
        hf_cache: Some(cache.clone()),
        ollama_models: None,
    });
    assert!(catalog.entries.is_empty());
    assert_eq!(catalog.problems.len(), 1, "{:?}", catalog.problems);
    assert_eq!(catalog.problems[0].path, link);
    assert!(
        !files_under(&cache).is_empty(),
        "the scan must not delete anything"
    );
}

#[test]
fn the_same_directory_named_twice_is_one_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    tiny_model(&dir.join("tiny-f32.gguf"), 1);
    let link = tmp.path().join("link-to-models");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let dotted = dir.join(".");

    let catalog = Catalog::scan(&dirs_only(&[&dir, &dotted, &link]));

    assert_eq!(names(&catalog), ["tiny-f32"]);
    let entry = catalog.find("tiny-f32").expect("one match, not several");
    assert_eq!(entry.name, "tiny-f32");
}
