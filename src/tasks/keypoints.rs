//! `task: {kind: keypoints}` — K landmarks, read as coordinates (`[N, K, 2]`, `[N, 2, K]` or flat
//! `[N, 2K]`, normalised to [0, 1] or in input pixels) or as heatmaps (`[N, K, h, w]`).
//!
//! - **Score**: the normalised mean error (NME) of the landmarks against the unedited prediction
//!   of the same sample: mean over landmarks of the displacement, divided by a declared
//!   normaliser (the distance between two landmarks of the unedited prediction, e.g. the eyes:
//!   inter-ocular NME; or the image side). 0 for the unedited image.
//! - **Changed** (a *failure*, the keypoint analogue of a flip): NME > `threshold`.
//! - **Loss**: −NME, smoothed at 0 (Charbonnier: √(e² + ε²) − ε per landmark) so finite
//!   differences and gradients stay defined; minimising it pushes the landmarks away from the
//!   unedited prediction. A small linear term ([`TIE_BREAK`]) breaks the tie at the unedited
//!   prediction, where any push-away loss has a zero gradient. Heatmaps are decoded for the loss with a differentiable soft-argmax
//!   (softmax over the map at a temperature relative to the unedited map's range), and for the
//!   score and the pictures with the usual argmax plus a quarter-cell shift toward the higher
//!   neighbour.
//!
//! Positions are compared in pixels of the target's input frame, so a non-square input keeps
//! its aspect ratio.

use super::draw::{self, COUNTERFACTUAL, ORIGINAL};
use super::{LabelRef, OutputSpec, Task};
use crate::error::{Error, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// How the output encodes landmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeypointFormat {
    /// Two numbers per landmark.
    #[default]
    Coordinates,
    /// One `h × w` map per landmark; the peak is the landmark.
    Heatmaps,
}

/// Order of the coordinates in the output row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CoordLayout {
    /// `x1, y1, x2, y2, …` (what an `[N, K, 2]` output holds).
    #[default]
    #[serde(rename = "xyxy")]
    Interleaved,
    /// `x1, …, xK, y1, …, yK` (an `[N, 2, K]` output; MTCNN's landmarks).
    #[serde(rename = "xxyy")]
    Planar,
}

/// Unit of the coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    /// Fractions of the input image: 0 = left/top edge, 1 = right/bottom edge.
    #[default]
    Normalized,
    /// Pixels of the target's input (`target.preprocess.size`).
    Pixels,
}

/// Config of a keypoints task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypointsConfig {
    /// Output tensor name (default: the first output).
    #[serde(default)]
    pub output: Option<String>,
    /// `coordinates` or `heatmaps`.
    #[serde(default)]
    pub format: KeypointFormat,
    /// Coordinates only: `xyxy` (interleaved) or `xxyy` (all x, then all y).
    #[serde(default)]
    pub layout: CoordLayout,
    /// Coordinates only: `normalized` ([0, 1]) or `pixels` (of the target input).
    #[serde(default)]
    pub units: Units,
    /// Coordinates only: each pair is stored as (y, x) (models fed transposed images that also
    /// answer in the transposed frame).
    #[serde(default)]
    pub swap_xy: bool,
    /// Number of landmarks K, checked against the output (default: inferred from it).
    #[serde(default)]
    pub count: Option<usize>,
    /// Landmark names, in output order (optional; K of them).
    #[serde(default)]
    pub names: Vec<String>,
    /// Two landmarks (names or indices) whose distance in the unedited prediction normalises the
    /// NME, e.g. the eyes (inter-ocular NME). Absent: the image side √(W·H).
    #[serde(default)]
    pub normalizer: Option<[LabelRef; 2]>,
    /// Failure threshold on NME.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Heatmaps only: soft-argmax temperature, as a fraction of the unedited map's value range
    /// (max − min) for that landmark. Small = close to the argmax.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

fn default_threshold() -> f64 {
    0.1
}

fn default_temperature() -> f64 {
    0.05
}

