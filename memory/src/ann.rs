//! The approximate nearest-neighbour index: hnsw_rs's HNSW graph over the
//! store's unit vectors, keyed by slot number.

use crate::types::HnswParams;
use hnsw_rs::prelude::{Distance, FilterT, Hnsw};

/// hnsw_rs's largest number of layers.
const MAX_LAYERS: usize = 16;

/// `1 - a·b` for unit vectors, floored at 0. hnsw_rs's own `DistDot`
/// asserts that the distance is not negative, which rounding breaks for a
/// vector and itself (a·a can come out as 1.0000001): a panic in a search.
pub(crate) struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - crate::entries::dot(a, b)).max(0.0)
    }
}

/// One neighbour found: the slot it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Neighbour {
    pub slot: usize,
}

/// An HNSW graph. hnsw_rs keeps its own copy of each vector.
pub(crate) struct AnnIndex {
    hnsw: Hnsw<'static, f32, UnitDot>,
}

impl AnnIndex {
    /// An empty index expecting about `capacity` vectors.
    pub(crate) fn new(params: &HnswParams, capacity: usize) -> AnnIndex {
        AnnIndex {
            hnsw: Hnsw::new(
                params.max_connections,
                capacity.max(1024),
                MAX_LAYERS,
                params.ef_construction,
                UnitDot,
            ),
        }
    }

    /// Adds the vector of `slot`.
    pub(crate) fn insert(&self, vector: &[f32], slot: usize) {
        self.hnsw.insert_slice((vector, slot));
    }

    /// Adds `vectors` (`dim` floats each) as slots `first..`, on every core.
    pub(crate) fn insert_many(&self, vectors: &[f32], dim: usize, first: usize) {
        let items: Vec<(&[f32], usize)> = vectors
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (v, first + i))
            .collect();
        self.hnsw.parallel_insert_slice(&items);
    }

    /// Up to `k` slots nearest `query` that pass `keep`, nearest first.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn FilterT>,
    ) -> Vec<Neighbour> {
        self.hnsw
            .search_filter(query, k, ef.max(k), keep)
            .into_iter()
            .map(|n| Neighbour { slot: n.d_id })
            .collect()
    }
}
