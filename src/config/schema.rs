//! serde types of the diagnosis config (YAML). Unknown keys are errors everywhere.

use crate::preprocess::Preprocess;
use crate::runtime::Provider;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole diagnosis config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// RNG seed: latents, probe samples, null directions and bootstrap all derive from it.
    #[serde(default)]
    pub seed: u64,
    /// Number of sampled latents to diagnose.
    pub samples: usize,
    /// Images per ONNX Runtime call: a number or `auto` (sized from the models and free memory).
    #[serde(default = "default_batch")]
    pub batch_size: BatchSize,
    /// Default output folder (the CLI's `--out` wins).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// The image generator.
    pub generator: GeneratorConfig,
    /// The CLIP-like text/image model.
    pub clip: ClipConfig,
    /// The model to diagnose.
    pub target: TargetConfig,
    /// Attribute prompts.
    pub attributes: AttributesConfig,
    /// How prompts become edit directions.
    #[serde(default)]
    pub directions: DirectionsConfig,
    /// Counterfactual search.
    #[serde(default)]
    pub search: SearchConfig,
    /// Execution providers and threads.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

fn default_batch() -> BatchSize {
    BatchSize::Fixed(16)
}

/// `batch_size`: a fixed number of images per call, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// This many images per call.
    Fixed(usize),
    /// Chosen at start-up from the models' sizes and the free memory.
    Auto,
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            BatchSize::Fixed(n) => s.serialize_u64(*n as u64),
            BatchSize::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BatchSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive number of images or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<BatchSize, E> {
                Ok(BatchSize::Fixed(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<BatchSize, E> {
                Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<BatchSize, E> {
                match v {
                    "auto" => Ok(BatchSize::Auto),
                    // `--set batch_size=8` may arrive as a string.
                    _ => v
                        .parse()
                        .map(BatchSize::Fixed)
                        .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Generator files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// ONNX file with inputs `z`, `edit` and outputs `image`, `style`.
    pub model: PathBuf,
    /// Its model card (`card.yaml`).
    pub card: PathBuf,
}

/// CLIP files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Image tower: preprocessed image → embedding.
    pub image: PathBuf,
    /// Text tower: `input_ids` (+ `attention_mask`) → embedding.
    pub text: PathBuf,
    /// Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Preprocessing in front of the image tower, from the generator's [-1, 1] RGB.
    pub preprocess: Preprocess,
    /// Token sequence length (padded/truncated).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// CLIP logit scale for the consistency term (OpenAI CLIP: 100).
    #[serde(default = "default_logit_scale")]
    pub logit_scale: f32,
}

fn default_max_tokens() -> usize {
    32
}

fn default_logit_scale() -> f32 {
    100.0
}

/// The model to diagnose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// ONNX file.
    pub model: PathBuf,
    /// Input name (default: the model's only input).
    #[serde(default)]
    pub input: Option<String>,
    /// Input preprocessing, applied to the generator's RGB image mapped to [0, 1].
    pub preprocess: Preprocess,
    /// The task and how to read the model's output.
    pub task: crate::tasks::TaskConfig,
}

/// Attribute prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The neutral prompt of the domain (e.g. "a face").
    pub neutral: String,
    /// Prompts describing the target's own decision; CLIP's reading of them is kept fixed during
    /// the search (the consistency term). Needs ≥ 2 prompts to be active.
    #[serde(default)]
    pub consistency: Vec<String>,
    /// Prompt templates for ensembling; `{}` is replaced by the prompt.
    #[serde(default)]
    pub templates: Vec<String>,
    /// The attributes to diagnose.
    pub prompts: Vec<AttributePrompt>,
}

/// One attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributePrompt {
    /// Short name for tables and file names.
    pub name: String,
    /// The text prompt.
    pub prompt: String,
    /// Per-attribute disentanglement threshold (overrides `directions.beta`).
    #[serde(default)]
    pub beta: Option<f32>,
}

/// How attribute directions are extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionMethod {
    /// StyleCLIP global directions: per-channel CLIP relevance from ±kσ probes.
    #[default]
    Global,
    /// Average CLIP-space gradient of the text direction with respect to the edit space over
    /// the probe images (needs the exact-gradient graph of generator + CLIP); β is then a
    /// fraction of the largest relevance.
    Gradient,
}

