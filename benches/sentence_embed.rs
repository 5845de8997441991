//! Sentence embedder throughput: sentences per second at batch 1 and batch
//! 32 over the fixed sentence set of `inference/tests/data/minilm-reference.json`
//! (20 sentences, 2 to 256 tokens), with all-MiniLM-L6-v2 from the Hugging
//! Face cache that `scripts/fetch-minilm.sh` fills.
//!
//! ```sh
//! MINILM_TEST_HF_CACHE="$(bash scripts/fetch-minilm.sh)" \
//!   cargo bench --bench sentence_embed -- [SECONDS_PER_CASE]
//! ```
//!
//! Batch 1 embeds the sentences one call each; batch 32 embeds 32 of them
//! (the set cycled) per call. Each case runs for SECONDS_PER_CASE (default
//! 10) after one warm-up pass, and prints a Markdown table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use troupe::inference::embedder::{EmbedderSource, SentenceEmbedder, DEFAULT_EMBEDDER};

const REFERENCE: &str = include_str!("../inference/tests/data/minilm-reference.json");

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let cache = std::env::var_os("MINILM_TEST_HF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hf-cache"));
    let started = Instant::now();
    let embedder = SentenceEmbedder::load(&EmbedderSource::hub_in(DEFAULT_EMBEDDER, &cache))
        .unwrap_or_else(|e| panic!("{e}\n(run `bash scripts/fetch-minilm.sh` first)"));
    let load = started.elapsed();

    let reference: serde_json::Value = serde_json::from_str(REFERENCE).expect("reference JSON");
    let texts: Vec<String> = reference["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_owned())
        .collect();
    let set: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = reference["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s["tokens"].as_u64().unwrap_or(0) as usize)
        .sum();
    let budget = Duration::from_secs(seconds);

    println!(
        "model {} (dim {}, max_seq_len {}), loaded in {:.2} s; {} sentences, {:.1} tokens on average; \
         {} threads available",
        embedder.model_id(),
        embedder.dim(),
        embedder.max_seq_len(),
        load.as_secs_f64(),
        set.len(),
        tokens as f64 / set.len() as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!();
    println!("| batch | sentences | seconds | sentences/s | ms/call |");
    println!("|------:|----------:|--------:|------------:|--------:|");
    for batch in [1usize, 32] {
        let calls: Vec<Vec<&str>> = if batch == 1 {
            set.iter().map(|t| vec![*t]).collect()
        } else {
            vec![set.iter().cycle().take(batch).copied().collect()]
        };
        for call in &calls {
            embedder.embed(call).expect("warm-up");
        }
        let (mut sentences, mut n_calls) = (0usize, 0usize);
        let start = Instant::now();
        while start.elapsed() < budget {
            for call in &calls {
                let vectors = embedder.embed(call).expect("embed");
                sentences += vectors.len();
                n_calls += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "| {batch} | {sentences} | {elapsed:.1} | {:.1} | {:.1} |",
            sentences as f64 / elapsed,
            elapsed * 1000.0 / n_calls as f64
        );
    }
}
