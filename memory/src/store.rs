//! [`MemoryStore`]: memories and their vectors in a redb file, mirrored in
//! memory for search.

use crate::ann::AnnIndex;
use crate::codec::{encode_vector, StoredRecord};
use crate::entries::{normalised, Entries, Ranking, SearchMode, SlotParts};
use crate::error::{dberr, MemoryError};
use crate::tables::{MEMORIES, META, META_DIM, META_MODEL, META_NEXT_ID, VECTORS};
use crate::types::{clean_tags, Hit, MemoryId, MemoryOptions, MemoryRecord, NewMemory, Query};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// Vectors copied out per step of an index build: small enough that inserts
/// and searches wait little for the lock, and that dropping the store stops
/// a build soon.
const BUILD_CHUNK: usize = 2048;

/// The embedding model a store's vectors come from, and their length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingSpace {
    /// The embedder's model id.
    pub model_id: String,
    /// The vectors' length.
    pub dim: usize,
}

/// Memories in their own redb file, searchable by vector.
///
/// The API blocks (redb commits, a scan of every vector for an exact
/// search): call it from `tokio::task::spawn_blocking`. It is `Send + Sync`;
/// share it in an `Arc`. Searches run in parallel; writes take turns.
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Database,
    options: MemoryOptions,
    entries: RwLock<Entries>,
    space: Mutex<Option<EmbeddingSpace>>,
    // Held across a write transaction and the update of `entries` after it,
    // so that the mirror sees writes in commit order.
    writer: Mutex<()>,
    build: Mutex<Option<JoinHandle<()>>>,
    // `options.hnsw.ef_search`, changeable while open (a speed/recall knob
    // that needs no rebuild).
    ef_search: AtomicUsize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("path", &self.inner.path)
            .field("len", &self.len())
            .field("space", &self.space())
            .finish()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn corrupt(id: Option<u64>, reason: impl Into<String>) -> MemoryError {
    MemoryError::Corrupt {
        id: id.map(MemoryId),
        reason: reason.into(),
    }
}

