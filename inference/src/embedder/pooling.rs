//! Token states → one vector per input, as sentence-transformers' `Pooling`
//! and `Normalize` modules compute it. Padding never counts: every mode
//! reads the attention mask.

use candle_core::{DType, Tensor, D};

/// The pooling modes a model's `1_Pooling/config.json` turns on. With more
/// than one, the results are concatenated in this field order (CLS, max,
/// mean, mean/√len), as sentence-transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pooling {
    pub cls: bool,
    pub max: bool,
    pub mean: bool,
    pub mean_sqrt_len: bool,
}

impl Pooling {
    /// How many vectors of the transformer's width are concatenated.
    pub(crate) fn modes(&self) -> usize {
        [self.cls, self.max, self.mean, self.mean_sqrt_len]
            .iter()
            .filter(|on| **on)
            .count()
    }

    /// `hidden` is `(batch, tokens, width)`, `mask` `(batch, tokens)` with 1
    /// for real tokens and 0 for padding; the answer is
    /// `(batch, modes × width)`.
    pub(crate) fn apply(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
        let mut parts = Vec::with_capacity(self.modes());
        if self.cls {
            parts.push(hidden.narrow(1, 0, 1)?.squeeze(1)?);
        }
        if self.max {
            // Padding is pushed far below any real state before the max, as
            // sentence-transformers does (-1e9), rather than dropped.
            let pushed_down = mask.affine(1e9, -1e9)?;
            parts.push(hidden.broadcast_add(&pushed_down)?.max(1)?);
        }
        if self.mean || self.mean_sqrt_len {
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            // At least 1e-9, sentence-transformers' clamp, so an input with
            // no real token gives zeros, not NaN.
            let count = mask.sum(1)?.maximum(1e-9)?;
            if self.mean {
                parts.push(sum.broadcast_div(&count)?);
            }
            if self.mean_sqrt_len {
                parts.push(sum.broadcast_div(&count.sqrt()?)?);
            }
        }
        Tensor::cat(&parts, 1)
    }
}

/// Each row divided by its L2 norm (at least 1e-12, torch's
/// `F.normalize`), as the `Normalize` module does.
pub(crate) fn l2_normalize(rows: &Tensor) -> candle_core::Result<Tensor> {
    let norm = rows
        .to_dtype(DType::F32)?
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .maximum(1e-12)?;
    rows.broadcast_div(&norm)
}
