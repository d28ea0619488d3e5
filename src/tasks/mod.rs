//! What "the model's prediction" means for each kind of target, and how to attack it.
//!
//! A task reads the target's raw output row of an edited image against the row of the same
//! sample unedited (its **origin**) and gives: a **score** (what sensitivity is measured on:
//! the change of the score between origin and counterfactual), whether the prediction
//! **changed** (a flipped decision, or a failure past a threshold), and the **loss** the search
//! minimises, with its gradient with respect to the row (for the exact-gradient path).
//! Adding a task = one file here plus one variant in [`TaskConfig`].

mod binary;
mod multiclass;

pub use binary::BinaryTask;
pub use multiclass::MulticlassTask;

use crate::error::{Error, Result};
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
}

impl TaskConfig {
    /// Builds the task; `width` is the length of one output row, checked against the declaration.
    pub fn build(&self, output: &str, width: usize) -> Result<Box<dyn Task>> {
        Ok(match self {
            TaskConfig::Binary(c) => Box::new(BinaryTask::new(c.clone(), output, width)?),
            TaskConfig::Multiclass(c) => Box::new(MulticlassTask::new(c.clone(), output, width)?),
        })
    }

    /// The output tensor to read (`None` = the model's first output).
    pub fn output(&self) -> Option<&str> {
        match self {
            TaskConfig::Binary(c) => c.output.as_deref(),
            TaskConfig::Multiclass(c) => c.output.as_deref(),
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
