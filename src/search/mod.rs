//! Counterfactual search: for each attack, attribute weights α (one per attacked direction)
//! start at 0 and follow projected gradient descent,
//! `α ← clamp(α − η ∇α L, −B, B)`, with
//! `L = λ_task · task loss(target(G(z, Σ α_k d_k))) + λ_clip · CE(CLIP logits, c0)`.
//!
//! Many attacks run together: every iteration evaluates all their finite-difference points in
//! batched ONNX Runtime calls. Reported scores and images are taken *after* the final update.

pub mod gradient;
pub mod pipeline;
pub mod sweep;

pub use pipeline::{Evaluation, Pipeline};

use crate::error::Result;
use ndarray::{Array1, Array2, Array3, Axis};
use pipeline::{argmax, cross_entropy};

/// One attack: a sample and the directions whose weights are optimised.
#[derive(Debug, Clone)]
pub struct Attack {
    /// Sample index.
    pub sample: usize,
    /// Latent of the sample.
    pub z: Array1<f32>,
    /// Attack label (`single:<name>`, `multiple`, `null:<k>`).
    pub label: String,
    /// Attacked attribute names.
    pub attributes: Vec<String>,
    /// Unit edit-space directions, one per α.
    pub directions: Vec<Array1<f32>>,
}

/// Optimiser settings.
#[derive(Debug, Clone)]
pub struct SearchSettings {
    /// Iterations T.
    pub iterations: usize,
    /// Step η.
    pub step: f32,
    /// Bound B.
    pub bound: f32,
    /// λ_task.
    pub cls_weight: f32,
    /// λ_clip.
    pub clip_weight: f32,
    /// Finite-difference step on α.
    pub fd_step: f32,
}

/// The outcome of one attack.
#[derive(Debug, Clone)]
pub struct AttackResult {
    /// Sample index.
    pub sample: usize,
    /// Attack label.
    pub label: String,
    /// Attacked attribute names.
    pub attributes: Vec<String>,
    /// Final α.
    pub alpha: Vec<f32>,
    /// Target output row of the unedited image (scores are relative to it).
    pub origin: Vec<f32>,
    /// Task score before.
    pub score_before: f64,
    /// Task score after the final update.
    pub score_after: f64,
    /// Target output row of the counterfactual.
    pub row_after: Vec<f32>,
    /// Whether the decision changed.
    pub flipped: bool,
    /// Why the attack was flagged (NaN/Inf output), if it was.
    pub flagged: Option<String>,
    /// Original image `[3, H, W]`.
    pub original: Array3<f32>,
    /// Counterfactual image `[3, H, W]`.
    pub counterfactual: Array3<f32>,
}

/// State of an attack fixed at α = 0.
struct Origin {
    row: Vec<f32>,
    clip_class: Option<usize>,
    score: f64,
}

fn edit_of(a: &Attack, alpha: &[f32], dim: usize) -> Array1<f32> {
    let mut e = Array1::<f32>::zeros(dim);
    for (d, &w) in a.directions.iter().zip(alpha) {
        e.scaled_add(w, d);
    }
    e
}

fn loss(p: &Pipeline, s: &SearchSettings, o: &Origin, ev: &Evaluation, row: usize) -> f64 {
    let r = ev.rows.row(row);
    let r = r.as_slice().unwrap_or(&[]);
    let mut l = s.cls_weight as f64 * p.target.task.loss(r, &o.row);
    if let (Some(logits), Some(c0)) = (&ev.clip_logits, o.clip_class) {
        let lg = logits.row(row);
        l += s.clip_weight as f64 * cross_entropy(lg.as_slice().unwrap_or(&[]), c0);
    }
    l
}

