//! Memory search at 10k and 100k vectors: recall@10 of the HNSW index
//! against exact search, search latency (p50/p99) both ways, insert rate,
//! and how long reopening takes (loading the vectors, rebuilding the index).
//!
//! `cargo bench -p troupe-memory --bench memory_search`
//!
//! Environment: `MEMORY_BENCH_N` (largest size, default 100000),
//! `MEMORY_BENCH_M`, `MEMORY_BENCH_EFC` (index build parameters),
//! `MEMORY_BENCH_EF` (comma-separated ef_search values to sweep),
//! `MEMORY_BENCH_QUERIES` (default 200), `MEMORY_BENCH_DATA` (`clustered`,
//! `uniform` or both, comma-separated; default both).
//!
//! Two seeded sets of random 384-dimensional unit vectors:
//! - `uniform`: uniform on the sphere. The worst case for an approximate
//!   index: in 384 dimensions every vector is almost equally far from every
//!   other, so the true top 10 barely stand out and recall needs a wide
//!   search.
//! - `clustered`: 1000 random centres, each vector a centre plus noise of
//!   the same length (cosine ≈ 0.7 to its centre), and queries drawn the
//!   same way. Sentence embeddings look like this: topics, near neighbours
//!   that are clearly nearer.

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use troupe_memory::{
    HnswParams, Kind, MemoryOptions, MemoryStore, Namespace, NewMemory, Query, SearchMode,
};

