//! A bounded GGUF (v2/v3) reader and validator.
//!
//! llama.cpp aborts the whole process (GGML_ASSERT) on some malformed files,
//! and troupe runs models in-process, so every model file is read here first.
//! [`GgufFile::open`] reads the header, the metadata and the tensor infos —
//! never the tensor data — and checks that they describe a well-formed file:
//! every count and length is bounded by a limit and by what the rest of the
//! file could hold before anything is allocated for it, tensor types and
//! shapes are ones ggml knows, and every tensor's data lies inside the file
//! without overlapping another. [`GgufFile::validate_for_llama`] then checks
//! what llama.cpp needs to load the model as a language model.
//!
//! This is hand-written rather than candle's reader so that each refusal is a
//! distinct [`GgufError`] naming the file and the part that is wrong.

mod error;
mod llama;
mod reader;
mod types;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub use error::GgufError;
pub use types::GgmlType;

use reader::BoundedReader;

/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most tensor infos a file may declare (real models have a few thousand).
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata entries a file may declare (real models have a few dozen).
pub const MAX_KV: u64 = 1 << 20;
/// Most elements one metadata array may hold (vocabularies have < 1M).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Most array elements all metadata together may hold; bounds memory, since
/// one element in memory is far larger than one byte on disk.
const MAX_METADATA_VALUES: u64 = 1 << 25;
/// ggml keeps tensor names in a 64-byte buffer with a terminating NUL.
const MAX_TENSOR_NAME_LEN: u64 = 63;
/// Longest metadata key accepted (keys are dotted identifiers).
const MAX_KEY_LEN: u64 = 1 << 16;
/// Smallest possible tensor info: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;
/// Smallest possible metadata entry: key length, value type, a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// GGUF value type id of an array.
const ARRAY_TYPE: u32 = 9;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// Elements all of one type; GGUF (as llama.cpp reads it) has no nested
    /// arrays.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of
    /// any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `f32`, if it is a float (F64 is narrowed).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            GgufValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The value as text, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Where one tensor's data is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from [`GgufFile::data_offset`].
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the dimensions; checked not to
    /// overflow when the file was read).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// The header, metadata and tensor infos of a GGUF file that passed the
/// structural checks.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// The file read.
    pub path: PathBuf,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Data-section alignment in bytes (a power of two).
    pub alignment: u64,
    /// All metadata, by key.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// File offset where tensor data starts.
    pub data_offset: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Metadata strings that were not valid UTF-8 (read with U+FFFD in
    /// their place): key → the array indices (0 for a single string).
    pub non_utf8: BTreeMap<String, Vec<u64>>,
}

impl GgufFile {
    /// Reads and checks the header, metadata and tensor infos of `path`.
    ///
    /// # Errors
    /// A [`GgufError`] naming the file and the first problem found.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let mut r = BoundedReader::open(path)?;
        let magic: [u8; 4] = r.array("the magic number")?;
        if &magic != b"GGUF" {
            return Err(GgufError::NotGguf {
                path: path.to_path_buf(),
                found: magic.to_vec(),
            });
        }
        let version = r.u32("the version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        check_count(
            &r,
            "the tensor count",
            n_tensors,
            MAX_TENSORS,
            MIN_TENSOR_INFO_BYTES,
        )?;
        check_count(&r, "the metadata count", n_kv, MAX_KV, MIN_KV_BYTES)?;

