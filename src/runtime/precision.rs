//! Numeric precision of the networks: float32 everywhere, or float16 inside the graph on GPUs.
//!
//! float16 halves memory traffic and uses the tensor cores, which is what lets StyleGAN-sized
//! generators and CLIP towers run at useful batch sizes. It is applied as a graph rewrite
//! (`zoom_graph::fp16`) when a session is built, so every model (the user's, and the gradient
//! graphs zoom derives from them) gets it the same way, and the Rust side keeps exchanging float32
//! tensors: the rewritten graph casts at its inputs and outputs. ONNX Runtime's CPU provider has
//! few float16 kernels, so float16 is only ever used on GPU providers.

use super::providers::Provider;
use crate::error::{Error, Result};
use std::path::Path;

/// The precision a user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 on every provider (the default: results match the CPU to float noise).
    #[default]
    Fp32,
    /// float16 inside the graph; an error on a provider without float16 kernels.
    Fp16,
    /// float16 where the provider has the kernels (CUDA, TensorRT), float32 elsewhere.
    Auto,
}

impl Precision {
    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Auto => "auto",
        }
    }

    /// Parses `fp32`, `fp16` or `auto`; `source` names where the value came from for errors.
    pub fn parse(s: &str, source: &str) -> Result<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "fp16" | "float16" | "half" => Ok(Precision::Fp16),
            "auto" => Ok(Precision::Auto),
            other => Err(Error::config(
                source,
                "precision",
                format!("unknown precision `{other}`; expected fp32, fp16 or auto"),
            )),
        }
    }

    /// Whether a session on `provider` runs in float16. Asking for fp16 on the CPU is an error
    /// rather than a silent fallback: the user asked for a speed/accuracy trade that cannot happen.
    pub fn use_fp16(self, provider: Provider, model: &Path) -> Result<bool> {
        let gpu = provider.is_gpu();
        match self {
            Precision::Fp32 => Ok(false),
            Precision::Auto => Ok(gpu),
            Precision::Fp16 if gpu => Ok(true),
            Precision::Fp16 => Err(Error::model(
                model,
                format!(
                    "precision fp16 needs a GPU provider (cuda or tensorrt), but this session runs on {}: \
                     ONNX Runtime's CPU provider lacks float16 kernels. Use precision `auto` to fall back to fp32",
                    provider.name()
                ),
            )),
        }
    }
}

/// Rewrites an ONNX model to run in float16 (graph inputs and outputs stay float32). `model` is
/// the protobuf with all weights in memory; `origin` names it in errors.
pub fn to_fp16(model: &zoom_graph::ModelProto, origin: &Path) -> Result<Vec<u8>> {
    let (converted, report) =
        zoom_graph::fp16::convert_to_fp16(model, &zoom_graph::fp16::Fp16Options::default())
            .map_err(|e| Error::model(origin, format!("float16 conversion failed: {e}")))?;
    tracing::info!(
        "{}: float16 graph ({} nodes fp16, {} kept fp32, {} casts)",
        origin.display(),
        report.converted_nodes,
        report.fp32_nodes,
        report.casts_inserted
    );
    if report.clamped_values > 0 {
        tracing::warn!(
            "{}: {} weights lie outside float16's range (±65504) and were clamped",
            origin.display(),
            report.clamped_values
        );
    }
    let bytes = zoom_graph::io::encode_model(&converted);
    if bytes.len() as u64 >= super::session::MAX_MODEL_BYTES {
        return Err(Error::model(
            origin,
            "the float16 model is over protobuf's 2 GiB limit; run it in fp32",
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_is_refused_on_the_cpu_and_auto_falls_back() {
        let p = Path::new("m.onnx");
        assert!(!Precision::Auto.use_fp16(Provider::Cpu, p).unwrap());
        assert!(Precision::Auto.use_fp16(Provider::Cuda, p).unwrap());
        assert!(Precision::Fp16.use_fp16(Provider::TensorRt, p).unwrap());
        assert!(!Precision::Fp32.use_fp16(Provider::Cuda, p).unwrap());
        let err = Precision::Fp16
            .use_fp16(Provider::Cpu, p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.onnx") && err.contains("auto"), "{err}");
    }

    #[test]
    fn parse_names_the_key_and_the_choices() {
        assert_eq!(Precision::parse("FP16", "cli").unwrap(), Precision::Fp16);
        let err = Precision::parse("int8", "cli").unwrap_err().to_string();
        assert!(
            err.contains("int8") && err.contains("fp32, fp16 or auto"),
            "{err}"
        );
    }
}
