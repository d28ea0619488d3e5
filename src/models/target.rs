//! The model under diagnosis, with its declared preprocessing composed in front of it as ONNX ops.

use super::{find_tensor, load_with_prefix};
use crate::config::TargetConfig;
use crate::error::{Error, Result};
use crate::runtime::{Model, SessionOptions, Tensor};
use crate::tasks::Task;
use ndarray::{Array2, Array4};

/// A loaded target.
pub struct Target {
    model: Model,
    /// The composed graph (preprocessing + model), for gradient graphs.
    pub graph: zoom_graph::ModelProto,
    output: String,
    width: usize,
    /// The task that reads its output.
    pub task: Box<dyn Task>,
    /// `Some(why)` when the model runs one image per call only.
    pub one_image_per_call: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("model", &self.model)
            .field("output", &self.output)
            .finish()
    }
}

/// Output rows of one batch, and which rows were unusable (NaN/Inf).
#[derive(Debug, Clone)]
pub struct Rows {
    /// `[N, width]` raw output rows.
    pub values: Array2<f32>,
    /// `true` where a row holds NaN or Inf.
    pub bad: Vec<bool>,
}

impl Target {
    /// Loads the target for generator images of size `src_hw`, checks the task against the
    /// output's shape.
    pub fn load(
        config: &TargetConfig,
        src_hw: [usize; 2],
        options: &SessionOptions,
    ) -> Result<Target> {
        let path = &config.model;
        let loaded = load_with_prefix(
            path,
            config.input.as_deref(),
            &config.preprocess,
            src_hw,
            options,
        )?;
        let (model, graph) = (loaded.model, loaded.graph);
        let output = match config.task.output() {
            Some(o) => find_tensor(model.outputs(), o, path, "output")?.clone(),
            None => model.outputs()[0].clone(),
        };
        // Per-sample width: the product of the non-batch dims, which must be fixed.
        let dims = &output.shape;
        let width = dims
            .iter()
            .skip(1)
            .try_fold(1usize, |acc, d| d.map(|d| acc * d as usize));
        let width = match (dims.len(), width) {
            (n, Some(w)) if n >= 2 && w > 0 => w,
            _ => {
                return Err(Error::Tensor {
                    model: path.display().to_string(),
                    tensor: output.name.clone(),
                    message: format!(
                    "the task needs an output of shape [N, ...] with fixed non-batch dims, got {}",
                    output.shape_string()
                ),
                })
            }
        };
        let shape: Vec<usize> = dims.iter().skip(1).flatten().map(|&d| d as usize).collect();
        let task = config.task.build(&crate::tasks::OutputSpec {
            name: &output.name,
            shape: &shape,
            input_hw: config.preprocess.size,
        })?;
        Ok(Target {
            model,
            graph,
            output: output.name,
            width,
            task,
            one_image_per_call: loaded.one_image_per_call,
        })
    }

    /// Name of the output the task reads.
    pub fn output_name(&self) -> &str {
        &self.output
    }

    /// Values per sample in that output.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The underlying session.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the target on generator images (RGB in [−1, 1]).
    pub fn rows(&mut self, images: &Array4<f32>) -> Result<Rows> {
        if self.one_image_per_call.is_some() && images.shape()[0] > 1 {
            let parts = images
                .axis_chunks_iter(ndarray::Axis(0), 1)
                .map(|one| self.rows(&one.to_owned()))
                .collect::<Result<Vec<_>>>()?;
            let values: Vec<Array2<f32>> = parts.iter().map(|p| p.values.clone()).collect();
            return Ok(Rows {
                values: super::stack_rows(&values, "target output")?,
                bad: parts.into_iter().flat_map(|p| p.bad).collect(),
            });
        }
        let t = Tensor::F32(images.clone().into_dyn());
        let outs = self.model.run_raw(&[(crate::preprocess::PREP_INPUT, &t)])?;
        let (_, out) = outs
            .into_iter()
            .find(|(n, _)| *n == self.output)
            .ok_or_else(|| {
                Error::runtime("running the target", format!("no output `{}`", self.output))
            })?;
        let out = out.into_f32(&self.output)?;
        let n = images.shape()[0];
        let values = out
            .into_shape_with_order((n, self.width))
            .map_err(|e| Error::runtime(format!("reshaping target output `{}`", self.output), e))?;
        let bad = values
            .rows()
            .into_iter()
            .map(|r| r.iter().any(|v| !v.is_finite()))
            .collect();
        Ok(Rows { values, bad })
    }
}
