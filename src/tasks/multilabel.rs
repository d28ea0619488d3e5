//! `task: {kind: multilabel}` — K independent yes/no labels (K sigmoid logits, or K
//! probabilities), e.g. face attributes.
//!
//! - **Score**: mean |p − p₀| over the labels of interest, p₀ being the unedited sample's
//!   probabilities (0 for the unedited image).
//! - **Changed** (a flip): any label of interest changes its decision (p > `threshold`).
//! - **Loss**: mean binary cross-entropy toward the *flipped* decisions of the labels of
//!   interest (ZOOM's targeted loss, per label).

use super::{check_unit, sigmoid, Activation, LabelRef, OutputSpec, Task, P_EPS};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Config of a multi-label task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilabelConfig {
    /// Output tensor name (default: the first output).
    #[serde(default)]
    pub output: Option<String>,
    /// `sigmoid` (logits, the default) or `none` (probabilities).
    #[serde(default = "sigmoid_default")]
    pub activation: Activation,
    /// Label names, in output order (optional; K of them).
    #[serde(default)]
    pub labels: Vec<String>,
    /// The labels measured and attacked (names or indices); default: all.
    #[serde(default)]
    pub interest: Vec<LabelRef>,
    /// Decision threshold on each probability.
    #[serde(default = "half")]
    pub threshold: f64,
}

fn sigmoid_default() -> Activation {
    Activation::Sigmoid
}

fn half() -> f64 {
    0.5
}

/// A multi-label task.
#[derive(Debug, Clone)]
pub struct MultilabelTask {
    config: MultilabelConfig,
    /// Indices of the labels of interest.
    interest: Vec<usize>,
}

impl MultilabelTask {
    /// Validates the config against the output's shape.
    pub fn new(config: MultilabelConfig, out: &OutputSpec) -> Result<Self> {
        let k = out.width();
        if config.activation == Activation::Softmax {
            return Err(out.error(
                "activation",
                "multilabel labels are independent: use `sigmoid` (logits) or `none` \
                 (probabilities); for one-of-K classes use `kind: multiclass`",
            ));
        }
        if k == 0 {
            return Err(out.error("kind", "the output is empty"));
        }
        if !config.labels.is_empty() && config.labels.len() != k {
            return Err(out.error(
                "labels",
                format!(
                    "{} labels given but there are {k} values per sample",
                    config.labels.len()
                ),
            ));
        }
        let interest = if config.interest.is_empty() {
            (0..k).collect()
        } else {
            let mut v = config
                .interest
                .iter()
                .map(|r| r.resolve("interest", ("labels", &config.labels), k, out))
                .collect::<Result<Vec<_>>>()?;
            v.sort_unstable();
            v.dedup();
            v
        };
        check_unit("threshold", config.threshold)?;
        Ok(MultilabelTask { config, interest })
    }

    fn p(&self, v: f32) -> f64 {
        let p = match self.config.activation {
            Activation::Sigmoid => sigmoid(f64::from(v)),
            _ => f64::from(v),
        };
        p.clamp(P_EPS, 1.0 - P_EPS)
    }

    fn on(&self, v: f32) -> bool {
        self.p(v) > self.config.threshold
    }

    /// Labels of interest whose decision differs between `row` and `origin`.
    pub fn flips(&self, row: &[f32], origin: &[f32]) -> Vec<usize> {
        self.interest
            .iter()
            .copied()
            .filter(|&i| self.on(row[i]) != self.on(origin[i]))
            .collect()
    }
}

