//! Serialization types of `report.json` and `samples.jsonl`: the machine-readable contract.
//!
//! `report.json` is one [`Report`]; `samples.jsonl` has one [`SampleRecord`] per line, one per
//! (sample, attack). Field order is fixed and floats are written by one formatter, so a rerun with
//! the same config and seed writes the same bytes (up to the execution provider's float noise).

use serde::{Deserialize, Serialize};

/// Search mode of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One attribute optimised at a time.
    Single,
    /// All attributes optimised jointly.
    Multiple,
    /// No optimisation: the target evaluated on a grid of α per attribute.
    Sweep,
}

/// The whole `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// zoom version that wrote the report.
    pub zoom_version: String,
    /// Search mode.
    pub mode: Mode,
    /// Number of sampled latents.
    pub samples: usize,
    /// RNG seed of the run.
    pub seed: u64,
    /// What was diagnosed.
    pub target: TargetSummary,
    /// Per-attribute results, by descending sensitivity.
    pub attributes: Vec<AttributeResult>,
    /// `multiple` mode: share of samples whose decision changed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flip_rate: Option<f64>,
    /// The same search along random directions of equal norm (the "arbitrary edit" baseline).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub null_baseline: Option<NullBaseline>,
    /// Samples whose model output was NaN/Inf or otherwise unusable; excluded from statistics.
    pub flagged_samples: Vec<FlaggedSample>,
    /// Settings as resolved (config after overrides, gradient source, providers, warnings).
    pub settings: Settings,
}

/// The target model and its task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// Model file as given in the config.
    pub model: String,
    /// Task kind (`binary`, `multiclass`, ...).
    pub task: String,
    /// What the score is (e.g. "p(male)").
    pub score: String,
    /// Class names where the task has them.
    pub labels: Vec<String>,
    /// What a changed prediction is called for this task: `flip` (classification), `failure`
    /// (keypoints/segmentation past their threshold) or `shift` (regression past its margin).
    #[serde(default = "default_change")]
    pub change: String,
}

fn default_change() -> String {
    "flip".into()
}

impl TargetSummary {
    /// Past-tense phrase for a changed prediction ("flipped the decision", ...).
    pub fn changed_phrase(&self) -> &'static str {
        match self.change.as_str() {
            "failure" => "made the prediction fail",
            "shift" => "shifted the prediction past its margin",
            _ => "flipped the decision",
        }
    }
}

/// Results for one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeResult {
    /// Short name (config `name`).
    pub name: String,
    /// The text prompt.
    pub prompt: String,
    /// Normalised sensitivity: `mean_abs_change / Σ mean_abs_change` (sums to 1 over attributes).
    pub sensitivity: f64,
    /// Mean |Δ task score| over samples.
    pub mean_abs_change: f64,
    /// 95 % bootstrap interval of `mean_abs_change`.
    pub ci95: [f64; 2],
    /// Share of samples whose decision flipped when attacking this attribute (`single` mode).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flip_rate: Option<f64>,
    /// Mean final α (`single`/`multiple`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean_alpha: Option<f64>,
    /// Edit-space channels that survived the β threshold.
    pub channels: usize,
    /// Whether `ci95[0]` lies above the null baseline's mean (the attribute matters more than an
    /// arbitrary edit of the same size).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub above_null: Option<bool>,
    /// `sweep` mode: the response curve.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub curve: Option<Curve>,
    /// A few counterfactual examples (largest |Δ score| first) for the HTML report.
    pub examples: Vec<Example>,
}

/// Response of the task score along one attribute direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The α grid.
    pub alpha: Vec<f64>,
    /// Mean task score over samples at each α.
    pub mean: Vec<f64>,
    /// Standard deviation over samples at each α.
    pub std: Vec<f64>,
}

/// One original/counterfactual pair shown in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Sample index.
    pub sample: usize,
    /// α of the counterfactual (per attacked attribute, same order as in the attack).
    pub alpha: Vec<f64>,
    /// Task score of the original image.
    pub score_before: f64,
    /// Task score of the counterfactual.
    pub score_after: f64,
    /// Whether the decision changed.
    pub flipped: bool,
    /// Side-by-side PNG (original | counterfactual), relative to the output folder.
    pub image: String,
}

/// The null baseline: attacks along random unit directions in edit space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullBaseline {
    /// Number of random directions.
    pub directions: usize,
    /// Mean |Δ score| over samples and random directions.
    pub mean_abs_change: f64,
    /// 95 % bootstrap interval.
    pub ci95: [f64; 2],
}

/// A sample excluded from the statistics, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlaggedSample {
    /// Sample index.
    pub sample: usize,
    /// The attack (`single:<name>`, `multiple`, `sweep:<name>`, `null:<k>`).
    pub attack: String,
    /// Why it was flagged.
    pub reason: String,
}

/// Resolved settings, for reproducibility and for the report's "settings" section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The config after `--set` overrides, as JSON.
    pub config: serde_json::Value,
    /// Gradient source actually used (`exact`, `finite-difference`).
    pub gradient: String,
    /// Execution provider per model role.
    pub providers: Vec<(String, String)>,
    /// ONNX Runtime version.
    pub onnxruntime: String,
    /// Warnings raised during the run (fallbacks, dynamic dims set to 1, ...).
    pub warnings: Vec<String>,
}

/// One line of `samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Sample index (0-based); the latent is drawn from the run's seed and this index.
    pub sample: usize,
    /// The attack (`single:<name>`, `multiple`, `sweep:<name>`, `null:<k>`).
    pub attack: String,
    /// Attacked attribute names.
    pub attributes: Vec<String>,
    /// Final α per attacked attribute (sweep: the α grid).
    pub alpha: Vec<f64>,
    /// Task score before the edit.
    pub score_before: f64,
    /// Task score after the edit (sweep: at each α).
    pub score_after: Vec<f64>,
    /// Whether the decision changed.
    pub flipped: bool,
    /// Why the sample was flagged, if it was (then it is left out of the statistics).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flagged: Option<String>,
    /// Image paths relative to the output folder (original | counterfactual pair), if written.
    pub images: Vec<String>,
    /// `multiple` mode: per attribute, |score(final α) − score(final α with that attribute's
    /// weight set to 0)|, the attribute's share in the joint counterfactual.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub contributions: Option<Vec<f64>>,
}
