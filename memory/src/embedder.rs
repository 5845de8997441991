//! The one thing this crate needs of an embedding model. troupe-inference's
//! candle sentence embedder implements it through a small adapter elsewhere,
//! so that this crate builds without llama.cpp or candle.

use crate::error::EmbedFailure;

/// Turns texts into vectors.
pub trait Embedder: Send + Sync {
    /// Names the model (and anything else that changes its vectors, such as
    /// pooling); vectors of two different ids are never compared.
    fn model_id(&self) -> &str;
    /// The length of its vectors.
    fn dim(&self) -> usize;
    /// One unit-length vector of [`Self::dim`] per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure>;
}
