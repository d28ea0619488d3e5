//! Execution providers: the user's preference list, deliberate fallback, and which one is in use.
//!
//! Each provider is registered on its own with `error_on_failure`, so zoom *knows* which one took
//! (ort's default is to log a failure and silently fall back). A failure becomes a warning naming
//! the reason, and the next provider is tried; CPU always works and is always last.

use crate::error::{Error, Result};
use ort::ep;
use ort::session::builder::SessionBuilder;

/// An execution provider zoom can ask ONNX Runtime for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The default CPU provider.
    Cpu,
    /// NVIDIA CUDA (needs the `cuda` cargo feature and a GPU build of ONNX Runtime).
    Cuda,
    /// NVIDIA TensorRT (needs the `tensorrt` cargo feature and TensorRT libraries).
    #[serde(rename = "tensorrt")]
    TensorRt,
}

impl Provider {
    /// The name users type (`cpu`, `cuda`, `tensorrt`).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }

    /// ONNX Runtime's own name for the provider, as listed by `GetAvailableProviders`.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::TensorRt => "TensorrtExecutionProvider",
        }
    }

    /// Whether the provider runs on a GPU (device memory, float16 kernels, shape-keyed plans).
    pub fn is_gpu(self) -> bool {
        matches!(self, Provider::Cuda | Provider::TensorRt)
    }

    fn parse(s: &str) -> Option<Provider> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Some(Provider::Cpu),
            "cuda" | "gpu" => Some(Provider::Cuda),
            "tensorrt" | "trt" => Some(Provider::TensorRt),
            _ => None,
        }
    }
}

/// Parses `cuda,cpu` into a preference list; `source` names where the list came from for errors.
pub fn parse_provider_list(list: &str, source: &str) -> Result<Vec<Provider>> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let p = Provider::parse(part).ok_or_else(|| {
            Error::config(
                source,
                "ep",
                format!(
                    "unknown execution provider `{}`; expected one of cpu, cuda, tensorrt",
                    part.trim()
                ),
            )
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::config(source, "ep", "empty execution-provider list"));
    }
    Ok(out)
}

/// How cuDNN picks a convolution algorithm for each new input shape (the CUDA provider only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvSearch {
    /// cuDNN's heuristic: no benchmarking, so a new batch size costs nothing. zoom's default,
    /// because its runs meet several shapes (chunk remainders, probes, the gradient graph).
    #[default]
    Heuristic,
    /// Benchmark every algorithm on the first run of each shape (ONNX Runtime's own default):
    /// pays off only on long runs with few shapes.
    Exhaustive,
    /// cuDNN's implicit-GEMM algorithm, always.
    Default,
}

/// Provider settings beyond the preference list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderTuning {
    /// cuDNN algorithm search (CUDA).
    pub conv_search: ConvSearch,
    /// Allow TF32 tensor-core math for float32 matrix products and convolutions (CUDA). Off when
    /// the user asked for fp32, so that fp32 on a GPU agrees with the CPU to float32 noise.
    pub tf32: bool,
}

#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
fn dispatch(p: Provider, tuning: ProviderTuning) -> Option<ep::ExecutionProviderDispatch> {
    match p {
        Provider::Cpu => Some(ep::CPU::default().build()),
        #[cfg(feature = "cuda")]
        Provider::Cuda => Some(
            ep::CUDA::default()
                .with_device_id(0)
                .with_tf32(tuning.tf32)
                .with_conv_algorithm_search(match tuning.conv_search {
                    ConvSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
                    ConvSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
                    ConvSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
                })
                .build(),
        ),
        #[cfg(feature = "tensorrt")]
        Provider::TensorRt => Some(
            ep::TensorRT::default()
                .with_device_id(0)
                .with_engine_cache(true)
                .with_engine_cache_path(
                    std::env::temp_dir()
                        .join("zoom-trt-cache")
                        .to_string_lossy(),
                )
                .build(),
        ),
        #[allow(unreachable_patterns)] // reachable when the GPU features are off
        _ => None,
    }
}

/// Registers the first provider of `prefs` that works; returns the builder, the provider in use,
/// and one warning per provider that was skipped (with the reason).
pub(crate) fn register(
    mut builder: SessionBuilder,
    prefs: &[Provider],
    tuning: ProviderTuning,
) -> (SessionBuilder, Provider, Vec<String>) {
    let mut warnings = Vec::new();
    for &p in prefs {
        if p == Provider::Cpu {
            return (builder, Provider::Cpu, warnings);
        }
        let Some(d) = dispatch(p, tuning) else {
            warnings.push(format!(
                "execution provider `{}` skipped: zoom was built without the `{}` cargo feature",
                p.name(),
                p.name()
            ));
            continue;
        };
        match builder.with_execution_providers([d.error_on_failure()]) {
            Ok(b) => return (b, p, warnings),
            Err(e) => {
                warnings.push(format!(
                    "execution provider `{}` failed to register: {e}",
                    p.name()
                ));
                builder = e.recover();
            }
        }
    }
    warnings.push("no preferred execution provider worked; falling back to cpu".into());
    (builder, Provider::Cpu, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        assert_eq!(
            parse_provider_list("cuda, cpu", "cli").unwrap(),
            vec![Provider::Cuda, Provider::Cpu]
        );
        assert_eq!(
            parse_provider_list("cpu,cpu", "cli").unwrap(),
            vec![Provider::Cpu]
        );
        let err = parse_provider_list("cuda,npu", "cli")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("npu") && err.contains("cpu, cuda, tensorrt"),
            "{err}"
        );
        assert!(parse_provider_list("", "cli").is_err());
    }
}
