//! Records and vectors as bytes in redb.

use crate::types::{Kind, MemoryId, MemoryRecord, Namespace};
use serde::{Deserialize, Serialize};

/// A record as stored: everything but its id (the key) and vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    pub namespace: Namespace,
    pub kind: Kind,
    pub content: String,
    pub tags: Vec<String>,
    pub created_ms: u64,
    pub last_used_ms: u64,
    pub use_count: u64,
    pub source_task: Option<String>,
}

impl StoredRecord {
    pub(crate) fn into_record(self, id: MemoryId) -> MemoryRecord {
        MemoryRecord {
            id,
            namespace: self.namespace,
            kind: self.kind,
            content: self.content,
            tags: self.tags,
            created_ms: self.created_ms,
            last_used_ms: self.last_used_ms,
            use_count: self.use_count,
            source_task: self.source_task,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<StoredRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("its record is not valid JSON: {e}"))
    }
}

/// `v` as little-endian f32 bytes.
pub(crate) fn encode_vector(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Appends the `dim` floats in `bytes` to `out`.
pub(crate) fn decode_vector_into(
    bytes: &[u8],
    dim: usize,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    if bytes.len() != dim * 4 {
        return Err(format!(
            "its vector has {} bytes where {dim} dimensions take {}",
            bytes.len(),
            dim * 4
        ));
    }
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}