        let (metadata, non_utf8) = read_metadata(&mut r, n_kv)?;
        let alignment = read_alignment(path, &metadata)?;
        let tensors = read_tensor_infos(&mut r, n_tensors)?;
        let data_offset = r
            .pos()
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| r.too_large("the data section offset", r.pos(), u64::MAX))?;
        let file = GgufFile {
            path: path.to_path_buf(),
            version,
            alignment,
            metadata,
            tensors,
            data_offset,
            file_size: r.file_size(),
            non_utf8,
        };
        file.check_tensor_placement()?;
        tracing::debug!(
            path = %path.display(),
            version,
            tensors = file.tensors.len(),
            kv = file.metadata.len(),
            "read GGUF header"
        );
        Ok(file)
    }

    /// Checks alignment, bounds and overlap of every tensor's data.
    fn check_tensor_placement(&self) -> Result<(), GgufError> {
        for t in &self.tensors {
            if !t.offset.is_multiple_of(self.alignment) {
                return Err(GgufError::MisalignedTensor {
                    path: self.path.clone(),
                    tensor: t.name.clone(),
                    offset: t.offset,
                    alignment: self.alignment,
                });
            }
            let end = self
                .data_offset
                .checked_add(t.offset)
                .and_then(|start| start.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= self.file_size => {}
                _ => {
                    return Err(GgufError::TensorPastEnd {
                        path: self.path.clone(),
                        tensor: t.name.clone(),
                        end: end.unwrap_or(u64::MAX),
                        file_size: self.file_size,
                    })
                }
            }
        }
        let mut by_offset: Vec<&TensorInfo> = self.tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            // Both ends were checked above not to overflow.
            if pair[1].offset < pair[0].offset + pair[0].n_bytes {
                return Err(GgufError::OverlappingTensors {
                    path: self.path.clone(),
                    first: pair[0].name.clone(),
                    second: pair[1].name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The string under `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    /// The non-negative integer (any width) under `key`.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// The float under `key`.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(GgufValue::as_f32)
    }

    /// `general.architecture`.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] when absent, [`GgufError::BadKey`] when not a
    /// string.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        const KEY: &str = "general.architecture";
        match self.get(KEY) {
            None => Err(self.missing_key(KEY)),
            Some(GgufValue::String(s)) => Ok(s),
            Some(_) => Err(self.bad_key(KEY, "it is not a string")),
        }
    }

    /// The integer `{architecture}.{suffix}`, e.g. `arch_u64("block_count")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture().ok()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }

    /// Number of weights: the sum of all tensors' element counts.
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_elements()))
    }

    /// Size of all tensor data in bytes.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_bytes))
    }

    /// The quantization, named as llama.cpp names file types (`"Q4_0"`,
    /// `"Q4_K_M"`, `"F16"`): from `general.file_type` when it is present and
    /// known, else the tensor type holding the most bytes (`"Q6_K"`).
    pub fn quantization(&self) -> String {
        if let Some(name) = self
            .get_u64("general.file_type")
            .and_then(types::file_type_name)
        {
            return name.to_string();
        }
        let mut bytes_by_type: BTreeMap<GgmlType, u64> = BTreeMap::new();
        for t in &self.tensors {
            *bytes_by_type.entry(t.ggml_type).or_default() += t.n_bytes;
        }
        bytes_by_type
            .into_iter()
            .max_by_key(|&(_, bytes)| bytes)
            .map(|(ty, _)| ty.name().to_uppercase())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// The context length the model was trained with.
    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    /// The Jinja chat template (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.get_str("tokenizer.chat_template")
    }

    /// The model's display name (`general.name`).
    pub fn name(&self) -> Option<&str> {
        self.get_str("general.name")
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn missing_key(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    fn bad_key(&self, key: &str, reason: impl Into<String>) -> GgufError {
        GgufError::BadKey {
            path: self.path.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// Refuses a count over `max` or over what the remaining bytes could hold at
/// `min_bytes` each.
fn check_count(
    r: &BoundedReader,
    what: &str,
    count: u64,
    max: u64,
    min_bytes: u64,
) -> Result<(), GgufError> {
    let limit = max.min(r.remaining() / min_bytes);
    if count > limit {
        return Err(r.too_large(what, count, limit));
    }
    Ok(())
}

/// Metadata by key, and the strings that were not UTF-8 (see
/// [`GgufFile::non_utf8`]).
type Metadata = (BTreeMap<String, GgufValue>, BTreeMap<String, Vec<u64>>);

fn read_metadata(r: &mut BoundedReader, n_kv: u64) -> Result<Metadata, GgufError> {
    let mut metadata = BTreeMap::new();
    let mut non_utf8 = BTreeMap::new();
    let mut budget = MAX_METADATA_VALUES;
    for i in 0..n_kv {
        let key = r.strict_string(&format!("the key of metadata entry {i}"), MAX_KEY_LEN)?;
        let what = format!("the value of '{key}'");
        let value_type = r.u32(&what)?;
        let mut invalid = Vec::new();
        let value = read_value(r, value_type, &key, &what, &mut budget, &mut invalid)?;
        if !invalid.is_empty() {
            non_utf8.insert(key.clone(), invalid);
        }
        if metadata.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                path: r.path().to_path_buf(),
                key,
            });
        }
        metadata.insert(key, value);
    }
    Ok((metadata, non_utf8))
}

/// Bytes one value of a scalar type takes on disk (a string's is its length
/// prefix), or `None` for an unknown type id or an array.
fn min_value_bytes(value_type: u32) -> Option<u64> {
    Some(match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        _ => return None,
    })
}

