//! `task: {kind: multiclass}` — one of K classes. Score = p(original class); the attack minimises
//! −log(1 − p(original)) ("away from the original class"), or −log p(target) when `target_class`
//! is set ("toward a chosen class").

use super::{check_index, softmax, Activation, Task, P_EPS};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Config of a multi-class task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MulticlassConfig {
    /// Output tensor name (default: the first output).
    #[serde(default)]
    pub output: Option<String>,
    /// `softmax` (logits) or `none` (probabilities).
    #[serde(default)]
    pub activation: Activation,
    /// Class names, in output order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Push toward this class instead of away from the original one.
    #[serde(default)]
    pub target_class: Option<usize>,
}

/// A multi-class task.
#[derive(Debug, Clone)]
pub struct MulticlassTask {
    config: MulticlassConfig,
}

impl MulticlassTask {
    /// Validates the config against the output width.
    pub fn new(config: MulticlassConfig, output: &str, width: usize) -> Result<Self> {
        if width < 2 {
            return Err(Error::config(
                "target.task",
                "kind",
                format!("multiclass needs ≥ 2 values per sample; output `{output}` has {width}"),
            ));
        }
        if config.activation == Activation::Sigmoid {
            return Err(Error::config(
                "target.task",
                "activation",
                "multiclass takes `softmax` or `none`",
            ));
        }
        if !config.labels.is_empty() && config.labels.len() != width {
            return Err(Error::config(
                "target.task",
                "labels",
                format!(
                    "{} labels given but output `{output}` has {width} classes",
                    config.labels.len()
                ),
            ));
        }
        if let Some(t) = config.target_class {
            check_index("target_class", t, width, output)?;
        }
        Ok(MulticlassTask { config })
    }

    fn probs(&self, row: &[f32]) -> Vec<f64> {
        match self.config.activation {
            Activation::None => row.iter().map(|&v| v as f64).collect(),
            _ => softmax(row),
        }
    }
}

impl MulticlassTask {
    /// The decision for one row.
    pub fn decision(&self, row: &[f32]) -> usize {
        let p = self.probs(row);
        (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
    }
}

impl Task for MulticlassTask {
    fn kind(&self) -> &'static str {
        "multiclass"
    }

    fn score_name(&self) -> String {
        "p(original class)".into()
    }

    fn labels(&self) -> Vec<String> {
        self.config.labels.clone()
    }

    fn score(&self, row: &[f32], origin: &[f32]) -> f64 {
        let original = self.decision(origin);
        self.probs(row)[original]
    }

    fn changed(&self, row: &[f32], origin: &[f32]) -> bool {
        self.decision(row) != self.decision(origin)
    }

    fn loss(&self, row: &[f32], origin: &[f32]) -> f64 {
        let original = self.decision(origin);
        let p = self.probs(row);
        match self.config.target_class {
            Some(t) => -p[t].clamp(P_EPS, 1.0).ln(),
            None => -(1.0 - p[original]).clamp(P_EPS, 1.0).ln(),
        }
    }

    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32> {
        let original = self.decision(origin);
        let p = self.probs(row);
        let (k, dl_dpk) = match self.config.target_class {
            Some(t) => (t, -1.0 / p[t].max(P_EPS)),
            None => (original, 1.0 / (1.0 - p[original]).max(P_EPS)),
        };
        match self.config.activation {
            Activation::None => {
                let mut g = vec![0f32; row.len()];
                g[k] = dl_dpk as f32;
                g
            }
            _ => (0..row.len())
                .map(|j| {
                    let dp = if j == k {
                        p[k] * (1.0 - p[k])
                    } else {
                        -p[k] * p[j]
                    };
                    (dl_dpk * dp) as f32
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences_for_away_and_toward() {
        for target_class in [None, Some(2)] {
            let c = MulticlassConfig {
                output: None,
                activation: Activation::Softmax,
                labels: vec![],
                target_class,
            };
            let t = MulticlassTask::new(c, "o", 3).unwrap();
            let row = vec![1.0f32, 0.2, -0.5];
            let orig = row.clone();
            assert_eq!(t.decision(&orig), 0);
            let g = t.loss_grad(&row, &orig);
            for j in 0..3 {
                let h = 1e-3f32;
                let (mut a, mut b) = (row.clone(), row.clone());
                a[j] += h;
                b[j] -= h;
                let fd = (t.loss(&a, &orig) - t.loss(&b, &orig)) / (2.0 * h as f64);
                assert!(
                    (fd - g[j] as f64).abs() < 1e-3,
                    "{target_class:?} j={j}: {fd} vs {}",
                    g[j]
                );
            }
        }
    }

    #[test]
    fn label_count_must_match_the_output() {
        let c = MulticlassConfig {
            output: None,
            activation: Activation::Softmax,
            labels: vec!["a".into(), "b".into()],
            target_class: None,
        };
        let e = MulticlassTask::new(c, "emotion", 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 labels") && e.contains("7 classes"), "{e}");
    }
}
