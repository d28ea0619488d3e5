//! From recorded attacks to `report.json`: per-attribute sensitivity, intervals, flip rates, the
//! null baseline, response curves and the examples shown in the HTML report.
//!
//! The score change of one record is |score_after − score_before| (single/multiple), or the
//! largest |score(α) − score(0)| over the α grid (sweep). Records are taken in sample order, so
//! the result does not depend on the order they were written in (resumed runs).

use super::AttributeDirection;
use crate::config::{Config, Mode};
use crate::error::Result;
use crate::report::schema::{
    AttributeResult, Curve, Example, FlaggedSample, NullBaseline, Report, SampleRecord, Settings,
    TargetSummary,
};
use crate::search::Pipeline;
use crate::stats;
use std::collections::BTreeMap;

/// Facts of the run that the report records.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// Gradient source used.
    pub gradient: String,
    /// Provider per model role.
    pub providers: Vec<(String, String)>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The bound B used.
    pub bound: f32,
    /// Images per call (what `batch_size: auto` resolved to).
    pub batch_size: usize,
}

fn change(r: &SampleRecord, mode: Mode) -> f64 {
    match mode {
        Mode::Sweep => r
            .score_after
            .iter()
            .map(|s| (s - r.score_before).abs())
            .fold(0.0, f64::max),
        _ => r
            .score_after
            .first()
            .map_or(0.0, |s| (s - r.score_before).abs()),
    }
}

/// Records of one attack label that are usable, by sample index (a later duplicate never wins).
fn records_of<'a>(
    records: &'a [SampleRecord],
    label: &str,
    samples: usize,
) -> Vec<&'a SampleRecord> {
    let mut by_sample: BTreeMap<usize, &SampleRecord> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.attack == label && r.sample < samples)
    {
        by_sample.entry(r.sample).or_insert(r);
    }
    by_sample
        .into_values()
        .filter(|r| r.flagged.is_none())
        .collect()
}

fn examples(rs: &[&SampleRecord], mode: Mode, n: usize) -> Vec<Example> {
    let mut v: Vec<&&SampleRecord> = rs.iter().filter(|r| !r.images.is_empty()).collect();
    v.sort_by(|a, b| {
        change(b, mode)
            .total_cmp(&change(a, mode))
            .then(a.sample.cmp(&b.sample))
    });
    v.into_iter()
        .take(n)
        .map(|r| Example {
            sample: r.sample,
            alpha: r.alpha.clone(),
            score_before: r.score_before,
            score_after: r.score_after.first().copied().unwrap_or(r.score_before),
            flipped: r.flipped,
            image: r.images[0].clone(),
        })
        .collect()
}

fn flip_share(rs: &[&SampleRecord]) -> f64 {
    if rs.is_empty() {
        0.0
    } else {
        rs.iter().filter(|r| r.flipped).count() as f64 / rs.len() as f64
    }
}

