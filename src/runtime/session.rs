//! A loaded model: one ONNX Runtime session with its declared inputs/outputs, checked before each run.

use super::precision::{to_fp16, Precision};
use super::providers::{register, ConvSearch, Provider, ProviderTuning};
use super::tensor::{DType, Tensor};
use crate::error::{Error, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::ValueType;
use std::path::{Path, PathBuf};

/// Upper bound on a model file zoom will hand to ONNX Runtime (protobuf's own limit is 2 GiB).
pub const MAX_MODEL_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How sessions are built.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Provider preference, tried in order; CPU is the implicit last resort.
    pub providers: Vec<Provider>,
    /// Intra-op threads; `None` = all available cores.
    pub intra_threads: Option<usize>,
    /// float32, or float16 inside the graph on GPU providers.
    pub precision: Precision,
    /// cuDNN convolution-algorithm search (CUDA provider).
    pub conv_search: ConvSearch,
    /// Write an ONNX Runtime profile (per-node times and providers, JSON) of every session into
    /// this folder, for finding what is slow on a given machine.
    pub profile_dir: Option<PathBuf>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            providers: vec![Provider::Cpu],
            intra_threads: None,
            precision: Precision::Fp32,
            conv_search: ConvSearch::default(),
            profile_dir: None,
        }
    }
}

impl SessionOptions {
    /// How gradient graphs for these sessions are shaped: for ONNX Runtime's CPU provider when
    /// no GPU provider is asked for (the CPU never runs float16, which that shape must not
    /// meet), portable otherwise. A GPU that turns out to be missing falls back to the CPU with
    /// the portable graph: the same values, a little slower.
    pub fn gradient_tuning(&self) -> zoom_graph::autodiff::Tuning {
        if self.providers.iter().any(|p| p.is_gpu()) {
            zoom_graph::autodiff::Tuning::Portable
        } else {
            zoom_graph::autodiff::Tuning::CpuFloat32
        }
    }

    /// Threads ONNX Runtime will use inside one operator.
    pub fn threads(&self) -> usize {
        self.intra_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// Name, element type and shape (`None` = dynamic) of one model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type; `None` when zoom cannot convert it (string, float16, ...).
    pub dtype: Option<DType>,
    /// ONNX's name of the element type (always set, also for unsupported types).
    pub dtype_name: String,
    /// Dimensions; `None` for a dynamic one.
    pub shape: Vec<Option<i64>>,
}

impl TensorInfo {
    fn from_outlet(name: &str, t: &ValueType) -> TensorInfo {
        match t {
            ValueType::Tensor { ty, shape, .. } => TensorInfo {
                name: name.into(),
                dtype: DType::from_ort(*ty),
                dtype_name: DType::from_ort(*ty)
                    .map_or_else(|| format!("{ty}").to_lowercase(), |d| d.name().to_string()),
                shape: shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
            },
            other => TensorInfo {
                name: name.into(),
                dtype: None,
                dtype_name: format!("{other}"),
                shape: Vec::new(),
            },
        }
    }

    /// `[N, 3, 64, 64]`-style rendering with `?` for dynamic dimensions.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

/// A model ready to run.
pub struct Model {
    session: Session,
    path: PathBuf,
    label: String,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    provider: Provider,
    fp16: bool,
    profiling: bool,
    warnings: Vec<String>,
}

impl Drop for Model {
    fn drop(&mut self) {
        if self.profiling {
            match self.session.end_profiling() {
                Ok(file) => tracing::info!("{}: ONNX Runtime profile in {file}", self.label),
                Err(e) => tracing::warn!("{}: profile not written: {e}", self.label),
            }
        }
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Checks that `path` exists, is a file of sane size and starts like an ONNX protobuf, so that the
/// user gets a precise message instead of ONNX Runtime's generic parse failure.
pub fn precheck_model_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::model(path, "model file not found")
        } else {
            Error::io(path, e)
        }
    })?;
    if !meta.is_file() {
        return Err(Error::model(path, "not a file"));
    }
    if meta.len() == 0 {
        return Err(Error::model(
            path,
            "empty file; expected an ONNX model (.onnx protobuf)",
        ));
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(Error::model(
            path,
            format!(
                "{} bytes is over the 2 GiB protobuf limit; use external data",
                meta.len()
            ),
        ));
    }
    Ok(meta.len())
}