/// Smoothing of the per-landmark error at 0 in the loss, in NME units.
const SMOOTH: f64 = 1e-3;
/// Weight of the tie-breaking push (all landmarks right and down, in NME units). Any push-away
/// loss is flat at the unedited prediction: an exact gradient there is 0 and the search would
/// never leave α = 0. This small linear term breaks the tie; once landmarks move, the NME term
/// dominates (the loss stays ≤ −(1 − TIE_BREAK)·NME + SMOOTH).
pub(crate) const TIE_BREAK: f64 = 0.05;
/// Smallest normaliser, as a fraction of the image side (landmarks predicted on top of each
/// other must not blow the NME up).
const MIN_NORMALIZER: f64 = 0.01;

/// A keypoints task.
#[derive(Debug, Clone)]
pub struct KeypointsTask {
    config: KeypointsConfig,
    /// Landmarks K.
    k: usize,
    /// Input frame `[W, H]` in pixels.
    frame: [f64; 2],
    /// Heatmap size `[h, w]` (heatmaps only).
    heat: Option<[usize; 2]>,
    /// Normaliser landmarks.
    norm: Option<[usize; 2]>,
}

/// A landmark position in input-frame pixels.
type Point = [f64; 2];

impl KeypointsTask {
    /// Validates the config against the output's shape.
    pub fn new(config: KeypointsConfig, out: &OutputSpec) -> Result<Self> {
        let (k, heat) = match config.format {
            KeypointFormat::Coordinates => (coordinate_count(&config, out)?, None),
            KeypointFormat::Heatmaps => {
                let &[k, h, w] = out.shape else {
                    return Err(
                        out.error("format", "heatmaps must be an output of shape [N, K, h, w]")
                    );
                };
                if h < 2 || w < 2 || k == 0 {
                    return Err(
                        out.error("format", "heatmaps need K ≥ 1 maps of at least 2×2 cells")
                    );
                }
                (k, Some([h, w]))
            }
        };
        if let Some(c) = config.count {
            if c != k {
                return Err(out.error(
                    "count",
                    format!("{c} landmarks declared but the output holds {k}"),
                ));
            }
        }
        if !config.names.is_empty() && config.names.len() != k {
            return Err(out.error(
                "names",
                format!("{} names given for {k} landmarks", config.names.len()),
            ));
        }
        let norm = match &config.normalizer {
            None => None,
            Some([a, b]) => {
                let a = a.resolve("normalizer", ("names", &config.names), k, out)?;
                let b = b.resolve("normalizer", ("names", &config.names), k, out)?;
                if a == b {
                    return Err(out.error("normalizer", "the two normaliser landmarks must differ"));
                }
                Some([a, b])
            }
        };
        if !(config.threshold > 0.0 && config.threshold.is_finite()) {
            return Err(Error::config(
                "target.task",
                "threshold",
                format!("{} must be a positive NME", config.threshold),
            ));
        }
        if !(config.temperature > 0.0 && config.temperature.is_finite()) {
            return Err(Error::config(
                "target.task",
                "temperature",
                format!("{} must be positive", config.temperature),
            ));
        }
        let [h, w] = out.input_hw;
        Ok(KeypointsTask {
            config,
            k,
            frame: [w.max(1) as f64, h.max(1) as f64],
            heat,
            norm,
        })
    }

    /// Number of landmarks.
    pub fn count(&self) -> usize {
        self.k
    }

    /// Row indices of landmark `i`'s x and y values, and their scale to frame pixels.
    fn coord_index(&self, i: usize) -> ([usize; 2], [f64; 2]) {
        let (a, b) = match self.config.layout {
            CoordLayout::Interleaved => (2 * i, 2 * i + 1),
            CoordLayout::Planar => (i, self.k + i),
        };
        let idx = if self.config.swap_xy { [b, a] } else { [a, b] };
        let scale = match self.config.units {
            Units::Normalized => self.frame,
            Units::Pixels => [1.0, 1.0],
        };
        (idx, scale)
    }