impl MemoryStore {
    /// Opens (or creates) the memory file at `path` and loads every vector.
    /// When more memories than `exact_threshold` are stored, the approximate
    /// index is rebuilt from them, in the background when
    /// `options.background_index` is set. A record or vector that cannot be
    /// read is an error naming its id.
    pub fn open(path: &Path, options: MemoryOptions) -> Result<MemoryStore, MemoryError> {
        options.validate()?;
        let db = Database::create(path).map_err(dberr("open the memory file"))?;
        let txn = db
            .begin_write()
            .map_err(dberr("begin a write transaction"))?;
        for table in [MEMORIES, VECTORS] {
            txn.open_table(table).map_err(dberr("create the tables"))?;
        }
        txn.open_table(META).map_err(dberr("create the tables"))?;
        txn.commit().map_err(dberr("commit"))?;

        let (space, entries) = crate::load::load(&db)?;
        tracing::info!(path = %path.display(), memories = entries.live, "memory store opened");
        let store = MemoryStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db,
                entries: RwLock::new(entries),
                space: Mutex::new(space),
                writer: Mutex::new(()),
                build: Mutex::new(None),
                ef_search: AtomicUsize::new(options.hnsw.ef_search),
                options,
            }),
        };
        store.maybe_build_index();
        Ok(store)
    }

    /// The file it lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Its options.
    pub fn options(&self) -> &MemoryOptions {
        &self.inner.options
    }

    /// The model and dimension of its vectors; `None` while it is empty and
    /// has never held one.
    pub fn space(&self) -> Option<EmbeddingSpace> {
        self.inner.space.lock().ok().and_then(|s| s.clone())
    }

    /// How many memories it holds.
    pub fn len(&self) -> usize {
        self.read().live
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the approximate index is built (it is only built past
    /// `exact_threshold` memories).
    pub fn index_ready(&self) -> bool {
        self.read().ann.is_some()
    }

    /// Changes how many candidates an approximate search keeps (more:
    /// better recall, slower); takes effect at once. Zero is taken as one.
    pub fn set_ef_search(&self, ef_search: usize) {
        self.inner
            .ef_search
            .store(ef_search.max(1), Ordering::Relaxed);
    }

    /// Checks that vectors of `model_id` with `dim` dimensions may be stored
    /// or searched here.
    pub fn check_space(&self, model_id: &str, dim: usize) -> Result<(), MemoryError> {
        match self.space() {
            Some(s) if s.model_id != model_id || s.dim != dim => {
                Err(MemoryError::EmbedderMismatch {
                    stored_model: s.model_id,
                    stored_dim: s.dim,
                    given_model: model_id.to_string(),
                    given_dim: dim,
                })
            }
            _ => Ok(()),
        }
    }

    /// Stores one memory with its vector from embedding model `model_id`.
    pub fn insert(
        &self,
        model_id: &str,
        memory: NewMemory,
        vector: &[f32],
    ) -> Result<MemoryId, MemoryError> {
        let ids = self.insert_batch(model_id, vec![(memory, vector.to_vec())])?;
        ids.into_iter()
            .next()
            .ok_or_else(|| MemoryError::Index("an insert gave no id".to_string()))
    }

    /// Stores several memories in one transaction (one disk sync).
    pub fn insert_batch(
        &self,
        model_id: &str,
        items: Vec<(NewMemory, Vec<f32>)>,
    ) -> Result<Vec<MemoryId>, MemoryError> {
        let Some(dim) = items.first().map(|(_, v)| v.len()) else {
            return Ok(Vec::new());
        };
        let mut prepared = Vec::with_capacity(items.len());
        for (memory, vector) in items {
            if vector.len() != dim {
                return Err(MemoryError::WrongDimension {
                    expected: dim,
                    got: vector.len(),
                });
            }
            let vector = normalised(&vector).map_err(MemoryError::InvalidVector)?;
            prepared.push((memory, vector));
        }
        let _writer = self.inner.writer.lock();
        self.check_space(model_id, dim)?;
        let now = now_ms();
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(dberr("begin a write transaction"))?;
        let mut stored = Vec::with_capacity(prepared.len());
        {
            let mut meta = txn.open_table(META).map_err(dberr("open the metadata"))?;
            let next = match meta.get(META_NEXT_ID).map_err(dberr("read the next id"))? {
                Some(v) => v
                    .value()
                    .parse::<u64>()
                    .map_err(|_| corrupt(None, "the next id is not a number"))?,
                None => 1,
            };
            let mut records = txn
                .open_table(MEMORIES)
                .map_err(dberr("open the memories"))?;
            let mut vectors = txn.open_table(VECTORS).map_err(dberr("open the vectors"))?;
            for (i, (memory, vector)) in prepared.into_iter().enumerate() {
                let id = next + i as u64;
                let created = memory.created_ms.unwrap_or(now);
                let record = StoredRecord {
                    namespace: memory.namespace,
                    kind: memory.kind,
                    content: memory.content,
                    tags: clean_tags(&memory.tags),
                    created_ms: created,
                    last_used_ms: created,
                    use_count: 0,
                    source_task: memory.source_task,
                };
                records
                    .insert(id, record.encode().as_slice())
                    .map_err(dberr("write a memory"))?;
                vectors
                    .insert(id, encode_vector(&vector).as_slice())
                    .map_err(dberr("write a vector"))?;
                stored.push((id, record, vector));
            }
            let next = (next + stored.len() as u64).to_string();
            meta.insert(META_NEXT_ID, next.as_str())
                .map_err(dberr("write the next id"))?;
            meta.insert(META_MODEL, model_id)
                .map_err(dberr("write the model"))?;
            meta.insert(META_DIM, dim.to_string().as_str())
                .map_err(dberr("write the dimension"))?;
        }
        txn.commit().map_err(dberr("commit"))?;

        if let Ok(mut space) = self.inner.space.lock() {
            *space = Some(EmbeddingSpace {
                model_id: model_id.to_string(),
                dim,
            });
        }
        let ids = {
            let mut e = self.write();
            e.dim = dim;
            stored
                .iter()
                .map(|(id, record, vector)| {
                    let slot = e.push(slot_parts(*id, record), vector);
                    if let Some(ann) = &e.ann {
                        ann.insert(vector, slot);
                    }
                    MemoryId(*id)
                })
                .collect()
        };
        drop(_writer);
        self.maybe_build_index();
        Ok(ids)
    }

    /// The `query.k` best memories for `vector` (from model `model_id`),
    /// best first: exact or approximate as the options and index decide.
    pub fn search(
        &self,
        model_id: &str,
        vector: &[f32],
        query: &Query,
    ) -> Result<Vec<Hit>, MemoryError> {
        self.search_with(model_id, vector, query, SearchMode::Auto)
    }

    /// [`Self::search`] with the way to answer it chosen by the caller (to
    /// compare the index with exact search).
    pub fn search_with(
        &self,
        model_id: &str,
        vector: &[f32],
        query: &Query,
        mode: SearchMode,
    ) -> Result<Vec<Hit>, MemoryError> {
        let Some(space) = self.space() else {
            return Ok(Vec::new());
        };
        self.check_space(model_id, vector.len())?;
        let vector = normalised(vector).map_err(MemoryError::InvalidVector)?;
        let found: Vec<(u64, f32, f32)> = {
            let e = self.read();
            debug_assert_eq!(e.dim, space.dim);
            let rank = Ranking {
                opts: &self.inner.options,
                ef_search: self.inner.ef_search.load(Ordering::Relaxed),
                now_ms: now_ms(),
            };
            e.search(&vector, query, mode, rank)
                .into_iter()
                .map(|c| (e.slots[c.slot].id, c.similarity, c.score))
                .collect()
        };
        let records = self.read_records()?;
        let mut hits = Vec::with_capacity(found.len());
        for (id, similarity, score) in found {
            // Deleted since the search: leave it out.
            let Some(record) = read_record(&records, MemoryId(id))? else {
                continue;
            };
            hits.push(Hit {
                record,
                similarity,
                score,
            });
        }
        Ok(hits)
    }

    /// One memory.
    pub fn get(&self, id: MemoryId) -> Result<Option<MemoryRecord>, MemoryError> {
        read_record(&self.read_records()?, id)
    }

    /// The memories table, for reading.
    fn read_records(&self) -> Result<redb::ReadOnlyTable<u64, &'static [u8]>, MemoryError> {
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(dberr("begin a read transaction"))?;
        txn.open_table(MEMORIES).map_err(dberr("open the memories"))
    }

    /// Records that `ids` were used now: their decay starts again and their
    /// use count goes up. Ids that are gone are skipped; returns how many
    /// were marked.
    pub fn mark_used(&self, ids: &[MemoryId]) -> Result<usize, MemoryError> {
        let _writer = self.inner.writer.lock();
        let now = now_ms();
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(dberr("begin a write transaction"))?;
        let mut marked = Vec::new();
        {
            let mut records = txn
                .open_table(MEMORIES)
                .map_err(dberr("open the memories"))?;
            for id in ids {
                let record = match records.get(id.0).map_err(dberr("read a memory"))? {
                    Some(bytes) => {
                        StoredRecord::decode(bytes.value()).map_err(|r| corrupt(Some(id.0), r))?
                    }
                    None => continue,
                };
                let record = StoredRecord {
                    last_used_ms: now.max(record.last_used_ms),
                    use_count: record.use_count + 1,
                    ..record
                };
                records
                    .insert(id.0, record.encode().as_slice())
                    .map_err(dberr("write a memory"))?;
                marked.push((id.0, record.last_used_ms));
            }
        }
        txn.commit().map_err(dberr("commit"))?;
        let mut e = self.write();
        for (id, last_used) in &marked {
            if let Some(&slot) = e.by_id.get(id) {
                e.slots[slot].last_used_ms = *last_used;
            }
        }
        Ok(marked.len())
    }

    /// Deletes a memory; whether it was there.
    pub fn delete(&self, id: MemoryId) -> Result<bool, MemoryError> {
        let _writer = self.inner.writer.lock();
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(dberr("begin a write transaction"))?;
        let existed = remove(&txn, id.0)?;
        txn.commit().map_err(dberr("commit"))?;
        self.write().remove(id.0);
        Ok(existed)
    }

    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        // A panic while the lock was held cannot leave `Entries` half
        // updated in a way searches trip on: every update is a push or a
        // flag. Carry on with it.
        self.inner.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts building the approximate index when the store has grown past
    /// `exact_threshold` and none is built or building.
    fn maybe_build_index(&self) {
        {
            let mut e = self.write();
            if e.ann.is_some() || e.building || e.live <= self.inner.options.exact_threshold {
                return;
            }
            e.building = true;
        }
        let weak = Arc::downgrade(&self.inner);
        if !self.inner.options.background_index {
            build_index(weak);
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("memory-index".to_string())
            .spawn(move || build_index(weak));
        match spawned {
            Ok(handle) => {
                if let Ok(mut slot) = self.inner.build.lock() {
                    *slot = Some(handle);
                }
            }
            Err(err) => {
                tracing::error!(%err, "cannot start the memory index thread; searches stay exact");
                self.write().building = false;
            }
        }
    }
}

pub(crate) fn slot_parts(id: u64, record: &StoredRecord) -> SlotParts<'_> {
    SlotParts {
        id,
        namespace: record.namespace.to_string(),
        kind: record.kind,
        tags: &record.tags,
        last_used_ms: record.last_used_ms,
    }
}

