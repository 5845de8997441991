//! The sentence embedder against a real all-MiniLM-L6-v2, found through the
//! Hugging Face cache layout that `scripts/fetch-minilm.sh` writes, compared
//! with vectors from an independent numpy implementation
//! (`scripts/minilm-reference.py`, output in `data/minilm-reference.json`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use troupe_inference::embedder::{EmbedError, EmbedderSource, SentenceEmbedder, DEFAULT_EMBEDDER};

const REFERENCE: &str = include_str!("../data/minilm-reference.json");

/// The cache `scripts/fetch-minilm.sh` fills: `$MINILM_TEST_HF_CACHE`, else
/// its default, `target/hf-cache`. Fails (never skips) when the model is
/// not there.
fn hf_cache() -> PathBuf {
    let cache = std::env::var_os("MINILM_TEST_HF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hf-cache"));
    let entry = cache.join("models--sentence-transformers--all-MiniLM-L6-v2");
    assert!(
        entry.join("refs/main").is_file(),
        "all-MiniLM-L6-v2 is not in the Hugging Face cache at {}: run \
         `bash scripts/fetch-minilm.sh` (scripts/test.sh does) and set \
         MINILM_TEST_HF_CACHE to the directory it prints",
        cache.display()
    );
    cache
}

/// The snapshot directory of the cached model (files are symlinks to blobs).
fn snapshot_dir() -> PathBuf {
    let entry = hf_cache().join("models--sentence-transformers--all-MiniLM-L6-v2");
    let rev = std::fs::read_to_string(entry.join("refs/main")).expect("refs/main is readable");
    entry.join("snapshots").join(rev.trim())
}

fn embedder() -> &'static SentenceEmbedder {
    static EMBEDDER: OnceLock<SentenceEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        SentenceEmbedder::load(&EmbedderSource::hub_in(DEFAULT_EMBEDDER, hf_cache()))
            .unwrap_or_else(|e| panic!("loading all-MiniLM-L6-v2 from the HF cache: {e}"))
    })
}

struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let json: Value = serde_json::from_str(REFERENCE).expect("the reference file is JSON");
    let sentences = json["sentences"].as_array().expect("a sentences list");
    let texts = sentences
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_owned())
        .collect();
    let vectors = sentences
        .iter()
        .map(|s| {
            s["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect();
    Reference { texts, vectors }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn matches_the_independent_reference_for_every_sentence() {
    let embedder = embedder();
    assert_eq!(embedder.dim(), 384);
    assert_eq!(embedder.max_seq_len(), 256);
    assert_eq!(embedder.model_id(), DEFAULT_EMBEDDER);
    assert!(embedder.normalizes());

    let reference = reference();
    assert!(
        reference.texts.len() >= 20,
        "the fixed set has ~20 sentences"
    );
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts).expect("embedding the fixed set");
    assert_eq!(vectors.len(), texts.len());

    let mut worst = (f64::MAX, "");
    let mut max_diff = 0.0f32;
    for ((text, ours), theirs) in texts.iter().zip(&vectors).zip(&reference.vectors) {
        let c = cosine(ours, theirs);
        for (a, b) in ours.iter().zip(theirs) {
            max_diff = max_diff.max((a - b).abs());
        }
        if c < worst.0 {
            worst = (c, text);
        }
        assert!(c >= 0.99, "cosine {c:.6} < 0.99 for {text:?}");
    }
    println!(
        "minimum cosine to the reference over {} sentences: {:.9} (1 - cos = {:.2e}, {:?}); \
         largest component difference {max_diff:.2e}",
        texts.len(),
        worst.0,
        1.0 - worst.0,
        worst.1.chars().take(40).collect::<String>()
    );
}

#[test]
fn batched_and_one_at_a_time_give_the_same_vectors() {
    let embedder = embedder();
    let reference = reference();
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let batched = embedder.embed(&texts).expect("batch");
    for (text, from_batch) in texts.iter().zip(&batched) {
        let alone = embedder.embed(&[text]).expect("single");
        assert_eq!(alone.len(), 1);
        let max_diff = alone[0]
            .iter()
            .zip(from_batch)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff < 1e-4,
            "{text:?}: alone and in a padded batch differ by {max_diff}"
        );
    }
    // Order is kept whatever the internal length sorting does.
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    let backwards = embedder.embed(&reversed).expect("reversed batch");
    for (a, b) in backwards.iter().rev().zip(&batched) {
        assert!(cosine(a, b) > 0.9999);
    }
}

#[test]
fn vectors_have_unit_length() {
    let vectors = embedder()
        .embed(&["unit length", "", "ünïcödé 🙂", "x"])
        .expect("embed");
    for v in &vectors {
        assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));
    }
}