impl Model {
    /// Loads `path` with the given options. The error names the file and ONNX Runtime's reason.
    pub fn load(path: &Path, options: &SessionOptions) -> Result<Model> {
        precheck_model_file(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        zoom_graph_precheck(path, &bytes)?;
        Self::build(&bytes, path, true, options)
    }

    /// Builds a session from an in-memory model; `origin` names it in messages.
    pub fn from_bytes(bytes: &[u8], origin: &Path, options: &SessionOptions) -> Result<Model> {
        Self::build(bytes, origin, false, options)
    }

    /// `from_file`: `bytes` are the file at `path`, whose external weights (if any) lie beside it.
    fn build(
        bytes: &[u8],
        path: &Path,
        from_file: bool,
        options: &SessionOptions,
    ) -> Result<Model> {
        let env = super::init(None)?;
        let ctx = || format!("loading {}", path.display());
        let builder = Session::builder(env)
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|b| b.with_intra_threads(options.threads()).map_err(Into::into))
            .and_then(|b| {
                // Models are committed from memory, so ONNX Runtime would look for external
                // weight files relative to the working directory: point it at the model's folder.
                match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(dir) => b
                        .with_config_entry(
                            "session.model_external_initializers_file_folder_path",
                            dir.to_string_lossy(),
                        )
                        .map_err(Into::into),
                    None => Ok(b),
                }
            })
            .map_err(|e: ort::Error| Error::runtime(ctx(), e))?;
        let builder = match &options.profile_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let stem: String = path
                    .file_name()
                    .map_or("model".into(), |f| f.to_string_lossy().into_owned())
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let role = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map_or(String::new(), |d| format!("{}-", d.to_string_lossy()));
                builder
                    .with_profiling(dir.join(format!("{role}{stem}")))
                    .map_err(|e| Error::runtime(ctx(), e))?
            }
            None => builder,
        };
        let tuning = ProviderTuning {
            conv_search: options.conv_search,
            tf32: options.precision != Precision::Fp32,
        };
        let (mut builder, provider, warnings) = register(builder, &options.providers, tuning);
        for w in &warnings {
            tracing::warn!("{}: {w}", path.display());
        }
        let mut fp16 = options.precision.use_fp16(provider, path)?;
        let mut warnings = warnings;
        let converted;
        let bytes = if fp16 {
            // The conversion needs every weight in memory, external data included.
            let attempt = zoom_graph::io::decode_model(bytes, path)
                .and_then(|mut proto| {
                    if from_file {
                        let limit = zoom_graph::io::ReadOptions::default().max_external_bytes;
                        zoom_graph::io::load_external_data(&mut proto, path, limit)?;
                    }
                    Ok(proto)
                })
                .map_err(|e| Error::model_graph(path, &e))
                .and_then(|proto| to_fp16(&proto, path));
            match attempt {
                Ok(b) => {
                    converted = b;
                    &converted[..]
                }
                // `auto` means float16 where it can be had: a model the pass cannot convert
                // runs in float32 rather than stopping the run.
                Err(e) if options.precision == Precision::Auto => {
                    let w = format!("precision auto: running in fp32: {e}");
                    tracing::warn!("{w}");
                    warnings.push(w);
                    fp16 = false;
                    bytes
                }
                Err(e) => return Err(e),
            }
        } else {
            bytes
        };
        let session = builder
            .commit_from_memory(bytes)
            .map_err(|e| Error::model(path, format!("ONNX Runtime cannot load it: {e}")))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| TensorInfo::from_outlet(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| TensorInfo::from_outlet(o.name(), o.dtype()))
            .collect();
        Ok(Model {
            session,
            label: path.file_name().map_or_else(
                || path.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            ),
            path: path.to_path_buf(),
            inputs,
            outputs,
            provider,
            fp16,
            profiling: options.profile_dir.is_some(),
            warnings,
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Declared inputs.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// Declared outputs.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The execution provider the session was built with.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether the graph runs in float16 (see [`Precision`]).
    pub fn fp16(&self) -> bool {
        self.fp16
    }

    /// The provider and precision, as reports show them: `cpu`, `cuda fp16`.
    pub fn placement(&self) -> String {
        if self.fp16 {
            format!("{} fp16", self.provider.name())
        } else {
            self.provider.name().to_string()
        }
    }

    /// Provider fallbacks that happened while loading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn tensor_error(&self, tensor: &str, message: String) -> Error {
        Error::Tensor {
            model: self.path.display().to_string(),
            tensor: tensor.into(),
            message,
        }
    }

    /// Checks every fed tensor against the declaration: known name, same dtype, same rank and the
    /// same size on every fixed dimension; and that no input is left out.
    fn check_inputs(&self, inputs: &[(&str, &Tensor)]) -> Result<()> {
        for (name, t) in inputs {
            let Some(info) = self.inputs.iter().find(|i| i.name == *name) else {
                let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(self.tensor_error(
                    name,
                    format!(
                        "the model has no input of this name; its inputs are: {}",
                        names.join(", ")
                    ),
                ));
            };
            if info.dtype != Some(t.dtype()) {
                return Err(self.tensor_error(
                    name,
                    format!(
                        "expected dtype {}, got {}",
                        info.dtype_name,
                        t.dtype().name()
                    ),
                ));
            }
            let shape = t.shape();
            let fits = shape.len() == info.shape.len()
                && shape
                    .iter()
                    .zip(&info.shape)
                    .all(|(&s, d)| d.is_none_or(|d| d as usize == s));
            if !fits {
                return Err(self.tensor_error(
                    name,
                    format!("expected shape {}, got {:?}", info.shape_string(), shape),
                ));
            }
        }
        for info in &self.inputs {
            if !inputs.iter().any(|(n, _)| *n == info.name) {
                return Err(self.tensor_error(
                    &info.name,
                    format!(
                        "input missing (dtype {}, shape {})",
                        info.dtype_name,
                        info.shape_string()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs the model; returns every output in declaration order. NaN/Inf in a float output is an
    /// error naming the output, because a silently wrong report is worse than a stop.
    pub fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let outs = self.run_raw(inputs)?;
        for (name, t) in &outs {
            let bad = t.non_finite_count();
            if bad > 0 {
                let hint = if self.fp16 {
                    "; the graph runs in float16, where values beyond ±65504 overflow: \
                     run it with precision fp32"
                } else {
                    ""
                };
                return Err(self.tensor_error(
                    name,
                    format!(
                        "output contains {bad} NaN/Inf values out of {}{hint}",
                        t.shape().iter().product::<usize>()
                    ),
                ));
            }
        }
        Ok(outs)
    }

    /// `inputs` as ONNX Runtime values, named.
    fn ort_feed<'a>(
        &self,
        inputs: &[(&'a str, &'a Tensor)],
    ) -> Result<
        Vec<(
            std::borrow::Cow<'a, str>,
            ort::session::SessionInputValue<'a>,
        )>,
    > {
        let mut feed = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            let v = t.to_ort().map_err(|e| {
                self.tensor_error(name, format!("cannot pass to ONNX Runtime: {e}"))
            })?;
            feed.push((std::borrow::Cow::Borrowed(*name), v));
        }
        Ok(feed)
    }

    /// Like [`Model::run`] but without the NaN/Inf check (for callers that flag samples instead).
    pub fn run_raw(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>> {
        self.check_inputs(inputs)?;
        let feed = self.ort_feed(inputs)?;
        let label = self.label.clone();
        let outputs = self
            .session
            .run(feed)
            .map_err(|e| Error::runtime(format!("running {label}"), e))?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for info in &self.outputs {
            let v = &outputs[info.name.as_str()];
            let t = Tensor::from_ort(v)
                .map_err(|e| {
                    Error::runtime(format!("reading output `{}` of {label}", info.name), e)
                })?
                .ok_or_else(|| Error::Tensor {
                    model: label.clone(),
                    tensor: info.name.clone(),
                    message: format!("unsupported output type {}", info.dtype_name),
                })?;
            result.push((info.name.clone(), t));
        }
        Ok(result)
    }

    /// Whether the model runs on `inputs`, without ONNX Runtime logging the failure when it does
    /// not (a probe expected to fail sometimes). The error is ONNX Runtime's message, shortened
    /// to the node and what it could not do.
    pub fn probe(&mut self, inputs: &[(&str, &Tensor)]) -> std::result::Result<(), String> {
        let feed = self.ort_feed(inputs).map_err(|e| e.to_string())?;
        let mut options = ort::session::RunOptions::new().map_err(|e| e.to_string())?;
        options
            .set_log_level(ort::logging::LogLevel::Fatal)
            .map_err(|e| e.to_string())?;
        let result = self
            .session
            .run_with_options(feed, &options)
            .map(drop)
            .map_err(|e| short_ort_message(&e.to_string()));
        result
    }

    /// Runs and returns the named output only.
    pub fn run_one(&mut self, inputs: &[(&str, &Tensor)], output: &str) -> Result<Tensor> {
        let outs = self.run(inputs)?;
        let label = self.label.clone();
        outs.into_iter()
            .find(|(n, _)| n == output)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::Tensor {
                model: label,
                tensor: output.into(),
                message: "no output of this name".into(),
            })
    }
}

/// "Non-zero status code returned while running Reshape node. Name:'r' Status Message:
/// /onnxruntime_src/…/reshape_helper.h:91 … was false. The input tensor cannot be reshaped …"
/// → "Reshape node 'r': The input tensor cannot be reshaped …" (the source location and the
/// failed C++ condition tell a user nothing).
fn short_ort_message(msg: &str) -> String {
    // ONNX Runtime continues some messages on the next line ("… for the following indices\n
    // index: 0 Got: 2 Expected: 1"): one line, single spaces.
    let joined = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = joined.as_str();
    let node = line
        .split_once("while running ")
        .and_then(|(_, rest)| rest.split_once(" node."))
        .map(|(op, rest)| {
            let name = rest
                .split_once("Name:")
                .and_then(|(_, n)| n.split_whitespace().next())
                .filter(|n| *n != "''")
                .map(|n| format!(" {n}"))
                .unwrap_or_default();
            format!("{op} node{name}: ")
        })
        .unwrap_or_default();
    let what = line
        .rsplit_once(" was false. ")
        .map(|(_, w)| w)
        .or_else(|| line.split_once("Status Message: ").map(|(_, w)| w))
        .unwrap_or(line);
    format!("{node}{}", what.trim())
}

/// A cheap structural check before ONNX Runtime sees the bytes: a truncated or non-ONNX file gets
/// a message that says so (ORT's own is "Protobuf parsing failed").
fn zoom_graph_precheck(path: &Path, bytes: &[u8]) -> Result<()> {
    match crate::onnx::ModelSummary::parse(bytes) {
        Ok(_) => Ok(()),
        Err(msg) => Err(Error::model(path, msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::short_ort_message;

    #[test]
    fn ort_failures_are_shortened_to_node_and_cause() {
        let ort = "Non-zero status code returned while running Reshape node. Name:'shape_7' \
                   Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/\
                   reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const \
                   onnxruntime::TensorShape&) input_shape_size == requested_shape_size was \
                   false. The input tensor cannot be reshaped to the requested shape. Input \
                   shape:{2,8}, requested shape:{1,16}\n";
        assert_eq!(
            short_ort_message(ort),
            "Reshape node 'shape_7': The input tensor cannot be reshaped to the requested \
             shape. Input shape:{2,8}, requested shape:{1,16}"
        );
        // Unnamed node, no C++ condition: the status message as it is.
        let ort = "Non-zero status code returned while running Gemm node. Name:'' Status \
                   Message: Gemm: Invalid bias shape for broadcast";
        assert_eq!(
            short_ort_message(ort),
            "Gemm node: Gemm: Invalid bias shape for broadcast"
        );
        // Anything else passes through, on one line.
        assert_eq!(
            short_ort_message(
                "Got invalid dimensions for input: z for the following indices\n index: 0 Got: 2 Expected: 1\n"
            ),
            "Got invalid dimensions for input: z for the following indices index: 0 Got: 2 Expected: 1"
        );
    }
}