impl Task for MultilabelTask {
    fn kind(&self) -> &'static str {
        "multilabel"
    }

    fn score_name(&self) -> String {
        match self.interest.as_slice() {
            [i] => match self.config.labels.get(*i) {
                Some(l) => format!("|Δp({l})|"),
                None => format!("|Δp(#{i})|"),
            },
            _ => format!("mean |Δp| over {} labels", self.interest.len()),
        }
    }

    fn labels(&self) -> Vec<String> {
        self.config.labels.clone()
    }

    fn score(&self, row: &[f32], origin: &[f32]) -> f64 {
        self.interest
            .iter()
            .map(|&i| (self.p(row[i]) - self.p(origin[i])).abs())
            .sum::<f64>()
            / self.interest.len() as f64
    }

    fn changed(&self, row: &[f32], origin: &[f32]) -> bool {
        !self.flips(row, origin).is_empty()
    }

    fn loss(&self, row: &[f32], origin: &[f32]) -> f64 {
        self.interest
            .iter()
            .map(|&i| {
                let p = self.p(row[i]);
                // Target = the flipped decision.
                if self.on(origin[i]) {
                    -(1.0 - p).ln()
                } else {
                    -p.ln()
                }
            })
            .sum::<f64>()
            / self.interest.len() as f64
    }

    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32> {
        let mut g = vec![0f32; row.len()];
        let n = self.interest.len() as f64;
        for &i in &self.interest {
            let p = self.p(row[i]);
            let target = if self.on(origin[i]) { 0.0 } else { 1.0 };
            let d = match self.config.activation {
                // ∂BCE/∂logit = p − target (0 where p is clamped).
                Activation::Sigmoid => {
                    let raw = sigmoid(f64::from(row[i]));
                    if raw == p {
                        p - target
                    } else {
                        0.0
                    }
                }
                _ => {
                    if f64::from(row[i]) == p {
                        (p - target) / (p * (1.0 - p))
                    } else {
                        0.0
                    }
                }
            };
            g[i] = (d / n) as f32;
        }
        g
    }

    fn annotate(
        &self,
        _img: &mut image::RgbImage,
        row: &[f32],
        origin: &[f32],
        counterfactual: bool,
    ) -> Option<String> {
        let on = self.interest.iter().filter(|&&i| self.on(row[i])).count();
        let n = self.interest.len();
        if !counterfactual {
            return Some(format!("ON {on}/{n}"));
        }
        Some(format!(
            "ON {on}/{n} FLIP {}",
            self.flips(row, origin).len()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::tasks::{assert_grad_matches, TaskConfig};

    fn task(yaml: &str, k: usize) -> Result<MultilabelTask> {
        let c = match serde_yaml::from_str::<TaskConfig>(yaml).unwrap() {
            TaskConfig::Multilabel(c) => c,
            other => panic!("not multilabel: {other:?}"),
        };
        MultilabelTask::new(
            c,
            &OutputSpec {
                name: "attrs",
                shape: &[k],
                input_hw: [64, 64],
            },
        )
    }

    #[test]
    fn score_is_mean_abs_change_over_labels_of_interest() {
        let t = task(
            "{kind: multilabel, activation: none, labels: [smile, glasses, hat], \
             interest: [smile, 2]}",
            3,
        )
        .unwrap();
        let origin = [0.8f32, 0.1, 0.3];
        let row = [0.6f32, 0.9, 0.6];
        // |0.6 − 0.8| and |0.6 − 0.3|; glasses is not of interest.
        assert!((t.score(&row, &origin) - 0.25).abs() < 1e-6);
        assert_eq!(t.flips(&row, &origin), vec![2]);
        assert!(t.changed(&row, &origin));
        assert!(
            !t.changed(&[0.7, 0.9, 0.4], &origin),
            "glasses flipped, but it is not of interest"
        );
        assert_eq!(t.score_name(), "mean |Δp| over 2 labels");
    }

    #[test]
    fn loss_targets_the_flipped_labels_and_matches_finite_differences() {
        let t = task("{kind: multilabel}", 3).unwrap();
        let origin = [2.0f32, -1.0, 0.5];
        let row = [1.0f32, -0.5, 0.2];
        assert_grad_matches(&t, &row, &origin, 1e-3, 1e-4);
        // Moving every label toward its flip lowers the loss.
        assert!(t.loss(&[0.0, 0.5, -0.5], &origin) < t.loss(&row, &origin));
        let t = task("{kind: multilabel, activation: none}", 3).unwrap();
        assert_grad_matches(&t, &[0.7, 0.2, 0.55], &[0.9, 0.3, 0.6], 1e-4, 1e-3);
    }

    #[test]
    fn wrong_declarations_are_clear_errors() {
        let e = task("{kind: multilabel, interest: [5]}", 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("interest") && e.contains("index 5") && e.contains("`attrs`"),
            "{e}"
        );
        let e = task("{kind: multilabel, labels: [a, b]}", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 labels") && e.contains("[N, 3]"), "{e}");
        let e = task("{kind: multilabel, activation: softmax}", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiclass"), "{e}");
    }
}
