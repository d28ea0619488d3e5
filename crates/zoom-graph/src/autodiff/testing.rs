//! Gradient-rule test harness (tests only).
//!
//! Each [`Case`] is a small graph (usually one node) built for a given element type. For every
//! case, [`run_cases`] builds the VJP model and checks on ONNX Runtime (CPU):
//! 1. the VJP model's forward outputs equal the forward model's, and the output shapes equal
//!    those of our shape inference;
//! 2. each `<input>_grad` against central finite differences of f(x) = Σ ⟨u, y(x)⟩ (u random
//!    cotangents), element by element (up to 48 sampled elements per input);
//! 3. the dot-product identity ⟨J·v, u⟩ = ⟨v, Jᵀ·u⟩, with J·v by a central difference along a
//!    random direction v.
//!
//! Cases run in float64 where ONNX Runtime's CPU kernels support it (tight tolerances), else in
//! float32 (looser tolerances; linear operators use a large step, which is exact for them).
//! All failures are collected and reported together.

use std::collections::HashMap;

use super::{build_vjp, Tuning, VjpSpec};
use crate::builder::GraphBuilder;
use crate::proto::{AttributeProto, ModelProto};
use crate::shapes::infer;
use crate::tensor::HostTensor;
use crate::testutil::{Rng, Runner};
use crate::{DataType, Dim};

/// How random input values are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    lo: f64,
    hi: f64,
    /// Random sign, magnitude in [lo, hi] (keeps values away from kinks at 0).
    signed_magnitude: bool,
}

impl Inputs {
    /// Uniform in [lo, hi).
    pub fn uniform(lo: f64, hi: f64) -> Self {
        Inputs {
            lo,
            hi,
            signed_magnitude: false,
        }
    }
    /// Uniform in [-2, 2).
    pub fn any() -> Self {
        Self::uniform(-2.0, 2.0)
    }
    /// Positive values in [0.3, 2).
    pub fn positive() -> Self {
        Self::uniform(0.3, 2.0)
    }
    /// ±[0.2, 2): no value near 0.
    pub fn away_from_zero() -> Self {
        Inputs {
            lo: 0.2,
            hi: 2.0,
            signed_magnitude: true,
        }
    }
    /// Same kind with another range.
    pub fn range(mut self, lo: f64, hi: f64) -> Self {
        self.lo = lo;
        self.hi = hi;
        self
    }
    fn draw(&self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let m = rng.uniform(self.lo, self.hi);
                if self.signed_magnitude && rng.uniform(0.0, 1.0) < 0.5 {
                    -m
                } else {
                    m
                }
            })
            .collect()
    }
}

enum Arg {
    Input(String, Vec<usize>),
    /// Random float constant (initializer) of the case's type.
    Weight(String, Vec<usize>, Inputs),
    /// Float constant with given values.
    Floats(String, Vec<usize>, Vec<f64>),
    Ints(String, Vec<usize>, Vec<i64>),
    Absent,
}

type BuildFn = Box<dyn Fn(DataType) -> ModelProto>;

/// One test case.
pub struct Case {
    /// Name in failure reports.
    pub name: String,
    build: Option<BuildFn>,
    // single-node description (when `build` is None)
    op: String,
    args: Vec<Arg>,
    attrs: Vec<AttributeProto>,
    n_outputs: usize,
    opset: i64,
    /// Inputs to differentiate (empty: every float graph input).
    pub wrt: Vec<String>,
    /// Outputs to differentiate (empty: every float output).
    pub of: Vec<String>,
    inputs: Inputs,
    float_only: bool,
    linear: bool,
    f32_step: f64,
    f32_tol: f64,
    tuning: Tuning,
}

impl Case {
    /// A single-node case for operator `op`; add arguments in input order.
    pub fn op(op: &str) -> Self {
        Case {
            name: op.to_string(),
            build: None,
            op: op.to_string(),
            args: vec![],
            attrs: vec![],
            n_outputs: 1,
            opset: 17,
            wrt: vec![],
            of: vec![],
            inputs: Inputs::any(),
            float_only: false,
            linear: false,
            f32_step: 1e-2,
            f32_tol: 3e-2,
            tuning: Tuning::Portable,
        }
    }

