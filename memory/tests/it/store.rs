//! The memory store: persistence, filters, decay, use, the index, and the
//! errors a user would meet.

use crate::common;

use std::sync::Arc;
use std::time::Duration;
use troupe_memory::{
    HashedWords, Kind, Memory, MemoryError, MemoryId, MemoryStore, Namespace, NewMemory, Query,
    SearchMode,
};

fn shared(kind: Kind, text: &str) -> NewMemory {
    NewMemory::new(Namespace::Shared, kind, text)
}

#[test]
fn memories_survive_a_restart_and_ids_are_not_reused() {
    let (_dir, path) = common::file();
    let first = {
        let memory = common::memory(&path, common::options(2000));
        memory
            .remember(shared(Kind::Document, "the deploy script needs a token").from_task("t1"))
            .unwrap();
        memory
            .remember(shared(Kind::Lesson, "run cargo fmt before committing"))
            .unwrap();
        let gone = memory
            .remember(shared(Kind::Document, "a note to delete"))
            .unwrap();
        assert!(memory.forget(gone).unwrap());
        gone
    };

    let memory = common::memory(&path, common::options(2000));
    assert_eq!(memory.store().len(), 2);
    let hits = memory
        .recall("which token does deploy need", &Query::top(1))
        .unwrap();
    assert_eq!(hits[0].record.content, "the deploy script needs a token");
    assert_eq!(hits[0].record.source_task.as_deref(), Some("t1"));
    assert_eq!(memory.store().get(first).unwrap(), None);
    let next = memory.remember(shared(Kind::Document, "later")).unwrap();
    assert!(next > first, "{next} reuses an id up to {first}");
}

#[test]
fn namespace_kind_and_tag_filters_leave_the_rest_out() {
    let (_dir, path) = common::file();
    let memory = common::memory(&path, common::options(2000));
    let coder = Namespace::agent("code").unwrap();
    memory
        .remember(
            NewMemory::new(coder.clone(), Kind::Document, "rust build cache notes")
                .with_tags(["Rust", "build"]),
        )
        .unwrap();
    memory
        .remember(NewMemory::new(
            Namespace::agent("research").unwrap(),
            Kind::Document,
            "rust build cache paper",
        ))
        .unwrap();
    memory
        .remember(shared(Kind::Lesson, "rust build cache lesson").with_tags(["rust"]))
        .unwrap();

    let contents = |q: Query| -> Vec<String> {
        let mut c: Vec<String> = memory
            .recall("rust build cache", &q)
            .unwrap()
            .into_iter()
            .map(|h| h.record.content)
            .collect();
        c.sort();
        c
    };
    assert_eq!(contents(Query::top(10)).len(), 3);
    assert_eq!(
        contents(Query::top(10).in_namespaces([coder.clone(), Namespace::Shared])),
        ["rust build cache lesson", "rust build cache notes"]
    );
    assert_eq!(
        contents(Query::top(10).with_tags(["RUST"])),
        ["rust build cache lesson", "rust build cache notes"]
    );
    assert_eq!(
        contents(Query::top(10).with_tags(["rust", "build"])),
        ["rust build cache notes"]
    );
    assert_eq!(
        contents(Query::top(10).of_kinds([Kind::Lesson])),
        ["rust build cache lesson"]
    );
    assert!(contents(Query::top(10).with_tags(["nobody-has-this"])).is_empty());
    assert!(
        contents(Query::top(10).in_namespaces([Namespace::agent("nobody").unwrap()])).is_empty()
    );
}

