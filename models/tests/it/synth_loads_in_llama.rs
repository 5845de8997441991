//! Synthetic models load and run in the real llama.cpp: the check that the
//! writer's tensor layout, hyperparameters and vocabulary match what
//! llama.cpp expects. One test, because llama.cpp's backend can only be
//! initialised once per process.

use std::num::NonZeroU32;
use std::path::Path;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use troupe_models::gguf::GgufFile;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const PROMPT: &str = "Hello, world!";
const GENERATED: usize = 8;

fn check_model(backend: &LlamaBackend, dir: &Path, shape: SynthShape, quant: SynthQuant) {
    let label = format!("{shape}-{quant}");
    let path = dir.join(format!("{label}.gguf"));
    let spec = SynthSpec {
        shape,
        quant,
        seed: 3,
    };
    write_synthetic(&path, &spec).expect("write synthetic model");
    let file = GgufFile::open(&path).expect("our reader accepts it");
    file.validate_for_llama().expect("our validator accepts it");

    let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
        .unwrap_or_else(|e| panic!("{label}: llama.cpp refused the model: {e}"));
    let hp = shape.hparams();
    assert_eq!(model.n_vocab() as u64, hp.n_vocab, "{label}");
    assert_eq!(u64::from(model.n_layer()), hp.n_layer, "{label}");
    assert_eq!(model.n_embd() as u64, hp.n_embd, "{label}");
    assert_eq!(u64::from(model.n_head_kv()), hp.n_head_kv, "{label}");
    assert_eq!(model.n_params(), hp.parameters(), "{label}");

    let template = model
        .chat_template(None)
        .unwrap_or_else(|e| panic!("{label}: no chat template: {e}"));
    assert!(template.to_str().expect("utf-8").contains("<|im_start|>"));

    let vocab = model.vocab();
    let plain = vocab.tokenize(PROMPT.as_bytes(), false, false);
    assert!(!plain.is_empty(), "{label}: no tokens");
    assert!(
        plain.len() < PROMPT.len(),
        "{label}: merges shorten the text"
    );
    let text = vocab.detokenize(&plain, false, false);
    assert_eq!(
        String::from_utf8_lossy(&text),
        PROMPT,
        "{label}: round trip"
    );
    let im_end = vocab.tokenize(b"<|im_end|>", false, true);
    assert_eq!(im_end.len(), 1, "{label}: <|im_end|> is one special token");
    assert!(
        vocab.is_control(im_end[0]),
        "{label}: <|im_end|> is a control token"
    );

    let prompt = vocab.tokenize(PROMPT.as_bytes(), true, false);
    assert_eq!(prompt.len(), plain.len() + 1, "{label}: BOS is added");
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(256))
        .with_n_batch(256)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model
        .new_context(backend, ctx_params)
        .unwrap_or_else(|e| panic!("{label}: context: {e}"));
    let mut batch = LlamaBatch::new(256, 1);
    let last = prompt.len() - 1;
    for (i, &token) in prompt.iter().enumerate() {
        batch
            .add(token, i as i32, &[0], i == last)
            .expect("batch space");
    }
    ctx.decode(&mut batch)
        .unwrap_or_else(|e| panic!("{label}: decode prompt: {e}"));

    let mut sampler = LlamaSampler::greedy();
    let mut generated = Vec::new();
    for pos in (prompt.len() as i32..).take(GENERATED) {
        let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
        assert!(
            logits.iter().all(|l| l.is_finite()),
            "{label}: logits are finite"
        );
        // `sample` already accepts the token into the sampler.
        let token = sampler.sample(&ctx, batch.n_tokens() - 1);
        assert!(
            (0..model.n_vocab()).contains(&token.0),
            "{label}: token in vocab"
        );
        generated.push(token);
        batch.clear();
        batch.add(token, pos, &[0], true).expect("batch space");
        ctx.decode(&mut batch)
            .unwrap_or_else(|e| panic!("{label}: decode step: {e}"));
    }
    assert_eq!(generated.len(), GENERATED);
}

#[test]
fn synthetic_models_load_tokenize_and_generate_in_llama_cpp() {
    // The binary's one backend; its log is shared with the estimate tests,
    // which must not read this test's buffers.
    let _alone = crate::support::llama::MEASURE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let backend = crate::support::llama::backend();
    let dir = tempfile::tempdir().expect("temp dir");
    for quant in [
        SynthQuant::F32,
        SynthQuant::F16,
        SynthQuant::Q8_0,
        SynthQuant::Q4_0,
    ] {
        check_model(backend, dir.path(), SynthShape::Tiny, quant);
    }
    check_model(backend, dir.path(), SynthShape::Small, SynthQuant::Q8_0);
}
