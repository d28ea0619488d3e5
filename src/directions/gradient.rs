//! Gradient-based channel relevance: the average over probe images of J_cᵀ·Δt, where J_c is the
//! derivative of the CLIP image embedding with respect to edit channel c, scaled by σ_c.
//!
//! It is the infinitesimal version of the global method's ±kσ probes: where the global method
//! asks "how does the embedding move along Δt when channel c swings by ±5σ", this asks "how fast
//! does it move along Δt at the sampled images". One VJP run per probe batch and per prompt
//! replaces 2 × channels forward passes, so it is cheap enough to compute per prompt, but it
//! sees only the local slope (a channel that matters only far from 0 is missed).

use crate::error::{Error, Result};
use crate::preprocess::PREP_INPUT;
use crate::runtime::{Model, SessionOptions, Tensor};
use crate::search::Pipeline;
use ndarray::{Array1, Array2, Axis};
use std::collections::HashMap;
use std::path::Path;

/// The VJP graph of edit → generator → CLIP image embedding, for `probes` images at once.
#[derive(Debug)]
pub struct EmbeddingGradient {
    vjp: Model,
    z: Array2<f32>,
    output: String,
}

impl EmbeddingGradient {
    /// Builds the graph for the probe latents `z` (`[P, Z]`).
    pub fn build(
        p: &Pipeline,
        z: Array2<f32>,
        options: &SessionOptions,
    ) -> Result<EmbeddingGradient> {
        let gen = &p.generator;
        let clip = crate::models::namespace(p.clip.image_graph.clone(), "clip/");
        let chain = zoom_graph::compose::append(&gen.graph, &clip, &[("image", PREP_INPUT)])
            .map_err(|e| Error::Graph(format!("composing generator and CLIP: {e}")))?;
        let output = p.clip.image_output().to_string();
        let shapes = HashMap::from([
            (
                "z".to_string(),
                vec![z.nrows() as i64, gen.card.z_dim as i64],
            ),
            (
                "edit".to_string(),
                vec![z.nrows() as i64, gen.card.style_dim as i64],
            ),
        ]);
        let spec = zoom_graph::autodiff::VjpSpec {
            wrt: vec!["edit".into()],
            of: vec![output.clone()],
            shapes,
            tuning: options.gradient_tuning(),
        };
        let (vjp, _) = zoom_graph::autodiff::build_vjp(&chain, &spec)
            .map_err(|e| Error::Graph(e.to_string()))?;
        let vjp = Model::from_bytes(
            &zoom_graph::io::encode_model(&vjp),
            Path::new("gradient graph (generator+clip)"),
            options,
        )?;
        Ok(EmbeddingGradient { vjp, z, output })
    }

    /// Relevance of every channel to the text direction `delta_t`: mean_p (J_pᵀ Δt)_c · σ_c,
    /// scaled so that the largest |value| is 1.
    pub fn relevance(
        &mut self,
        delta_t: &Array1<f32>,
        scale: &[f32],
        editable: &[bool],
    ) -> Result<Array1<f32>> {
        let p = self.z.nrows();
        let s = scale.len();
        let cot = Array2::from_shape_fn((p, delta_t.len()), |(_, j)| delta_t[j]);
        let z = Tensor::F32(self.z.clone().into_dyn());
        let edit = Tensor::F32(Array2::<f32>::zeros((p, s)).into_dyn());
        let cot = Tensor::F32(cot.into_dyn());
        let name = format!("{}_grad", self.output);
        let g = self
            .vjp
            .run_one(
                &[("z", &z), ("edit", &edit), (name.as_str(), &cot)],
                "edit_grad",
            )?
            .into_f32("edit_grad")?
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| Error::runtime("reading edit_grad", e))?;
        let mean = g.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(s));
        let mut r: Array1<f32> = mean
            .iter()
            .zip(scale)
            .zip(editable)
            .map(|((g, s), e)| if *e { g * s } else { 0.0 })
            .collect();
        let max = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            r /= max;
        }
        Ok(r)
    }
}
