//! Directories of tiny synthetic GGUF models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// Writes a tiny synthetic model `<name>.gguf` per name into `dir`.
pub fn write(dir: &Path, names: &[&str], quant: SynthQuant, seed: u64) {
    std::fs::create_dir_all(dir).expect("models dir");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant,
        seed,
    };
    for name in names {
        write_synthetic(&dir.join(format!("{name}.gguf")), &spec).expect("synthetic model");
    }
}

/// A new temporary directory holding `<name>.gguf`.
pub fn dir_with(name: &str, quant: SynthQuant, seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), &[name], quant, seed);
    dir
}

/// A directory holding `<name>.gguf` (Q8_0, seed 3), written once per
/// process and shared by every test that asks for the same name.
pub fn shared(name: &str) -> PathBuf {
    static DIRS: OnceLock<Mutex<HashMap<String, tempfile::TempDir>>> = OnceLock::new();
    let mut dirs = DIRS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    dirs.entry(name.to_string())
        .or_insert_with(|| dir_with(name, SynthQuant::Q8_0, 3))
        .path()
        .to_path_buf()
}
