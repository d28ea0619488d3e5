//! Exact gradients: one gradient (VJP) graph for the whole chain edit → generator → {target,
//! CLIP image tower}, built by `zoom-graph` in standard ONNX operators and run by the same
//! ONNX Runtime provider as the forward models.
//!
//! Composing first and differentiating once (rather than one VJP graph per network with
//! cotangents passed between them in Rust) keeps the images and every intermediate inside
//! ONNX Runtime, lets the clean-up passes work across network boundaries, and costs one call
//! per batch. The price is a fixed batch size (the graph has static shapes): short batches are
//! padded with zero rows and zero cotangents.

use super::pipeline::padded_rows;
use super::Pipeline;
use crate::error::{Error, Result};
use crate::preprocess::PREP_INPUT;
use crate::runtime::{Model, SessionOptions, Tensor};
use ndarray::{s, Array2, ArrayD, IxDyn};
use std::collections::HashMap;
use std::path::Path;

/// The chain's gradient graph and how to feed it.
#[derive(Debug)]
pub struct ExactChain {
    vjp: Model,
    batch: usize,
    target_out: String,
    target_shape: Vec<usize>,
    clip_out: Option<String>,
    /// Cotangents are multiplied by this before the graph and the gradient divided by it after
    /// (static loss scaling): in float16 the small cotangents deep in the chain would otherwise
    /// flush to zero. A power of two, so the scaling itself is exact.
    cotangent_scale: f32,
}

/// Loss scale for float16 gradient graphs. 2^7 keeps cotangents of order one (what the attack
/// losses produce) far from float16's overflow at 65504 while lifting the smallest ones out of
/// its subnormal range; the start-up check against finite differences catches a model for which
/// this is wrong.
const FP16_COTANGENT_SCALE: f32 = 128.0;

fn compose_err(e: zoom_graph::Error) -> Error {
    Error::Graph(format!(
        "composing generator, target and CLIP for gradients: {e}"
    ))
}

impl ExactChain {
    /// Builds the gradient graph of the pipeline's chain for batches of `batch` images.
    /// An operator without a gradient rule is an error the caller can fall back from.
    pub fn build(p: &Pipeline, batch: usize, options: &SessionOptions) -> Result<ExactChain> {
        let gen = &p.generator;
        let target = crate::models::namespace(p.target.graph.clone(), "target/");
        let mut chain = zoom_graph::compose::append(&gen.graph, &target, &[("image", PREP_INPUT)])
            .map_err(compose_err)?;
        let target_out = p.target.output_name().to_string();
        let mut of = vec![target_out.clone()];
        let clip_out = if p.consistency.is_some() {
            let clip = crate::models::namespace(p.clip.image_graph.clone(), "clip/");
            chain = zoom_graph::compose::append(&chain, &clip, &[("image", PREP_INPUT)])
                .map_err(compose_err)?;
            let name = p.clip.image_output().to_string();
            of.push(name.clone());
            Some(name)
        } else {
            None
        };
        let shapes = HashMap::from([
            ("z".to_string(), vec![batch as i64, gen.card.z_dim as i64]),
            (
                "edit".to_string(),
                vec![batch as i64, gen.card.style_dim as i64],
            ),
        ]);
        let spec = zoom_graph::autodiff::VjpSpec {
            wrt: vec!["edit".into()],
            of,
            shapes,
            tuning: options.gradient_tuning(),
        };
        let (vjp, warnings) = zoom_graph::autodiff::build_vjp(&chain, &spec)
            .map_err(|e| Error::Graph(e.to_string()))?;
        for w in warnings {
            tracing::debug!("gradient graph: {}", w.message);
        }
        let vjp = Model::from_bytes(
            &zoom_graph::io::encode_model(&vjp),
            Path::new("gradient graph (generator+target+clip)"),
            options,
        )?;
        let grad_in = format!("{target_out}_grad");
        let info = vjp
            .inputs()
            .iter()
            .find(|i| i.name == grad_in)
            .ok_or_else(|| Error::Graph(format!("gradient graph has no input `{grad_in}`")))?;
        let target_shape: Vec<usize> = info
            .shape
            .iter()
            .map(|d| d.unwrap_or(1).max(0) as usize)
            .collect();
        let cotangent_scale = if vjp.fp16() {
            FP16_COTANGENT_SCALE
        } else {
            1.0
        };
        Ok(ExactChain {
            vjp,
            batch,
            target_out,
            target_shape,
            clip_out,
            cotangent_scale,
        })
    }

    /// Provider and precision of the gradient graph, as reports show them.
    pub fn placement(&self) -> String {
        self.vjp.placement()
    }

    /// ∂L/∂edit for rows of (z, edit), given ∂L/∂(target output row) and ∂L/∂(CLIP embedding).
    pub fn edit_grad(
        &mut self,
        z: &Array2<f32>,
        edit: &Array2<f32>,
        row_grad: &Array2<f32>,
        clip_grad: Option<&Array2<f32>>,
    ) -> Result<Array2<f32>> {
        let n = z.nrows();
        let mut out = Array2::<f32>::zeros((n, edit.ncols()));
        let b = self.batch;
        let mut start = 0;
        while start < n {
            let end = (start + b).min(n);
            let pad = |a: &Array2<f32>| padded_rows(a, start..end, b);
            let zt = Tensor::F32(pad(z).into_dyn());
            let et = Tensor::F32(pad(edit).into_dyn());
            let scale = self.cotangent_scale;
            let rg = (pad(row_grad) * scale)
                .into_shape_with_order(IxDyn(&self.target_shape))
                .map_err(|e| Error::runtime("shaping the target cotangent", e))?;
            let rg = Tensor::F32(rg);
            let cg = clip_grad.map(|c| Tensor::F32((pad(c) * scale).into_dyn()));
            let grad_name = format!("{}_grad", self.target_out);
            let clip_name = self.clip_out.as_ref().map(|c| format!("{c}_grad"));
            let mut feed: Vec<(&str, &Tensor)> =
                vec![("z", &zt), ("edit", &et), (grad_name.as_str(), &rg)];
            if let (Some(name), Some(t)) = (clip_name.as_deref(), cg.as_ref()) {
                feed.push((name, t));
            }
            let g = self
                .vjp
                .run_one(&feed, "edit_grad")?
                .into_f32("edit_grad")?;
            let g: ArrayD<f32> = g;
            let g = g
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| Error::runtime("reading edit_grad", e))?;
            out.slice_mut(s![start..end, ..])
                .assign(&(&g.slice(s![..end - start, ..]) / scale));
            start = end;
        }
        Ok(out)
    }
}