fn remove(txn: &WriteTransaction, id: u64) -> Result<bool, MemoryError> {
    let mut records = txn
        .open_table(MEMORIES)
        .map_err(dberr("open the memories"))?;
    let mut vectors = txn.open_table(VECTORS).map_err(dberr("open the vectors"))?;
    let existed = records
        .remove(id)
        .map_err(dberr("delete a memory"))?
        .is_some();
    vectors.remove(id).map_err(dberr("delete a vector"))?;
    Ok(existed)
}

/// Builds the approximate index over every slot. Vectors are copied out a
/// chunk at a time so that writers are not held up; the last few (added
/// meanwhile) are inserted under the write lock, with the index installed.
/// Stops quietly when the store is dropped.
fn build_index(weak: Weak<Inner>) {
    let started = std::time::Instant::now();
    let Some((params, capacity)) = weak.upgrade().map(|inner| {
        let e = inner.entries.read().unwrap_or_else(|p| p.into_inner());
        (inner.options.hnsw, e.slots.len())
    }) else {
        return;
    };
    let ann = AnnIndex::new(&params, capacity);
    let mut done = 0;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let (chunk, dim) = {
            let e = inner.entries.read().unwrap_or_else(|p| p.into_inner());
            let n = (e.slots.len() - done).min(BUILD_CHUNK);
            if n == 0 {
                break;
            }
            (e.vectors[done * e.dim..(done + n) * e.dim].to_vec(), e.dim)
        };
        drop(inner);
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ann.insert_many(&chunk, dim, done)
        }));
        if built.is_err() {
            tracing::error!("building the memory index panicked; searches stay exact");
            if let Some(inner) = weak.upgrade() {
                inner
                    .entries
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .building = false;
            }
            return;
        }
        done += chunk.len() / dim;
    }
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let mut e = inner.entries.write().unwrap_or_else(|p| p.into_inner());
    for slot in done..e.slots.len() {
        ann.insert(e.vector(slot), slot);
    }
    let indexed = e.slots.len();
    e.ann = Some(ann);
    e.building = false;
    tracing::info!(
        vectors = indexed,
        seconds = started.elapsed().as_secs_f64(),
        "memory index built"
    );
}

/// Memory `id` from `records`, if it is there.
fn read_record(
    records: &impl redb::ReadableTable<u64, &'static [u8]>,
    id: MemoryId,
) -> Result<Option<MemoryRecord>, MemoryError> {
    let Some(bytes) = records.get(id.0).map_err(dberr("read a memory"))? else {
        return Ok(None);
    };
    let record = StoredRecord::decode(bytes.value()).map_err(|r| corrupt(Some(id.0), r))?;
    Ok(Some(record.into_record(id)))
}
