//! The memory estimate's arithmetic, on synthetic models and hand-written
//! GGUF headers.

use crate::support;

use std::path::Path;

use support::layouts::tiny_model;
use troupe_models::estimate::{estimate, EstimateError, EstimateParams, KvCacheType};
use troupe_models::gguf::GgufFile;
use troupe_models::synth::SynthShape;

fn params(context_length: u32) -> EstimateParams {
    EstimateParams {
        context_length,
        ..EstimateParams::default()
    }
}

/// A GGUF v3 file with no tensors and the given string metadata.
fn header_only(path: &Path, kv: &[(&str, &str)]) -> GgufFile {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        out.extend_from_slice(&(k.len() as u64).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    std::fs::write(path, out).unwrap();
    GgufFile::open(path).expect("hand-written header parses")
}

#[test]
fn kv_cache_grows_linearly_with_context_length() {
    let tmp = tempfile::tempdir().unwrap();
    let file = GgufFile::open(&tiny_model(&tmp.path().join("tiny.gguf"), 1)).unwrap();
    let hp = SynthShape::Tiny.hparams();
    let kv_width = hp.n_embd / hp.n_head * hp.n_head_kv;

    let base = estimate(&file, &params(512)).unwrap();
    // n_layer × cells × (K + V width) × 2 bytes (F16).
    assert_eq!(base.kv_cache, hp.n_layer * 512 * 2 * kv_width * 2);
    for factor in [2u64, 4, 8] {
        let e = estimate(&file, &params(512 * factor as u32)).unwrap();
        assert_eq!(
            e.kv_cache,
            base.kv_cache * factor,
            "at {}x the context",
            factor
        );
        assert_eq!(
            e.weights, base.weights,
            "weights do not depend on the context"
        );
        assert!(
            e.compute >= base.compute,
            "the KQ mask grows with the context"
        );
    }
    assert_eq!(base.weights, file.tensor_bytes());
    assert!(base.weights < file.file_size);
    assert_eq!(base.total(), base.weights + base.kv_cache + base.compute);
}

#[test]
fn kv_cache_type_and_padding_follow_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let file = GgufFile::open(&tiny_model(&tmp.path().join("tiny.gguf"), 2)).unwrap();
    let f16 = estimate(&file, &params(1024)).unwrap().kv_cache;
    let q8 = estimate(
        &file,
        &EstimateParams {
            kv_cache_type: KvCacheType::Q8_0,
            ..params(1024)
        },
    )
    .unwrap()
    .kv_cache;
    let f32 = estimate(
        &file,
        &EstimateParams {
            kv_cache_type: KvCacheType::F32,
            ..params(1024)
        },
    )
    .unwrap()
    .kv_cache;
    assert_eq!(q8 * 64, f16 * 34, "Q8_0 stores 32 values in 34 bytes");
    assert_eq!(f32, f16 * 2);
    // 1000 cells round up to 1024; over 3 sequences each share is padded to 512.
    assert_eq!(estimate(&file, &params(1000)).unwrap().kv_cache, f16);
    let three = estimate(
        &file,
        &EstimateParams {
            parallel_sequences: 3,
            ..params(1000)
        },
    )
    .unwrap();
    assert_eq!(three.kv_cache, f16 / 1024 * 1536);
}

#[test]
fn a_file_without_hyperparameters_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vocab-only.gguf");
    let file = header_only(&path, &[("general.architecture", "llama")]);
    let err = estimate(&file, &params(512)).unwrap_err();
    assert!(
        matches!(&err, EstimateError::MissingHparam { key, .. } if key == "llama.block_count"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("vocab-only.gguf") && text.contains("'llama.block_count'"),
        "{text}"
    );

    let file = header_only(&tmp.path().join("no-arch.gguf"), &[("general.name", "x")]);
    let err = estimate(&file, &params(512)).unwrap_err();
    assert!(err.to_string().contains("general.architecture"), "{err}");
}

#[test]
fn zero_sizes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = GgufFile::open(&tiny_model(&tmp.path().join("tiny.gguf"), 3)).unwrap();
    for p in [
        params(0),
        EstimateParams {
            batch_size: 0,
            ..params(512)
        },
        EstimateParams {
            parallel_sequences: 0,
            ..params(512)
        },
    ] {
        assert!(
            matches!(estimate(&file, &p), Err(EstimateError::BadParams(_))),
            "{p:?}"
        );
    }
}
