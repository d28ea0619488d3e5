//! `mode: sweep`: the target's score along each attribute direction on a grid of α in [−B, B],
//! batched across samples × α × attributes. No optimisation: the cheapest, gradient-free view
//! of sensitivity, and a check on the search.

use super::Pipeline;
use crate::error::Result;
use ndarray::{Array1, Array2};

/// Scores of one (sample, direction) along the grid.
#[derive(Debug, Clone)]
pub struct SweepResult {
    /// Sample index.
    pub sample: usize,
    /// Direction index.
    pub direction: usize,
    /// Task score of the unedited image.
    pub score_before: f64,
    /// Task score at each α (relative to the prediction at α = 0).
    pub scores: Vec<f64>,
    /// Whether the prediction at any α changed (flip/failure) from the one at α = 0.
    pub flipped: bool,
    /// Set when an output was NaN/Inf.
    pub flagged: Option<String>,
}

/// The α grid: `points` values evenly spaced over [−B, B] (0 included when `points` is odd).
pub fn grid(bound: f32, points: usize) -> Vec<f32> {
    (0..points)
        .map(|i| -bound + 2.0 * bound * i as f32 / (points - 1) as f32)
        .collect()
}

/// Evaluates every (sample, direction, α).
pub fn run_sweep(
    p: &mut Pipeline,
    samples: &[(usize, Array1<f32>)],
    directions: &[Array1<f32>],
    alphas: &[f32],
) -> Result<Vec<SweepResult>> {
    let dim = p.generator.card.style_dim;
    let z_dim = p.generator.card.z_dim;
    // Row 0 of each (sample) block is the unedited image; then direction × α.
    let per_sample = 1 + directions.len() * alphas.len();
    let n = samples.len() * per_sample;
    let mut z = Array2::<f32>::zeros((n, z_dim));
    let mut edit = Array2::<f32>::zeros((n, dim));
    for (s, (_, zs)) in samples.iter().enumerate() {
        for j in 0..per_sample {
            z.row_mut(s * per_sample + j).assign(zs);
        }
        for (d, dir) in directions.iter().enumerate() {
            for (k, &a) in alphas.iter().enumerate() {
                let row = s * per_sample + 1 + d * alphas.len() + k;
                edit.row_mut(row).assign(&(dir * a));
            }
        }
    }
    let ev = p.evaluate(&z, &edit, false)?;
    let task = &p.target.task;
    let mut out = Vec::new();
    for (s, (sample, _)) in samples.iter().enumerate() {
        let base = s * per_sample;
        let r0 = ev.rows.row(base);
        let origin = r0.as_slice().unwrap_or(&[]);
        for d in 0..directions.len() {
            let rows: Vec<usize> = (0..alphas.len())
                .map(|k| base + 1 + d * alphas.len() + k)
                .collect();
            let bad = ev.bad[base] || rows.iter().any(|&r| ev.bad[r]);
            let scores = rows
                .iter()
                .map(|&r| task.score(ev.rows.row(r).as_slice().unwrap_or(&[]), origin))
                .collect();
            let flipped = rows
                .iter()
                .any(|&r| task.changed(ev.rows.row(r).as_slice().unwrap_or(&[]), origin));
            out.push(SweepResult {
                sample: *sample,
                direction: d,
                score_before: task.score(origin, origin),
                scores,
                flipped: flipped && !bad,
                flagged: bad.then(|| "NaN/Inf in the target output".to_string()),
            });
        }
    }
    Ok(out)
}