    /// Centre of heatmap cell `(col, row)` in frame pixels.
    fn cell_centre(&self, hw: [usize; 2], col: f64, row: f64) -> Point {
        [
            (col + 0.5) * self.frame[0] / hw[1] as f64,
            (row + 0.5) * self.frame[1] / hw[0] as f64,
        ]
    }

    /// The landmarks as reported (argmax for heatmaps), in frame pixels.
    pub fn points(&self, row: &[f32]) -> Vec<Point> {
        match self.heat {
            None => (0..self.k)
                .map(|i| {
                    let ([ix, iy], [sx, sy]) = self.coord_index(i);
                    [f64::from(row[ix]) * sx, f64::from(row[iy]) * sy]
                })
                .collect(),
            Some(hw) => {
                let [h, w] = hw;
                (0..self.k)
                    .map(|i| {
                        let m = &row[i * h * w..(i + 1) * h * w];
                        let best = (0..m.len()).fold(0, |b, j| if m[j] > m[b] { j } else { b });
                        let (r, c) = (best / w, best % w);
                        // The usual quarter-cell shift toward the higher neighbour.
                        let shift = |lo: f32, hi: f32| match hi.partial_cmp(&lo) {
                            Some(std::cmp::Ordering::Greater) => 0.25,
                            Some(std::cmp::Ordering::Less) => -0.25,
                            _ => 0.0,
                        };
                        let dx = if c > 0 && c + 1 < w {
                            shift(m[best - 1], m[best + 1])
                        } else {
                            0.0
                        };
                        let dy = if r > 0 && r + 1 < h {
                            shift(m[best - w], m[best + w])
                        } else {
                            0.0
                        };
                        self.cell_centre(hw, c as f64 + dx, r as f64 + dy)
                    })
                    .collect()
            }
        }
    }

    /// The NME normaliser of a sample, from its unedited landmarks.
    fn normalizer(&self, origin: &[Point]) -> f64 {
        let side = (self.frame[0] * self.frame[1]).sqrt();
        match self.norm {
            None => side,
            Some([a, b]) => dist(origin[a], origin[b]).max(MIN_NORMALIZER * side),
        }
    }

    /// NME of `row` against `origin` (argmax decoding).
    pub fn nme(&self, row: &[f32], origin: &[f32]) -> f64 {
        let (p, o) = (self.points(row), self.points(origin));
        let d = self.normalizer(&o);
        p.iter().zip(&o).map(|(a, b)| dist(*a, *b)).sum::<f64>() / (self.k as f64 * d)
    }

    /// Soft-argmax of landmark `i` of a heatmap row: the position, the softmax weights and the
    /// inverse temperature (from the unedited map).
    fn soft_argmax(&self, hw: [usize; 2], row: &[f32], origin: &[f32], i: usize) -> SoftPoint {
        let [h, w] = hw;
        let span = i * h * w..(i + 1) * h * w;
        let (lo, hi) = origin[span.clone()]
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, u), &v| {
                (l.min(v), u.max(v))
            });
        let range = f64::from(hi - lo);
        let inv_t = 1.0 / (self.config.temperature * range.max(1e-6));
        let m = &row[span];
        let top = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut weights: Vec<f64> = m
            .iter()
            .map(|&v| ((f64::from(v) - f64::from(top)) * inv_t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut at = [0.0; 2];
        for (j, s) in weights.iter_mut().enumerate() {
            *s /= total;
            let c = self.cell_centre(hw, (j % w) as f64, (j / w) as f64);
            at[0] += *s * c[0];
            at[1] += *s * c[1];
        }
        SoftPoint { at, weights, inv_t }
    }

    /// The loss's view of the landmarks of `row` (soft-argmax for heatmaps) with, for heatmaps,
    /// what the chain rule needs.
    fn loss_points(&self, row: &[f32], origin: &[f32]) -> Vec<SoftPoint> {
        match self.heat {
            None => self
                .points(row)
                .into_iter()
                .map(|at| SoftPoint {
                    at,
                    weights: vec![],
                    inv_t: 0.0,
                })
                .collect(),
            Some(hw) => (0..self.k)
                .map(|i| self.soft_argmax(hw, row, origin, i))
                .collect(),
        }
    }

    /// −(smoothed NME) and its gradient with respect to each loss point.
    fn loss_and_point_grads(
        &self,
        row: &[f32],
        origin: &[f32],
    ) -> (f64, Vec<SoftPoint>, Vec<Point>) {
        let d = self.normalizer(&self.points(origin));
        let p = self.loss_points(row, origin);
        let o = self.loss_points(origin, origin);
        let kf = self.k as f64;
        let mut loss = 0.0;
        let mut grads = Vec::with_capacity(self.k);
        let tie = TIE_BREAK / (std::f64::consts::SQRT_2 * kf);
        for (a, b) in p.iter().zip(&o) {
            let e = [(a.at[0] - b.at[0]) / d, (a.at[1] - b.at[1]) / d];
            let r = (e[0] * e[0] + e[1] * e[1] + SMOOTH * SMOOTH).sqrt();
            loss -= (r - SMOOTH) / kf + tie * (e[0] + e[1]);
            grads.push([
                -e[0] / (r * d * kf) - tie / d,
                -e[1] / (r * d * kf) - tie / d,
            ]);
        }
        (loss, p, grads)
    }
}

