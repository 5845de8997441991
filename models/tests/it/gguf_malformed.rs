//! Malformed and hostile GGUF files: each must give its own error, never a
//! panic or a huge allocation.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troupe_models::gguf::{GgmlType, GgufError, GgufFile};
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const T_U32: u32 = 4;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_F32: u32 = 6;
const T_I32: u32 = 5;

fn gguf_string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Builds GGUF bytes field by field, so each test can break exactly one.
#[derive(Clone)]
struct Builder {
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    data_len: usize,
}

impl Builder {
    fn new() -> Self {
        Builder {
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
            data_len: 0,
        }
    }

    fn kv(mut self, key: &str, value_type: u32, value: Vec<u8>) -> Self {
        self.kvs.retain(|(k, _, _)| k != key);
        self.kvs.push((key.to_string(), value_type, value));
        self
    }

    fn without(mut self, key: &str) -> Self {
        self.kvs.retain(|(k, _, _)| k != key);
        self
    }

    fn str(self, key: &str, value: &str) -> Self {
        self.kv(key, T_STRING, gguf_string(value))
    }

    fn u32(self, key: &str, value: u32) -> Self {
        self.kv(key, T_U32, value.to_le_bytes().to_vec())
    }

    fn array(self, key: &str, elem_type: u32, items: &[Vec<u8>]) -> Self {
        let mut value = elem_type.to_le_bytes().to_vec();
        value.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for item in items {
            value.extend_from_slice(item);
        }
        self.kv(key, T_ARRAY, value)
    }

    fn strs(self, key: &str, items: &[&str]) -> Self {
        let items: Vec<Vec<u8>> = items.iter().map(|s| gguf_string(s)).collect();
        self.array(key, T_STRING, &items)
    }

    fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
        self.tensors.retain(|t| t.0 != name);
        self.tensors
            .push((name.to_string(), dims.to_vec(), ggml_type, offset));
        self
    }

    fn data(mut self, len: usize) -> Self {
        self.data_len = len;
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        let n_tensors = self.n_tensors.unwrap_or(self.tensors.len() as u64);
        out.extend_from_slice(&n_tensors.to_le_bytes());
        let n_kv = self.n_kv.unwrap_or(self.kvs.len() as u64);
        out.extend_from_slice(&n_kv.to_le_bytes());
        for (key, value_type, value) in &self.kvs {
            out.extend_from_slice(&gguf_string(key));
            out.extend_from_slice(&value_type.to_le_bytes());
            out.extend_from_slice(value);
        }
        for (name, dims, ggml_type, offset) in &self.tensors {
            out.extend_from_slice(&gguf_string(name));
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ggml_type.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.resize(out.len() + self.data_len, 0);
        out
    }
}

/// A minimal file that passes `validate_for_llama`: 5 tokens, embedding 32.
fn minimal_llama() -> Builder {
    let f32s = |v: f32| v.to_le_bytes().to_vec();
    let i32s = |v: i32| v.to_le_bytes().to_vec();
    Builder::new()
        .str("general.architecture", "llama")
        .str("general.name", "minimal")
        .u32("llama.context_length", 128)
        .u32("llama.embedding_length", 32)
        .u32("llama.block_count", 1)
        .u32("llama.feed_forward_length", 64)
        .u32("llama.attention.head_count", 4)
        .u32("llama.attention.head_count_kv", 2)
        .str("tokenizer.ggml.model", "gpt2")
        // "Ċ" is the newline in a byte-level BPE vocabulary.
        .strs("tokenizer.ggml.tokens", &["a", "b", "ab", "<s>", "\u{10A}"])
        .strs("tokenizer.ggml.merges", &["a b"])
        .array(
            "tokenizer.ggml.scores",
            T_F32,
            &[f32s(0.0), f32s(0.0), f32s(0.0), f32s(0.0), f32s(0.0)],
        )
        .array(
            "tokenizer.ggml.token_type",
            T_I32,
            &[i32s(1), i32s(1), i32s(1), i32s(3), i32s(1)],
        )
        .tensor("token_embd.weight", &[32, 5], 0, 0)
        .data(32 * 5 * 4)
}

