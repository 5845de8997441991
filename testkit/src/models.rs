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

/// A ChatML template that shows tools and earlier calls in the Hermes
/// syntax (`<tools>`, `<tool_call>`, `<tool_response>`), for SmolLM2's
/// ChatML tokens: its own template knows no tools.
pub const CHATML_TOOLS_TEMPLATE: &str = include_str!("../templates/chatml-tools.jinja");

/// Copies the GGUF file `from` to `to` with `template` as its
/// `tokenizer.chat_template` (added when the file has none), as
/// llama.cpp's `gguf_new_metadata.py --chat-template` does: a real model's
/// weights with another template, for behaviour a template decides (tool
/// calls in the model's own syntax).
///
/// # Panics
/// When `from` cannot be read or is not a GGUF file of version 2 or 3.
pub fn with_chat_template(from: &Path, to: &Path, template: &str) {
    let bytes = std::fs::read(from).expect("read the model");
    let mut reader = Reader {
        bytes: &bytes,
        at: 0,
    };
    assert_eq!(
        reader.take(4),
        b"GGUF",
        "{} is not a GGUF file",
        from.display()
    );
    let version = reader.u32();
    assert!(matches!(version, 2 | 3), "GGUF version {version}");
    let n_tensors = reader.u64();
    let n_kv = reader.u64();
    let key = "tokenizer.chat_template";
    let mut kvs: Vec<u8> = Vec::new();
    let mut replaced = false;
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let start = reader.at;
        let name = reader.string();
        let kind = reader.u32();
        let value_start = reader.at;
        reader.skip_value(kind);
        if name == "general.alignment" && kind == 4 {
            let mut value = Reader {
                bytes: &bytes,
                at: value_start,
            };
            alignment = u64::from(value.u32());
        }
        if name == key {
            replaced = true;
            push_string_kv(&mut kvs, key, template);
        } else {
            kvs.extend_from_slice(&bytes[start..reader.at]);
        }
    }
    let mut n_kv_out = n_kv;
    if !replaced {
        push_string_kv(&mut kvs, key, template);
        n_kv_out += 1;
    }
    let infos_start = reader.at;
    for _ in 0..n_tensors {
        reader.string();
        let n_dims = reader.u32();
        reader.at += 8 * n_dims as usize + 4 + 8;
    }
    let infos = &bytes[infos_start..reader.at];
    let data_start = reader.at.next_multiple_of(alignment as usize);
    let mut out = Vec::with_capacity(bytes.len() + template.len());
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&n_tensors.to_le_bytes());
    out.extend_from_slice(&n_kv_out.to_le_bytes());
    out.extend_from_slice(&kvs);
    out.extend_from_slice(infos);
    out.resize(out.len().next_multiple_of(alignment as usize), 0);
    out.extend_from_slice(&bytes[data_start..]);
    std::fs::write(to, out).expect("write the re-templated model");
}

fn push_string_kv(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// A cursor over a GGUF header.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        slice
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    fn string(&mut self) -> String {
        let len = self.u64() as usize;
        String::from_utf8_lossy(self.take(len)).into_owned()
    }

    /// Skips a value of GGUF type `kind`.
    fn skip_value(&mut self, kind: u32) {
        match kind {
            0 | 1 | 7 => self.at += 1,
            2 | 3 => self.at += 2,
            4..=6 => self.at += 4,
            10..=12 => self.at += 8,
            8 => {
                let len = self.u64() as usize;
                self.at += len;
            }
            9 => {
                let item = self.u32();
                let count = self.u64();
                for _ in 0..count {
                    self.skip_value(item);
                }
            }
            other => panic!("unknown GGUF value type {other}"),
        }
    }
}
