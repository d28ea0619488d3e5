//! `task: {kind: binary}` — a yes/no classifier. Score = p(positive); the attack minimises the
//! binary cross-entropy toward the *flipped* label (ZOOM's targeted loss).

use super::{check_index, sigmoid, softmax, Activation, Task, P_EPS};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Config of a binary task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryConfig {
    /// Output tensor name (default: the first output).
    #[serde(default)]
    pub output: Option<String>,
    /// How the output becomes probabilities.
    #[serde(default)]
    pub activation: Activation,
    /// Index of the positive class in the output row (softmax/none), or of the logit (sigmoid).
    #[serde(default)]
    pub positive: usize,
    /// Names of the negative and the positive class.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Decision threshold on p(positive).
    #[serde(default = "half")]
    pub threshold: f64,
}

fn half() -> f64 {
    0.5
}

/// A binary task.
#[derive(Debug, Clone)]
pub struct BinaryTask {
    config: BinaryConfig,
}

impl BinaryTask {
    /// Validates the config against the output width.
    pub fn new(config: BinaryConfig, output: &str, width: usize) -> Result<Self> {
        check_index("positive", config.positive, width, output)?;
        if config.activation == Activation::Softmax && width < 2 {
            return Err(Error::config(
                "target.task",
                "activation",
                format!("softmax needs ≥ 2 values per sample, output `{output}` has {width}; use `sigmoid`"),
            ));
        }
        if !(config.threshold > 0.0 && config.threshold < 1.0) {
            return Err(Error::config(
                "target.task",
                "threshold",
                "must be in (0, 1)",
            ));
        }
        if !(config.labels.is_empty() || config.labels.len() == 2) {
            return Err(Error::config(
                "target.task",
                "labels",
                "a binary task has exactly 2 labels (negative, positive)",
            ));
        }
        Ok(BinaryTask { config })
    }

    fn p(&self, row: &[f32]) -> f64 {
        let i = self.config.positive;
        let p = match self.config.activation {
            Activation::Softmax => softmax(row)[i],
            Activation::Sigmoid => sigmoid(row[i] as f64),
            Activation::None => row[i] as f64,
        };
        p.clamp(P_EPS, 1.0 - P_EPS)
    }
}

impl BinaryTask {
    /// The decision for one row.
    pub fn decision(&self, row: &[f32]) -> usize {
        usize::from(self.p(row) > self.config.threshold)
    }
}

impl Task for BinaryTask {
    fn kind(&self) -> &'static str {
        "binary"
    }

    fn score_name(&self) -> String {
        match self.config.labels.get(1) {
            Some(l) => format!("p({l})"),
            None => "p(positive)".into(),
        }
    }

    fn labels(&self) -> Vec<String> {
        self.config.labels.clone()
    }

    fn score(&self, row: &[f32], _origin: &[f32]) -> f64 {
        self.p(row)
    }

    fn changed(&self, row: &[f32], origin: &[f32]) -> bool {
        self.decision(row) != self.decision(origin)
    }

    fn loss(&self, row: &[f32], origin: &[f32]) -> f64 {
        let original = self.decision(origin);
        let p = self.p(row);
        // Target label is the flipped decision: BCE(p, 1 - original).
        if original == 1 {
            -(1.0 - p).ln()
        } else {
            -p.ln()
        }
    }

    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32> {
        let original = self.decision(origin);
        let p = self.p(row);
        let i = self.config.positive;
        // dL/dp, then chain through the activation.
        let dl_dp = if original == 1 {
            1.0 / (1.0 - p)
        } else {
            -1.0 / p
        };
        let mut g = vec![0f32; row.len()];
        match self.config.activation {
            Activation::Softmax => {
                let s = softmax(row);
                for (j, gj) in g.iter_mut().enumerate() {
                    let dp = if j == i {
                        s[i] * (1.0 - s[i])
                    } else {
                        -s[i] * s[j]
                    };
                    *gj = (dl_dp * dp) as f32;
                }
            }
            Activation::Sigmoid => g[i] = (dl_dp * p * (1.0 - p)) as f32,
            Activation::None => g[i] = dl_dp as f32,
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(activation: Activation) -> BinaryTask {
        let c = BinaryConfig {
            output: None,
            activation,
            positive: 1,
            labels: vec!["female".into(), "male".into()],
            threshold: 0.5,
        };
        BinaryTask::new(c, "out", 2).unwrap()
    }

    #[test]
    fn loss_gradient_matches_finite_differences() {
        for act in [Activation::Softmax, Activation::Sigmoid, Activation::None] {
            let t = task(act);
            let row = if act == Activation::None {
                vec![0.3f32, 0.7]
            } else {
                vec![0.4f32, -0.9]
            };
            // Origins decided negative (0) and positive (1).
            let origins: [Vec<f32>; 2] = if act == Activation::None {
                [vec![0.9, 0.1], vec![0.1, 0.9]]
            } else {
                [vec![2.0, -2.0], vec![-2.0, 2.0]]
            };
            for (original, origin) in origins.iter().enumerate() {
                let origin = origin.as_slice();
                let g = t.loss_grad(&row, origin);
                for j in 0..2 {
                    let h = 1e-3f32;
                    let (mut a, mut b) = (row.clone(), row.clone());
                    a[j] += h;
                    b[j] -= h;
                    let fd = (t.loss(&a, origin) - t.loss(&b, origin)) / (2.0 * h as f64);
                    assert!(
                        (fd - g[j] as f64).abs() < 1e-3,
                        "{act:?} o={original} j={j}: fd {fd} vs {}",
                        g[j]
                    );
                }
            }
        }
    }

    #[test]
    fn loss_falls_as_the_decision_moves_toward_the_flip() {
        let t = task(Activation::Softmax);
        // Original decision: positive (male). Lowering p(male) must lower the loss.
        let origin = [0.0, 1.0];
        assert!(t.loss(&[0.0, 1.0], &origin) > t.loss(&[0.0, 0.0], &origin));
        assert!(t.changed(&[1.0, 0.0], &origin) && !t.changed(&[0.0, 0.5], &origin));
        assert_eq!(t.decision(&[0.0, 1.0]), 1);
        assert_eq!(t.score_name(), "p(male)");
    }

    #[test]
    fn a_positive_index_outside_the_output_is_a_config_error() {
        let c = BinaryConfig {
            output: None,
            activation: Activation::Softmax,
            positive: 2,
            labels: vec![],
            threshold: 0.5,
        };
        let e = BinaryTask::new(c, "probs", 2).unwrap_err().to_string();
        assert!(e.contains("positive") && e.contains("probs"), "{e}");
    }
}
