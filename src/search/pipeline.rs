//! The forward chain of one evaluation: edit → generator → {target, CLIP image tower}, batched.

use crate::error::Result;
use crate::models::{Clip, Generator, Target};
use ndarray::{concatenate, s, Array2, Array4, Axis};

/// The loaded models and the consistency prompts' text embeddings.
#[derive(Debug)]
pub struct Pipeline {
    /// Generator.
    pub generator: Generator,
    /// Target.
    pub target: Target,
    /// CLIP.
    pub clip: Clip,
    /// `[K, D]` normalised text embeddings of the consistency prompts (`None` = term off).
    pub consistency: Option<Array2<f32>>,
    /// Images per ONNX Runtime call.
    pub batch_size: usize,
    /// Pad every call to exactly `batch_size` images (zero rows, results dropped). On GPUs a
    /// new input shape costs far more than the padding: ONNX Runtime's CUDA Conv rebuilds its
    /// cuDNN plan whenever the shape differs from the previous call, and an evaluation of 40
    /// images alternating calls of 32 and 8 made the gender demo's target 8× slower per call
    /// than the fixed-shape gradient graph running the same convolutions (docs/gpu.md).
    pub fixed_batch: bool,
    /// Images rendered so far (for throughput figures).
    pub images_rendered: usize,
    /// The exact-gradient chain; `None` = finite differences.
    pub exact: Option<super::exact::ExactChain>,
}

/// Results of evaluating a batch of (z, edit) pairs.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Target output rows `[N, width]`.
    pub rows: Array2<f32>,
    /// Rows with NaN/Inf.
    pub bad: Vec<bool>,
    /// CLIP consistency logits `[N, K]` (scale · cosine), when the term is on.
    pub clip_logits: Option<Array2<f32>>,
    /// The rendered images, when asked for.
    pub images: Option<Array4<f32>>,
}

impl Pipeline {
    /// Evaluates rows of `z` with rows of `edit`, `batch_size` images per call.
    pub fn evaluate(
        &mut self,
        z: &Array2<f32>,
        edit: &Array2<f32>,
        keep_images: bool,
    ) -> Result<Evaluation> {
        let n = z.nrows();
        let mut rows = Vec::new();
        let mut bad = Vec::with_capacity(n);
        let mut logits = Vec::new();
        let mut images = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + self.batch_size).min(n);
            let real = end - start;
            let call_rows = if self.fixed_batch {
                self.batch_size
            } else {
                real
            };
            let zb = padded_rows(z, start..end, call_rows);
            let eb = padded_rows(edit, start..end, call_rows);
            let img = self.generator.render(&zb, &eb)?;
            self.images_rendered += real;
            let r = self.target.rows(&img)?;
            rows.push(r.values.slice(s![..real, ..]).to_owned());
            bad.extend(r.bad.into_iter().take(real));
            if let Some(text) = &self.consistency {
                let emb = self.clip.embed_images(&img)?;
                logits.push(emb.slice(s![..real, ..]).dot(&text.t()) * self.clip.logit_scale);
            }
            if keep_images {
                images.push(img.slice(s![..real, .., .., ..]).to_owned());
            }
            start = end;
        }
        let cat2 = |v: &[Array2<f32>]| -> Array2<f32> {
            let views: Vec<_> = v.iter().map(|a| a.view()).collect();
            concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, 0)))
        };
        Ok(Evaluation {
            rows: cat2(&rows),
            bad,
            clip_logits: self.consistency.as_ref().map(|_| cat2(&logits)),
            images: keep_images.then(|| {
                let views: Vec<_> = images.iter().map(|a| a.view()).collect();
                concatenate(Axis(0), &views).unwrap_or_else(|_| Array4::zeros((0, 0, 0, 0)))
            }),
        })
    }
}

/// Cross-entropy of `logits` against class `c`, and its argmax.
pub fn cross_entropy(logits: &[f32], c: usize) -> f64 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = logits
        .iter()
        .map(|&v| (v as f64 - m).exp())
        .sum::<f64>()
        .ln()
        + m;
    lse - logits[c] as f64
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// Rows `range` of `a`, followed by zero rows up to `rows` in all: one call's share of a batch,
/// padded for graphs whose batch axis is fixed.
pub(crate) fn padded_rows(
    a: &Array2<f32>,
    range: std::ops::Range<usize>,
    rows: usize,
) -> Array2<f32> {
    let mut out = Array2::zeros((rows.max(range.len()), a.ncols()));
    out.slice_mut(s![..range.len(), ..])
        .assign(&a.slice(s![range, ..]));
    out
}
