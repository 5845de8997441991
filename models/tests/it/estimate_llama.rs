//! The memory estimate against what llama.cpp allocates for synthetic models.
//!
//! llama.cpp reports its buffers only in its log: the KV cache as
//! "llama_kv_cache: size = X MiB" (2 decimals), the logits buffer as
//! "output buffer size = X MiB" and, when a context is freed, each
//! compute buffer as "compute buffer size is X MiB" (4 decimals). A raw log
//! callback collects those lines while one measurement holds a lock.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use troupe_models::estimate::{estimate, EstimateParams, KvCacheType, MemoryEstimate};
use troupe_models::gguf::GgufFile;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const MIB: f64 = 1024.0 * 1024.0;

use crate::support::llama::{backend, LOG, MEASURE};

fn model_file(dir: &Path, shape: SynthShape, quant: SynthQuant) -> PathBuf {
    let path = dir.join(format!("{shape:?}-{quant}.gguf"));
    if !path.exists() {
        write_synthetic(
            &path,
            &SynthSpec {
                shape,
                quant,
                seed: 7,
            },
        )
        .expect("write synthetic model");
    }
    path
}

/// Sum of the numbers (MiB) that follow `marker` on each log line holding it.
fn mib_after(log: &str, marker: &str) -> f64 {
    log.lines()
        .filter_map(|line| line.split_once(marker))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Debug)]
struct Measured {
    kv_mib: f64,
    compute_mib: f64,
}

fn measure(path: &Path, p: &EstimateParams) -> Measured {
    let backend = backend();
    let _one = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .expect("load model");
    LOG.lock().unwrap().clear();
    let kv_type = match p.kv_cache_type {
        KvCacheType::F16 => llama_cpp_2::context::params::KvCacheType::F16,
        KvCacheType::Q8_0 => llama_cpp_2::context::params::KvCacheType::Q8_0,
        KvCacheType::F32 => llama_cpp_2::context::params::KvCacheType::F32,
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(p.context_length))
        .with_n_batch(p.batch_size)
        .with_n_ubatch(p.batch_size)
        .with_n_seq_max(p.parallel_sequences)
        .with_type_k(kv_type)
        .with_type_v(kv_type);
    let ctx = model.new_context(backend, params).expect("create context");
    drop(ctx);
    let log = std::mem::take(&mut *LOG.lock().unwrap());
    let kv_mib = mib_after(&log, "llama_kv_cache: size =");
    // Freed contexts report each compute buffer to 4 decimals.
    let compute_mib = mib_after(&log, "compute buffer size is")
        + mib_after(&log, "compute buffer size of")
        + mib_after(&log, "output buffer size =");
    assert!(
        compute_mib > 0.0,
        "no compute buffer in llama.cpp's log:\n{log}"
    );
    Measured {
        kv_mib,
        compute_mib,
    }
}

fn check(path: &Path, p: EstimateParams) -> (MemoryEstimate, Measured) {
    let file = GgufFile::open(path).expect("open synthetic model");
    let est = estimate(&file, &p).expect("estimate");
    let got = measure(path, &p);
    eprintln!(
        "{}: ctx {} seq {} ub {} {:?}: KV est {:.4} / llama.cpp {:.2} MiB, compute est {:.4} / llama.cpp {:.4} MiB",
        path.file_name().unwrap().to_string_lossy(),
        p.context_length,
        p.parallel_sequences,
        p.batch_size,
        p.kv_cache_type,
        est.kv_cache as f64 / MIB,
        got.kv_mib,
        est.compute as f64 / MIB,
        got.compute_mib
    );
    (est, got)
}

/// KV must match to llama.cpp's printed precision (0.005 MiB) plus 0.5 %.
fn assert_kv(est: &MemoryEstimate, got: &Measured) {
    let est_mib = est.kv_cache as f64 / MIB;
    assert!(
        (est_mib - got.kv_mib).abs() <= 0.005 + got.kv_mib * 0.005,
        "KV estimate {est_mib:.4} MiB vs llama.cpp {:.2} MiB",
        got.kv_mib
    );
}

/// Compute must not undershoot (beyond the log's 0.0001 MiB rounding) and
/// may overshoot by at most 25 % + 0.1 MiB (the 0.1 MiB matters for tiny).
fn assert_compute(est: &MemoryEstimate, got: &Measured) {
    let est_mib = est.compute as f64 / MIB;
    assert!(
        est_mib >= got.compute_mib - 0.0002 && est_mib <= got.compute_mib * 1.25 + 0.1,
        "compute estimate {est_mib:.4} MiB vs llama.cpp {:.4} MiB",
        got.compute_mib
    );
}

fn params(context_length: u32, parallel_sequences: u32, batch_size: u32) -> EstimateParams {
    EstimateParams {
        context_length,
        parallel_sequences,
        batch_size,
        ..EstimateParams::default()
    }
}

#[test]
fn estimate_matches_llama_cpp_for_tiny_and_small_at_two_context_lengths() {
    let dir = tempfile::tempdir().unwrap();
    for (shape, quant) in [
        (SynthShape::Tiny, SynthQuant::F32),
        (SynthShape::Small, SynthQuant::Q8_0),
    ] {
        let path = model_file(dir.path(), shape, quant);
        for ctx in [512, 2048] {
            let (est, got) = check(&path, params(ctx, 1, 512));
            assert_kv(&est, &got);
            assert_compute(&est, &got);
        }
    }
}

#[test]
fn estimate_follows_parallel_sequences_batch_and_kv_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path(), SynthShape::Small, SynthQuant::Q8_0);
    for p in [
        params(2048, 4, 128),
        params(1000, 3, 256),
        EstimateParams {
            kv_cache_type: KvCacheType::Q8_0,
            ..params(1024, 1, 512)
        },
        EstimateParams {
            kv_cache_type: KvCacheType::F32,
            ..params(1024, 2, 64)
        },
    ] {
        let (est, got) = check(&path, p);
        assert_kv(&est, &got);
        assert_compute(&est, &got);
    }
}
