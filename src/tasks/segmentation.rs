//! `task: {kind: segmentation}` — per-pixel predictions: `[N, C, H, W]` logits or probabilities,
//! or a single-channel mask/logit `[N, 1, H, W]` (`[N, H, W]` too).
//!
//! Masks: with `softmax` each pixel takes the class of its largest value; with `sigmoid` or
//! `none` each channel is an independent mask, set where the probability exceeds `threshold`.
//!
//! - **Score**: 1 − IoU against the unedited mask of the same sample, where IoU is the mean over
//!   classes (those not `ignore`d, and present in either mask) of |A ∩ B| / |A ∪ B|. 0 for the
//!   unedited image; the sensitivity is the mean drop in IoU. Per-class IoUs go on the pictures.
//! - **Changed** (a *failure*): IoU < `iou_threshold`.
//! - **Loss**: −(mean per-pixel cross-entropy against the unedited hard mask), each pixel's
//!   cross-entropy capped at −ln 10⁻⁷ (a pixel already flipped with certainty earns nothing
//!   more); minimising it maximises disagreement with the unedited mask.

use super::draw::{self, CHANGED, ORIGINAL, PALETTE};
use super::{check_unit, sigmoid, softplus, Activation, LabelRef, OutputSpec, Task, P_EPS};
use crate::error::{Error, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Config of a segmentation task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationConfig {
    /// Output tensor name (default: the first output).
    #[serde(default)]
    pub output: Option<String>,
    /// `sigmoid` (logits, independent channels), `softmax` (logits, one class per pixel) or
    /// `none` (probabilities, independent channels). Default: `sigmoid` for one channel,
    /// `softmax` for more.
    #[serde(default)]
    pub activation: Option<Activation>,
    /// Probability above which a pixel is in the mask (`sigmoid`, `none`).
    #[serde(default = "half")]
    pub threshold: f64,
    /// Class (channel) names, in output order (optional).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Classes left out of the overall IoU (and, for independent channels, of the loss), e.g.
    /// the background class of a softmax segmenter.
    #[serde(default)]
    pub ignore: Vec<LabelRef>,
    /// Failure when the IoU against the unedited mask falls below this.
    #[serde(default = "half")]
    pub iou_threshold: f64,
}

fn half() -> f64 {
    0.5
}

/// Largest per-pixel cross-entropy the loss counts.
fn ce_cap() -> f64 {
    -P_EPS.ln()
}

/// A segmentation task.
#[derive(Debug, Clone)]
pub struct SegmentationTask {
    config: SegmentationConfig,
    activation: Activation,
    /// Classes (channels) C, height H, width W of the output.
    c: usize,
    h: usize,
    w: usize,
    /// `ignored[c]`: class c is left out of the overall IoU.
    ignored: Vec<bool>,
}

/// IoU of every class (`None` where neither mask has it) and their mean over the counted
/// classes (1 when none is present).
#[derive(Debug, Clone, PartialEq)]
pub struct Iou {
    /// Per class.
    pub per_class: Vec<Option<f64>>,
    /// Mean over counted classes present in either mask.
    pub overall: f64,
}

impl SegmentationTask {
    /// Validates the config against the output's shape.
    pub fn new(config: SegmentationConfig, out: &OutputSpec) -> Result<Self> {
        let (c, h, w) =
            match *out.shape {
                [c, h, w] => (c, h, w),
                [h, w] => (1, h, w),
                _ => return Err(out.error(
                    "kind",
                    "segmentation needs per-pixel outputs of shape [N, C, H, W], [N, 1, H, W] or \
                     [N, H, W]",
                )),
            };
        if c == 0 || h == 0 || w == 0 {
            return Err(out.error("kind", "the output is empty"));
        }
        let activation = config.activation.unwrap_or(if c == 1 {
            Activation::Sigmoid
        } else {
            Activation::Softmax
        });
        if activation == Activation::Softmax && c < 2 {
            return Err(out.error(
                "activation",
                "softmax over a single channel is constant: use `sigmoid` (logits) or `none` \
                 (probabilities)",
            ));
        }
        if !config.labels.is_empty() && config.labels.len() != c {
            return Err(out.error(
                "labels",
                format!("{} labels given for {c} classes", config.labels.len()),
            ));
        }
        let mut ignored = vec![false; c];
        for r in &config.ignore {
            ignored[r.resolve("ignore", ("labels", &config.labels), c, out)?] = true;
        }
        if ignored.iter().all(|&i| i) {
            return Err(out.error("ignore", "every class is ignored: nothing left to measure"));
        }
        check_unit("threshold", config.threshold)?;
        if !(config.iou_threshold > 0.0 && config.iou_threshold <= 1.0) {
            return Err(Error::config(
                "target.task",
                "iou_threshold",
                format!("{} must be in (0, 1]", config.iou_threshold),
            ));
        }
        Ok(SegmentationTask {
            config,
            activation,
            c,
            h,
            w,
            ignored,
        })
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }

    /// The hard masks of a row, one `H × W` mask per class.
    pub fn masks(&self, row: &[f32]) -> Vec<Vec<bool>> {
        let n = self.plane();
        match self.activation {
            Activation::Softmax => {
                let mut masks = vec![vec![false; n]; self.c];
                for i in 0..n {
                    let best = (1..self.c).fold(0, |b, k| {
                        if row[k * n + i] > row[b * n + i] {
                            k
                        } else {
                            b
                        }
                    });
                    masks[best][i] = true;
                }
                masks
            }
            Activation::Sigmoid | Activation::None => {
                // sigmoid(l) > t  ⇔  l > logit(t): no exp per pixel.
                let cut = match self.activation {
                    Activation::Sigmoid => {
                        (self.config.threshold / (1.0 - self.config.threshold)).ln()
                    }
                    _ => self.config.threshold,
                };
                (0..self.c)
                    .map(|k| {
                        row[k * n..(k + 1) * n]
                            .iter()
                            .map(|&v| f64::from(v) > cut)
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// IoU of `row`'s masks against `origin`'s.
    pub fn iou(&self, row: &[f32], origin: &[f32]) -> Iou {
        self.iou_of(&self.masks(row), &self.masks(origin))
    }

    fn iou_of(&self, a: &[Vec<bool>], b: &[Vec<bool>]) -> Iou {
        let per_class: Vec<Option<f64>> = a
            .iter()
            .zip(b)
            .map(|(x, y)| {
                let (mut inter, mut union) = (0usize, 0usize);
                for (&p, &q) in x.iter().zip(y) {
                    inter += usize::from(p && q);
                    union += usize::from(p || q);
                }
                (union > 0).then(|| inter as f64 / union as f64)
            })
            .collect();
        let counted: Vec<f64> = per_class
            .iter()
            .zip(&self.ignored)
            .filter_map(|(v, &ig)| if ig { None } else { *v })
            .collect();
        let overall = if counted.is_empty() {
            1.0
        } else {
            counted.iter().sum::<f64>() / counted.len() as f64
        };
        Iou { per_class, overall }
    }

    /// −(mean capped cross-entropy against the origin's hard mask), and its gradient when
    /// `want_grad` (else an empty vector).
    fn loss_impl(&self, row: &[f32], origin: &[f32], want_grad: bool) -> (f64, Vec<f32>) {
        let n = self.plane();
        let target = self.masks(origin);
        let cap = ce_cap();
        let mut sum = 0.0;
        let mut g = if want_grad {
            vec![0f32; row.len()]
        } else {
            Vec::new()
        };
        let count;
        match self.activation {
            Activation::Softmax => {
                count = n;
                let mut col = vec![0f64; self.c];
                for i in 0..n {
                    let y = (0..self.c).find(|&k| target[k][i]).unwrap_or(0);
                    for (k, v) in col.iter_mut().enumerate() {
                        *v = f64::from(row[k * n + i]);
                    }
                    let m = col.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    let z: f64 = col.iter().map(|v| (v - m).exp()).sum();
                    let ce = z.ln() + m - col[y];
                    if ce < cap {
                        sum += ce;
                        if want_grad {
                            for k in 0..self.c {
                                let s = (col[k] - m).exp() / z;
                                let d = s - if k == y { 1.0 } else { 0.0 };
                                g[k * n + i] = (-d / n as f64) as f32;
                            }
                        }
                    } else {
                        sum += cap;
                    }
                }
            }
            Activation::Sigmoid | Activation::None => {
                let channels: Vec<usize> = (0..self.c).filter(|&k| !self.ignored[k]).collect();
                count = n * channels.len();
                let scale = 1.0 / count as f64;
                for &k in &channels {
                    for i in 0..n {
                        let v = f64::from(row[k * n + i]);
                        let y = target[k][i];
                        let (ce, d) = if self.activation == Activation::Sigmoid {
                            // BCE with logits: y=1 → softplus(−l), y=0 → softplus(l).
                            let s = sigmoid(v);
                            if y {
                                (softplus(-v), s - 1.0)
                            } else {
                                (softplus(v), s)
                            }
                        } else {
                            let p = v.clamp(P_EPS, 1.0 - P_EPS);
                            let inside = v == p;
                            match (y, inside) {
                                (true, true) => (-p.ln(), -1.0 / p),
                                (false, true) => (-(1.0 - p).ln(), 1.0 / (1.0 - p)),
                                (true, false) => (-p.ln(), 0.0),
                                (false, false) => (-(1.0 - p).ln(), 0.0),
                            }
                        };
                        if ce < cap {
                            sum += ce;
                            if want_grad {
                                g[k * n + i] = (-d * scale) as f32;
                            }
                        } else {
                            sum += cap;
                        }
                    }
                }
            }
        }
        (-sum / count.max(1) as f64, g)
    }

    fn class_name(&self, k: usize) -> String {
        self.config
            .labels
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("#{k}"))
    }

    fn caption(&self, iou: &Iou) -> String {
        let mut s = format!("IOU {}", crate::report::fmt_num(iou.overall, 3));
        // With several classes, the worst counted class too.
        let counted = self.ignored.iter().filter(|&&i| !i).count();
        if counted > 1 {
            let worst = iou
                .per_class
                .iter()
                .enumerate()
                .filter(|(k, v)| !self.ignored[*k] && v.is_some())
                .min_by(|a, b| a.1.partial_cmp(b.1).unwrap_or(std::cmp::Ordering::Equal));
            if let Some((k, Some(v))) = worst {
                s.push_str(&format!(
                    " {} {}",
                    self.class_name(k).to_uppercase(),
                    crate::report::fmt_num(*v, 2)
                ));
            }
        }
        s
    }
}

impl Task for SegmentationTask {
    fn kind(&self) -> &'static str {
        "segmentation"
    }

    fn score_name(&self) -> String {
        "1 − IoU vs unedited mask".into()
    }

    fn labels(&self) -> Vec<String> {
        self.config.labels.clone()
    }

    fn score(&self, row: &[f32], origin: &[f32]) -> f64 {
        1.0 - self.iou(row, origin).overall
    }

    fn changed(&self, row: &[f32], origin: &[f32]) -> bool {
        self.iou(row, origin).overall < self.config.iou_threshold
    }

    fn loss(&self, row: &[f32], origin: &[f32]) -> f64 {
        self.loss_impl(row, origin, false).0
    }

    fn loss_grad(&self, row: &[f32], origin: &[f32]) -> Vec<f32> {
        self.loss_impl(row, origin, true).1
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
        let (w, h) = (self.w, self.h);
        let before = self.masks(origin);
        let shown = if counterfactual {
            self.masks(row)
        } else {
            before.clone()
        };
        for (k, m) in shown.iter().enumerate() {
            if !self.ignored[k] {
                draw::tint(img, m, w, h, PALETTE[k % PALETTE.len()], 0.45);
            }
        }
        if counterfactual {
            let changed: Vec<bool> = (0..self.plane())
                .map(|i| (0..self.c).any(|k| !self.ignored[k] && shown[k][i] != before[k][i]))
                .collect();
            draw::hatch(img, &changed, w, h, CHANGED, 0.85);
        }
        for (k, m) in before.iter().enumerate() {
            if !self.ignored[k] {
                draw::outline(img, m, w, h, ORIGINAL);
            }
        }
        Some(self.caption(&self.iou_of(&shown, &before)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::tasks::{assert_grad_matches, TaskConfig};

    fn task(yaml: &str, shape: &[usize]) -> Result<SegmentationTask> {
        let c = match serde_yaml::from_str::<TaskConfig>(yaml).unwrap() {
            TaskConfig::Segmentation(c) => c,
            other => panic!("not segmentation: {other:?}"),
        };
        SegmentationTask::new(
            c,
            &OutputSpec {
                name: "logits",
                shape,
                input_hw: [256, 256],
            },
        )
    }

    /// A 4×4 logit map: +5 inside `set`, −5 outside.
    fn logits(set: &[usize]) -> Vec<f32> {
        (0..16)
            .map(|i| if set.contains(&i) { 5.0 } else { -5.0 })
            .collect()
    }

    #[test]
    fn a_known_mask_change_gives_the_known_iou() {
        let t = task("{kind: segmentation}", &[1, 4, 4]).unwrap();
        let origin = logits(&[0, 1, 2, 3, 4, 5, 6, 7]); // top half: 8 pixels
        assert_eq!(t.iou(&origin, &origin).overall, 1.0);
        // Lose 2 pixels, gain 2 others: intersection 6, union 10 → IoU 0.6.
        let row = logits(&[0, 1, 2, 3, 4, 5, 8, 9]);
        let iou = t.iou(&row, &origin);
        assert!((iou.overall - 0.6).abs() < 1e-12, "{iou:?}");
        assert!((t.score(&row, &origin) - 0.4).abs() < 1e-12);
        assert!(!t.changed(&row, &origin));
        // Keep only 3 of the 8: IoU 3/8 < 0.5, a failure.
        let row = logits(&[0, 1, 2]);
        assert!((t.iou(&row, &origin).overall - 0.375).abs() < 1e-12);
        assert!(t.changed(&row, &origin));
        // Both masks empty: nothing changed.
        assert_eq!(t.iou(&logits(&[]), &logits(&[])).overall, 1.0);
    }

    #[test]
    fn softmax_classes_give_per_class_iou_and_ignore_the_background() {
        let t = task(
            "{kind: segmentation, labels: [bg, hair, skin], ignore: [bg]}",
            &[3, 2, 2],
        )
        .unwrap();
        // Pixel classes (row-major 2×2): origin [bg, hair, skin, skin], row [bg, skin, skin, skin].
        let one_hot = |classes: [usize; 4]| -> Vec<f32> {
            (0..3)
                .flat_map(|k| classes.iter().map(move |&c| if c == k { 2.0 } else { 0.0 }))
                .collect()
        };
        let origin = one_hot([0, 1, 2, 2]);
        let row = one_hot([0, 2, 2, 2]);
        let iou = t.iou(&row, &origin);
        // hair: 0/1; skin: 2/3; bg ignored (1/1). Overall = (0 + 2/3) / 2.
        assert_eq!(iou.per_class[1], Some(0.0));
        assert!((iou.per_class[2].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((iou.overall - 1.0 / 3.0).abs() < 1e-12);
        assert!(t.changed(&row, &origin));
        assert_eq!(t.caption(&iou), "IOU 0.333 HAIR 0");
    }

    #[test]
    fn loss_gradients_match_finite_differences() {
        // Sigmoid logits, probabilities and softmax logits, at rows that disagree in places.
        let origin = logits(&[0, 1, 2, 3, 4, 5, 6, 7]);
        let row: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.4).collect();
        let t = task("{kind: segmentation}", &[1, 4, 4]).unwrap();
        assert_grad_matches(&t, &row, &origin, 1e-3, 1e-3);
        // Disagreeing more lowers the loss.
        let flipped = logits(&[8, 9, 10, 11, 12, 13, 14, 15]);
        assert!(t.loss(&flipped, &origin) < t.loss(&row, &origin));
        assert!(t.loss(&row, &origin) < t.loss(&origin, &origin));

        let t = task("{kind: segmentation, activation: none}", &[1, 4, 4]).unwrap();
        let probs: Vec<f32> = row.iter().map(|&v| sigmoid(f64::from(v)) as f32).collect();
        let po: Vec<f32> = origin
            .iter()
            .map(|&v| sigmoid(f64::from(v)) as f32)
            .collect();
        assert_grad_matches(&t, &probs, &po, 1e-4, 1e-3);

        let t = task("{kind: segmentation}", &[2, 2, 4]).unwrap();
        assert_eq!(t.activation, Activation::Softmax);
        assert_grad_matches(&t, &row, &origin, 1e-3, 1e-3);
    }

    #[test]
    fn the_cap_stops_rewarding_pixels_already_flipped() {
        let t = task("{kind: segmentation}", &[1, 1, 2]).unwrap();
        let origin = [10.0f32, -10.0];
        let far = [-100.0f32, 100.0];
        let farther = [-200.0f32, 200.0];
        assert_eq!(t.loss(&far, &origin), -ce_cap());
        assert_eq!(t.loss(&far, &origin), t.loss(&farther, &origin));
        assert_eq!(t.loss_grad(&far, &origin), vec![0.0, 0.0]);
    }

    #[test]
    fn wrong_declarations_are_clear_errors() {
        let e = task("{kind: segmentation}", &[10]).unwrap_err().to_string();
        assert!(
            e.contains("[N, C, H, W]") && e.contains("`logits`") && e.contains("[N, 10]"),
            "{e}"
        );
        let e = task("{kind: segmentation, activation: softmax}", &[1, 8, 8])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("single channel") && e.contains("[N, 1, 8, 8]"),
            "{e}"
        );
        let e = task("{kind: segmentation, ignore: [3]}", &[2, 8, 8])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ignore") && e.contains("index 3"), "{e}");
        let e = task("{kind: segmentation, labels: [a, b, c]}", &[2, 8, 8])
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 labels") && e.contains("2 classes"), "{e}");
        let e = task("{kind: segmentation, ignore: [0]}", &[1, 8, 8])
            .unwrap_err()
            .to_string();
        assert!(e.contains("every class"), "{e}");
        assert!(task("{kind: segmentation, iou_threshold: 0}", &[1, 8, 8]).is_err());
    }

    #[test]
    fn the_real_selfie_mask_reads_as_a_person_mask() {
        // Golden selfie-segmenter logits for the astronaut photo (tests/golden/selfie): its
        // card measures 54.5 % foreground.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/selfie/output_logits.npy");
        let crate::runtime::Tensor::F32(a) = crate::io::npy::read(&path).unwrap() else {
            panic!("logits are float32");
        };
        let t = task("{kind: segmentation, labels: [person]}", &[1, 256, 256]).unwrap();
        let row: Vec<f32> = a.iter().copied().collect();
        let m = t.masks(&row);
        let share = m[0].iter().filter(|&&v| v).count() as f64 / m[0].len() as f64;
        assert!((share - 0.545).abs() < 0.005, "{share}");
        // Shifting the logits down shrinks the mask and lowers the IoU; the loss agrees.
        let shrunk: Vec<f32> = row.iter().map(|v| v - 50.0).collect();
        let iou = t.iou(&shrunk, &row).overall;
        assert!(iou < 1.0 && iou > 0.5, "{iou}");
        assert!(t.loss(&shrunk, &row) < t.loss(&row, &row));
    }
}