#[test]
fn empty_input_list_gives_no_vectors_and_empty_string_is_fine() {
    let embedder = embedder();
    assert!(embedder.embed(&[]).expect("empty list").is_empty());
    let usage = embedder.embed_counting_tokens(&[""]).expect("empty string");
    assert_eq!(usage.vectors.len(), 1);
    assert_eq!(usage.vectors[0].len(), 384);
    // [CLS] and [SEP].
    assert_eq!(usage.prompt_tokens, 2);
}

#[test]
fn text_past_max_seq_len_tokens_is_truncated() {
    let embedder = embedder();
    let long = "word ".repeat(600);
    let longer = format!("{long} and then something else entirely about oceans and whales");
    let got = embedder
        .embed_counting_tokens(&[&long, &longer])
        .expect("long inputs");
    assert_eq!(
        got.prompt_tokens,
        2 * 256,
        "each input truncated to 256 tokens"
    );
    assert!(
        cosine(&got.vectors[0], &got.vectors[1]) > 0.99999,
        "text past the truncation point must not change the vector"
    );
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let v = embedder()
        .embed(&[
            "A man is playing a guitar.",
            "Someone is playing an instrument.",
            "The stock market crashed today.",
        ])
        .expect("embed");
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
}

#[test]
fn loads_from_a_plain_directory_too() {
    let dir = snapshot_dir();
    let from_dir = SentenceEmbedder::load(&EmbedderSource::Dir(dir.clone())).expect("load dir");
    assert_eq!(
        from_dir.model_id(),
        dir.file_name().unwrap().to_str().unwrap()
    );
    let a = from_dir.embed(&["the same sentence"]).expect("embed");
    let b = embedder().embed(&["the same sentence"]).expect("embed");
    assert!(cosine(&a[0], &b[0]) > 0.999_999);
    // `parse` takes a path for a directory and a repo id otherwise.
    assert_eq!(
        EmbedderSource::parse(dir.to_str().unwrap()),
        EmbedderSource::Dir(dir)
    );
    assert_eq!(
        EmbedderSource::parse(DEFAULT_EMBEDDER),
        EmbedderSource::hub(DEFAULT_EMBEDDER)
    );
}

/// A copy of the model directory (symlinks to the cached files) without
/// `skip`, with `replace` written instead where given.
fn model_copy(skip: &[&str], replace: &[(&str, &[u8])]) -> tempfile::TempDir {
    let src = snapshot_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        let dest = tmp.path().join(file);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if skip.contains(&file) {
            continue;
        }
        match replace.iter().find(|(name, _)| *name == file) {
            Some((_, bytes)) => std::fs::write(&dest, bytes).unwrap(),
            None => {
                let target = std::fs::canonicalize(src.join(file)).unwrap();
                std::os::unix::fs::symlink(target, &dest).unwrap();
            }
        }
    }
    tmp
}

