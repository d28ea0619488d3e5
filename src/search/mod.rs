//! Counterfactual search: for each attack, attribute weights α (one per attacked direction)
//! start at 0 and follow projected gradient descent,
//! `α ← clamp(α − η ∇α L, −B, B)`, with
//! `L = λ_task · task loss(target(G(z, Σ α_k d_k))) + λ_clip · CE(CLIP logits, c0)`.
//!
//! Many attacks run together: every iteration evaluates all their finite-difference points in
//! batched ONNX Runtime calls. Reported scores and images are taken *after* the final update.

pub mod exact;
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
#[derive(Debug, Clone)]
pub struct Origin {
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

/// The gradient of one attack at one iteration.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Already flagged: no update.
    Skip,
    /// An output was NaN/Inf: flag the attack.
    Bad,
    /// ∂L/∂α per direction.
    Grad(Vec<f64>),
}

/// ∂L/∂α of every attack, from the exact chain when the pipeline has one, else by central
/// finite differences.
pub fn gradients(
    p: &mut Pipeline,
    attacks: &[Attack],
    alpha: &[Vec<f32>],
    flagged: &[Option<String>],
    origins: &[Origin],
    s: &SearchSettings,
) -> Result<Vec<Step>> {
    if p.exact.is_some() {
        exact_gradients(p, attacks, alpha, flagged, origins, s)
    } else {
        fd_gradients(p, attacks, alpha, flagged, origins, s)
    }
}

fn fd_gradients(
    p: &mut Pipeline,
    attacks: &[Attack],
    alpha: &[Vec<f32>],
    flagged: &[Option<String>],
    origins: &[Origin],
    s: &SearchSettings,
) -> Result<Vec<Step>> {
    let dim = p.generator.card.style_dim;
    let probes = gradient::probe(p, attacks, alpha, flagged, s.fd_step, dim)?;
    Ok((0..attacks.len())
        .map(|i| {
            if flagged[i].is_some() {
                return Step::Skip;
            }
            let mut g = Vec::new();
            for &(plus, minus) in &probes.rows[i] {
                if probes.eval.bad[plus] || probes.eval.bad[minus] {
                    return Step::Bad;
                }
                g.push(
                    (loss(p, s, &origins[i], &probes.eval, plus)
                        - loss(p, s, &origins[i], &probes.eval, minus))
                        / (2.0 * s.fd_step as f64),
                );
            }
            Step::Grad(g)
        })
        .collect())
}

fn exact_gradients(
    p: &mut Pipeline,
    attacks: &[Attack],
    alpha: &[Vec<f32>],
    flagged: &[Option<String>],
    origins: &[Origin],
    s: &SearchSettings,
) -> Result<Vec<Step>> {
    let dim = p.generator.card.style_dim;
    let active: Vec<usize> = (0..attacks.len())
        .filter(|&i| flagged[i].is_none())
        .collect();
    let mut z = Array2::<f32>::zeros((active.len(), p.generator.card.z_dim));
    let mut edit = Array2::<f32>::zeros((active.len(), dim));
    for (r, &i) in active.iter().enumerate() {
        z.row_mut(r).assign(&attacks[i].z);
        edit.row_mut(r)
            .assign(&edit_of(&attacks[i], &alpha[i], dim));
    }
    let ev = p.evaluate(&z, &edit, false)?;
    let width = ev.rows.ncols();
    let mut row_grad = Array2::<f32>::zeros((active.len(), width));
    let mut clip_grad = p
        .consistency
        .as_ref()
        .map(|t| Array2::<f32>::zeros((active.len(), t.ncols())));
    for (r, &i) in active.iter().enumerate() {
        let row = ev.rows.row(r);
        let g = p
            .target
            .task
            .loss_grad(row.as_slice().unwrap_or(&[]), &origins[i].row);
        for (j, v) in g.into_iter().enumerate() {
            row_grad[[r, j]] = s.cls_weight * v;
        }
        // CE(scale · e·tₖ, c0) → ∂/∂e = scale · Σₖ (softmaxₖ − [k = c0]) tₖ.
        if let (Some(cg), Some(text), Some(logits), Some(c0)) = (
            clip_grad.as_mut(),
            p.consistency.as_ref(),
            ev.clip_logits.as_ref(),
            origins[i].clip_class,
        ) {
            let l = logits.row(r);
            let m = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f32> = l.iter().map(|&v| (v - m).exp()).collect();
            let sum: f32 = e.iter().sum();
            for (k, ek) in e.iter().enumerate() {
                let coeff = (ek / sum - if k == c0 { 1.0 } else { 0.0 })
                    * p.clip.logit_scale
                    * s.clip_weight;
                cg.row_mut(r).scaled_add(coeff, &text.row(k));
            }
        }
    }
    let chain = p
        .exact
        .as_mut()
        .ok_or_else(|| crate::Error::Graph("no gradient graph".into()))?;
    let eg = chain.edit_grad(&z, &edit, &row_grad, clip_grad.as_ref())?;
    let mut out = vec![Step::Skip; attacks.len()];
    for (r, &i) in active.iter().enumerate() {
        out[i] = if ev.bad[r] {
            Step::Bad
        } else {
            Step::Grad(
                attacks[i]
                    .directions
                    .iter()
                    .map(|d| eg.row(r).dot(d) as f64)
                    .collect(),
            )
        };
    }
    Ok(out)
}