struct Files {
    dir: tempfile::TempDir,
    n: usize,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
            n: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> PathBuf {
        self.n += 1;
        let path = self.dir.path().join(format!("f{}.gguf", self.n));
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    fn open(&mut self, bytes: &[u8]) -> Result<GgufFile, GgufError> {
        let path = self.write(bytes);
        GgufFile::open(&path)
    }

    fn validate(&mut self, builder: &Builder) -> Result<(), GgufError> {
        self.open(&builder.build())?.validate_for_llama()
    }
}

fn tiny_file(dir: &Path, quant: SynthQuant) -> Vec<u8> {
    let path = dir.join(format!("tiny-{quant}.gguf"));
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant,
        seed: 1,
    };
    write_synthetic(&path, &spec).expect("write tiny model");
    std::fs::read(&path).expect("read tiny model")
}

#[test]
fn the_minimal_file_is_valid() {
    let mut files = Files::new();
    let file = files
        .open(&minimal_llama().build())
        .expect("minimal file opens");
    file.validate_for_llama().expect("minimal file validates");
    assert_eq!(file.tensors[0].ggml_type, GgmlType::F32);
    assert_eq!(file.parameter_count(), 160);
    // No general.file_type: the dominant tensor type names the quantization.
    assert_eq!(file.quantization(), "F32");
    assert_eq!(file.context_length(), Some(128));
    assert_eq!(file.name(), Some("minimal"));
}

#[test]
fn structural_errors_are_specific() {
    let mut files = Files::new();
    let err = |files: &mut Files, bytes: Vec<u8>| files.open(&bytes).expect_err("must be refused");

    let mut not_gguf = b"GGML".to_vec();
    not_gguf.extend_from_slice(&[0; 60]);
    assert!(matches!(
        err(&mut files, not_gguf),
        GgufError::NotGguf { .. }
    ));

    let mut v1 = minimal_llama();
    v1.version = 1;
    let e = err(&mut files, v1.build());
    assert!(matches!(
        e,
        GgufError::UnsupportedVersion { version: 1, .. }
    ));
    assert!(e.to_string().contains("version 1"), "{e}");

    let mut many_tensors = minimal_llama();
    many_tensors.n_tensors = Some(u64::MAX / 2);
    let e = err(&mut files, many_tensors.build());
    assert!(
        matches!(&e, GgufError::TooLarge { what, .. } if what.contains("tensor count")),
        "{e}"
    );

    let mut many_kv = minimal_llama();
    many_kv.n_kv = Some(1 << 40);
    let e = err(&mut files, many_kv.build());
    assert!(
        matches!(&e, GgufError::TooLarge { what, .. } if what.contains("metadata count")),
        "{e}"
    );

    let huge_string = minimal_llama().kv("general.name", T_STRING, u64::MAX.to_le_bytes().to_vec());
    let e = err(&mut files, huge_string.build());
    assert!(
        matches!(&e, GgufError::TooLarge { what, .. } if what.contains("general.name")),
        "{e}"
    );

    let mut huge_array = 0u32.to_le_bytes().to_vec();
    huge_array.extend_from_slice(&(1u64 << 50).to_le_bytes());
    let e = err(
        &mut files,
        minimal_llama().kv("x.big", T_ARRAY, huge_array).build(),
    );
    assert!(
        matches!(&e, GgufError::TooLarge { what, .. } if what.contains("x.big")),
        "{e}"
    );

    let nested = minimal_llama().array("x.nested", T_ARRAY, &[]);
    let e = err(&mut files, nested.build());
    assert!(
        matches!(e, GgufError::BadValueType { value_type: 9, .. }),
        "{e}"
    );

    let bad_type = minimal_llama().kv("x.weird", 77, vec![0; 8]);
    let e = err(&mut files, bad_type.build());
    assert!(
        matches!(e, GgufError::BadValueType { value_type: 77, .. }),
        "{e}"
    );

    let mut dup_key = minimal_llama();
    dup_key.kvs.push(dup_key.kvs[0].clone());
    assert!(matches!(
        err(&mut files, dup_key.build()),
        GgufError::DuplicateKey { .. }
    ));

    let bad_alignment = minimal_llama().u32("general.alignment", 48);
    assert!(matches!(
        err(&mut files, bad_alignment.build()),
        GgufError::BadAlignment { .. }
    ));

    let past_end = minimal_llama().data(100);
    let e = err(&mut files, past_end.build());
    assert!(
        matches!(&e, GgufError::TensorPastEnd { tensor, .. } if tensor == "token_embd.weight"),
        "{e}"
    );

    let misaligned = minimal_llama()
        .tensor("token_embd.weight", &[32, 4], 0, 8)
        .data(1024);
    assert!(matches!(
        err(&mut files, misaligned.build()),
        GgufError::MisalignedTensor { offset: 8, .. }
    ));

    let unknown_type = minimal_llama().tensor("token_embd.weight", &[32, 4], 4, 0);
    let e = err(&mut files, unknown_type.build());
    assert!(
        matches!(e, GgufError::UnknownGgmlType { type_id: 4, .. }),
        "{e}"
    );

    let overlap = minimal_llama().tensor("extra", &[32], 0, 256).data(1024);
    let e = err(&mut files, overlap.build());
    assert!(matches!(e, GgufError::OverlappingTensors { .. }), "{e}");

    let mut dup_tensor = minimal_llama().data(4096);
    dup_tensor
        .tensors
        .push(("token_embd.weight".into(), vec![32], 0, 1024));
    assert!(matches!(
        err(&mut files, dup_tensor.build()),
        GgufError::DuplicateTensor { .. }
    ));

    for (dims, ty) in [
        (vec![1, 1, 1, 1, 1], 0),
        (vec![32, 0], 0),
        (vec![33, 4], 8),
        (vec![u64::MAX, 4], 0),
    ] {
        let bad = minimal_llama().tensor("token_embd.weight", &dims, ty, 0);
        let e = err(&mut files, bad.build());
        assert!(matches!(e, GgufError::BadTensor { .. }), "{dims:?}: {e}");
    }

    let long_name = "x".repeat(64);
    let e = err(
        &mut files,
        minimal_llama().tensor(&long_name, &[32], 0, 512).build(),
    );
    assert!(matches!(e, GgufError::TooLarge { .. }), "{e}");
}

