//! `/v1/embeddings` of a real `troupe serve` process serving the sentence
//! embedder (all-MiniLM-L6-v2), found through `$HF_HUB_CACHE` as laid out
//! by `scripts/fetch-minilm.sh`, compared with the independent reference
//! vectors of `inference/tests/data/minilm-reference.json`.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};

const API_KEY: &str = "sentence-key-81c2";
const REFERENCE: &str = include_str!("../../inference/tests/data/minilm-reference.json");

/// The cache `scripts/fetch-minilm.sh` fills; fails (never skips) when the
/// model is not there.
fn hf_cache() -> PathBuf {
    let cache = std::env::var_os("MINILM_TEST_HF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hf-cache"));
    assert!(
        cache
            .join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main")
            .is_file(),
        "all-MiniLM-L6-v2 is not in the Hugging Face cache at {}: run \
         `bash scripts/fetch-minilm.sh` (scripts/test.sh does) and set \
         MINILM_TEST_HF_CACHE to the directory it prints",
        cache.display()
    );
    cache
}

/// `troupe serve` on 127.0.0.1:0 with no GGUF model, the scripted engine,
/// and the default `[memory]` embedder looked up in `$HF_HUB_CACHE`.
struct Serve {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json");
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        let config = dir.path().join("troupe.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n\n[models]\ndirs = [{models:?}]\nollama = {ollama:?}\n\n\
                 [inference]\nbackend = \"scripted\"\nscript = {script:?}\n",
                data = dir.path().join("data").display().to_string(),
                models = dir.path().join("models").display().to_string(),
                ollama = dir.path().join("ollama").display().to_string(),
                script = script.display().to_string(),
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .args(["--addr", "127.0.0.1:0", "--api-key", API_KEY])
            .env_remove("TROUPE_CONFIG")
            .env_remove("HF_HOME")
            .env("HF_HUB_CACHE", hf_cache())
            .env("TROUPE_LOG", "warn")
            .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("troupe serve starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let base = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "serve exited early"
            );
            if let Some(rest) = line.trim().strip_prefix("troupe serve: ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stderr.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Serve {
            child,
            base,
            _dir: dir,
        }
    }

    async fn embed(&self, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/embeddings", self.base))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

#[test]
fn serve_embeds_with_the_sentence_embedder_like_the_reference() {
    let serve = Serve::start();
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let expected: Vec<Vec<f32>> = sentences.iter().map(|s| floats(&s["embedding"])).collect();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let model = "sentence-transformers/all-MiniLM-L6-v2";
        let (status, body) = serve.embed(json!({"model": model, "input": texts})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], model);
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), texts.len());
        let mut worst = f64::MAX;
        for (i, (entry, want)) in data.iter().zip(&expected).enumerate() {
            assert_eq!(entry["object"], "embedding");
            assert_eq!(entry["index"], i);
            let got = floats(&entry["embedding"]);
            assert_eq!(got.len(), 384);
            let c = cosine(&got, want);
            worst = worst.min(c);
            assert!(c >= 0.99, "cosine {c} for {:?}", texts[i]);
        }
        println!("minimum cosine over HTTP: {worst:.9}");
        let tokens: u64 = sentences
            .iter()
            .map(|s| s["tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(body["usage"]["prompt_tokens"], tokens, "{}", body["usage"]);
        assert_eq!(body["usage"]["total_tokens"], tokens);

        // The short name and base64 encoding: the same vector, as LE f32s.
        let (status, body) = serve
            .embed(json!({
                "model": "all-MiniLM-L6-v2",
                "input": texts[1],
                "encoding_format": "base64",
                "dimensions": 384,
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let got: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert!(cosine(&got, &expected[1]) >= 0.99);

        // Wrong dimensions, an empty list, token ids: 400s.
        for (request, param) in [
            (
                json!({"model": model, "input": "x", "dimensions": 128}),
                "dimensions",
            ),
            (json!({"model": model, "input": []}), "input"),
            (json!({"model": model, "input": [1, 2, 3]}), "input"),
        ] {
            let (status, body) = serve.embed(request.clone()).await;
            assert_eq!(status, 400, "{request}: {body}");
            assert_eq!(body["error"]["param"], param, "{body}");
        }
        // Any other model still goes to the ModelHost (none here).
        let (status, body) = serve
            .embed(json!({"model": "no-such-model", "input": "x"}))
            .await;
        assert_eq!(status, 404, "{body}");
    });
}