#[test]
fn older_memories_rank_below_recent_ones_until_used() {
    let (_dir, path) = common::file();
    let options = troupe_memory::MemoryOptions {
        decay_half_life: Duration::from_secs(7 * 24 * 3600),
        ..common::options(2000)
    };
    let memory = common::memory(&path, options);
    let sixty_days_ago = now_ms() - 60 * 24 * 3600 * 1000;
    let old = memory
        .remember(NewMemory {
            created_ms: Some(sixty_days_ago),
            ..shared(
                Kind::Document,
                "restart the queue worker after a config change",
            )
        })
        .unwrap();
    let new = memory
        .remember(shared(
            Kind::Document,
            "restart the queue worker after a config change",
        ))
        .unwrap();

    let hits = memory
        .recall("restart queue worker", &Query::top(2))
        .unwrap();
    assert_eq!(hits[0].record.id, new);
    assert_eq!(hits[1].record.id, old);
    assert!((hits[0].similarity - hits[1].similarity).abs() < 1e-6);
    assert!(hits[1].score < hits[0].score / 100.0, "{hits:?}");

    assert_eq!(memory.mark_used(&[old, MemoryId(999)]).unwrap(), 1);
    let hits = memory
        .recall("restart queue worker", &Query::top(2))
        .unwrap();
    assert_eq!(hits[0].record.id, old, "a memory just used ranks first");
    assert_eq!(hits[0].record.use_count, 1);
    assert!(hits[0].record.last_used_ms > sixty_days_ago);
    assert_eq!(hits[0].record.created_ms, sixty_days_ago);

    // The use is remembered across a restart.
    drop(memory);
    let memory = common::memory(&path, common::options(2000));
    let hits = memory
        .recall("restart queue worker", &Query::top(2))
        .unwrap();
    assert_eq!(hits[0].record.id, old);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn the_index_past_the_threshold_finds_what_exact_search_finds() {
    let (_dir, path) = common::file();
    let threshold = 100;
    let texts = common::texts(1500);
    {
        let memory = common::memory(&path, common::options(threshold));
        let batch: Vec<NewMemory> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ns = if i % 2 == 0 {
                    Namespace::Shared
                } else {
                    Namespace::agent("code").unwrap()
                };
                NewMemory::new(ns, Kind::Document, t.as_str())
            })
            .collect();
        for chunk in batch.chunks(500) {
            memory.remember_many(chunk.to_vec()).unwrap();
        }
        assert!(memory.store().index_ready());
    }
    // Reopening rebuilds the index from the stored vectors.
    let memory = common::memory(&path, common::options(threshold));
    assert!(memory.store().index_ready());
    let embedder = HashedWords::new(64);
    let model = memory.embedder().model_id().to_string();
    let mut agree = 0;
    let mut total = 0;
    for (i, text) in texts.iter().step_by(50).enumerate() {
        let q = if i % 2 == 0 {
            Query::top(10)
        } else {
            Query::top(10).in_namespaces([Namespace::Shared])
        };
        let v = embedder.vector(text);
        let exact = memory
            .store()
            .search_with(&model, &v, &q, SearchMode::Exact)
            .unwrap();
        let approx = memory
            .store()
            .search_with(&model, &v, &q, SearchMode::Approximate)
            .unwrap();
        assert_eq!(approx.len(), 10);
        assert_eq!(
            exact[0].similarity, approx[0].similarity,
            "the best hit differs for {text:?}"
        );
        // Ties in similarity make ids an unfair comparison: compare the
        // similarities found.
        let floor = exact[9].similarity;
        agree += approx
            .iter()
            .filter(|h| h.similarity >= floor - 1e-6)
            .count();
        total += 10;
    }
    let recall = agree as f64 / total as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn another_embedder_is_refused_by_name() {
    let (_dir, path) = common::file();
    let memory = common::memory(&path, common::options(2000));
    memory
        .remember(shared(Kind::Document, "something"))
        .unwrap();
    let wrong = memory.remember_vector(shared(Kind::Document, "x"), &[1.0; 3]);
    assert!(
        matches!(
            wrong,
            Err(MemoryError::WrongDimension {
                expected: 64,
                got: 3
            })
        ),
        "{wrong:?}"
    );
    drop(memory);

    let err =
        Memory::open(&path, common::options(2000), Arc::new(HashedWords::new(32))).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MemoryError::EmbedderMismatch { .. }),
        "{text}"
    );
    assert!(
        text.contains("hashed-words-64") && text.contains("hashed-words-32"),
        "{text}"
    );

    let store = MemoryStore::open(&path, common::options(2000)).unwrap();
    let err = store
        .insert("other-model", shared(Kind::Document, "x"), &[0.5; 64])
        .unwrap_err();
    assert!(matches!(err, MemoryError::EmbedderMismatch { .. }), "{err}");
    let err = store
        .search("hashed-words-64", &[0.0; 64], &Query::top(1))
        .unwrap_err();
    assert!(matches!(err, MemoryError::InvalidVector(_)), "{err}");
}

#[test]
fn a_damaged_record_is_reported_with_its_id() {
    let (_dir, path) = common::file();
    let id = {
        let memory = common::memory(&path, common::options(2000));
        memory.remember(shared(Kind::Document, "fine")).unwrap();
        memory
            .remember(shared(Kind::Document, "to be damaged"))
            .unwrap()
    };
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("memories-0");
            let mut t = txn.open_table(table).unwrap();
            t.insert(id.0, b"{not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = MemoryStore::open(&path, common::options(2000)).unwrap_err();
    assert!(
        matches!(err, MemoryError::Corrupt { id: Some(bad), .. } if bad == id),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("memory {id}")), "{err}");

    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let records: redb::TableDefinition<u64, &[u8]> =
                redb::TableDefinition::new("memories-0");
            txn.open_table(records).unwrap().remove(id.0).unwrap();
            let vectors: redb::TableDefinition<u64, &[u8]> =
                redb::TableDefinition::new("vectors-0");
            let mut t = txn.open_table(vectors).unwrap();
            let first = MemoryId(id.0 - 1);
            t.insert(first.0, [0u8; 12].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = MemoryStore::open(&path, common::options(2000)).unwrap_err();
    assert!(err.to_string().contains("vector has 12 bytes"), "{err}");
}

#[test]
fn bad_namespaces_are_refused() {
    assert!("agent:".parse::<Namespace>().is_err());
    assert!("agent:two words".parse::<Namespace>().is_err());
    assert!("team".parse::<Namespace>().is_err());
    assert_eq!(
        "agent:code".parse::<Namespace>().unwrap(),
        Namespace::agent("code").unwrap()
    );
    assert_eq!(Namespace::Shared.to_string(), "shared");
}
