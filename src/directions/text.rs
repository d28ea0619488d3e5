//! Text directions in CLIP space, with prompt ensembling over templates.

use crate::error::Result;
use crate::models::TextEncoder;
use ndarray::{Array1, Axis};

/// Templates used when the config gives none (a short, face-neutral subset of CLIP's ImageNet
/// templates; `{}` is the prompt).
pub const DEFAULT_TEMPLATES: &[&str] = &[
    "{}",
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a close-up photo of {}.",
    "a cropped photo of {}.",
];

fn fill(templates: &[String], prompt: &str) -> Vec<String> {
    templates.iter().map(|t| t.replace("{}", prompt)).collect()
}

/// The template-averaged, normalised embedding of one prompt.
pub fn prompt_embedding(
    text: &mut TextEncoder,
    templates: &[String],
    prompt: &str,
) -> Result<Array1<f32>> {
    let emb = text.encode(&fill(templates, prompt))?;
    let mean = emb
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(emb.ncols()));
    Ok(normalize(mean))
}

/// Δt = normalise(t(prompt) − t(neutral)): positive α moves toward the prompt.
pub fn text_direction(
    text: &mut TextEncoder,
    templates: &[String],
    neutral: &str,
    prompt: &str,
) -> Result<Array1<f32>> {
    let t = prompt_embedding(text, templates, prompt)?;
    let n = prompt_embedding(text, templates, neutral)?;
    Ok(normalize(t - n))
}

/// Scales to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: Array1<f32>) -> Array1<f32> {
    let n = v.dot(&v).sqrt();
    if n > 0.0 {
        v / n
    } else {
        v
    }
}
