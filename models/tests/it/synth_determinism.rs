//! Synthetic models are reproducible: a seed fixes every byte.

use troupe_models::synth::{write_synthetic, SynthError, SynthQuant, SynthShape, SynthSpec};

fn write(dir: &std::path::Path, name: &str, seed: u64, quant: SynthQuant) -> Vec<u8> {
    let path = dir.join(name);
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant,
        seed,
    };
    write_synthetic(&path, &spec).expect("write synthetic model");
    std::fs::read(&path).expect("read back")
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    for quant in [SynthQuant::F32, SynthQuant::Q4_0] {
        let a = write(dir.path(), "a.gguf", 7, quant);
        let b = write(dir.path(), "b.gguf", 7, quant);
        let c = write(dir.path(), "c.gguf", 8, quant);
        assert_eq!(a, b, "{quant}: same seed, same bytes");
        assert_eq!(
            a.len(),
            c.len(),
            "{quant}: the seed changes values, not layout"
        );
        assert_ne!(a, c, "{quant}: another seed changes the weights");
    }
}

#[test]
fn a_failed_write_leaves_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir").join("model.gguf");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::Q8_0,
        seed: 1,
    };
    let err = write_synthetic(&path, &spec).expect_err("parent directory does not exist");
    assert!(matches!(err, SynthError::Io { .. }), "{err}");
    assert!(err.to_string().contains("model.gguf"), "{err}");
    assert!(!path.exists());
}

#[test]
fn overwriting_replaces_the_file_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let big = write(dir.path(), "m.gguf", 1, SynthQuant::F32);
    let small = write(dir.path(), "m.gguf", 1, SynthQuant::Q4_0);
    assert!(small.len() < big.len());
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from("m.gguf")],
        "no temp file left"
    );
}