/// A decoded landmark and, for heatmaps, its softmax weights and inverse temperature.
struct SoftPoint {
    at: Point,
    weights: Vec<f64>,
    inv_t: f64,
}

fn dist(a: Point, b: Point) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// K for a coordinates output, after checking its shape can be read as K×2 in the declared
/// layout.
fn coordinate_count(config: &KeypointsConfig, out: &OutputSpec) -> Result<usize> {
    let width = out.width();
    if width == 0 || !width.is_multiple_of(2) {
        return Err(out.error(
            "format",
            format!(
                "keypoint coordinates need 2 values per landmark, but {width} values per sample \
                 cannot be reshaped to K×2 (heatmaps? set `format: heatmaps`)"
            ),
        ));
    }
    let k = width / 2;
    // Dims of size 1 carry no layout; what is left must be [2K], [K, 2] or [2, K].
    let dims: Vec<usize> = out.shape.iter().copied().filter(|&d| d != 1).collect();
    match (dims.as_slice(), config.layout) {
        ([_], _) | ([2, 2], _) => {}
        ([_, 2], CoordLayout::Interleaved) | ([2, _], CoordLayout::Planar) => {}
        ([_, 2], CoordLayout::Planar) => {
            return Err(out.error(
                "layout",
                "a [N, K, 2] output holds x, y pairs: declare `layout: xyxy`",
            ))
        }
        ([2, _], CoordLayout::Interleaved) => {
            return Err(out.error(
                "layout",
                "a [N, 2, K] output holds all x then all y: declare `layout: xxyy`",
            ))
        }
        _ => {
            return Err(out.error(
                "format",
                "keypoint coordinates must be [N, K, 2], [N, 2, K] or [N, 2K]; this shape cannot \
                 be read as K×2 (heatmaps? set `format: heatmaps`)",
            ))
        }
    }
    Ok(k)
}

