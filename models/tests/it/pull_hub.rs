//! `pull` against a local server that speaks the Hugging Face file API, and
//! the catalog's view of the cache afterwards.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use support::layouts::{files_under, tiny_model};
use troupe_models::catalog::{Catalog, CatalogSources, ModelSource};
use troupe_models::pull::{pull, PullError, PullProgress, PullRequest};
use troupe_models::synth::SynthShape;
use troupe_testkit::hub::{HubFile, HubRepo, HubServer};

/// Records what `pull` reports.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    bytes: Mutex<u64>,
}

impl PullProgress for Recorder {
    fn start(&self, file: &str, total: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("start {file} {total}"));
    }
    fn advance(&self, bytes: u64) {
        *self.bytes.lock().unwrap() += bytes;
    }
    fn finish(&self) {
        self.events.lock().unwrap().push("finish".into());
    }
}

fn tiny_bytes(dir: &Path, seed: u64) -> Vec<u8> {
    std::fs::read(tiny_model(&dir.join(format!("src-{seed}.gguf")), seed)).unwrap()
}

fn request(server: &HubServer, cache: &Path, spec: &str) -> PullRequest {
    PullRequest {
        endpoint: Some(server.endpoint.clone()),
        ..PullRequest::parse_spec(spec, cache).unwrap()
    }
}

fn scan(cache: &Path) -> Catalog {
    Catalog::scan(&CatalogSources {
        model_dirs: vec![],
        hf_cache: Some(cache.to_path_buf()),
        ollama_models: None,
    })
}

/// Files in the cache other than hf-hub's lock files.
fn cache_files(cache: &Path) -> Vec<PathBuf> {
    files_under(cache)
        .into_iter()
        .filter(|p| !p.starts_with(cache.join(".locks")))
        .collect()
}

#[tokio::test]
async fn pulled_model_lands_in_the_cache_and_the_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let body = tiny_bytes(tmp.path(), 1);
    let repo = HubRepo::new(
        "org/tiny-GGUF",
        vec![HubFile::new("tiny-f32.gguf", body.clone())],
    );
    let commit = repo.commit.clone();
    let server = HubServer::start(vec![repo]).await;
    let cache = tmp.path().join("hub");
    let recorder = Arc::new(Recorder::default());

    let path = pull(
        &request(&server, &cache, "org/tiny-GGUF:tiny-f32.gguf"),
        recorder.clone(),
    )
    .await
    .unwrap();

    assert_eq!(
        path,
        cache
            .join("models--org--tiny-GGUF/snapshots")
            .join(&commit)
            .join("tiny-f32.gguf")
    );
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(
        *recorder.events.lock().unwrap(),
        [
            format!("start tiny-f32.gguf {}", body.len()),
            "finish".to_owned()
        ]
    );
    assert_eq!(*recorder.bytes.lock().unwrap(), body.len() as u64);
    assert_eq!(
        server.requests(),
        [
            "HEAD /org/tiny-GGUF/resolve/main/tiny-f32.gguf",
            "GET /org/tiny-GGUF/resolve/main/tiny-f32.gguf"
        ]
    );

    let catalog = scan(&cache);
    assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    assert_eq!(catalog.entries.len(), 1);
    let entry = &catalog.entries[0];
    assert_eq!(entry.name, "org/tiny-GGUF");
    assert_eq!(entry.path, path);
    assert_eq!(entry.architecture, "llama");
    assert_eq!(entry.parameters, SynthShape::Tiny.hparams().parameters());
    assert_eq!(entry.quantization, "F32");
    assert_eq!(entry.file_size, body.len() as u64);
    assert_eq!(
        entry.source,
        ModelSource::HuggingFace {
            repo: "org/tiny-GGUF".into(),
            revision: commit
        }
    );
}