fn load_err(source: EmbedderSource) -> EmbedError {
    match SentenceEmbedder::load(&source) {
        Ok(_) => panic!("{source:?} loaded but should not"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_directory_is_named() {
    let e = load_err(EmbedderSource::Dir("/no/such/model-dir".into()));
    assert!(matches!(e, EmbedError::NotADirectory { .. }), "{e:?}");
    assert!(e.to_string().contains("/no/such/model-dir"), "{e}");
}

#[test]
fn a_repository_missing_from_the_cache_is_named() {
    let e = load_err(EmbedderSource::hub_in("nobody/no-such-model", hf_cache()));
    assert!(matches!(e, EmbedError::NotCached { .. }), "{e:?}");
    assert!(e.to_string().contains("nobody/no-such-model"), "{e}");
    let e = load_err(EmbedderSource::HubCache {
        repo: DEFAULT_EMBEDDER.into(),
        revision: Some("no-such-branch".into()),
        cache_dir: Some(hf_cache()),
    });
    assert!(e.to_string().contains("no-such-branch"), "{e}");
}

#[test]
fn each_missing_file_is_named() {
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        let dir = model_copy(&[file], &[]);
        let e = load_err(EmbedderSource::Dir(dir.path().into()));
        assert!(
            matches!(&e, EmbedError::MissingFile { file: f, .. } if f == file),
            "without {file}: {e:?}"
        );
        assert!(e.to_string().contains(file), "{e}");
    }
}

#[test]
fn corrupt_weights_are_an_error_not_a_panic() {
    let real = std::fs::read(snapshot_dir().join("model.safetensors")).unwrap();
    let truncated = &real[..real.len() / 2];
    let cases: [(&str, &[u8]); 4] = [
        ("empty", b""),
        (
            "garbage",
            b"this is not a safetensors file at all, just some text",
        ),
        (
            "huge header length",
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, b'{'],
        ),
        ("truncated", truncated),
    ];
    for (what, bytes) in cases {
        let dir = model_copy(&[], &[("model.safetensors", bytes)]);
        let e = load_err(EmbedderSource::Dir(dir.path().into()));
        assert!(
            matches!(&e, EmbedError::BadFile { path, .. } if path.ends_with("model.safetensors")),
            "{what} weights: {e:?}"
        );
    }
}

#[test]
fn wrong_configs_are_errors_that_name_the_file() {
    let config: Value =
        serde_json::from_slice(&std::fs::read(snapshot_dir().join("config.json")).unwrap())
            .unwrap();
    let with = |key: &str, value: Value| {
        let mut c = config.clone();
        c[key] = value;
        serde_json::to_vec(&c).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{ nope".to_vec()),
        ("wider than the weights", with("hidden_size", 768.into())),
        ("zero heads", with("num_attention_heads", 0.into())),
        (
            "heads not dividing the width",
            with("num_attention_heads", 7.into()),
        ),
        (
            "fewer words than the tokenizer",
            with("vocab_size", 100.into()),
        ),
        ("another architecture", with("model_type", "roberta".into())),
        ("hidden_size a string", with("hidden_size", "big".into())),
    ];
    for (what, bytes) in cases {
        let dir = model_copy(&[], &[("config.json", &bytes)]);
        let e = load_err(EmbedderSource::Dir(dir.path().into()));
        let msg = e.to_string();
        assert!(
            msg.contains("config.json") || msg.contains("model.safetensors"),
            "{what}: {msg}"
        );
    }
    let pooling = br#"{"word_embedding_dimension": 384, "pooling_mode_weightedmean_tokens": true}"#;
    let dir = model_copy(&[], &[("1_Pooling/config.json", pooling)]);
    let e = load_err(EmbedderSource::Dir(dir.path().into()));
    assert!(matches!(e, EmbedError::Unsupported { .. }), "{e:?}");
    let modules =
        br#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#;
    let dir = model_copy(&[], &[("modules.json", modules)]);
    let e = load_err(EmbedderSource::Dir(dir.path().into()));
    assert!(e.to_string().contains("Dense"), "{e}");
}
