//! Test helpers (compiled for tests only): running models on ONNX Runtime and a seeded random
//! generator. ONNX Runtime is a dev-dependency only; the library never links it.
//!
//! Tests run on the CPU provider. `ZOOM_GRAPH_TEST_EP=cuda` runs every test graph on the CUDA
//! provider instead (needs a GPU build of ONNX Runtime in `ORT_DYLIB_PATH`): that is how the
//! gradient rules are checked on a GPU, where kernels differ (cuDNN, ScatterElements, Resize).
//! TF32 is off there so that float32 checks keep their CPU tolerances.

use std::collections::HashMap;
use std::sync::OnceLock;

use ort::session::{
    builder::{GraphOptimizationLevel, SessionBuilder},
    Session,
};
use ort::value::{DynValue, Tensor};

use crate::io::encode_model;
use crate::proto::ModelProto;
use crate::tensor::HostTensor;
use crate::DataType;

fn env() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        ort::init().build().expect(
            "ONNX Runtime did not load: run scripts/fetch-onnxruntime.sh (ORT_DYLIB_PATH is set in .cargo/config.toml)",
        )
    })
}

/// A session builder on the provider the tests were asked to use (see the module docs).
/// Registration failures are errors: a GPU run must not pass by quietly using the CPU.
fn builder() -> ort::Result<SessionBuilder> {
    builder_on(test_ep().as_deref())
}

/// `ZOOM_GRAPH_TEST_EP`, if set.
fn test_ep() -> Option<String> {
    std::env::var("ZOOM_GRAPH_TEST_EP").ok()
}

/// Whether the graphs under test run on the CPU (the default).
pub fn testing_on_cpu() -> bool {
    matches!(test_ep().as_deref(), None | Some("") | Some("cpu"))
}

fn builder_on(ep: Option<&str>) -> ort::Result<SessionBuilder> {
    let b = Session::builder(env())?;
    match ep {
        None | Some("") | Some("cpu") => Ok(b),
        Some("cuda") => {
            let cuda = ort::ep::CUDA::default()
                .with_device_id(0)
                .with_tf32(false)
                .build()
                .error_on_failure();
            Ok(b.with_execution_providers([cuda])?)
        }
        Some(other) => panic!("ZOOM_GRAPH_TEST_EP={other}: expected cpu or cuda"),
    }
}

/// A compiled model ready to run.
pub struct Runner {
    session: Session,
}

impl Runner {
    /// Compile `model` on the provider under test (one intra-op thread: tests run in parallel).
    pub fn new(model: &ModelProto) -> Result<Self, String> {
        Self::with_threads(model, 1)
    }

    /// Compile on the CPU whatever `ZOOM_GRAPH_TEST_EP` says: for the references a gradient is
    /// checked against (finite differences of the forward model, ONNX Runtime's own max-pool
    /// Indices). Computed on a GPU they inherit its kernels: on an H200, finite differences
    /// through CUDA's float64 Softmax and LayerNormalization were off by up to 20 % where the
    /// CPU agrees to 1e-7, and CUDA's MaxPool breaks ties differently. The check must test the
    /// graph under test alone.
    pub fn reference(model: &ModelProto) -> Result<Self, String> {
        Self::build(model, 1, builder_on(None))
    }

    /// Compile with `threads` intra-op threads (benchmarks).
    pub fn with_threads(model: &ModelProto, threads: usize) -> Result<Self, String> {
        Self::build(model, threads, builder())
    }

    fn build(
        model: &ModelProto,
        threads: usize,
        builder: ort::Result<SessionBuilder>,
    ) -> Result<Self, String> {
        let bytes = encode_model(model);
        let session = builder
            .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .map_err(|e| format!("ONNX Runtime rejected the model: {e}"))?;
        Ok(Runner { session })
    }