#[test]
fn llama_validation_errors_are_specific() {
    let mut files = Files::new();
    let e = files
        .validate(&minimal_llama().str("general.architecture", "notanarch"))
        .expect_err("unknown architecture");
    assert!(matches!(&e, GgufError::UnsupportedArchitecture { arch, .. } if arch == "notanarch"));
    assert!(e.to_string().contains("notanarch"));

    let e = files
        .validate(&minimal_llama().without("tokenizer.ggml.merges"))
        .expect_err("BPE without merges");
    assert!(matches!(e, GgufError::MissingMerges { .. }), "{e}");
    let e = files
        .validate(&minimal_llama().strs("tokenizer.ggml.merges", &[]))
        .expect_err("BPE with empty merges");
    assert!(matches!(e, GgufError::MissingMerges { .. }), "{e}");

    for key in [
        "general.architecture",
        "llama.block_count",
        "llama.embedding_length",
        "llama.context_length",
        "llama.attention.head_count",
        "llama.feed_forward_length",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
    ] {
        let e = files
            .validate(&minimal_llama().without(key))
            .expect_err(key);
        assert!(
            matches!(&e, GgufError::MissingKey { key: k, .. } if k == key),
            "{key}: {e}"
        );
        assert!(e.to_string().contains(key));
    }

    let e = files
        .validate(&minimal_llama().u32("llama.block_count", 0))
        .expect_err("zero layers");
    assert!(matches!(e, GgufError::BadKey { .. }), "{e}");
    let e = files
        .validate(&minimal_llama().str("tokenizer.ggml.model", "sentencepiece"))
        .expect_err("unknown tokenizer");
    assert!(matches!(e, GgufError::BadKey { .. }), "{e}");

    let e = files
        .validate(&minimal_llama().array("tokenizer.ggml.scores", T_F32, &[vec![0; 4]]))
        .expect_err("short scores");
    assert!(
        matches!(
            e,
            GgufError::TokenArrayMismatch {
                len: 1,
                tokens: 5,
                ..
            }
        ),
        "{e}"
    );

    let e = files
        .validate(
            &minimal_llama()
                .tensor("token_embd.weight", &[32, 6], 0, 0)
                .data(32 * 6 * 4),
        )
        .expect_err("vocab mismatch");
    assert!(
        matches!(
            e,
            GgufError::VocabMismatch {
                dim: 6,
                tokens: 5,
                ..
            }
        ),
        "{e}"
    );

    let mut no_embd = minimal_llama();
    no_embd.tensors.clear();
    let e = files.validate(&no_embd).expect_err("no token_embd");
    assert!(matches!(e, GgufError::MissingTensor { .. }), "{e}");
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let mut files = Files::new();
    let bytes = tiny_file(files.dir.path(), SynthQuant::Q4_0);
    let full = files.open(&bytes).expect("complete file opens");
    let header_end = full.data_offset as usize;
    // Every prefix through the header and the first tensors, then a sample.
    let prefixes = (0..header_end + 2048).chain((header_end + 2048..bytes.len()).step_by(997));
    for len in prefixes {
        let result = files.open(&bytes[..len]);
        assert!(
            result.is_err(),
            "a {len}-byte prefix of {} must be refused",
            bytes.len()
        );
    }
    // A cut inside the header is reported as truncation at the part cut.
    let e = files
        .open(&bytes[..header_end / 2])
        .expect_err("cut header");
    assert!(
        matches!(e, GgufError::Truncated { .. } | GgufError::TooLarge { .. }),
        "{e}"
    );
    let e = files.open(&bytes[..12]).expect_err("cut count");
    assert!(
        matches!(&e, GgufError::Truncated { what, offset: 8, .. } if what == "the tensor count"),
        "{e}"
    );
}

