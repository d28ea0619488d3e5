//! What "the model's prediction" means for each kind of target, and how to attack it.
//!
//! A task reads the target's raw output row of an edited image against the row of the same
//! sample unedited (its **origin**) and gives: a **score** (what sensitivity is measured on:
//! the change of the score between origin and counterfactual), whether the prediction
//! **changed** (a flipped decision, or a failure past a threshold), and the **loss** the search
//! minimises, with its gradient with respect to the row (for the exact-gradient path).
//! A task may also draw its own picture on the pair images ([`Task::annotate`]): landmarks,
//! mask overlays. Adding a task = one file here plus one variant in [`TaskConfig`].
//! `docs/tasks.md` says, for each task, what its score, sensitivity and flip/failure mean.

mod binary;
pub mod draw;
mod keypoints;
mod multiclass;
mod multilabel;
mod regression;
mod segmentation;

pub use binary::BinaryTask;
pub use keypoints::{KeypointsConfig, KeypointsTask};
pub use multiclass::MulticlassTask;
pub use multilabel::{MultilabelConfig, MultilabelTask};
pub use regression::{RegressionConfig, RegressionTask};
pub use segmentation::{SegmentationConfig, SegmentationTask};

use crate::error::{Error, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// How raw outputs become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Softmax over the output row (the model outputs logits for K classes).
    #[default]
    Softmax,
    /// Logistic sigmoid of one logit.
    Sigmoid,
    /// The model already outputs probabilities.
    None,
}

/// The `target.task` section, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TaskConfig {
    /// A yes/no decision: score = p(positive).
    Binary(binary::BinaryConfig),
    /// One of K classes: score = p(original class).
    Multiclass(multiclass::MulticlassConfig),
    /// K independent yes/no labels: score = mean |Δp| over the labels of interest.
    Multilabel(MultilabelConfig),
    /// One scalar (e.g. age): score = the prediction.
    Regression(RegressionConfig),
    /// K landmarks (coordinates or heatmaps): score = NME against the unedited landmarks.
    Keypoints(KeypointsConfig),
    /// Per-pixel classes or a mask: score = 1 − IoU against the unedited mask.
    Segmentation(SegmentationConfig),
}

/// The output tensor a task reads, as found in the loaded target.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec<'a> {
    /// Tensor name (for error messages).
    pub name: &'a str,
    /// Per-sample dims, batch dim removed (`[1, 256, 256]` for an `[N, 1, 256, 256]` output).
    pub shape: &'a [usize],
    /// The target's input size `[H, W]`: the frame pixel coordinates refer to.
    pub input_hw: [usize; 2],
}

impl OutputSpec<'_> {
    /// Values per sample (the product of [`OutputSpec::shape`]).
    pub fn width(&self) -> usize {
        self.shape.iter().product()
    }

    /// The full shape for messages, e.g. `[N, 1, 256, 256]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = std::iter::once("N".to_string())
            .chain(self.shape.iter().map(|d| d.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }

    /// A config error about this output: names it and its shape.
    pub(crate) fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::config(
            "target.task",
            key,
            format!(
                "{message} (output `{}` has shape {})",
                self.name,
                self.shape_string()
            ),
        )
    }
}

impl TaskConfig {
    /// Builds the task, checking the declaration against the output's shape.
    pub fn build(&self, out: &OutputSpec) -> Result<Box<dyn Task>> {
        let (name, width) = (out.name, out.width());
        Ok(match self {
            TaskConfig::Binary(c) => Box::new(BinaryTask::new(c.clone(), name, width)?),
            TaskConfig::Multiclass(c) => Box::new(MulticlassTask::new(c.clone(), name, width)?),
            TaskConfig::Multilabel(c) => Box::new(MultilabelTask::new(c.clone(), out)?),
            TaskConfig::Regression(c) => Box::new(RegressionTask::new(c.clone(), out)?),
            TaskConfig::Keypoints(c) => Box::new(KeypointsTask::new(c.clone(), out)?),
            TaskConfig::Segmentation(c) => Box::new(SegmentationTask::new(c.clone(), out)?),
        })
    }

    /// The output tensor to read (`None` = the model's first output).
    pub fn output(&self) -> Option<&str> {
        match self {
            TaskConfig::Binary(c) => c.output.as_deref(),
            TaskConfig::Multiclass(c) => c.output.as_deref(),
            TaskConfig::Multilabel(c) => c.output.as_deref(),
            TaskConfig::Regression(c) => c.output.as_deref(),
            TaskConfig::Keypoints(c) => c.output.as_deref(),
            TaskConfig::Segmentation(c) => c.output.as_deref(),
        }
    }
}