    /// Compile with profiling on; [`Runner::profile`] then summarises time per operator type.
    pub fn profiled(
        model: &ModelProto,
        threads: usize,
        prefix: &std::path::Path,
    ) -> Result<Self, String> {
        let bytes = encode_model(model);
        let session = builder()
            .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
            .and_then(|b| b.with_profiling(prefix).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .map_err(|e| format!("ONNX Runtime rejected the model: {e}"))?;
        Ok(Runner { session })
    }

    /// End profiling; returns (op type, total µs) sorted by time. Nodes that ran on a provider
    /// other than the CPU are labelled with it, e.g. `Conv@CUDA`.
    pub fn profile(&mut self) -> Vec<(String, f64)> {
        let path = self.session.end_profiling().expect("profiling");
        let text = std::fs::read_to_string(&path).expect("profile file");
        let _ = std::fs::remove_file(&path);
        let v: serde_json::Value = serde_json::from_str(&text).expect("profile JSON");
        let mut by_op: HashMap<String, f64> = HashMap::new();
        for e in v.as_array().into_iter().flatten() {
            if e["cat"] == "Node"
                && e["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("_kernel_time"))
            {
                let op = e["args"]["op_name"].as_str().unwrap_or("?");
                let op = match e["args"]["provider"].as_str() {
                    Some(p) if p != "CPUExecutionProvider" => {
                        format!("{op}@{}", p.trim_end_matches("ExecutionProvider"))
                    }
                    _ => op.to_string(),
                };
                *by_op.entry(op).or_default() += e["dur"].as_f64().unwrap_or(0.0);
            }
        }
        let mut out: Vec<(String, f64)> = by_op.into_iter().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// Run with named inputs; returns every output by name.
    pub fn run(
        &mut self,
        feeds: &[(&str, &HostTensor)],
    ) -> Result<HashMap<String, HostTensor>, String> {
        let mut inputs: Vec<(String, DynValue)> = vec![];
        for (name, t) in feeds {
            inputs.push((name.to_string(), to_ort(t)?));
        }
        let names: Vec<String> = self
            .session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outs = self
            .session
            .run(inputs)
            .map_err(|e| format!("ONNX Runtime run failed: {e}"))?;
        let mut res = HashMap::new();
        for name in names {
            let v = &outs[name.as_str()];
            res.insert(name, from_ort(v)?);
        }
        Ok(res)
    }
}

fn to_ort(t: &HostTensor) -> Result<DynValue, String> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let e = |e: ort::Error| e.to_string();
    Ok(match t.dtype {
        DataType::FLOAT => Tensor::from_array((
            shape,
            t.to_f64s().iter().map(|&x| x as f32).collect::<Vec<_>>(),
        ))
        .map_err(e)?
        .into_dyn(),
        DataType::DOUBLE => Tensor::from_array((shape, t.to_f64s()))
            .map_err(e)?
            .into_dyn(),
        DataType::INT64 => Tensor::from_array((shape, t.to_i64s()))
            .map_err(e)?
            .into_dyn(),
        DataType::INT32 => Tensor::from_array((
            shape,
            t.to_i64s().iter().map(|&x| x as i32).collect::<Vec<_>>(),
        ))
        .map_err(e)?
        .into_dyn(),
        DataType::BOOL => Tensor::from_array((
            shape,
            t.to_i64s().iter().map(|&x| x != 0).collect::<Vec<_>>(),
        ))
        .map_err(e)?
        .into_dyn(),
        other => return Err(format!("test runner: unsupported input type {other}")),
    })
}

fn from_ort(v: &DynValue) -> Result<HostTensor, String> {
    if let Ok((s, d)) = v.try_extract_tensor::<f32>() {
        return Ok(HostTensor::float(
            DataType::FLOAT,
            dims(s),
            d.iter().map(|&x| x as f64).collect(),
        ));
    }
    if let Ok((s, d)) = v.try_extract_tensor::<f64>() {
        return Ok(HostTensor::float(DataType::DOUBLE, dims(s), d.to_vec()));
    }
    if let Ok((s, d)) = v.try_extract_tensor::<i64>() {
        return Ok(HostTensor::int(DataType::INT64, dims(s), d.to_vec()));
    }
    if let Ok((s, d)) = v.try_extract_tensor::<bool>() {
        return Ok(HostTensor::int(
            DataType::BOOL,
            dims(s),
            d.iter().map(|&x| x as i64).collect(),
        ));
    }
    Err("test runner: unsupported output type".into())
}

fn dims(s: &ort::value::Shape) -> Vec<usize> {
    s.iter().map(|&d| d as usize).collect()
}

/// A one-node subgraph (an If branch) applying `op` to the outer-scope value `outer`, with a
/// float32 output `out` of shape `dims`.
pub fn one_node_branch(op: &str, outer: &str, out: &str, dims: &[i64]) -> crate::proto::GraphProto {
    let dims: Vec<crate::Dim> = dims.iter().map(|&d| d.into()).collect();
    crate::proto::GraphProto {
        name: out.into(),
        node: vec![crate::proto::NodeProto {
            op_type: op.into(),
            input: vec![outer.into()],
            output: vec![out.into()],
            ..Default::default()
        }],
        output: vec![crate::model::tensor_value_info(
            out,
            DataType::FLOAT,
            Some(&dims),
        )],
        ..Default::default()
    }
}

/// Names of the graph inputs of `model` (what a test differentiates with respect to).
pub fn input_names(model: &ModelProto) -> Vec<String> {
    let g = model.graph.as_ref().expect("graph");
    g.input.iter().map(|i| i.name.clone()).collect()
}

/// The gradient (VJP) model of `model` with respect to every graph input (default spec).
pub fn vjp_wrt_inputs(model: &ModelProto) -> ModelProto {
    vjp_wrt_inputs_tuned(model, crate::autodiff::Tuning::Portable)
}

/// [`vjp_wrt_inputs`] shaped for `tuning`.
pub fn vjp_wrt_inputs_tuned(model: &ModelProto, tuning: crate::autodiff::Tuning) -> ModelProto {
    let spec = crate::autodiff::VjpSpec {
        wrt: input_names(model),
        tuning,
        ..Default::default()
    };
    crate::autodiff::build_vjp(model, &spec)
        .expect("gradient model")
        .0
}

/// The error of building the gradient of `model` with respect to `wrt` (panics if the build
/// succeeds): for tests of refusals.
pub fn vjp_error(model: &ModelProto, wrt: &str) -> crate::error::Error {
    let spec = crate::autodiff::VjpSpec {
        wrt: vec![wrt.into()],
        ..Default::default()
    };
    match crate::autodiff::build_vjp(model, &spec) {
        Ok(_) => panic!("the gradient of {wrt} was built; expected a refusal"),
        Err(e) => e,
    }
}

/// Standard-normal values for every graph input of `model` (fixed shapes, each input's own
/// element type), from a generator seeded with `seed`.
pub fn random_feeds(model: &ModelProto, seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = Rng::new(seed);
    model
        .graph
        .as_ref()
        .expect("graph")
        .input
        .iter()
        .map(|i| {
            let s: Vec<usize> = i
                .dims()
                .expect("input shape")
                .iter()
                .map(|d| d.fixed().expect("fixed input dimension") as usize)
                .collect();
            let n = s.iter().product();
            let v = (0..n).map(|_| rng.normal()).collect();
            (
                i.name.clone(),
                HostTensor::float(i.dtype().expect("input type"), s, v),
            )
        })
        .collect()
}

/// A small seeded generator (SplitMix64) so tests are reproducible without extra crates.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform(1e-12, 1.0);
        let u2 = self.uniform(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