impl Task for KeypointsTask {
    fn kind(&self) -> &'static str {
        "keypoints"
    }

    fn score_name(&self) -> String {
        match self.norm {
            Some([a, b]) => {
                let name = |i: usize| {
                    self.config
                        .names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("#{i}"))
                };
                format!("NME vs unedited (÷ {}–{} distance)", name(a), name(b))
            }
            None => "NME vs unedited (÷ image side)".into(),
        }
    }

    fn labels(&self) -> Vec<String> {
        self.config.names.clone()
    }

    fn score(&self, row: &[f32], origin: &[f32]) -> f64 {
        self.nme(row, origin)
    }

    fn changed(&self, row: &[f32], origin: &[f32]) -> bool {
        self.nme(row, origin) > self.config.threshold
    }

    fn loss(&self, row: &[f32], origin: &[f32]) -> f64 {
        self.loss_and_point_grads(row, origin).0
    }

    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32> {
        let (_, points, grads) = self.loss_and_point_grads(row, origin);
        let mut g = vec![0f32; row.len()];
        match self.heat {
            None => {
                for (i, gp) in grads.iter().enumerate() {
                    let ([ix, iy], [sx, sy]) = self.coord_index(i);
                    g[ix] += (gp[0] * sx) as f32;
                    g[iy] += (gp[1] * sy) as f32;
                }
            }
            Some(hw) => {
                // ∂(Σ s_j c_j)/∂m_j = s_j (c_j − ĉ) / T.
                let [h, w] = hw;
                for (i, (p, gp)) in points.iter().zip(&grads).enumerate() {
                    for (j, s) in p.weights.iter().enumerate() {
                        let c = self.cell_centre(hw, (j % w) as f64, (j / w) as f64);
                        let dot = gp[0] * (c[0] - p.at[0]) + gp[1] * (c[1] - p.at[1]);
                        g[i * h * w + j] = (p.inv_t * s * dot) as f32;
                    }
                }
            }
        }
        g
    }

    fn change_name(&self) -> &'static str {
        "failure"
    }

    fn annotate(
        &self,
        img: &mut RgbImage,
        row: &[f32],
        origin: &[f32],
        counterfactual: bool,
    ) -> Option<String> {
        let frac = |p: Point| (p[0] / self.frame[0], p[1] / self.frame[1]);
        let r = draw::marker_radius(img);
        let o = self.points(origin);
        if !counterfactual {
            for p in &o {
                let (x, y) = frac(*p);
                draw::dot(img, x, y, r, ORIGINAL);
            }
            return Some("NME 0".into());
        }
        let p = self.points(row);
        for (a, b) in o.iter().zip(&p) {
            let (fa, fb) = (frac(*a), frac(*b));
            draw::ring(img, fa.0, fa.1, r + 1, ORIGINAL);
            draw::line(img, fa, fb, COUNTERFACTUAL);
        }
        for b in &p {
            let (x, y) = frac(*b);
            draw::dot(img, x, y, r, COUNTERFACTUAL);
        }
        Some(format!(
            "NME {}",
            crate::report::fmt_num(self.nme(row, origin), 3)
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::tasks::{assert_grad_matches, TaskConfig};

    fn spec<'a>(shape: &'a [usize]) -> OutputSpec<'a> {
        OutputSpec {
            name: "landmarks",
            shape,
            input_hw: [100, 100],
        }
    }

    fn config(yaml: &str) -> KeypointsConfig {
        match serde_yaml::from_str::<TaskConfig>(yaml).unwrap() {
            TaskConfig::Keypoints(c) => c,
            other => panic!("not keypoints: {other:?}"),
        }
    }

    fn mtcnn_like() -> KeypointsTask {
        let c = config(
            "{kind: keypoints, layout: xxyy, names: [left_eye, right_eye, nose, mouth_left, \
             mouth_right], normalizer: [left_eye, right_eye], threshold: 0.1}",
        );
        KeypointsTask::new(c, &spec(&[10])).unwrap()
    }

    /// Five landmarks, eyes 0.4 apart (40 px in a 100 px frame), in xxyy order.
    fn face() -> Vec<f32> {
        vec![0.3, 0.7, 0.5, 0.35, 0.65, 0.4, 0.4, 0.55, 0.7, 0.7]
    }

    #[test]
    fn a_known_displacement_gives_the_known_nme() {
        let t = mtcnn_like();
        let origin = face();
        assert_eq!(t.nme(&origin, &origin), 0.0);
        // Move the nose 8 px right and 6 px down (10 px) and one mouth corner 4 px up:
        // NME = (10 + 4) / 5 / 40 = 0.07.
        let mut row = origin.clone();
        row[2] += 0.08;
        row[7] += 0.06;
        row[9] -= 0.04;
        assert!(
            (t.nme(&row, &origin) - 0.07).abs() < 1e-6,
            "{}",
            t.nme(&row, &origin)
        );
        assert!(!t.changed(&row, &origin));
        // Shift everything by 5 px right: NME = 5 / 40 = 0.125 > 0.1, a failure.
        let shifted: Vec<f32> = origin
            .iter()
            .enumerate()
            .map(|(i, v)| if i < 5 { v + 0.05 } else { *v })
            .collect();
        assert!((t.nme(&shifted, &origin) - 0.125).abs() < 1e-6);
        assert!(t.changed(&shifted, &origin));
        assert_eq!(t.change_name(), "failure");
        assert!(t.score_name().contains("left_eye"), "{}", t.score_name());
    }

    #[test]
    fn layouts_units_and_image_normaliser() {
        // The same 2 landmarks as [K, 2] pixels, normalised by the image side (100 px).
        let c = config("{kind: keypoints, units: pixels}");
        let t = KeypointsTask::new(c, &spec(&[2, 2])).unwrap();
        let origin = [10.0f32, 20.0, 50.0, 60.0];
        let row = [13.0f32, 24.0, 50.0, 60.0]; // first point moves 5 px
        assert!((t.nme(&row, &origin) - 0.025).abs() < 1e-9);
        // swap_xy reads (y, x) pairs.
        let c = config("{kind: keypoints, units: pixels, swap_xy: true}");
        let t = KeypointsTask::new(c, &spec(&[2, 2])).unwrap();
        assert_eq!(t.points(&origin)[0], [20.0, 10.0]);
        // A non-square frame: normalised x scales with the width.
        let c = config("{kind: keypoints}");
        let wide = OutputSpec {
            name: "p",
            shape: &[1, 2],
            input_hw: [50, 200],
        };
        let t = KeypointsTask::new(c, &wide).unwrap();
        assert_eq!(t.points(&[0.5, 0.5]), vec![[100.0, 25.0]]);
    }

    #[test]
    fn loss_pushes_away_and_matches_finite_differences() {
        let t = mtcnn_like();
        let origin = face();
        let mut row = origin.clone();
        row[2] += 0.03;
        row[7] -= 0.02;
        row[0] += 0.01;
        // Further away = lower loss.
        let mut further = row.clone();
        further[2] += 0.03;
        assert!(t.loss(&further, &origin) < t.loss(&row, &origin));
        assert!(t.loss(&origin, &origin).abs() < 1e-12);
        // Away from the normaliser landmarks the gradient is exact; the normaliser is fixed by
        // the origin, so moving the eyes in `row` is an ordinary displacement.
        assert_grad_matches(&t, &row, &origin, 1e-4, 1e-3);
        // Loss ≈ −NME once displacements dwarf the smoothing, up to the tie-breaking term.
        let nme = t.nme(&further, &origin);
        assert!((t.loss(&further, &origin) + nme).abs() < TIE_BREAK * nme + 1e-3);
    }

    #[test]
    fn the_gradient_at_the_unedited_prediction_is_not_zero() {
        // Without the tie-break an exact-gradient search would never leave α = 0.
        let t = mtcnn_like();
        let origin = face();
        let g = t.loss_grad(&origin, &origin);
        assert!(
            g.iter().all(|v| *v < 0.0),
            "every coordinate pushed right/down: {g:?}"
        );
        assert_grad_matches(&t, &origin, &origin, 1e-5, 1e-3);
    }

    /// Heatmaps `[K, 8, 8]` with a Gaussian bump at each (col, row).
    fn heatmaps(peaks: &[(f64, f64)]) -> Vec<f32> {
        let mut out = Vec::new();
        for &(pc, pr) in peaks {
            for r in 0..8 {
                for c in 0..8 {
                    let d2 = (c as f64 - pc).powi(2) + (r as f64 - pr).powi(2);
                    out.push((-d2 / 2.0).exp() as f32);
                }
            }
        }
        out
    }

    #[test]
    fn heatmaps_decode_by_argmax_and_soft_argmax() {
        let c = config("{kind: keypoints, format: heatmaps, threshold: 0.05}");
        let t = KeypointsTask::new(c, &spec(&[2, 8, 8])).unwrap();
        let origin = heatmaps(&[(2.0, 3.0), (5.0, 5.0)]);
        // Cell (2, 3) of 8 in a 100 px frame: centre (2.5, 3.5) × 12.5 px.
        assert_eq!(t.points(&origin), vec![[31.25, 43.75], [68.75, 68.75]]);
        // A peak between cells 2 and 3 shifts a quarter cell toward 3.
        let between = heatmaps(&[(2.4, 3.0), (5.0, 5.0)]);
        assert_eq!(t.points(&between)[0], [(2.75) * 12.5, 43.75]);
        // Move the first peak 2 cells right: NME = 25 px / 2 landmarks / 100 px = 0.125.
        let moved = heatmaps(&[(4.0, 3.0), (5.0, 5.0)]);
        assert!((t.nme(&moved, &origin) - 0.125).abs() < 1e-9);
        assert!(t.changed(&moved, &origin));
        // The soft-argmax sits on the peak of a symmetric bump.
        let sp = t.soft_argmax([8, 8], &origin, &origin, 0);
        assert!(
            (sp.at[0] - 31.25).abs() < 0.5 && (sp.at[1] - 43.75).abs() < 0.5,
            "{:?}",
            sp.at
        );
        // Gradient of the soft-argmax loss against finite differences.
        let row = heatmaps(&[(3.0, 3.5), (5.0, 4.2)]);
        assert_grad_matches(&t, &row, &origin, 1e-3, 1e-2);
        assert!(t.loss(&moved, &origin) < t.loss(&between, &origin));
    }

    #[test]
    fn shapes_that_are_not_k_by_2_are_clear_errors() {
        let err = |yaml: &str, shape: &[usize]| {
            KeypointsTask::new(config(yaml), &spec(shape))
                .unwrap_err()
                .to_string()
        };
        // The MTCNN box output [N, 4] is fine as 2 points, but [N, 5] is not K×2.
        let e = err("{kind: keypoints}", &[5]);
        assert!(
            e.contains("landmarks") && e.contains("[N, 5]") && e.contains("K×2"),
            "{e}"
        );
        let e = err("{kind: keypoints}", &[4, 3]);
        assert!(e.contains("[N, 4, 3]"), "{e}");
        let e = err("{kind: keypoints, layout: xxyy}", &[5, 2]);
        assert!(e.contains("xyxy") && e.contains("[N, 5, 2]"), "{e}");
        let e = err("{kind: keypoints, count: 4}", &[10]);
        assert!(e.contains("4 landmarks") && e.contains("holds 5"), "{e}");
        let e = err("{kind: keypoints, normalizer: [0, 7]}", &[10]);
        assert!(e.contains("normalizer") && e.contains("index 7"), "{e}");
        let e = err(
            "{kind: keypoints, normalizer: [eye, 1], names: [a, b, c, d, e]}",
            &[10],
        );
        assert!(e.contains("`eye`"), "{e}");
        let e = err("{kind: keypoints, format: heatmaps}", &[5, 64]);
        assert!(
            e.contains("[N, K, h, w]") && e.contains("[N, 5, 64]"),
            "{e}"
        );
        let e = err("{kind: keypoints, names: [a, b]}", &[10]);
        assert!(e.contains("2 names") && e.contains("5 landmarks"), "{e}");
    }

    #[test]
    fn real_mtcnn_landmarks_read_as_xxyy_put_eyes_above_the_mouth() {
        // Golden ONet outputs for 4 real face crops (tests/golden/mtcnn-onet).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/mtcnn-onet/output_dense_6.npy");
        let crate::runtime::Tensor::F32(a) = crate::io::npy::read(&path).unwrap() else {
            panic!("dense_6 is float32");
        };
        let t = mtcnn_like();
        for row in a.rows() {
            let p = t.points(row.as_slice().unwrap());
            let (le, re, nose, ml, mr) = (p[0], p[1], p[2], p[3], p[4]);
            assert!(le[0] < re[0] && ml[0] < mr[0], "left/right order: {p:?}");
            assert!(
                le[1] < nose[1] && nose[1] < ml[1],
                "eyes, nose, mouth top to bottom: {p:?}"
            );
        }
    }
}