fn read_value(
    r: &mut BoundedReader,
    value_type: u32,
    key: &str,
    what: &str,
    budget: &mut u64,
    invalid: &mut Vec<u64>,
) -> Result<GgufValue, GgufError> {
    if value_type == ARRAY_TYPE {
        let elem_type = r.u32(what)?;
        let count = r.u64(what)?;
        let elem_bytes = min_value_bytes(elem_type).ok_or_else(|| GgufError::BadValueType {
            path: r.path().to_path_buf(),
            key: key.to_string(),
            value_type: elem_type,
        })?;
        let limit = MAX_ARRAY_LEN.min(r.remaining() / elem_bytes).min(*budget);
        if count > limit {
            return Err(r.too_large(&format!("the length of array '{key}'"), count, limit));
        }
        *budget -= count;
        // `count` is bounded by the file's remaining bytes; still grow the
        // vector as elements arrive rather than trusting it up front.
        let mut items = Vec::with_capacity(count.min(1 << 16) as usize);
        for i in 0..count {
            let (item, valid) = read_scalar(r, elem_type, key, what)?;
            if !valid {
                invalid.push(i);
            }
            items.push(item);
        }
        return Ok(GgufValue::Array(items));
    }
    let (value, valid) = read_scalar(r, value_type, key, what)?;
    if !valid {
        invalid.push(0);
    }
    Ok(value)
}

fn read_scalar(
    r: &mut BoundedReader,
    value_type: u32,
    key: &str,
    what: &str,
) -> Result<(GgufValue, bool), GgufError> {
    if value_type == 8 {
        let (text, valid) = r.lossy_string(what)?;
        return Ok((GgufValue::String(text), valid));
    }
    let value = match value_type {
        0 => GgufValue::U8(u8::from_le_bytes(r.array(what)?)),
        1 => GgufValue::I8(i8::from_le_bytes(r.array(what)?)),
        2 => GgufValue::U16(u16::from_le_bytes(r.array(what)?)),
        3 => GgufValue::I16(i16::from_le_bytes(r.array(what)?)),
        4 => GgufValue::U32(u32::from_le_bytes(r.array(what)?)),
        5 => GgufValue::I32(i32::from_le_bytes(r.array(what)?)),
        6 => GgufValue::F32(f32::from_le_bytes(r.array(what)?)),
        7 => GgufValue::Bool(u8::from_le_bytes(r.array(what)?) != 0),
        10 => GgufValue::U64(u64::from_le_bytes(r.array(what)?)),
        11 => GgufValue::I64(i64::from_le_bytes(r.array(what)?)),
        12 => GgufValue::F64(f64::from_le_bytes(r.array(what)?)),
        other => {
            return Err(GgufError::BadValueType {
                path: r.path().to_path_buf(),
                key: key.to_string(),
                value_type: other,
            })
        }
    };
    Ok((value, true))
}

fn read_alignment(path: &Path, metadata: &BTreeMap<String, GgufValue>) -> Result<u64, GgufError> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        // llama.cpp accepts only a u32 here, and its loader aborts on an
        // alignment below 8 (as `general.alignment = 1` showed).
        Some(GgufValue::U32(a)) if a.is_power_of_two() && *a >= 8 => Ok(u64::from(*a)),
        Some(other) => Err(GgufError::BadAlignment {
            path: path.to_path_buf(),
            found: format!("{other:?}"),
        }),
    }
}

fn read_tensor_infos(r: &mut BoundedReader, n_tensors: u64) -> Result<Vec<TensorInfo>, GgufError> {
    // `n_tensors` is bounded by `check_count`; still let real infos, not
    // the count, size the vector.
    let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut names = HashSet::new();
    let path = r.path().to_path_buf();
    for i in 0..n_tensors {
        let what = format!("the name of tensor {i}");
        let name = r.strict_string(&what, MAX_TENSOR_NAME_LEN)?;
        let what = format!("the info of tensor '{name}'");
        let bad = |reason: String| GgufError::BadTensor {
            path: path.clone(),
            tensor: name.clone(),
            reason,
        };
        let n_dims = r.u32(&what)?;
        if !(1..=4).contains(&n_dims) {
            return Err(bad(format!(
                "it has {n_dims} dimensions; ggml supports 1 to 4"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&what)?);
        }
        let type_id = r.u32(&what)?;
        let offset = r.u64(&what)?;
        if dims.contains(&0) {
            return Err(bad(format!("it has a zero dimension {dims:?}")));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad(format!("its element count {dims:?} overflows")))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
            path: path.clone(),
            tensor: name.clone(),
            type_id,
        })?;
        if !dims[0].is_multiple_of(ggml_type.block_size()) {
            return Err(bad(format!(
                "its rows have {} elements, not a multiple of the {} block size {}",
                dims[0],
                ggml_type.name(),
                ggml_type.block_size()
            )));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements)
            .ok_or_else(|| bad(format!("its size in bytes {dims:?} overflows")))?;
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { path, tensor: name });
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        });
    }
    Ok(tensors)
}
