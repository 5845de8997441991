//! [`HashedWords`]: a deterministic stand-in for an embedding model, for
//! tests (here and in the crates above) and for a troupe configured without
//! one. It hashes each word into one of `dim` buckets: texts sharing words
//! are similar, nothing else is. It knows no synonyms or meaning.

use crate::embedder::Embedder;
use crate::error::EmbedFailure;

/// A bag of hashed words, normalised.
#[derive(Debug, Clone)]
pub struct HashedWords {
    dim: usize,
    model_id: String,
}

impl HashedWords {
    /// Vectors of `dim` dimensions (at least 2).
    pub fn new(dim: usize) -> HashedWords {
        let dim = dim.max(2);
        HashedWords {
            dim,
            model_id: format!("hashed-words-{dim}"),
        }
    }

    /// The vector of one text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        let words = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty());
        let mut any = false;
        for word in words {
            let h = fnv1a(&word.to_lowercase());
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[(h % self.dim as u64) as usize] += sign;
            any = true;
        }
        if !any {
            // A text without words still needs a unit vector.
            v[0] = 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            // Words whose signs cancelled out.
            v[0] = 1.0;
            return v;
        }
        v.iter().map(|x| x / norm).collect()
    }
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Embedder for HashedWords {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}
