//! # zoom — zero-shot model diagnosis
//!
//! zoom finds which semantic attributes a trained vision model is sensitive to, without a test
//! set or labels (after *Zero-shot Model Diagnosis*, CVPR 2023). A run goes:
//!
//! 1. **Load models** ([`runtime`]): the generator, the CLIP towers and the target, each an ONNX
//!    graph run by ONNX Runtime on the chosen execution provider.
//! 2. **Attribute directions** ([`directions`]): each text prompt becomes a direction in the
//!    generator's edit space, through CLIP.
//! 3. **Counterfactual search** ([`search`]): for sampled latents, attribute weights α are
//!    optimised to flip (or move) the target's prediction while CLIP keeps the target attribute.
//! 4. **Statistics** ([`stats`]): per-attribute sensitivity, bootstrap intervals, flip rates.
//! 5. **Report** ([`report`]): `report.json`, `samples.jsonl`, images, plots, `report.html`.
//!
//! Gradients come from VJP graphs built by the `zoom-graph` crate, with finite differences as
//! the fallback and the self-check.

#![warn(clippy::unwrap_used)]
// Tests assert by unwrapping: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod diagnose;
pub mod directions;
pub mod error;
pub mod io;
pub mod models;
pub mod onnx;
pub mod preprocess;
pub mod report;
pub mod runtime;
pub mod sampling;
pub mod search;
pub mod stats;
pub mod tasks;

pub use error::{Error, Result};
