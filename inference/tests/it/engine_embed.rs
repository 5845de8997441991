//! Embeddings from the llama.cpp engine, end to end on a synthetic model
//! written to a temporary directory. One test binary, because llama.cpp's
//! backend is initialised once per process.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use troupe_inference::backend::{
    Backend, GenerateError, GenerateRequest, GenerationEvent, LoadOptions, LoadedModel,
};
use troupe_inference::llama::LlamaEngine;
use troupe_inference::sampling::SamplingOptions;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

struct Models {
    _dir: tempfile::TempDir,
    tiny: PathBuf,
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let tiny = dir.path().join("tiny-f32.gguf");
        let spec = SynthSpec {
            shape: SynthShape::Tiny,
            quant: SynthQuant::F32,
            seed: 7,
        };
        write_synthetic(&tiny, &spec).expect("write tiny model");
        Models { _dir: dir, tiny }
    })
}

async fn load(context_length: u32, parallel_slots: u32) -> Arc<dyn LoadedModel> {
    let opts = LoadOptions {
        context_length,
        parallel_slots,
        threads: Some(1),
        ..LoadOptions::default()
    };
    LlamaEngine::new()
        .load(&models().tiny, opts)
        .await
        .expect("model loads")
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|&text| text.to_owned()).collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    dot / (norm(a) * norm(b))
}

const TEXTS: [&str; 5] = [
    "The quick brown fox jumps over the lazy dog",
    "alpha beta",
    "1 2 3 4 5 6 7 8 9 10",
    "Hello, world",
    "x",
];

#[tokio::test]
async fn vectors_are_unit_length_n_embd_wide_and_deterministic() {
    let model = load(256, 1).await;
    let n_embd = model.info().n_embd as usize;
    let before = model.memory();
    let out = model
        .embed(strings(&[TEXTS[0], TEXTS[0], TEXTS[1]]))
        .await
        .expect("embeddings");
    assert_eq!(out.vectors.len(), 3);
    for v in &out.vectors {
        assert_eq!(v.len(), n_embd);
        assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));
        assert!(v.iter().all(|x| x.is_finite()));
    }
    assert_eq!(out.vectors[0], out.vectors[1], "same text, same vector");
    assert!(
        cosine(&out.vectors[0], &out.vectors[2]) < 0.9999,
        "different texts give different vectors"
    );
    let expected_tokens = 2 * model.count_tokens(TEXTS[0]).expect("tokenize")
        + model.count_tokens(TEXTS[1]).expect("tokenize");
    assert_eq!(out.prompt_tokens as usize, expected_tokens);

    // Later calls give the same vector: nothing of an earlier batch stays in
    // the embedding context's cache. Bit for bit when the batch is the same;
    // a batch of another shape sums in another order, so only nearly.
    let single = || async {
        model
            .embed(strings(&[TEXTS[0]]))
            .await
            .expect("embeddings")
            .vectors
    };
    let (first, second) = (single().await, single().await);
    assert_eq!(first, second);
    assert!(cosine(&first[0], &out.vectors[0]) > 0.9999);

    // The lazily created embedding context is now counted.
    let after = model.memory();
    assert_eq!(after.weights, before.weights);
    assert!(
        after.kv_cache > before.kv_cache,
        "kv {} -> {}",
        before.kv_cache,
        after.kv_cache
    );
    assert!(after.compute > before.compute);
}

#[tokio::test]
async fn a_batch_equals_its_single_calls() {
    let model = load(256, 1).await;
    // More inputs than one embedding batch holds (16 sequences), so the
    // batching across decodes is exercised too.
    let inputs: Vec<String> = (0..20).map(|i| format!("{} #{i}", TEXTS[i % 5])).collect();
    let batch = model.embed(inputs.clone()).await.expect("batch");
    assert_eq!(batch.vectors.len(), inputs.len());
    for (input, batched) in inputs.iter().zip(&batch.vectors) {
        let single = model
            .embed(vec![input.clone()])
            .await
            .expect("single embedding");
        let similarity = cosine(batched, &single.vectors[0]);
        assert!(similarity > 0.9999, "{input:?}: cosine {similarity}");
    }
}

#[tokio::test]
async fn bad_inputs_are_errors_naming_what_is_wrong() {
    let model = load(64, 1).await;
    let error = model.embed(Vec::new()).await.expect_err("no inputs");
    assert!(
        matches!(error, GenerateError::NoEmbeddingInputs),
        "{error:?}"
    );

    let error = model
        .embed(strings(&["fine", ""]))
        .await
        .expect_err("empty input");
    assert!(
        matches!(error, GenerateError::EmptyEmbeddingInput { index: 1 }),
        "{error:?}"
    );

    let long = "word ".repeat(200);
    let error = model
        .embed(vec!["fine".to_owned(), long.clone()])
        .await
        .expect_err("too long");
    match error {
        GenerateError::EmbeddingInputTooLong { index, tokens, max } => {
            assert_eq!(index, 1);
            assert_eq!(max, 64);
            assert_eq!(tokens, model.count_tokens(&long).expect("tokenize"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The engine still answers after refusing.
    let out = model.embed(strings(&["fine"])).await.expect("embedding");
    assert_eq!(out.vectors.len(), 1);

    model.unload().await;
    let error = model.embed(strings(&["fine"])).await.expect_err("unloaded");
    assert!(matches!(error, GenerateError::Unloaded), "{error:?}");
}

#[tokio::test]
async fn a_generation_running_meanwhile_gives_the_same_text_as_alone() {
    let model = load(512, 2).await;
    let request = || GenerateRequest {
        sampling: SamplingOptions::greedy(),
        max_tokens: 300,
        ignore_eos: true,
        ..GenerateRequest::text("Once upon a time")
    };
    let alone = model
        .generate(request())
        .expect("accepted")
        .into_result()
        .await
        .expect("result")
        .text;
    let expected = model
        .embed(strings(&TEXTS))
        .await
        .expect("embeddings alone");

    let mut stream = model.generate(request()).expect("accepted");
    let mut text = String::new();
    let mut embedded = None;
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token(piece) => {
                text.push_str(&piece);
                if embedded.is_none() {
                    // Mid-generation: the engine runs this between two steps.
                    embedded = Some(model.embed(strings(&TEXTS)).await.expect("embeddings"));
                }
            }
            GenerationEvent::Done(result) => {
                assert_eq!(result.text, text);
                break;
            }
            GenerationEvent::Error(error) => panic!("generation failed: {error}"),
        }
    }
    assert_eq!(text, alone);
    let embedded = embedded.expect("embedded during generation");
    for (during, before) in embedded.vectors.iter().zip(&expected.vectors) {
        assert!(cosine(during, before) > 0.9999);
    }
}
