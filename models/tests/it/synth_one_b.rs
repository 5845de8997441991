//! The 1B shape written in full and read back. Ignored by default because it
//! writes ~620 MB; run with
//! `cargo test -p troupe-models --test synth_one_b -- --ignored --nocapture`.

use std::time::Instant;

use troupe_models::gguf::GgufFile;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

#[test]
#[ignore = "writes a ~620 MB file"]
fn one_b_q4_0_is_tinyllama_sized_and_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (shape, quant) in [
        (SynthShape::Tiny, SynthQuant::F32),
        (SynthShape::Tiny, SynthQuant::Q4_0),
        (SynthShape::Small, SynthQuant::Q8_0),
        (SynthShape::OneB, SynthQuant::Q4_0),
    ] {
        let path = dir.path().join(format!("{shape}-{quant}.gguf"));
        let spec = SynthSpec {
            shape,
            quant,
            seed: 11,
        };
        let started = Instant::now();
        let report = write_synthetic(&path, &spec).expect("write");
        // Informational only; speed is never asserted.
        eprintln!(
            "{shape} {quant}: {} bytes, {} parameters, written in {:.1?}",
            report.file_size,
            report.parameters,
            started.elapsed()
        );
        let file = GgufFile::open(&path).expect("opens");
        file.validate_for_llama().expect("validates");
        assert_eq!(file.parameter_count(), report.parameters);
        // Q4_0 is 4.5 bits per weight; Q8_0 8.5; F32 32 (plus the header).
        let bits = match quant {
            SynthQuant::F32 => 32.0,
            SynthQuant::F16 => 16.0,
            SynthQuant::Q8_0 => 8.5,
            SynthQuant::Q4_0 => 4.5,
        };
        let weights = report.parameters as f64 * bits / 8.0;
        assert!(report.file_size as f64 >= weights, "{shape} {quant}");
        assert!(
            (report.file_size as f64) < weights * 1.1 + 200_000.0,
            "{shape} {quant}"
        );
        std::fs::remove_file(&path).expect("delete");
    }
}
