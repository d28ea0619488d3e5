//! `task: {kind: regression}` — one scalar prediction (e.g. an age), optionally rescaled
//! (`value = raw · scale + offset`).
//!
//! - **Score**: the prediction itself; the sensitivity is the mean |Δ prediction| in its units.
//! - **Changed** (a *shift*): |Δ| ≥ `margin`.
//! - **Loss**: −2·tanh(u / 2), where u is the push in margins: Δ/margin (`direction: up`),
//!   −Δ/margin (`down`) or |Δ|/margin smoothed at 0 (`away`, either way; a 5 % push up breaks
//!   the tie at Δ = 0, where |Δ| is flat). Linear near 0,
//!   saturating past about two margins, so a counterfactual is pushed past the margin without
//!   running off to absurd values.

use super::{OutputSpec, Task};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which way the attack pushes the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Either way, whichever the edit reaches.
    #[default]
    Away,
    /// Higher values.
    Up,
    /// Lower values.
    Down,
}

/// Config of a regression task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionConfig {
    /// Output tensor name (default: the first output).
    #[serde(default)]
    pub output: Option<String>,
    /// Which value of the output row (default 0).
    #[serde(default)]
    pub index: usize,
    /// What the value is, for humans (e.g. `age`).
    #[serde(default)]
    pub name: Option<String>,
    /// `value = raw · scale + offset` (e.g. a model that outputs age / 100: scale 100).
    #[serde(default = "one")]
    pub scale: f64,
    /// See `scale`.
    #[serde(default)]
    pub offset: f64,
    /// The change, in value units, that counts (and that the attack aims for).
    pub margin: f64,
    /// `away` (default), `up` or `down`.
    #[serde(default)]
    pub direction: Direction,
}

fn one() -> f64 {
    1.0
}

/// Smoothing of |Δ| at 0 for `away`, in margins.
const SMOOTH: f64 = 1e-3;
/// `away` only: weight of a small push up, in margins. |Δ| is flat at Δ = 0, so an exact
/// gradient there is 0 and the search would never leave α = 0; this breaks the tie.
const TIE_BREAK: f64 = 0.05;

/// A regression task.
#[derive(Debug, Clone)]
pub struct RegressionTask {
    config: RegressionConfig,
}

impl RegressionTask {
    /// Validates the config against the output's shape.
    pub fn new(config: RegressionConfig, out: &OutputSpec) -> Result<Self> {
        let width = out.width();
        if config.index >= width {
            return Err(out.error(
                "index",
                format!(
                    "index {} is out of range: there are {width} values per sample",
                    config.index
                ),
            ));
        }
        if !(config.margin > 0.0 && config.margin.is_finite()) {
            return Err(Error::config(
                "target.task",
                "margin",
                format!("{} must be a positive change in value units", config.margin),
            ));
        }
        if !(config.scale.is_finite() && config.scale != 0.0 && config.offset.is_finite()) {
            return Err(Error::config(
                "target.task",
                "scale",
                "scale must be finite and non-zero, offset finite",
            ));
        }
        Ok(RegressionTask { config })
    }

    /// The prediction of a row, in value units.
    pub fn value(&self, row: &[f32]) -> f64 {
        f64::from(row[self.config.index]) * self.config.scale + self.config.offset
    }

    /// The push u (in margins) and du/dΔ.
    fn push(&self, delta: f64) -> (f64, f64) {
        let m = self.config.margin;
        match self.config.direction {
            Direction::Up => (delta / m, 1.0 / m),
            Direction::Down => (-delta / m, -1.0 / m),
            Direction::Away => {
                let r = ((delta / m).powi(2) + SMOOTH * SMOOTH).sqrt();
                (
                    r - SMOOTH + TIE_BREAK * delta / m,
                    delta / (m * m * r) + TIE_BREAK / m,
                )
            }
        }
    }
}