#[test]
fn random_byte_flips_never_panic() {
    let mut files = Files::new();
    let bytes = tiny_file(files.dir.path(), SynthQuant::Q4_0);
    let header_end = files.open(&bytes).expect("opens").data_offset as usize;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut refused = 0;
    for _ in 0..1500 {
        let mut mutated = bytes.clone();
        for _ in 0..rng.random_range(1..=4) {
            let at = rng.random_range(0..header_end + 64);
            mutated[at] = rng.random();
        }
        match files.open(&mutated) {
            Ok(file) => {
                let _ = file.validate_for_llama();
                let _ = (file.quantization(), file.parameter_count());
            }
            Err(_) => refused += 1,
        }
    }
    // Most flips land in token text, which stays valid; some must break it.
    assert!(refused > 0, "no mutated file was refused");
}

/// The five files that passed troupe's checks and aborted llama.cpp
/// (issue 15, item 7), each now refused naming the file and the field.
#[test]
fn files_that_aborted_llama_cpp_are_refused_naming_the_field() {
    let mut files = Files::new();
    let f32s = |v: f32| v.to_le_bytes().to_vec();
    // general.alignment = 1.
    let e = files
        .open(&minimal_llama().u32("general.alignment", 1).build())
        .expect_err("alignment 1");
    assert!(matches!(e, GgufError::BadAlignment { .. }), "{e}");
    assert!(
        e.to_string().contains("general.alignment") && e.to_string().contains(".gguf"),
        "{e}"
    );
    // A negative norm epsilon.
    let e = files
        .validate(&minimal_llama().kv("llama.attention.layer_norm_rms_epsilon", T_F32, f32s(-1.0)))
        .expect_err("negative epsilon");
    assert!(
        e.to_string()
            .contains("llama.attention.layer_norm_rms_epsilon"),
        "{e}"
    );
    let e = files
        .validate(&minimal_llama().kv("llama.attention.layer_norm_epsilon", T_F32, f32s(f32::NAN)))
        .expect_err("NaN epsilon");
    assert!(e.to_string().contains("layer_norm_epsilon"), "{e}");
    // A SentencePiece tokenizer model over a byte-level BPE vocabulary.
    let e = files
        .validate(&minimal_llama().str("tokenizer.ggml.model", "llama"))
        .expect_err("llama over gpt2");
    assert!(
        matches!(&e, GgufError::BadKey { key, .. } if key == "tokenizer.ggml.model"),
        "{e}"
    );
    assert!(e.to_string().contains("does not match"), "{e}");
    // Every token the same.
    let e = files
        .validate(&minimal_llama().strs("tokenizer.ggml.tokens", &["a"; 5]))
        .expect_err("identical tokens");
    assert!(e.to_string().contains("token 1 repeats token 0"), "{e}");
    // Tokens that are not UTF-8 in a byte-level BPE vocabulary.
    let mut bad = vec![gguf_string("a"), gguf_string("b"), gguf_string("ab")];
    bad.push({
        let mut raw = 2u64.to_le_bytes().to_vec();
        raw.extend_from_slice(&[0xff, 0xfe]);
        raw
    });
    bad.push(gguf_string("\u{10A}"));
    let e = files
        .validate(&minimal_llama().array("tokenizer.ggml.tokens", T_STRING, &bad))
        .expect_err("non-UTF-8 token");
    assert!(e.to_string().contains("token 3 is not valid UTF-8"), "{e}");
    // The valid file still validates.
    files.validate(&minimal_llama()).expect("the minimal file");
}
