//! Synthetic models read back through the GGUF reader: what was written is
//! what is read, and the files pass llama.cpp validation.

use troupe_models::gguf::{GgmlType, GgufFile};
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec, CHATML_TEMPLATE};

fn check_round_trip(shape: SynthShape, quant: SynthQuant) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(format!("{shape}-{quant}.gguf"));
    let spec = SynthSpec {
        shape,
        quant,
        seed: 42,
    };
    let report = write_synthetic(&path, &spec).expect("write synthetic model");
    let hp = shape.hparams();

    let file = GgufFile::open(&path).expect("synthetic model opens");
    file.validate_for_llama()
        .expect("synthetic model validates");

    assert_eq!(
        report.file_size,
        std::fs::metadata(&path).expect("stat").len()
    );
    assert_eq!(file.file_size, report.file_size);
    assert_eq!(file.architecture().expect("architecture"), "llama");
    let expected_name = format!("troupe-synth-{shape}-{quant}");
    assert_eq!(file.name(), Some(expected_name.as_str()));
    assert_eq!(file.arch_u64("block_count"), Some(hp.n_layer));
    assert_eq!(file.arch_u64("embedding_length"), Some(hp.n_embd));
    assert_eq!(file.arch_u64("attention.head_count_kv"), Some(hp.n_head_kv));
    assert_eq!(file.context_length(), Some(hp.n_ctx_train));
    assert_eq!(
        file.get_f32("llama.attention.layer_norm_rms_epsilon"),
        Some(1e-5)
    );
    assert_eq!(file.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(file.chat_template(), Some(CHATML_TEMPLATE));
    assert_eq!(file.parameter_count(), hp.parameters());
    assert_eq!(report.parameters, hp.parameters());
    assert_eq!(file.quantization(), quant.to_string().to_uppercase());
    assert_eq!(file.tensors.len() as u64, 3 + 9 * hp.n_layer);
    assert!(file.tensor_bytes() < file.file_size);

    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .expect("tokens");
    assert_eq!(tokens.len() as u64, hp.n_vocab);
    let merges = file
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.as_array())
        .expect("merges");
    assert!(merges.len() >= 50);

    let embd = file.tensor("token_embd.weight").expect("token_embd");
    assert_eq!(
        embd.dims,
        vec![hp.n_embd, hp.n_vocab],
        "ggml order: row length first"
    );
    let ffn_down = file.tensor("blk.0.ffn_down.weight").expect("ffn_down");
    assert_eq!(ffn_down.dims, vec![hp.n_ff, hp.n_embd]);
    let k = file.tensor("blk.0.attn_k.weight").expect("attn_k");
    assert_eq!(
        k.dims,
        vec![hp.n_embd, hp.n_embd / hp.n_head * hp.n_head_kv]
    );
    let norm = file.tensor("output_norm.weight").expect("output_norm");
    assert_eq!(norm.ggml_type, GgmlType::F32, "norms stay F32");
    let expected_type = match quant {
        SynthQuant::F32 => GgmlType::F32,
        SynthQuant::F16 => GgmlType::F16,
        SynthQuant::Q8_0 => GgmlType::Q8_0,
        SynthQuant::Q4_0 => GgmlType::Q4_0,
    };
    assert_eq!(embd.ggml_type, expected_type);
    assert!(
        !path.with_extension("gguf.tmp").exists(),
        "no temp file left"
    );
}

#[test]
fn tiny_round_trips_in_every_quant() {
    for quant in [
        SynthQuant::F32,
        SynthQuant::F16,
        SynthQuant::Q8_0,
        SynthQuant::Q4_0,
    ] {
        check_round_trip(SynthShape::Tiny, quant);
    }
}

#[test]
fn small_round_trips() {
    check_round_trip(SynthShape::Small, SynthQuant::Q8_0);
}

#[test]
fn medium_round_trips() {
    check_round_trip(SynthShape::Medium, SynthQuant::Q4_0);
}

#[test]
fn tiny_f32_stays_under_a_megabyte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::F32,
        seed: 0,
    };
    let report = write_synthetic(&dir.path().join("t.gguf"), &spec).expect("write");
    assert!(report.file_size < 1_000_000, "{} bytes", report.file_size);
}