/// Builds the report from all records of the run.
pub fn build_report(
    config: &Config,
    config_json: &serde_json::Value,
    attributes: &[AttributeDirection],
    nulls: usize,
    records: &[SampleRecord],
    pipe: &Pipeline,
    facts: RunFacts,
) -> Result<Report> {
    let mode = config.search.mode;
    let n = config.samples;
    let mut results = Vec::new();
    for (ai, a) in attributes.iter().enumerate() {
        let (changes, rs): (Vec<f64>, Vec<&SampleRecord>) = match mode {
            Mode::Multiple => {
                let rs = records_of(records, "multiple", n);
                let c = rs
                    .iter()
                    .map(|r| {
                        r.contributions
                            .as_ref()
                            .and_then(|c| c.get(ai).copied())
                            .unwrap_or(0.0)
                    })
                    .collect();
                (c, rs)
            }
            _ => {
                let label = format!(
                    "{}:{}",
                    if mode == Mode::Sweep {
                        "sweep"
                    } else {
                        "single"
                    },
                    a.name
                );
                let rs = records_of(records, &label, n);
                (rs.iter().map(|r| change(r, mode)).collect(), rs)
            }
        };
        let curve = (mode == Mode::Sweep && !rs.is_empty()).then(|| {
            let k = rs[0].alpha.len();
            let at = |j: usize| {
                rs.iter()
                    .filter_map(|r| r.score_after.get(j).copied())
                    .collect::<Vec<f64>>()
            };
            Curve {
                alpha: rs[0].alpha.clone(),
                mean: (0..k).map(|j| stats::mean(&at(j))).collect(),
                std: (0..k).map(|j| stats::std(&at(j))).collect(),
            }
        });
        let mean_alpha = match mode {
            Mode::Single => Some(stats::mean(
                &rs.iter()
                    .filter_map(|r| r.alpha.first().copied())
                    .collect::<Vec<_>>(),
            )),
            Mode::Multiple => Some(stats::mean(
                &rs.iter()
                    .filter_map(|r| r.alpha.get(ai).copied())
                    .collect::<Vec<_>>(),
            )),
            Mode::Sweep => None,
        };
        results.push(AttributeResult {
            name: a.name.clone(),
            prompt: a.prompt.clone(),
            sensitivity: 0.0,
            mean_abs_change: stats::mean(&changes),
            ci95: stats::bootstrap_ci95(&changes, config.seed, ai as u64),
            flip_rate: (mode != Mode::Multiple).then(|| flip_share(&rs)),
            mean_alpha,
            channels: a.direction.channels,
            above_null: None,
            curve,
            examples: if mode == Mode::Multiple {
                vec![]
            } else {
                examples(&rs, mode, config.search.examples)
            },
        });
    }
    let sens = stats::normalise(
        &results
            .iter()
            .map(|r| r.mean_abs_change)
            .collect::<Vec<_>>(),
    );
    for (r, s) in results.iter_mut().zip(sens) {
        r.sensitivity = s;
    }
    let null_baseline = (nulls > 0).then(|| {
        let changes: Vec<f64> = (0..nulls)
            .flat_map(|k| records_of(records, &format!("null:{k}"), n))
            .map(|r| change(r, mode))
            .collect();
        NullBaseline {
            directions: nulls,
            mean_abs_change: stats::mean(&changes),
            ci95: stats::bootstrap_ci95(&changes, config.seed, 1_000_000),
        }
    });
    if let (Some(nb), Mode::Single | Mode::Sweep) = (&null_baseline, mode) {
        for r in &mut results {
            r.above_null = Some(r.ci95[0] > nb.mean_abs_change);
        }
    }
    results.sort_by(|a, b| {
        b.sensitivity
            .total_cmp(&a.sensitivity)
            .then(a.name.cmp(&b.name))
    });
    let flip_rate =
        (mode == Mode::Multiple).then(|| flip_share(&records_of(records, "multiple", n)));
    let mut flagged: Vec<FlaggedSample> = records
        .iter()
        .filter_map(|r| {
            r.flagged.as_ref().map(|why| FlaggedSample {
                sample: r.sample,
                attack: r.attack.clone(),
                reason: why.clone(),
            })
        })
        .collect();
    flagged.sort_by(|a, b| a.sample.cmp(&b.sample).then(a.attack.cmp(&b.attack)));
    let mut settings_json = config_json.clone();
    if let Some(obj) = settings_json.as_object_mut() {
        obj.insert("bound_used".into(), serde_json::json!(facts.bound));
        obj.insert(
            "batch_size_used".into(),
            serde_json::json!(facts.batch_size),
        );
    }
    Ok(Report {
        zoom_version: env!("CARGO_PKG_VERSION").into(),
        mode,
        samples: n,
        seed: config.seed,
        target: TargetSummary {
            model: config.target.model.display().to_string(),
            task: pipe.target.task.kind().into(),
            score: pipe.target.task.score_name(),
            labels: pipe.target.task.labels(),
            change: pipe.target.task.change_name().into(),
        },
        attributes: results,
        flip_rate,
        null_baseline,
        flagged_samples: flagged,
        settings: Settings {
            config: settings_json,
            gradient: facts.gradient,
            providers: facts.providers,
            onnxruntime: crate::runtime::version(),
            warnings: facts.warnings,
        },
    })
}