const DIM: usize = 384;
const MODEL: &str = "bench-random-384";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unit_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// `n` vectors around 1000 seeded centres (queries share the centres).
fn clustered_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let centres = unit_vectors(1000, 99);
    let noise = unit_vectors(n, seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    noise
        .into_iter()
        .map(|e| {
            let c = &centres[rng.random_range(0..centres.len())];
            let v: Vec<f32> = c.iter().zip(&e).map(|(a, b)| a + b).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn options(exact_threshold: usize, hnsw: HnswParams) -> MemoryOptions {
    MemoryOptions {
        exact_threshold,
        hnsw,
        background_index: false,
        ..MemoryOptions::default()
    }
}

fn memory(i: usize) -> NewMemory {
    let ns = if i.is_multiple_of(4) {
        Namespace::Shared
    } else {
        Namespace::Agent(["code", "research", "general"][i % 3].to_string())
    };
    NewMemory::new(ns, Kind::Document, format!("memory number {i}"))
        .with_tags([format!("t{}", i % 10)])
}

/// Inserts `vectors` in batches of 1000; returns memories per second.
fn fill(store: &MemoryStore, vectors: &[Vec<f32>], first: usize) -> f64 {
    let started = Instant::now();
    for (c, chunk) in vectors.chunks(1000).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| (memory(first + c * 1000 + i), v.clone()))
            .collect();
        store.insert_batch(MODEL, items).expect("insert");
    }
    vectors.len() as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Run {
    p50: Duration,
    p99: Duration,
    ids: Vec<Vec<u64>>,
}

fn run_queries(store: &MemoryStore, queries: &[Vec<f32>], mode: SearchMode, q: &Query) -> Run {
    let mut times = Vec::with_capacity(queries.len());
    let mut ids = Vec::with_capacity(queries.len());
    for v in queries {
        let started = Instant::now();
        let hits = store.search_with(MODEL, v, q, mode).expect("search");
        times.push(started.elapsed());
        ids.push(hits.iter().map(|h| h.record.id.0).collect());
    }
    times.sort();
    Run {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        ids,
    }
}

fn recall(exact: &[Vec<u64>], approx: &[Vec<u64>]) -> f64 {
    let mut found = 0;
    let mut total = 0;
    for (e, a) in exact.iter().zip(approx) {
        total += e.len();
        found += a.iter().filter(|id| e.contains(id)).count();
    }
    found as f64 / total.max(1) as f64
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn measure(path: &Path, n: usize, hnsw: HnswParams, queries: &[Vec<f32>], efs: &[usize]) {
    println!("\n## {n} vectors");
    // Reopen with the index: the vectors load, then the graph is rebuilt.
    let started = Instant::now();
    let store = MemoryStore::open(path, options(2000, hnsw)).expect("reopen");
    let reopen = started.elapsed();
    assert!(store.index_ready());
    println!("reopen + index rebuild: {:.1} s", reopen.as_secs_f64());

    let top10 = Query::top(10);
    let exact = run_queries(&store, queries, SearchMode::Exact, &top10);
    println!("exact   k=10: p50 {} p99 {}", ms(exact.p50), ms(exact.p99));
    for &ef in efs {
        store.set_ef_search(ef);
        let approx = run_queries(&store, queries, SearchMode::Approximate, &top10);
        println!(
            "hnsw    k=10 ef_search={ef}: p50 {} p99 {} recall@10 {:.4}",
            ms(approx.p50),
            ms(approx.p99),
            recall(&exact.ids, &approx.ids)
        );
    }
    store.set_ef_search(hnsw.ef_search);
    // A filtered search: one agent's namespace and one tag (about 1/30th).
    let filtered = Query::top(10)
        .in_namespaces([Namespace::Agent("code".to_string())])
        .with_tags(["t3"]);
    let fe = run_queries(&store, queries, SearchMode::Exact, &filtered);
    let fa = run_queries(&store, queries, SearchMode::Auto, &filtered);
    println!(
        "filtered (namespace + tag) k=10: exact p50 {} p99 {}; auto p50 {} p99 {} recall@10 {:.4}",
        ms(fe.p50),
        ms(fe.p99),
        ms(fa.p50),
        ms(fa.p99),
        recall(&fe.ids, &fa.ids)
    );

    // Single inserts with the index in place: one commit and one graph
    // insert each.
    let extra = unit_vectors(200, 7 + n as u64);
    let started = Instant::now();
    for (i, v) in extra.iter().enumerate() {
        store.insert(MODEL, memory(n + i), v).expect("insert");
    }
    let per = started.elapsed() / extra.len() as u32;
    println!(
        "single insert with index (commit + graph): {} each, {:.0}/s",
        ms(per),
        1.0 / per.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let largest = env_usize("MEMORY_BENCH_N", 100_000);
    let n_queries = env_usize("MEMORY_BENCH_QUERIES", 200);
    let defaults = HnswParams::default();
    let hnsw = HnswParams {
        max_connections: env_usize("MEMORY_BENCH_M", defaults.max_connections),
        ef_construction: env_usize("MEMORY_BENCH_EFC", defaults.ef_construction),
        ef_search: defaults.ef_search,
    };
    let efs: Vec<usize> = std::env::var("MEMORY_BENCH_EF")
        .unwrap_or_else(|_| "40,64,128,256".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "# memory_search: {DIM} dims, {n_queries} queries, M={} ef_construction={}, {} cores",
        hnsw.max_connections,
        hnsw.ef_construction,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let data = std::env::var("MEMORY_BENCH_DATA").unwrap_or_else(|_| "clustered,uniform".into());
    for set in data.split(',').map(str::trim) {
        let (vectors, queries) = match set {
            "uniform" => (unit_vectors(largest, 42), unit_vectors(n_queries, 4242)),
            "clustered" => (
                clustered_vectors(largest, 42),
                clustered_vectors(n_queries, 4242),
            ),
            other => {
                eprintln!("unknown MEMORY_BENCH_DATA `{other}`: use clustered or uniform");
                std::process::exit(2);
            }
        };
        println!("\n# data: {set}");
        run_set(set, &vectors, &queries, hnsw, &efs);
    }
}

fn run_set(set: &str, vectors: &[Vec<f32>], queries: &[Vec<f32>], hnsw: HnswParams, efs: &[usize]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let largest = vectors.len();
    let mut sizes = vec![10_000.min(largest)];
    if largest > 10_000 {
        sizes.push(largest);
    }
    for n in sizes {
        let path = dir.path().join(format!("memory-{set}-{n}.redb"));
        {
            // Filling without an index (threshold past n) measures the store
            // alone; the reopen below builds the index.
            let store = MemoryStore::open(&path, options(usize::MAX, hnsw)).expect("open");
            let rate = fill(&store, &vectors[..n], 0);
            println!("\ninsert {n} in batches of 1000 (no index): {rate:.0}/s");
        }
        let started = Instant::now();
        let store = MemoryStore::open(&path, options(usize::MAX, hnsw)).expect("reopen");
        println!(
            "reopen, vectors only (no index): {:.2} s",
            started.elapsed().as_secs_f64()
        );
        drop(store);
        measure(&path, n, hnsw, queries, efs);
    }
}