impl Task for RegressionTask {
    fn kind(&self) -> &'static str {
        "regression"
    }

    fn score_name(&self) -> String {
        self.config
            .name
            .clone()
            .unwrap_or_else(|| "prediction".into())
    }

    fn labels(&self) -> Vec<String> {
        Vec::new()
    }

    fn score(&self, row: &[f32], _origin: &[f32]) -> f64 {
        self.value(row)
    }

    fn changed(&self, row: &[f32], origin: &[f32]) -> bool {
        (self.value(row) - self.value(origin)).abs() >= self.config.margin
    }

    fn loss(&self, row: &[f32], origin: &[f32]) -> f64 {
        let (u, _) = self.push(self.value(row) - self.value(origin));
        -2.0 * (u / 2.0).tanh()
    }

    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32> {
        let (u, du) = self.push(self.value(row) - self.value(origin));
        let t = (u / 2.0).tanh();
        let mut g = vec![0f32; row.len()];
        g[self.config.index] = (-(1.0 - t * t) * du * self.config.scale) as f32;
        g
    }

    fn change_name(&self) -> &'static str {
        "shift"
    }

    fn annotate(
        &self,
        _img: &mut image::RgbImage,
        row: &[f32],
        _origin: &[f32],
        _counterfactual: bool,
    ) -> Option<String> {
        let v = crate::report::fmt_num(self.value(row), 3);
        Some(match &self.config.name {
            Some(n) => format!("{} {v}", n.to_uppercase()),
            None => v,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::tasks::{assert_grad_matches, TaskConfig};

    fn task(yaml: &str, width: usize) -> Result<RegressionTask> {
        let c = match serde_yaml::from_str::<TaskConfig>(yaml).unwrap() {
            TaskConfig::Regression(c) => c,
            other => panic!("not regression: {other:?}"),
        };
        RegressionTask::new(
            c,
            &OutputSpec {
                name: "age",
                shape: &[width],
                input_hw: [64, 64],
            },
        )
    }

    #[test]
    fn score_change_and_margin() {
        let t = task("{kind: regression, name: age, scale: 100, margin: 5}", 1).unwrap();
        let origin = [0.30f32];
        assert!((t.score(&origin, &origin) - 30.0).abs() < 1e-5);
        assert!(!t.changed(&[0.34], &origin));
        assert!(t.changed(&[0.36], &origin) && t.changed(&[0.24], &origin));
        assert_eq!(t.score_name(), "age");
    }

    #[test]
    fn loss_pushes_the_declared_way_and_matches_finite_differences() {
        for (dir, up_better) in [("up", Some(true)), ("down", Some(false)), ("away", None)] {
            let t = task(
                &format!("{{kind: regression, index: 1, margin: 4, direction: {dir}}}"),
                2,
            )
            .unwrap();
            let origin = [0.0f32, 30.0];
            let (up, down) = ([0.0f32, 33.0], [0.0f32, 27.0]);
            match up_better {
                Some(true) => assert!(t.loss(&up, &origin) < t.loss(&down, &origin)),
                Some(false) => assert!(t.loss(&down, &origin) < t.loss(&up, &origin)),
                None => {
                    // Either way is good, up very slightly better (the tie-break).
                    assert!(t.loss(&down, &origin) < t.loss(&origin, &origin));
                    assert!(t.loss(&up, &origin) < t.loss(&down, &origin));
                    assert!(t.loss(&down, &origin) - t.loss(&up, &origin) < 0.1);
                    assert!(t.loss_grad(&origin, &origin)[1] < 0.0, "not flat at Δ = 0");
                }
            }
            for row in [up, down, [0.0, 31.0], [0.0, 45.0]] {
                assert_grad_matches(&t, &row, &origin, 1e-2, 1e-4);
            }
            // Saturates: far past the margin earns little more.
            let far = t.loss(&[0.0, 60.0], &origin) - t.loss(&[0.0, 70.0], &origin);
            let near = t.loss(&[0.0, 30.0], &origin) - t.loss(&[0.0, 40.0], &origin);
            if dir != "down" {
                assert!(far.abs() < 0.1 * near.abs(), "{dir}: {far} vs {near}");
            }
        }
    }

    #[test]
    fn wrong_declarations_are_clear_errors() {
        let e = task("{kind: regression, index: 3, margin: 1}", 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index 3") && e.contains("`age`") && e.contains("[N, 2]"),
            "{e}"
        );
        let e = task("{kind: regression, margin: 0}", 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("margin"), "{e}");
        assert!(
            serde_yaml::from_str::<TaskConfig>("{kind: regression}").is_err(),
            "margin is required"
        );
    }
}