/// A diagnosable task over rows of the target's output.
pub trait Task: Send + Sync {
    /// `binary`, `multiclass`, ...
    fn kind(&self) -> &'static str;
    /// What the score is, for humans (e.g. "p(male)").
    fn score_name(&self) -> String;
    /// Class names, where the task has them.
    fn labels(&self) -> Vec<String>;
    /// The score of `row`, relative to the unedited `origin` row of the same sample.
    fn score(&self, row: &[f32], origin: &[f32]) -> f64;
    /// Whether the prediction changed enough to count (a flip, or a failure).
    fn changed(&self, row: &[f32], origin: &[f32]) -> bool;
    /// Loss to minimise (pushes the prediction away from `origin`).
    fn loss(&self, row: &[f32], origin: &[f32]) -> f64;
    /// ∂loss/∂row.
    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32>;
    /// What [`Task::changed`] is called in reports: `flip` for decisions, `failure` for a
    /// metric past a threshold (keypoints, segmentation).
    fn change_name(&self) -> &'static str {
        "flip"
    }
    /// Draws the task's own picture of `row` on `img`, one panel of a pair image showing the
    /// generator image at any size (landmarks, a mask overlay), and returns a short caption to
    /// print under the panel instead of the score (`None` = print the score). `origin` is the
    /// unedited row; `counterfactual` says which panel this is. Default: nothing drawn.
    fn annotate(
        &self,
        _img: &mut RgbImage,
        _row: &[f32],
        _origin: &[f32],
        _counterfactual: bool,
    ) -> Option<String> {
        None
    }
}

/// Checks a declared class index against the output width.
fn check_index(what: &str, index: usize, width: usize, output: &str) -> Result<()> {
    if index >= width {
        return Err(Error::config(
            "target.task",
            what,
            format!(
                "index {index} is out of range: output `{output}` has {width} values per sample"
            ),
        ));
    }
    Ok(())
}

/// Softmax of a row, computed stably.
pub(crate) fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Probabilities clamped away from 0 and 1 so logs stay finite.
pub(crate) const P_EPS: f64 = 1e-7;

/// `softplus(x) = ln(1 + eˣ)`, computed without overflow.
pub(crate) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A label named in the config by position or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelRef {
    /// Position in the output row.
    Index(usize),
    /// One of the declared `labels`.
    Name(String),
}

impl LabelRef {
    /// Resolves against the declared names `labels` (the config key `labels_key`; may be
    /// empty) and the number of values `count`.
    pub(crate) fn resolve(
        &self,
        key: &str,
        (labels_key, labels): (&str, &[String]),
        count: usize,
        out: &OutputSpec,
    ) -> Result<usize> {
        match self {
            LabelRef::Index(i) if *i < count => Ok(*i),
            LabelRef::Index(i) => Err(out.error(
                key,
                format!("index {i} is out of range: there are {count} values per sample"),
            )),
            LabelRef::Name(n) => labels.iter().position(|l| l == n).ok_or_else(|| {
                out.error(
                    key,
                    if labels.is_empty() {
                        format!("`{n}` is a name, but no `{labels_key}` are declared")
                    } else {
                        format!("`{n}` is not one of the {labels_key} {labels:?}")
                    },
                )
            }),
        }
    }
}

/// Checks a declared probability-like threshold lies in (0, 1).
pub(crate) fn check_unit(key: &str, v: f64) -> Result<()> {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(Error::config(
            "target.task",
            key,
            format!("{v} must be in (0, 1)"),
        ))
    }
}

/// Test helper: compares `loss_grad` with central differences of `loss` on every value of `row`.
#[cfg(test)]
pub(crate) fn assert_grad_matches(t: &dyn Task, row: &[f32], origin: &[f32], h: f32, tol: f64) {
    let g = t.loss_grad(row, origin);
    assert_eq!(g.len(), row.len(), "gradient length");
    for j in 0..row.len() {
        let (mut a, mut b) = (row.to_vec(), row.to_vec());
        a[j] += h;
        b[j] -= h;
        let fd = (t.loss(&a, origin) - t.loss(&b, origin)) / (f64::from(a[j]) - f64::from(b[j]));
        let scale = fd.abs().max(g[j].abs() as f64).max(1.0);
        assert!(
            (fd - g[j] as f64).abs() <= tol * scale,
            "{}: value {j}: finite difference {fd} vs gradient {}",
            t.kind(),
            g[j]
        );
    }
}