/// Compares exact and finite-difference gradients of `attacks` at α = B/4 on every direction;
/// returns the cosine between the two stacked gradient vectors and their relative difference
/// ‖e − f‖ / ‖f‖.
///
/// Not at α = 0: push-away losses (keypoints, segmentation) are smoothed minima there, where a
/// central difference of step h measures the curvature of the smoothing rather than the slope.
pub fn check_exact(p: &mut Pipeline, attacks: &[Attack], s: &SearchSettings) -> Result<(f64, f64)> {
    let n = attacks.len();
    let (origins, flagged, _) = origins_of(p, attacks)?;
    let alpha: Vec<Vec<f32>> = attacks
        .iter()
        .map(|a| vec![0.25 * s.bound; a.directions.len()])
        .collect();
    let exact = exact_gradients(p, attacks, &alpha, &flagged, &origins, s)?;
    let fd = fd_gradients(p, attacks, &alpha, &flagged, &origins, s)?;
    let (mut dot, mut ne, mut nf, mut diff) = (0.0, 0.0, 0.0, 0.0f64);
    for i in 0..n {
        if let (Step::Grad(a), Step::Grad(b)) = (&exact[i], &fd[i]) {
            for (x, y) in a.iter().zip(b) {
                dot += x * y;
                ne += x * x;
                nf += y * y;
                diff += (x - y) * (x - y);
            }
        }
    }
    let cosine = if ne > 0.0 && nf > 0.0 {
        dot / (ne.sqrt() * nf.sqrt())
    } else {
        1.0
    };
    Ok((cosine, (diff / nf.max(1e-30)).sqrt()))
}

type Unedited = (Evaluation, Array2<f32>);

/// Evaluates every attack's unedited image: origins, initial flags, and the evaluation with
/// images plus the stacked latents.
fn origins_of(
    p: &mut Pipeline,
    attacks: &[Attack],
) -> Result<(Vec<Origin>, Vec<Option<String>>, Unedited)> {
    let n = attacks.len();
    let dim = p.generator.card.style_dim;
    let mut z0 = Array2::<f32>::zeros((n, p.generator.card.z_dim));
    for (i, a) in attacks.iter().enumerate() {
        z0.row_mut(i).assign(&a.z);
    }
    let ev0 = p.evaluate(&z0, &Array2::zeros((n, dim)), true)?;
    let flagged = ev0
        .bad
        .iter()
        .map(|&b| b.then(|| "NaN/Inf in the target output of the unedited image".to_string()))
        .collect();
    let origins = (0..n)
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
    Ok((origins, flagged, (ev0, z0)))
}

/// Runs all `attacks` to completion.
pub fn run_attacks(
    p: &mut Pipeline,
    attacks: &[Attack],
    s: &SearchSettings,
) -> Result<Vec<AttackResult>> {
    let dim = p.generator.card.style_dim;
    let n = attacks.len();
    let (origins, mut flagged, (ev0, z0)) = origins_of(p, attacks)?;
    let mut alpha: Vec<Vec<f32>> = attacks
        .iter()
        .map(|a| vec![0.0; a.directions.len()])
        .collect();
    for iteration in 0..s.iterations {
        let grads = gradients(p, attacks, &alpha, &flagged, &origins, s)?;
        for (i, g) in grads.into_iter().enumerate() {
            match g {
                Step::Skip => {}
                Step::Bad => {
                    flagged[i] = Some(format!(
                        "NaN/Inf in the target output at iteration {iteration}"
                    ))
                }
                Step::Grad(g) => {
                    for (a, gk) in alpha[i].iter_mut().zip(g) {
                        *a = (*a - s.step * gk as f32).clamp(-s.bound, s.bound);
                    }
                }
            }
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