/// Runs all `attacks` to completion.
pub fn run_attacks(
    p: &mut Pipeline,
    attacks: &[Attack],
    s: &SearchSettings,
) -> Result<Vec<AttackResult>> {
    let dim = p.generator.card.style_dim;
    let z_dim = p.generator.card.z_dim;
    let n = attacks.len();
    let stack_z = |rows: &[&Array1<f32>]| {
        let mut z = Array2::<f32>::zeros((rows.len(), z_dim));
        for (i, r) in rows.iter().enumerate() {
            z.row_mut(i).assign(r);
        }
        z
    };
    // α = 0: origin rows, CLIP's reading, scores, original images.
    let z0 = stack_z(&attacks.iter().map(|a| &a.z).collect::<Vec<_>>());
    let ev0 = p.evaluate(&z0, &Array2::zeros((n, dim)), true)?;
    let mut flagged: Vec<Option<String>> = ev0
        .bad
        .iter()
        .map(|&b| b.then(|| "NaN/Inf in the target output of the unedited image".to_string()))
        .collect();
    let origins: Vec<Origin> = (0..n)
        .map(|i| {
            let row = ev0.rows.row(i);
            let row = row.as_slice().unwrap_or(&[]);
            Origin {
                row: row.to_vec(),
                score: p.target.task.score(row, row),
                clip_class: ev0
                    .clip_logits
                    .as_ref()
                    .map(|l| argmax(l.row(i).as_slice().unwrap_or(&[]))),
            }
        })
        .collect();
    let mut alpha: Vec<Vec<f32>> = attacks
        .iter()
        .map(|a| vec![0.0; a.directions.len()])
        .collect();
    for iteration in 0..s.iterations {
        let probes = gradient::probe(p, attacks, &alpha, &flagged, s.fd_step, dim)?;
        for (i, a) in attacks.iter().enumerate() {
            if flagged[i].is_some() {
                continue;
            }
            for (k, &(plus, minus)) in probes.rows[i].iter().enumerate() {
                if probes.eval.bad[plus] || probes.eval.bad[minus] {
                    flagged[i] = Some(format!(
                        "NaN/Inf in the target output at iteration {iteration}"
                    ));
                    break;
                }
                let g = (loss(p, s, &origins[i], &probes.eval, plus)
                    - loss(p, s, &origins[i], &probes.eval, minus))
                    / (2.0 * s.fd_step as f64);
                alpha[i][k] = (alpha[i][k] - s.step * g as f32).clamp(-s.bound, s.bound);
            }
            debug_assert_eq!(alpha[i].len(), a.directions.len());
        }
    }
    // After the final update: scores, decisions and the counterfactual images.
    let mut edits = Array2::<f32>::zeros((n, dim));
    for (i, a) in attacks.iter().enumerate() {
        edits.row_mut(i).assign(&edit_of(a, &alpha[i], dim));
    }
    let ev = p.evaluate(&z0, &edits, true)?;
    let images0 = ev0
        .images
        .unwrap_or_else(|| ndarray::Array4::zeros((0, 0, 0, 0)));
    let images = ev
        .images
        .clone()
        .unwrap_or_else(|| ndarray::Array4::zeros((0, 0, 0, 0)));
    Ok(attacks
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let row = ev.rows.row(i);
            let row = row.as_slice().unwrap_or(&[]);
            let o = &origins[i];
            let flag = flagged[i].clone().or_else(|| {
                ev.bad[i].then(|| "NaN/Inf in the target output of the counterfactual".into())
            });
            AttackResult {
                sample: a.sample,
                label: a.label.clone(),
                attributes: a.attributes.clone(),
                alpha: alpha[i].clone(),
                origin: o.row.clone(),
                score_before: o.score,
                score_after: p.target.task.score(row, &o.row),
                row_after: row.to_vec(),
                flipped: flag.is_none() && p.target.task.changed(row, &o.row),
                flagged: flag,
                original: images0.index_axis(Axis(0), i).to_owned(),
                counterfactual: images.index_axis(Axis(0), i).to_owned(),
            }
        })
        .collect())
}
