//! Projection of a text direction onto the edit space through the channel relevances.

use super::relevance::ChannelRelevance;
use super::text::normalize;
use crate::error::{Error, Result};
use ndarray::Array1;
use rand::Rng;
use rand_distr::StandardNormal;

/// A unit direction in edit space and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Direction {
    /// Unit-L2 edit offset per channel.
    pub vector: Array1<f32>,
    /// Channels that survived the β threshold.
    pub channels: usize,
    /// Largest |relevance| over channels (to help choose β).
    pub max_relevance: f32,
}

/// r = relevance · Δt; |r| < β → 0; r / max|r|; × σ_c; normalised to unit L2.
///
/// Scaling by σ (as StyleCLIP does, unlike ZOOM) makes a unit of α move every kept channel in
/// proportion to its natural spread, so one bound B fits all attributes.
pub fn attribute_direction(
    relevance: &ChannelRelevance,
    delta_t: &Array1<f32>,
    beta: f32,
    scale: &[f32],
    name: &str,
) -> Result<Direction> {
    project(
        relevance.matrix.dot(delta_t),
        &relevance.editable,
        beta,
        scale,
        name,
    )
}

/// Thresholds per-channel relevances `r` at β, scales by σ and normalises to a unit direction.
pub fn project(
    r: Array1<f32>,
    editable: &[bool],
    beta: f32,
    scale: &[f32],
    name: &str,
) -> Result<Direction> {
    let max_relevance = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut channels = 0;
    let mut v = Array1::<f32>::zeros(r.len());
    for (c, &rc) in r.iter().enumerate() {
        if editable[c] && rc.abs() >= beta {
            v[c] = rc / max_relevance * scale[c];
            channels += 1;
        }
    }
    if channels == 0 {
        return Err(Error::config(
            "attributes",
            format!("prompts.{name}.beta"),
            format!(
                "no edit channel has |relevance| ≥ β = {beta} for attribute `{name}` (the largest is {max_relevance:.3}); lower its `beta`"
            ),
        ));
    }
    Ok(Direction {
        vector: normalize(v),
        channels,
        max_relevance,
    })
}

/// A random unit direction with the same σ-scaling, over editable channels (the null baseline).
pub fn random_direction(rng: &mut impl Rng, scale: &[f32], editable: &[bool]) -> Array1<f32> {
    let v: Array1<f32> = scale
        .iter()
        .zip(editable)
        .map(|(&s, &e)| {
            if e {
                rng.sample::<f32, _>(StandardNormal) * s
            } else {
                0.0
            }
        })
        .collect();
    normalize(v)
}