    /// A case from a whole graph built by `f` (declare inputs and outputs in it).
    pub fn graph(
        name: &str,
        opset: i64,
        f: impl Fn(&mut GraphBuilder, DataType) + 'static,
    ) -> Self {
        let mut c = Case::op(name);
        c.opset = opset;
        c.build = Some(Box::new(move |dt| {
            let mut b = GraphBuilder::new(opset);
            f(&mut b, dt);
            b.build().expect("test graph builds")
        }));
        c
    }

    /// A graph input (differentiated unless `wrt` says otherwise).
    pub fn input(mut self, name: &str, shape: &[usize]) -> Self {
        self.args.push(Arg::Input(name.into(), shape.to_vec()));
        self
    }
    /// A random float initializer (a weight: not differentiated).
    pub fn weight(mut self, name: &str, shape: &[usize]) -> Self {
        self.args
            .push(Arg::Weight(name.into(), shape.to_vec(), Inputs::any()));
        self
    }
    /// A random float initializer drawn from `inputs`.
    pub fn weight_in(mut self, name: &str, shape: &[usize], inputs: Inputs) -> Self {
        self.args
            .push(Arg::Weight(name.into(), shape.to_vec(), inputs));
        self
    }
    /// A float initializer with given values.
    pub fn floats(mut self, name: &str, shape: &[usize], values: &[f64]) -> Self {
        self.args
            .push(Arg::Floats(name.into(), shape.to_vec(), values.to_vec()));
        self
    }
    /// A 1-D int64 initializer.
    pub fn ints(mut self, name: &str, values: &[i64]) -> Self {
        self.args
            .push(Arg::Ints(name.into(), vec![values.len()], values.to_vec()));
        self
    }
    /// An int64 initializer with a shape.
    pub fn ints_shaped(mut self, name: &str, shape: &[usize], values: &[i64]) -> Self {
        self.args
            .push(Arg::Ints(name.into(), shape.to_vec(), values.to_vec()));
        self
    }
    /// An omitted optional input.
    pub fn absent(mut self) -> Self {
        self.args.push(Arg::Absent);
        self
    }
    /// An attribute.
    pub fn attr(mut self, a: AttributeProto) -> Self {
        self.attrs.push(a);
        self
    }
    /// Number of node outputs (all become graph outputs).
    pub fn outputs(mut self, n: usize) -> Self {
        self.n_outputs = n;
        self
    }
    /// Opset of the graph.
    pub fn opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }
    /// Distribution of the graph inputs.
    pub fn values(mut self, inputs: Inputs) -> Self {
        self.inputs = inputs;
        self
    }
    /// Only differentiate these inputs.
    pub fn wrt(mut self, names: &[&str]) -> Self {
        self.wrt = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Only differentiate these outputs.
    pub fn of(mut self, names: &[&str]) -> Self {
        self.of = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Build the gradient graph with this tuning (the default is portable).
    pub fn tuned(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self.name = format!("{} [{tuning:?}]", self.name);
        self
    }
    /// ONNX Runtime has no float64 kernel for this operator: test in float32 only.
    pub fn float_only(mut self) -> Self {
        self.float_only = true;
        self
    }
    /// The function is linear in the inputs: a large finite-difference step is exact.
    pub fn linear(mut self) -> Self {
        self.linear = true;
        self
    }
    /// Float32 step and relative tolerance.
    pub fn f32_fd(mut self, step: f64, tol: f64) -> Self {
        self.f32_step = step;
        self.f32_tol = tol;
        self
    }
    /// Add a suffix to the case name.
    pub fn named(mut self, suffix: &str) -> Self {
        self.name = format!("{} [{suffix}]", self.name);
        self
    }

    fn model(&self, dt: DataType, seed: u64) -> ModelProto {
        if let Some(b) = &self.build {
            return b(dt);
        }
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mut b = GraphBuilder::new(self.opset);
        let mut names = vec![];
        for a in &self.args {
            names.push(match a {
                Arg::Input(n, s) => {
                    let dims: Vec<Dim> = s.iter().map(|&d| Dim::Fixed(d as i64)).collect();
                    b.input(n, dt, &dims)
                }
                Arg::Weight(n, s, dist) => {
                    let v = dist.draw(&mut rng, s.iter().product());
                    b.constant_float(n, dt, s, &v)
                }
                Arg::Floats(n, s, v) => b.constant_float(n, dt, s, v),
                Arg::Ints(n, s, v) => {
                    b.constant(n, &HostTensor::int(DataType::INT64, s.clone(), v.clone()))
                }
                Arg::Absent => String::new(),
            });
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let outs = b.op_multi(&self.op, &refs, self.attrs.clone(), self.n_outputs);
        for (k, o) in outs.iter().enumerate() {
            b.output(o, &format!("y{k}"));
        }
        b.build().expect("test graph builds")
    }
}

/// Unary op case.
pub fn unary_case(op: &str, attrs: &[AttributeProto], shape: &[usize], inputs: Inputs) -> Case {
    let mut c = Case::op(op).input("x", shape).values(inputs);
    for a in attrs {
        c = c.attr(a.clone());
    }
    c.named(&format!("{shape:?}"))
}

/// Binary op case with broadcasting shapes.
pub fn binary_case(op: &str, a: &[usize], b: &[usize], inputs: Inputs) -> Case {
    Case::op(op)
        .input("a", a)
        .input("b", b)
        .values(inputs)
        .named(&format!("{a:?} ⊕ {b:?}"))
}

impl Case {
    /// Pow with a constant scalar exponent.
    pub fn pow_const_exponent(e: f64) -> Case {
        Case::op("Pow")
            .input("a", &[2, 3])
            .floats("e", &[], &[e])
            .values(Inputs::positive())
            .named(&format!("x^{e}"))
    }

    /// Variadic op over inputs of the given shapes.
    pub fn variadic(op: &str, shapes: &[&[usize]]) -> Case {
        let mut c = Case::op(op).values(Inputs::any());
        for (k, s) in shapes.iter().enumerate() {
            c = c.input(&format!("x{k}"), s);
        }
        c.named(&format!("{} inputs", shapes.len()))
    }

    /// Where with a constant condition and broadcasting branches.
    pub fn where_case() -> Case {
        Case::graph("Where", 17, |b, dt| {
            let a = b.input("a", dt, &[Dim::Fixed(2), Dim::Fixed(3)]);
            let x = b.input("b", dt, &[Dim::Fixed(3)]);
            let c = b.constant(
                "c",
                &HostTensor::int(DataType::BOOL, vec![2, 3], vec![1, 0, 1, 0, 0, 1]),
            );
            let y = b.where_(&c, &a, &x);
            b.output(&y, "y");
        })
    }

    /// y = x * x + x: one value used three times (accumulation).
    pub fn same_input_twice() -> Case {
        Case::graph("accumulation x*x+x", 17, |b, dt| {
            let x = b.input("x", dt, &[Dim::Fixed(4)]);
            let m = b.mul(&x, &x);
            let y = b.add(&m, &x);
            b.output(&y, "y");
        })
    }
}

struct Outcome {
    dtype: DataType,
    vjp_nodes: usize,
}

fn check(case: &Case, dt: DataType, seed: u64) -> Result<Outcome, String> {
    let model = case.model(dt, seed);
    let mut fwd = Runner::reference(&model).map_err(|e| format!("forward: {e}"))?;
    let graph = model.graph.as_ref().expect("graph");
    let inputs: Vec<(String, Vec<usize>)> = graph
        .real_inputs()
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                v.dims()
                    .unwrap()
                    .iter()
                    .map(|d| d.fixed().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    let wrt: Vec<String> = if case.wrt.is_empty() {
        inputs.iter().map(|i| i.0.clone()).collect()
    } else {
        case.wrt.clone()
    };
    let (vjp, _warnings) = build_vjp(
        &model,
        &VjpSpec {
            wrt: wrt.clone(),
            of: case.of.clone(),
            tuning: case.tuning,
            ..Default::default()
        },
    )
    .map_err(|e| format!("build_vjp: {e}"))?;
    let vjp_nodes = vjp.graph.as_ref().map(|g| g.node.len()).unwrap_or(0);
    let mut back = Runner::new(&vjp).map_err(|e| format!("VJP model: {e}"))?;

    let mut rng = Rng::new(seed);
    let mut x: HashMap<String, HostTensor> = HashMap::new();
    for (n, s) in &inputs {
        let v = case.inputs.draw(&mut rng, s.iter().product());
        x.insert(n.clone(), HostTensor::float(dt, s.clone(), v).cast(dt));
    }
    let feed = |x: &HashMap<String, HostTensor>| -> Vec<(String, HostTensor)> {
        inputs
            .iter()
            .map(|(n, _)| (n.clone(), x[n].clone()))
            .collect()
    };
    let run = |r: &mut Runner,
               f: &[(String, HostTensor)]|
     -> Result<HashMap<String, HostTensor>, String> {
        let refs: Vec<(&str, &HostTensor)> = f.iter().map(|(n, t)| (n.as_str(), t)).collect();
        r.run(&refs)
    };
    let y = run(&mut fwd, &feed(&x))?;

    // Output shapes vs our shape inference.
    let inf = infer(&model, 1 << 20).map_err(|e| e.to_string())?;
    let float_outputs: Vec<String> = graph
        .output
        .iter()
        .map(|v| v.name.clone())
        .filter(|n| y[n].dtype.is_float() && (case.of.is_empty() || case.of.contains(n)))
        .collect();
    for o in graph.output.iter().map(|v| &v.name) {
        let ours = inf.shape(o).map_err(|e| format!("shape inference: {e}"))?;
        if ours != y[o].shape {
            return Err(format!(
                "shape inference says {o} is {ours:?}, ONNX Runtime gives {:?}",
                y[o].shape
            ));
        }
    }

    let mut u: HashMap<String, HostTensor> = HashMap::new();
    for o in &float_outputs {
        let s = y[o].shape.clone();
        let v: Vec<f64> = (0..y[o].len()).map(|_| rng.normal()).collect();
        u.insert(o.clone(), HostTensor::float(dt, s, v).cast(dt));
    }
    let mut vfeed = feed(&x);
    for o in &float_outputs {
        vfeed.push((format!("{o}_grad"), u[o].clone()));
    }
    let out = run(&mut back, &vfeed)?;
    let f64_ = dt == DataType::DOUBLE;
    // The VJP graph must reproduce the forward outputs of the provider it runs on (on a GPU,
    // float64 Softmax and LayerNormalization differ from the CPU reference by up to 4e-7).
    let y_same = if crate::testutil::testing_on_cpu() {
        y.clone()
    } else {
        let mut same = Runner::new(&model).map_err(|e| format!("forward: {e}"))?;
        run(&mut same, &feed(&x))?
    };
    for o in &float_outputs {
        let (a, b) = (y_same[o].to_f64s(), out[o].to_f64s());
        let scale = a.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (&p, &q)| m.max(distance(p, q)));
        if err > scale * if f64_ { 1e-9 } else { 1e-4 } {
            return Err(format!(
                "forward output {o} differs in the VJP model by {err:e}"
            ));
        }
    }

    let f = |fwd: &mut Runner, x: &HashMap<String, HostTensor>| -> Result<f64, String> {
        let y = run(fwd, &feed(x))?;
        Ok(float_outputs
            .iter()
            .map(|o| {
                y[o].to_f64s()
                    .iter()
                    .zip(u[o].to_f64s())
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            })
            .sum())
    };
    let h = if f64_ {
        1e-5
    } else if case.linear {
        0.5
    } else {
        case.f32_step
    };
    let (rtol, atol) = if f64_ {
        (2e-6, 1e-9)
    } else {
        (case.f32_tol, 1e-4)
    };

    let mut grads: HashMap<String, Vec<f64>> = HashMap::new();
    for w in &wrt {
        let g = out
            .get(&format!("{w}_grad"))
            .ok_or_else(|| format!("no output {w}_grad"))?;
        if g.shape != x[w].shape {
            return Err(format!(
                "{w}_grad has shape {:?}, {w} has {:?}",
                g.shape, x[w].shape
            ));
        }
        let g = g.to_f64s();
        let n = g.len();
        let picks: Vec<usize> = if n <= 48 {
            (0..n).collect()
        } else {
            (0..48)
                .map(|_| (rng.next_u64() % n as u64) as usize)
                .collect()
        };
        let mut fd = vec![];
        for &i in &picks {
            let mut xp = x.clone();
            let mut xm = x.clone();
            let mut vp = x[w].to_f64s();
            let mut vm = vp.clone();
            vp[i] += h;
            vm[i] -= h;
            xp.insert(w.clone(), HostTensor::float(dt, x[w].shape.clone(), vp));
            xm.insert(w.clone(), HostTensor::float(dt, x[w].shape.clone(), vm));
            fd.push((f(&mut fwd, &xp)? - f(&mut fwd, &xm)?) / (2.0 * h));
        }
        let scale = picks
            .iter()
            .map(|&i| g[i].abs())
            .chain(fd.iter().map(|v| v.abs()))
            .fold(0.0f64, f64::max);
        let mut worst = (0.0f64, 0usize);
        for (k, &i) in picks.iter().enumerate() {
            let e = distance(fd[k], g[i]);
            if e > worst.0 {
                worst = (e, k);
            }
        }
        if worst.0 > atol + rtol * scale {
            let k = worst.1;
            return Err(format!(
                "{w}_grad[{}] = {:.6e}, finite differences give {:.6e} (max |grad| {scale:.3e}, {dt})",
                picks[k], g[picks[k]], fd[k]
            ));
        }
        grads.insert(w.clone(), g);
    }

    // Dot-product identity along a random direction.
    let mut xp = x.clone();
    let mut xm = x.clone();
    let mut rhs = 0.0;
    let mut mag = 0.0;
    for w in &wrt {
        let v: Vec<f64> = (0..x[w].len()).map(|_| rng.normal()).collect();
        let base = x[w].to_f64s();
        rhs += v.iter().zip(&grads[w]).map(|(a, b)| a * b).sum::<f64>();
        mag += v
            .iter()
            .zip(&grads[w])
            .map(|(a, b)| (a * b).abs())
            .sum::<f64>();
        xp.insert(
            w.clone(),
            HostTensor::float(
                dt,
                x[w].shape.clone(),
                base.iter().zip(&v).map(|(a, b)| a + h * b).collect(),
            ),
        );
        xm.insert(
            w.clone(),
            HostTensor::float(
                dt,
                x[w].shape.clone(),
                base.iter().zip(&v).map(|(a, b)| a - h * b).collect(),
            ),
        );
    }
    let lhs = (f(&mut fwd, &xp)? - f(&mut fwd, &xm)?) / (2.0 * h);
    if distance(lhs, rhs) > atol + rtol * 3.0 * mag.max(lhs.abs()) {
        return Err(format!(
            "dot-product identity: <Jv,u> = {lhs:.6e} but <v,J^T u> = {rhs:.6e} ({dt})"
        ));
    }
    Ok(Outcome {
        dtype: dt,
        vjp_nodes,
    })
}

/// |a − b|, where a NaN or infinity on one side only is infinitely far (a plain `(a - b).abs()`
/// is NaN there, and every comparison with NaN is false: a NaN gradient would pass).
fn distance(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else if a.is_finite() && b.is_finite() {
        (a - b).abs()
    } else {
        f64::INFINITY
    }
}

/// Run every case; panic with the list of all failures.
pub fn run_cases(cases: Vec<Case>) {
    let mut failures = vec![];
    let mut summary = vec![];
    for case in &cases {
        // Seeded by name (FNV-1a), not by position: adding a case leaves the others' inputs alone.
        let seed = case.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        let result = if case.float_only {
            check(case, DataType::FLOAT, seed)
        } else {
            match check(case, DataType::DOUBLE, seed) {
                // A provider without a float64 kernel says so when the session is built, or (CUDA's
                // ScatterND: "element_type 11 not implemented") only when it runs.
                Err(e)
                    if e.contains("ONNX Runtime rejected")
                        || e.contains("NOT_IMPLEMENTED")
                        || e.contains("not implemented") =>
                {
                    check(case, DataType::FLOAT, seed)
                        .map_err(|e2| format!("{e2} (float64 unavailable: {e})"))
                }
                r => r,
            }
        };
        match result {
            Ok(o) => summary.push(format!(
                "{} ({}, {} VJP nodes)",
                case.name, o.dtype, o.vjp_nodes
            )),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    if std::env::var("ZOOM_GRAPH_TEST_VERBOSE").is_ok() {
        eprintln!("passed:\n  {}", summary.join("\n  "));
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} cases failed:\n  {}",
            failures.len(),
            cases.len(),
            failures.join("\n  ")
        );
    }
}