#[tokio::test]
async fn without_a_file_name_the_only_gguf_is_pulled_and_several_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let body = tiny_bytes(tmp.path(), 2);
    let server = HubServer::start(vec![
        HubRepo::new(
            "org/one",
            vec![
                HubFile::new("README.md", b"# one".to_vec()),
                HubFile::new("one-q8_0.gguf", body.clone()),
            ],
        ),
        HubRepo::new(
            "org/two",
            vec![
                HubFile::new("two-q8_0.gguf", body.clone()),
                HubFile::new("two-q4_0.gguf", body.clone()),
            ],
        ),
    ])
    .await;
    let cache = tmp.path().join("hub");

    let path = pull(
        &request(&server, &cache, "org/one"),
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap();
    assert!(path.ends_with("one-q8_0.gguf"), "{}", path.display());
    assert!(server
        .requests()
        .contains(&"GET /api/models/org/one/revision/main".to_owned()));

    let err = pull(
        &request(&server, &cache, "org/two"),
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PullError::SeveralGguf { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "org/two at main holds several .gguf files; name one as org/two:FILE: two-q4_0.gguf, two-q8_0.gguf"
    );
    assert_eq!(scan(&cache).entries.len(), 1, "only org/one was downloaded");
}

#[tokio::test]
async fn a_dropped_connection_is_reported_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let body = tiny_bytes(tmp.path(), 3);
    let half = body.len() / 2;
    let server = HubServer::start(vec![HubRepo::new(
        "org/flaky",
        vec![HubFile::cut("flaky.gguf", body.clone(), half)],
    )])
    .await;
    let cache = tmp.path().join("hub");
    let recorder = Arc::new(Recorder::default());

    let err = pull(
        &request(&server, &cache, "org/flaky:flaky.gguf"),
        recorder.clone(),
    )
    .await
    .unwrap_err();

    match &err {
        PullError::Interrupted {
            file,
            received,
            total,
            ..
        } => {
            assert_eq!(file, "flaky.gguf");
            assert_eq!(*total, Some(body.len() as u64));
            assert!(*received <= half as u64, "{received} > {half}");
        }
        other => panic!("expected an interruption, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("download of flaky.gguf interrupted after ")
            && text.ends_with(&format!(" of {} bytes", body.len())),
        "{text}"
    );
    assert_eq!(
        recorder.events.lock().unwrap().last().map(String::as_str),
        Some("finish")
    );

    let catalog = scan(&cache);
    assert!(catalog.entries.is_empty(), "{:?}", catalog.entries);
    assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    let left = cache_files(&cache);
    assert!(
        left.iter().all(
            |p| !p.starts_with(cache.join("models--org--flaky/snapshots"))
                && !p.to_string_lossy().ends_with(".incomplete")
        ),
        "partial download left behind: {left:?}"
    );
}

#[tokio::test]
async fn missing_repositories_and_files_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let body = tiny_bytes(tmp.path(), 4);
    let server = HubServer::start(vec![HubRepo::new(
        "org/real",
        vec![HubFile::new("real.gguf", body)],
    )])
    .await;
    let cache = tmp.path().join("hub");

    for spec in ["org/real:missing.gguf", "org/ghost:ghost.gguf", "org/ghost"] {
        let err = pull(
            &request(&server, &cache, spec),
            Arc::new(Recorder::default()),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, PullError::NotFound { .. }), "{spec}: {err:?}");
        assert!(
            err.to_string()
                .starts_with("repository or file not found: org/"),
            "{err}"
        );
    }
    assert!(scan(&cache).entries.is_empty());
}

#[tokio::test]
async fn a_file_that_is_not_a_model_is_removed_after_download() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HubServer::start(vec![HubRepo::new(
        "org/fake",
        vec![HubFile::new(
            "fake.gguf",
            b"<html>Sign in to continue</html>".repeat(64),
        )],
    )])
    .await;
    let cache = tmp.path().join("hub");

    let err = pull(
        &request(&server, &cache, "org/fake:fake.gguf"),
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, PullError::InvalidModel { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("fake.gguf from org/fake is not a model llama.cpp can load"),
        "{err}"
    );
    let catalog = scan(&cache);
    assert!(
        catalog.entries.is_empty() && catalog.problems.is_empty(),
        "{catalog:?}"
    );
    let left = cache_files(&cache);
    assert!(
        left.iter().all(
            |p| !p.starts_with(cache.join("models--org--fake/snapshots"))
                && !p.starts_with(cache.join("models--org--fake/blobs"))
        ),
        "invalid download left behind: {left:?}"
    );
}
