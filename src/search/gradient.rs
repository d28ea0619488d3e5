//! Finite-difference gradients of the attack loss over α: central differences, all attacks and
//! all directions in one batched evaluation (2K forward passes per attack of K directions).
//!
//! The step is in α units; α multiplies unit-L2 edit directions whose channels are σ-scaled, so
//! a step of 0.05 moves the image by a small fraction of one σ — large enough to stay above
//! float32 round-off in the generator, small enough for ReLU kinks to matter little.

use super::{edit_of, Attack, Evaluation, Pipeline};
use crate::error::Result;
use ndarray::Array2;

/// The probe evaluation and, per attack and direction, the rows of its α+h and α−h points.
#[derive(Debug)]
pub struct Probes {
    /// All probe points, evaluated.
    pub eval: Evaluation,
    /// `rows[attack][k] = (plus_row, minus_row)` (empty for flagged attacks).
    pub rows: Vec<Vec<(usize, usize)>>,
}

/// Evaluates α ± h·e_k for every active attack and direction.
pub fn probe(
    p: &mut Pipeline,
    attacks: &[Attack],
    alpha: &[Vec<f32>],
    flagged: &[Option<String>],
    h: f32,
    dim: usize,
) -> Result<Probes> {
    let z_dim = p.generator.card.z_dim;
    let count: usize = attacks
        .iter()
        .zip(flagged)
        .filter(|(_, f)| f.is_none())
        .map(|(a, _)| 2 * a.directions.len())
        .sum();
    let mut z = Array2::<f32>::zeros((count, z_dim));
    let mut edit = Array2::<f32>::zeros((count, dim));
    let mut rows = vec![Vec::new(); attacks.len()];
    let mut r = 0;
    for (i, a) in attacks.iter().enumerate() {
        if flagged[i].is_some() {
            continue;
        }
        let base = edit_of(a, &alpha[i], dim);
        for (k, d) in a.directions.iter().enumerate() {
            for (row, sign) in [(r, 1.0f32), (r + 1, -1.0)] {
                z.row_mut(row).assign(&a.z);
                let mut e = base.clone();
                e.scaled_add(sign * h, d);
                edit.row_mut(row).assign(&e);
            }
            rows[i].push((r, r + 1));
            let _ = k;
            r += 2;
        }
    }
    let eval = p.evaluate(&z, &edit, false)?;
    Ok(Probes { eval, rows })
}
