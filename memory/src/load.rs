//! Loading a memory file into the in-memory mirror at open, checking every
//! record and vector on the way.

use crate::codec::{decode_vector_into, StoredRecord};
use crate::entries::Entries;
use crate::error::{dberr, MemoryError};
use crate::store::{corrupt, slot_parts, EmbeddingSpace};
use crate::tables::{MEMORIES, META, META_DIM, META_MODEL, VECTORS};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

/// Reads the metadata and every record and vector.
pub(crate) fn load(db: &Database) -> Result<(Option<EmbeddingSpace>, Entries), MemoryError> {
    let txn = db.begin_read().map_err(dberr("begin a read transaction"))?;
    let meta = txn.open_table(META).map_err(dberr("open the metadata"))?;
    let model = meta.get(META_MODEL).map_err(dberr("read the model"))?;
    let dim = meta.get(META_DIM).map_err(dberr("read the dimension"))?;
    let space = match (model, dim) {
        (Some(model), Some(dim)) => Some(EmbeddingSpace {
            model_id: model.value().to_string(),
            dim: dim
                .value()
                .parse()
                .map_err(|_| corrupt(None, "the dimension is not a number"))?,
        }),
        _ => None,
    };
    let records = txn
        .open_table(MEMORIES)
        .map_err(dberr("open the memories"))?;
    let vectors = txn.open_table(VECTORS).map_err(dberr("open the vectors"))?;
    let mut entries = Entries::default();
    let Some(space) = space else {
        if !records.is_empty().map_err(dberr("count the memories"))? {
            return Err(corrupt(
                None,
                "memories are stored but no embedding model is recorded",
            ));
        }
        return Ok((None, entries));
    };
    entries.dim = space.dim;
    let count = records.len().map_err(dberr("count the memories"))? as usize;
    entries.slots.reserve(count);
    entries.vectors.reserve(count * space.dim);
    let mut vector_rows = vectors.iter().map_err(dberr("read the vectors"))?;
    let mut scratch = Vec::with_capacity(space.dim);
    for row in records.iter().map_err(dberr("read the memories"))? {
        let (key, value) = row.map_err(dberr("read a memory"))?;
        let id = key.value();
        let record = StoredRecord::decode(value.value()).map_err(|r| corrupt(Some(id), r))?;
        let (vid, vbytes) = match vector_rows.next() {
            Some(v) => v.map_err(dberr("read a vector"))?,
            None => return Err(corrupt(Some(id), "it has no vector")),
        };
        if vid.value() != id {
            let missing = id.min(vid.value());
            return Err(corrupt(
                Some(missing),
                "it has a record or a vector but not both",
            ));
        }
        scratch.clear();
        decode_vector_into(vbytes.value(), space.dim, &mut scratch)
            .map_err(|r| corrupt(Some(id), r))?;
        entries.push(slot_parts(id, &record), &scratch);
    }
    if let Some(extra) = vector_rows.next() {
        let (vid, _) = extra.map_err(dberr("read a vector"))?;
        return Err(corrupt(Some(vid.value()), "it has a vector but no record"));
    }
    Ok((Some(space), entries))
}
