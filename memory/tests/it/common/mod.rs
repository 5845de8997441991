//! What the memory tests share: a store in a temporary directory and the
//! hashed-words test embedder.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use troupe_memory::{HashedWords, Memory, MemoryOptions};

/// Options that build the index inline, so tests see it at once.
pub(crate) fn options(exact_threshold: usize) -> MemoryOptions {
    MemoryOptions {
        exact_threshold,
        background_index: false,
        ..MemoryOptions::default()
    }
}

/// A temporary directory and the memory file's path in it.
pub(crate) fn file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("memory.redb");
    (dir, path)
}

/// A memory over the hashed-words embedder (64 dimensions).
pub(crate) fn memory(path: &std::path::Path, options: MemoryOptions) -> Memory {
    Memory::open(path, options, Arc::new(HashedWords::new(64))).expect("the memory opens")
}

/// `n` texts of a few words each from a small vocabulary, deterministically.
pub(crate) fn texts(n: usize) -> Vec<String> {
    const WORDS: [&str; 40] = [
        "rust",
        "python",
        "build",
        "test",
        "deploy",
        "server",
        "client",
        "cache",
        "index",
        "search",
        "vector",
        "memory",
        "plan",
        "task",
        "worker",
        "director",
        "file",
        "shell",
        "git",
        "commit",
        "branch",
        "merge",
        "http",
        "json",
        "schema",
        "model",
        "token",
        "prompt",
        "budget",
        "latency",
        "error",
        "retry",
        "timeout",
        "config",
        "queue",
        "actor",
        "message",
        "journal",
        "checkpoint",
        "restore",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 3 + (next() % 5) as usize;
            let mut words: Vec<&str> = (0..len).map(|_| WORDS[(next() % 40) as usize]).collect();
            words.push(["alpha", "beta", "gamma", "delta"][i % 4]);
            words.join(" ")
        })
        .collect()
}