/// Direction extraction settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionsConfig {
    /// Extraction method.
    #[serde(default)]
    pub method: DirectionMethod,
    /// Sampled images per channel probe.
    #[serde(default = "default_probe_samples")]
    pub probe_samples: usize,
    /// Probe size in per-channel standard deviations (±kσ).
    #[serde(default = "default_probe_sigma")]
    pub probe_sigma: f32,
    /// Disentanglement threshold β on |relevance|.
    #[serde(default = "default_beta")]
    pub beta: f32,
    /// Cache folder for channel relevances (keyed by model hashes and settings); relative to
    /// the config file when given, else `.cache/zoom` in the working directory.
    #[serde(default)]
    pub cache: Option<PathBuf>,
}

fn default_probe_samples() -> usize {
    16
}
fn default_probe_sigma() -> f32 {
    5.0
}
fn default_beta() -> f32 {
    0.1
}
/// Where channel relevances are cached when the config does not say.
pub const DEFAULT_CACHE: &str = ".cache/zoom";

impl Default for DirectionsConfig {
    fn default() -> Self {
        DirectionsConfig {
            method: DirectionMethod::Global,
            probe_samples: default_probe_samples(),
            probe_sigma: default_probe_sigma(),
            beta: default_beta(),
            cache: None,
        }
    }
}

/// Search mode (see [`crate::report::schema::Mode`]).
pub use crate::report::schema::Mode;

/// Gradient source for the α updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GradientSource {
    /// Exact when every model's VJP graph builds, checked against finite differences at start.
    #[default]
    Auto,
    /// VJP graphs only (an error when an operator has no rule).
    Exact,
    /// Central finite differences over the active α.
    FiniteDifference,
}

/// Counterfactual search settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// `single`, `multiple` or `sweep`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Gradient steps per attack.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Step size η.
    #[serde(default = "default_step")]
    pub step: f32,
    /// Bound B on |α| (default: the generator card's `default_bound`).
    #[serde(default)]
    pub bound: Option<f32>,
    /// Weight of the task loss.
    #[serde(default = "default_cls_weight")]
    pub cls_weight: f32,
    /// Weight of the CLIP consistency loss.
    #[serde(default = "default_clip_weight")]
    pub clip_weight: f32,
    /// Gradient source.
    #[serde(default)]
    pub gradient: GradientSource,
    /// Finite-difference step on α (in units of the bound-normalised direction).
    #[serde(default = "default_fd_step")]
    pub fd_step: f32,
    /// Random directions for the null baseline (0 = off).
    #[serde(default = "default_null")]
    pub null_directions: usize,
    /// α grid points in `sweep` mode.
    #[serde(default = "default_sweep_points")]
    pub sweep_points: usize,
    /// Counterfactual examples kept per attribute for the report.
    #[serde(default = "default_examples")]
    pub examples: usize,
}

fn default_mode() -> Mode {
    Mode::Single
}
fn default_iterations() -> usize {
    10
}
fn default_step() -> f32 {
    1.0
}
fn default_cls_weight() -> f32 {
    1.0
}
fn default_clip_weight() -> f32 {
    0.005
}
fn default_fd_step() -> f32 {
    0.05
}
fn default_null() -> usize {
    4
}
fn default_sweep_points() -> usize {
    9
}
fn default_examples() -> usize {
    4
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            mode: default_mode(),
            iterations: default_iterations(),
            step: default_step(),
            bound: None,
            cls_weight: default_cls_weight(),
            clip_weight: default_clip_weight(),
            gradient: GradientSource::Auto,
            fd_step: default_fd_step(),
            null_directions: default_null(),
            sweep_points: default_sweep_points(),
            examples: default_examples(),
        }
    }
}

/// Execution providers and threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Provider preference (`[cuda, cpu]`).
    #[serde(default = "default_ep")]
    pub ep: Vec<Provider>,
    /// Intra-op threads per session (default: all cores).
    #[serde(default)]
    pub threads: Option<usize>,
    /// `fp32` (default), `fp16` (GPU providers only) or `auto` (fp16 where the provider is a GPU).
    #[serde(default)]
    pub precision: crate::runtime::Precision,
    /// cuDNN convolution-algorithm search on CUDA: `heuristic` (default), `exhaustive`, `default`.
    #[serde(default)]
    pub cudnn_conv_search: crate::runtime::ConvSearch,
    /// Folder for ONNX Runtime profiles of every session (per-node times and providers).
    #[serde(default)]
    pub profile: Option<PathBuf>,
}

fn default_ep() -> Vec<Provider> {
    vec![Provider::Cpu]
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            ep: default_ep(),
            threads: None,
            precision: crate::runtime::Precision::Fp32,
            cudnn_conv_search: crate::runtime::ConvSearch::Heuristic,
            profile: None,
        }
    }
}
