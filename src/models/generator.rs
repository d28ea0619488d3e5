//! The generator: `(z [N, Z], edit [N, S]) → image [N, 3, H, W] in [−1, 1]`.

use super::{find_tensor, GeneratorCard};
use crate::error::{Error, Result};
use crate::runtime::{DType, Model, SessionOptions, Tensor};
use ndarray::{Array2, Array4, Ix4};
use std::path::Path;

/// A loaded generator and its card.
#[derive(Debug)]
pub struct Generator {
    model: Model,
    /// The generator's graph, for gradient graphs.
    pub graph: zoom_graph::ModelProto,
    /// Its card.
    pub card: GeneratorCard,
    /// Output image size `[H, W]`.
    pub image_hw: [usize; 2],
    /// `Some(why)` when the model renders one image per call only.
    pub one_image_per_call: Option<String>,
}

impl Generator {
    /// Loads the model and card and checks the I/O contract against the card.
    pub fn load(model: &Path, card: &Path, options: &SessionOptions) -> Result<Generator> {
        let card = GeneratorCard::load(card)?;
        let mut m = Model::load(model, options)?;
        let graph = super::read_proto(model)?;
        let contract = |tensor: &str, message: String| Error::Tensor {
            model: model.display().to_string(),
            tensor: tensor.into(),
            message,
        };
        for (name, dim) in [("z", card.z_dim), ("edit", card.style_dim)] {
            let t = find_tensor(m.inputs(), name, model, "input")?;
            if t.dtype != Some(DType::F32)
                || t.shape.len() != 2
                || t.shape[1].is_some_and(|d| d as usize != dim)
            {
                return Err(contract(
                    name,
                    format!(
                        "expected float32 [N, {dim}] (from the card), got {} {}",
                        t.dtype_name,
                        t.shape_string()
                    ),
                ));
            }
        }
        let image = find_tensor(m.outputs(), "image", model, "output")?;
        let hw = match image.shape.as_slice() {
            [_, Some(3), Some(h), Some(w)] => [*h as usize, *w as usize],
            _ => {
                return Err(contract(
                    "image",
                    format!(
                        "expected [N, 3, H, W] with fixed H, W, got {}",
                        image.shape_string()
                    ),
                ))
            }
        };
        // A generator exported at batch 1 may refuse any other batch (see load_with_prefix).
        let fixed_one = ["z", "edit"].iter().any(|name| {
            m.inputs()
                .iter()
                .any(|t| t.name == *name && t.shape.first() == Some(&Some(1)))
        });
        let one_image_per_call = if fixed_one {
            let z = Tensor::F32(ndarray::ArrayD::zeros(vec![2, card.z_dim]));
            let e = Tensor::F32(ndarray::ArrayD::zeros(vec![2, card.style_dim]));
            m.probe(&[("z", &z), ("edit", &e)]).err().map(|e| {
                format!(
                    "{} declares a batch of 1 and fails on two latents ({e})",
                    model.display()
                )
            })
        } else {
            None
        };
        Ok(Generator {
            model: m,
            graph,
            card,
            image_hw: hw,
            one_image_per_call,
        })
    }

    /// The underlying session (for provider reporting).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Renders images for latents `z` with edit offsets `edit`.
    pub fn render(&mut self, z: &Array2<f32>, edit: &Array2<f32>) -> Result<Array4<f32>> {
        if self.one_image_per_call.is_some() && z.nrows() > 1 {
            let parts = (0..z.nrows())
                .map(|i| {
                    self.render(
                        &z.slice(ndarray::s![i..i + 1, ..]).to_owned(),
                        &edit.slice(ndarray::s![i..i + 1, ..]).to_owned(),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            return super::stack_rows(&parts, "generator output `image`");
        }
        let zt = Tensor::F32(z.clone().into_dyn());
        let et = Tensor::F32(edit.clone().into_dyn());
        let image = self.model.run_one(&[("z", &zt), ("edit", &et)], "image")?;
        image
            .into_f32("image")?
            .into_dimensionality::<Ix4>()
            .map_err(|e| Error::runtime("reading generator output `image`", e))
    }
}
