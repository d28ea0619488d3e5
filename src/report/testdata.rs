//! Hand-made reports for the writers' tests and for looking at the output by eye. The numbers are
//! invented (plausible for a gender classifier on generated faces), not results of any model.

use super::grid::{write_pair, PairStyle};
use super::schema::*;
use ndarray::Array3;
use std::path::Path;

const ATTRS: [(&str, &str, f64, usize); 6] = [
    ("smile", "a smiling face", 0.212, 41),
    (
        "eyeglasses",
        "a person wearing <script>alert(1)</script> & \"quotes\" glasses",
        0.154,
        23,
    ),
    ("beard", "a man with a beard", 0.121, 35),
    ("blond hair", "a person with blond hair", 0.062, 18),
    ("age", "an old person", 0.041, 57),
    (
        "a rather long attribute name that will be cut on the chart",
        "a face with bangs",
        0.018,
        9,
    ),
];

fn base(mode: Mode) -> Report {
    let total: f64 = ATTRS.iter().map(|a| a.2).sum();
    let attributes = ATTRS
        .iter()
        .enumerate()
        .map(|(i, &(name, prompt, mac, channels))| AttributeResult {
            name: name.into(),
            prompt: prompt.into(),
            sensitivity: mac / total,
            mean_abs_change: mac,
            ci95: [mac * 0.78, mac * 1.21],
            flip_rate: (mode == Mode::Single).then_some(0.62 - 0.1 * i as f64),
            mean_alpha: (mode != Mode::Sweep).then_some(if i % 2 == 0 {
                1.83 - 0.2 * i as f64
            } else {
                -1.2
            }),
            channels,
            above_null: None,
            curve: None,
            examples: Vec::new(),
        })
        .collect();
    Report {
        zoom_version: "0.1.0".into(),
        mode,
        samples: 64,
        seed: 2023,
        target: TargetSummary {
            model: "onnx/demo/gender-classifier.onnx".into(),
            task: "binary".into(),
            score: "p(male)".into(),
            labels: vec!["female".into(), "male".into()],
            change: "flip".into(),
        },
        attributes,
        flip_rate: None,
        null_baseline: None,
        flagged_samples: Vec::new(),
        settings: Settings {
            config: serde_json::json!({
                "generator": {"model": "onnx/demo/dcgan-faces.onnx"},
                "search": {"mode": "single", "iterations": 10, "step": 1.0, "bound": 3.0},
                "samples": 64, "seed": 2023
            }),
            gradient: "exact".into(),
            providers: vec![
                ("generator".into(), "CPUExecutionProvider".into()),
                ("target".into(), "CPUExecutionProvider".into()),
                ("clip".into(), "CPUExecutionProvider".into()),
            ],
            onnxruntime: "1.24.1".into(),
            warnings: Vec::new(),
        },
    }
}

/// `single` mode with a null baseline, examples, flagged samples and a warning.
pub(crate) fn single_report() -> Report {
    let mut r = base(Mode::Single);
    r.null_baseline = Some(NullBaseline {
        directions: 4,
        mean_abs_change: 0.071,
        ci95: [0.058, 0.086],
    });
    for a in &mut r.attributes {
        a.above_null = Some(a.ci95[0] > 0.071);
    }
    for (i, a) in r.attributes.iter_mut().enumerate().take(3) {
        let slug = a.name.replace(' ', "-");
        a.examples = (0..4)
            .map(|k| {
                let before = 0.93 - 0.11 * k as f64;
                let after = before - a.mean_abs_change * (2.8 - 0.5 * k as f64);
                Example {
                    sample: 3 + 7 * k + i,
                    alpha: vec![if k % 2 == 0 {
                        2.41 - 0.3 * k as f64
                    } else {
                        -1.95
                    }],
                    score_before: before,
                    score_after: after.clamp(0.001, 0.999),
                    flipped: (before > 0.5) != (after > 0.5),
                    image: format!("images/{slug}/{:04}.png", 3 + 7 * k + i),
                }
            })
            .collect();
    }
    r.flagged_samples = vec![FlaggedSample {
        sample: 17,
        attack: "single:beard".into(),
        reason: "target output `logits` is NaN after the edit".into(),
    }];
    r.settings.warnings =
        vec!["generator: dynamic dimension `batch` set to 1 (pass --shape to fix it)".into()];
    r
}

/// `sweep` mode: response curves, no examples, no null baseline.
pub(crate) fn sweep_report() -> Report {
    let mut r = base(Mode::Sweep);
    r.settings.config["search"]["mode"] = "sweep".into();
    for (i, a) in r.attributes.iter_mut().enumerate() {
        let alpha: Vec<f64> = (0..9).map(|k| -3.0 + 0.75 * k as f64).collect();
        let slope = a.mean_abs_change * if i % 2 == 0 { -1.0 } else { 1.0 };
        let mean = alpha
            .iter()
            .map(|&x| 1.0 / (1.0 + (-(0.4 + slope * 2.0 * x)).exp()))
            .collect();
        let std = alpha.iter().map(|&x| 0.08 + 0.03 * x.abs()).collect();
        a.curve = Some(Curve { alpha, mean, std });
    }
    r
}

/// Writes the pair PNG of every example in `report` under `dir`, from synthetic pictures (a
/// flat "face" disc on a gradient whose colour changes with α), so the HTML has images to show.
pub(crate) fn write_example_images(dir: &Path, report: &Report) {
    for a in &report.attributes {
        for e in &a.examples {
            let shift = e.alpha.first().copied().unwrap_or(0.0) as f32 * 0.15;
            let original = picture(64, e.sample, 0.0);
            let edited = picture(64, e.sample, shift);
            let style = PairStyle::new(e.score_before, e.score_after, e.flipped);
            if let Err(err) =
                write_pair(&dir.join(&e.image), original.view(), edited.view(), &style)
            {
                panic!("cannot write {}: {err}", e.image);
            }
        }
    }
}

fn picture(side: usize, seed: usize, shift: f32) -> Array3<f32> {
    let c = side as f32 / 2.0;
    let hue = (seed % 5) as f32 * 0.15;
    Array3::from_shape_fn((3, side, side), |(ch, y, x)| {
        let (dx, dy) = (x as f32 - c, y as f32 - c * 1.05);
        let in_face =
            dx * dx / (0.33 * side as f32).powi(2) + dy * dy / (0.42 * side as f32).powi(2) < 1.0;
        let eye = ((dx.abs() - 0.14 * side as f32).powi(2) + (dy + 0.1 * side as f32).powi(2))
            < (0.045 * side as f32).powi(2);
        let mouth = dy > 0.12 * side as f32
            && dy < 0.16 * side as f32 + shift * 6.0
            && dx.abs() < 0.12 * side as f32;
        let v = if eye || mouth {
            -0.8
        } else if in_face {
            [0.75, 0.35, 0.1][ch] + shift * [1.0, -0.5, -1.0][ch]
        } else {
            -0.6 + hue + (y as f32 / side as f32) * 0.5 * [0.2, 0.5, 1.0][ch]
        };
        v.clamp(-1.0, 1.0)
    })
}
