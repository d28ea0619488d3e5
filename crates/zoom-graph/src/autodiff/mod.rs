//! Reverse-mode automatic differentiation of ONNX graphs: [`build_vjp`] turns a forward model
//! into a VJP model in standard ONNX operators.
//!
//! Contract (DESIGN.md, `zoom grad`):
//! - inputs: every input of the model (same names), plus `<OUTPUT>_grad` for each
//!   differentiated output (the cotangent, same shape as the output);
//! - outputs: every output of the model, plus `<INPUT>_grad` for each `wrt` input, equal to
//!   Σ over differentiated outputs of (∂OUTPUT/∂INPUT)ᵀ · OUTPUT_grad.
//!
//! Steps: fix dynamic input dimensions (so every shape is static) → fold constant (shape)
//! subgraphs → infer shapes → activity analysis (only nodes on a path from `wrt` to `of`) →
//! reverse sweep in reverse topological order, one rule per node, summing cotangents of values
//! with several consumers → clean-up passes (fold, CSE, DCE) to a fixpoint.
//!
//! ```
//! use zoom_graph::{build_vjp, DataType, Dim, GraphBuilder, VjpSpec};
//! let mut b = GraphBuilder::new(17);
//! let x = b.input("x", DataType::FLOAT, &[Dim::from("N"), Dim::from(4)]);
//! let y = b.op("Tanh", &[&x], vec![]);
//! b.output(&y, "y");
//! let model = b.build()?;
//! let (vjp, warnings) = build_vjp(&model, &VjpSpec { wrt: vec!["x".into()], ..Default::default() })?;
//! let g = vjp.graph.as_ref().unwrap();
//! let names = |v: &[zoom_graph::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
//! assert_eq!(names(&g.input), ["x", "y_grad"]);
//! assert_eq!(names(&g.output), ["y", "x_grad"]);
//! assert!(warnings[0].message.contains("dynamic dimension 0 (N) set to 1"));
//! # Ok::<(), zoom_graph::Error>(())
//! ```
//!
//! Weight (initializer) gradients are not produced; a rule asked for the gradient of an input it
//! cannot differentiate (e.g. a Conv weight that depends on `wrt`) returns
//! [`Error::UnsupportedVariant`].

pub mod ctx;
pub mod registry;
pub mod rules;

#[cfg(test)]
pub(crate) mod arch_tests;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::{HashMap, HashSet};

use crate::builder::GraphBuilder;
use crate::error::{Error, Result, Warning};
use crate::model::tensor_value_info;
use crate::proto::ModelProto;
use crate::shapes::{fix_input_shapes, infer};
use crate::{passes, Dim};

pub use ctx::VjpCtx;
pub use registry::{registry, RuleFn};

/// What to differentiate.
#[derive(Debug, Clone, Default)]
pub struct VjpSpec {
    /// Graph inputs to differentiate with respect to (float tensors).
    pub wrt: Vec<String>,
    /// Graph outputs to differentiate; empty = every float output.
    pub of: Vec<String>,
    /// Fixed shapes for inputs with dynamic dimensions (`--shape NAME=d1xd2…`); other dynamic
    /// dimensions become 1 with a warning.
    pub shapes: HashMap<String, Vec<i64>>,
    /// Which runtime the graph is shaped for (the values are the same either way).
    pub tuning: Tuning,
}

/// Which runtime a gradient graph is shaped for. Every form is standard ONNX and computes the
/// same values; they differ in speed, and in whether a later float16 conversion keeps them right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tuning {
    /// Good on every execution provider, and safe to convert to float16.
    #[default]
    Portable,
    /// ONNX Runtime's CPU provider in float32. ORT runs convolutions there in a channel-blocked
    /// layout (NCHWc) and converts to plain NCHW around every operator it has no blocked kernel
    /// for, such as the comparison and cast of a Relu mask; each conversion is a pass over the
    /// tensor. This tuning writes such masks with operators that have blocked kernels (a
    /// per-channel 1×1 Conv and HardSigmoid by 2¹²⁷, exact for float32 but not for float16),
    /// so the backward pass stays blocked. Never convert such a graph to float16.
    CpuFloat32,
}

/// Lowest default-domain opset the rules emit correctly.
pub const MIN_OPSET: i64 = 13;
/// Highest opset tested.
pub const MAX_TESTED_OPSET: i64 = 26;
/// Opset that models older than [`MIN_OPSET`] are upgraded to before differentiation (the one
/// the rules are exercised at most).
pub const UPGRADE_TO: i64 = 17;

/// Constants up to this many elements are evaluated during shape inference.
const CONST_LIMIT: usize = 1 << 20;

/// Build the VJP model of `model` (see the module docs). Returns the model and warnings
/// (dynamic dimensions fixed to 1, outputs that do not depend on an input, …).
pub fn build_vjp(model: &ModelProto, spec: &VjpSpec) -> Result<(ModelProto, Vec<Warning>)> {
    let mut warnings = vec![];
    let mut opset = model.default_opset()?;
    // Rules are written against the opset-13+ operator signatures; older models are upgraded
    // (only the operators whose signature changed are rewritten).
    let mut model = if opset < MIN_OPSET {
        let up = crate::upgrade::upgrade_opset(model, UPGRADE_TO).map_err(|e| {
            Error::InvalidArgument(format!(
                "the model uses ai.onnx opset {opset}; gradients need opset {MIN_OPSET} or newer \
                 and upgrading it failed: {e}"
            ))
        })?;
        warnings.push(Warning::new(format!(
            "the model uses ai.onnx opset {opset}; upgraded to {UPGRADE_TO} for differentiation"
        )));
        opset = UPGRADE_TO;
        up
    } else {
        model.clone()
    };
    if opset > MAX_TESTED_OPSET {
        warnings.push(Warning::new(format!(
            "the model uses ai.onnx opset {opset}; gradient rules are tested up to opset {MAX_TESTED_OPSET}"
        )));
    }
    if spec.wrt.is_empty() {
        return Err(Error::InvalidArgument(
            "no input to differentiate with respect to (--wrt)".into(),
        ));
    }
    warnings.extend(fix_input_shapes(&mut model, &spec.shapes)?);
    model.graph_mut()?.sort_topologically()?;
    // Fold shape arithmetic (and other constants) in the forward graph first.
    passes::fold::fold_constants(&mut model, passes::FoldLimits::default())?;
    // The forward pass's own values stay what the model computes (no algebraic rewrites).
    let forward_values: HashSet<String> = model
        .graph_ref()?
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .collect();

    let graph = model.graph_ref()?;
    let inf = infer(&model, CONST_LIMIT)?;

    // --- validate wrt / of ---
    let real_inputs: HashSet<&str> = graph
        .real_inputs()
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let mut seen = HashSet::new();
    for w in &spec.wrt {
        if !real_inputs.contains(w.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "--wrt \"{w}\" is not an input of the model (inputs: {})",
                sorted(&real_inputs)
            )));
        }
        if !seen.insert(w.as_str()) {
            return Err(Error::InvalidArgument(format!("--wrt \"{w}\" given twice")));
        }
        let dt = inf.dtype(w)?;
        if !dt.is_float() {
            return Err(Error::InvalidArgument(format!(
                "--wrt \"{w}\" is {dt}, not a float tensor"
            )));
        }
    }
    let outputs: Vec<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
    let of: Vec<String> = if spec.of.is_empty() {
        outputs
            .iter()
            .filter(|o| inf.dtype(o).map(|d| d.is_float()).unwrap_or(false))
            .map(|s| s.to_string())
            .collect()
    } else {
        for o in &spec.of {
            if !outputs.contains(&o.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "--of \"{o}\" is not an output of the model (outputs: {})",
                    outputs.join(", ")
                )));
            }
            let dt = inf.dtype(o)?;
            if !dt.is_float() {
                return Err(Error::InvalidArgument(format!(
                    "--of \"{o}\" is {dt}, not a float tensor"
                )));
            }
        }
        spec.of.clone()
    };
    if of.is_empty() {
        return Err(Error::InvalidArgument(
            "the model has no float output to differentiate".into(),
        ));
    }
    let of: Vec<String> = {
        let mut s = HashSet::new();
        of.into_iter().filter(|o| s.insert(o.clone())).collect()
    };

    // --- contract names ---
    let taken = graph.all_names();
    let grad_in: Vec<String> = of.iter().map(|o| format!("{o}_grad")).collect();
    let grad_out: Vec<String> = spec.wrt.iter().map(|w| format!("{w}_grad")).collect();
    for n in grad_in.iter().chain(&grad_out) {
        if taken.contains(n) {
            return Err(Error::InvalidArgument(format!(
                "the model already uses the name \"{n}\", which the gradient model needs for its I/O"
            )));
        }
    }
    if let Some(dup) = grad_in.iter().find(|n| grad_out.contains(n)) {
        return Err(Error::InvalidArgument(format!(
            "\"{dup}\" would be both a gradient input and output"
        )));
    }

    // --- activity analysis ---
    let order = graph.topological_order()?;
    let mut varied: HashSet<String> = spec.wrt.iter().cloned().collect();
    for &i in &order {
        let n = &graph.node[i];
        if registry::is_non_differentiable(&n.op_type) && n.is_default_domain() {
            continue;
        }
        // Subgraphs (If/Loop/Scan bodies) read outer values by name, not through `input`.
        if n.input.iter().any(|x| varied.contains(x))
            || n.implicit_inputs().iter().any(|x| varied.contains(x))
        {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                // Integer and boolean results carry no gradient; unknown types are kept
                // (conservatively active) so a missing rule is reported, not skipped.
                let float = inf.types.get(o).map(|t| t.dtype.is_float()).unwrap_or(true);
                if float {
                    varied.insert(o.clone());
                }
            }
        }
    }
    let mut useful: HashSet<String> = of.iter().cloned().collect();
    for &i in order.iter().rev() {
        let n = &graph.node[i];
        if n.output.iter().any(|o| useful.contains(o)) {
            useful.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            useful.extend(n.implicit_inputs());
        }
    }
    let active = |v: &str| varied.contains(v) && useful.contains(v);

    // --- reverse sweep ---
    let mut ctx = VjpCtx::new(
        GraphBuilder::extending(graph, opset),
        &inf,
        spec.tuning,
        graph,
    );
    for n in grad_in.iter().chain(&grad_out) {
        ctx.b.reserve(n)?;
    }
    let mut contributions: HashMap<String, Vec<String>> = HashMap::new();
    for (o, g) in of.iter().zip(&grad_in) {
        if active(o) {
            contributions.entry(o.clone()).or_default().push(g.clone());
        } else {
            warnings.push(Warning::new(format!(
                "output \"{o}\" does not depend on {}; its cotangent input \"{g}\" is unused",
                spec.wrt.join(", ")
            )));
        }
    }
    let reg = registry();
    for &i in order.iter().rev() {
        let node = &graph.node[i];
        let dys: Vec<Option<String>> = node
            .output
            .iter()
            .map(|o| {
                if o.is_empty() || !active(o) {
                    return None;
                }
                contributions.remove(o).map(|parts| ctx.sum(&parts))
            })
            .collect();
        if dys.iter().all(Option::is_none) {
            continue;
        }
        if let Some(v) = node.implicit_inputs().iter().find(|v| active(v)) {
            return Err(node.unsupported(format!(
                "its subgraph reads \"{v}\", which depends on {}; gradients do not flow \
                 through control flow (If/Loop/Scan bodies)",
                spec.wrt.join(", ")
            )));
        }
        let need: Vec<bool> = node
            .input
            .iter()
            .enumerate()
            .map(|(k, x)| {
                !x.is_empty()
                    && active(x)
                    && !(node.is_default_domain()
                        && registry::carries_no_gradient(&node.op_type, k))
            })
            .collect();
        if !need.iter().any(|&b| b) {
            continue;
        }
        if !node.is_default_domain() {
            return Err(Error::UnsupportedOp {
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                node: node.label(),
            });
        }
        let rule = reg.get(&node.op_type).ok_or_else(|| Error::UnsupportedOp {
            op_type: node.op_type.clone(),
            domain: String::new(),
            node: node.label(),
        })?;
        ctx.node_index = i;
        ctx.absorbed.clear();
        let dxs = rule(&mut ctx, node, &dys, &need)?;
        for (k, x) in node.input.iter().enumerate() {
            if !need[k] {
                continue;
            }
            match dxs.get(k).cloned().flatten() {
                Some(g) => contributions.entry(x.clone()).or_default().push(g),
                None if ctx.absorbed.contains(&k) => {}
                None => {
                    return Err(node.error(format!(
                        "internal error: the gradient rule produced no gradient for input {k} (\"{x}\")"
                    )))
                }
            }
        }
    }

    // --- outputs <wrt>_grad ---
    let mut new_outputs = vec![];
    for (w, name) in spec.wrt.iter().zip(&grad_out) {
        let dtype = inf.dtype(w)?;
        let shape = inf.shape(w)?;
        let value = match contributions.remove(w.as_str()) {
            Some(parts) => ctx.sum(&parts),
            None => {
                warnings.push(Warning::new(format!(
                    "none of the differentiated outputs depends on input \"{w}\"; \"{name}\" is zero"
                )));
                ctx.b.fill(&shape, dtype, 0.0)
            }
        };
        ctx.b.node(crate::proto::NodeProto {
            name: format!("{name}_output"),
            op_type: "Identity".into(),
            input: vec![value],
            output: vec![name.clone()],
            ..Default::default()
        });
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        new_outputs.push(tensor_value_info(name, dtype, Some(&dims)));
    }
    let mut new_inputs = vec![];
    for (o, g) in of.iter().zip(&grad_in) {
        let dtype = inf.dtype(o)?;
        let dims: Vec<Dim> = inf
            .shape(o)?
            .iter()
            .map(|&d| Dim::Fixed(d as i64))
            .collect();
        new_inputs.push(tensor_value_info(g, dtype, Some(&dims)));
    }

    // --- assemble ---
    let extra = std::mem::take(&mut ctx.extra_outputs);
    let replaced: HashSet<usize> = ctx.replaced.iter().copied().collect();
    let builder = ctx.b;
    let graph = model.graph_mut()?;
    for (ni, k, name) in extra {
        let outs = &mut graph.node[ni].output;
        if outs.len() <= k {
            outs.resize(k + 1, String::new());
        }
        outs[k] = name;
    }
    if !replaced.is_empty() {
        let nodes = std::mem::take(&mut graph.node);
        graph.node = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !replaced.contains(i))
            .map(|(_, n)| n)
            .collect();
    }
    builder.finish_into(graph);
    graph.input.extend(new_inputs);
    graph.output.extend(new_outputs);
    graph.sort_topologically()?;
    model.producer_name = "zoom-graph autodiff".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    passes::optimize(&mut model)?;
    let limits = passes::FoldLimits::default();
    let mut changed =
        passes::conv_scale::fold_input_scales_into_convs(&mut model, &forward_values, limits)?;
    changed |= passes::broadcast::read_unexpanded(&mut model, &forward_values, limits)?;
    if changed {
        passes::optimize(&mut model)?;
    }
    Ok((model, warnings))
}

fn sorted(set: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = set.iter().copied().collect();
    v.sort();
    v.join(", ")
}

/// Every operator (default ONNX domain) with a gradient rule, sorted. Operators that never
/// carry a gradient (Shape, comparisons, ArgMax, Floor, …) are accepted anywhere and are not
/// listed.
pub fn supported_ops() -> Vec<&'static str> {
    registry().ops()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs;
    use crate::tensor::HostTensor;
    use crate::testutil::Runner;
    use crate::DataType;

    fn dynamic_model() -> ModelProto {
        // y = relu(x · w), z = shape(x) (an integer output), x: [N, 3]
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::from("N"), Dim::from(3)]);
        let w = b.constant_f32("w", &[3, 2], &[1.0, -1.0, 0.5, 2.0, -0.5, 1.0]);
        let m = b.matmul(&x, &w);
        let y = b.op("Relu", &[&m], vec![]);
        b.output(&y, "y");
        let s = b.op("Shape", &[&x], vec![]);
        b.output(&s, "z");
        b.build().unwrap()
    }

    #[test]
    fn io_contract_names_shapes_and_warnings() {
        let (m, w) = build_vjp(
            &dynamic_model(),
            &VjpSpec {
                wrt: vec!["x".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let g = m.graph.as_ref().unwrap();
        let ins: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
        let outs: Vec<&str> = g.output.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            ins,
            vec!["x", "y_grad"],
            "integer output z gets no cotangent"
        );
        assert_eq!(outs, vec!["y", "z", "x_grad"]);
        assert!(
            w.iter()
                .any(|w| w.message.contains("dynamic dimension 0 (N) set to 1")),
            "{w:?}"
        );
        assert_eq!(
            g.input[0].dims().unwrap(),
            vec![Dim::Fixed(1), Dim::Fixed(3)]
        );
        assert_eq!(
            g.output[2].dims().unwrap(),
            vec![Dim::Fixed(1), Dim::Fixed(3)]
        );

        let spec = VjpSpec {
            wrt: vec!["x".into()],
            shapes: HashMap::from([("x".into(), vec![4, 3])]),
            ..Default::default()
        };
        let (m, w) = build_vjp(&dynamic_model(), &spec).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let g = m.graph.as_ref().unwrap();
        assert_eq!(
            g.input[1].dims().unwrap(),
            vec![Dim::Fixed(4), Dim::Fixed(2)]
        );
        // Runs, and x_grad = (y_grad ⊙ [x·w > 0]) · wᵀ.
        let mut r = Runner::new(&m).unwrap();
        let x = HostTensor::float(
            DataType::FLOAT,
            vec![4, 3],
            (0..12).map(|v| v as f64 * 0.1 - 0.5).collect(),
        );
        let gy = HostTensor::float(DataType::FLOAT, vec![4, 2], vec![1.0; 8]);
        let out = r.run(&[("x", &x), ("y_grad", &gy)]).unwrap();
        assert_eq!(out["z"].to_i64s(), vec![4, 3]);
        let xv = x.to_f64s();
        let wv = [1.0, -1.0, 0.5, 2.0, -0.5, 1.0];
        for i in 0..4 {
            let pre: Vec<f64> = (0..2)
                .map(|j| (0..3).map(|k| xv[i * 3 + k] * wv[k * 2 + j]).sum())
                .collect();
            for k in 0..3 {
                let want: f64 = (0..2)
                    .map(|j| if pre[j] > 0.0 { wv[k * 2 + j] } else { 0.0 })
                    .sum();
                let got = out["x_grad"].to_f64s()[i * 3 + k];
                assert!(
                    (got - want).abs() < 1e-6,
                    "x_grad[{i},{k}] = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn unsupported_operator_names_op_and_node() {
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::from(3), Dim::from(3)]);
        let y = b.op("Relu", &[&x], vec![]);
        let t = b.op("Det", &[&y], vec![]);
        b.nodes.last_mut().unwrap().name = "det_7".into();
        b.output_typed(&t, "determinant", DataType::FLOAT, Some(&[] as &[Dim]));
        let m = b.build().unwrap();
        let e = build_vjp(
            &m,
            &VjpSpec {
                wrt: vec!["x".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::UnsupportedOp { op_type, node, .. } if op_type == "Det" && node == "det_7")
        );
        let msg = e.to_string();
        assert!(
            msg.contains("Det") && msg.contains("det_7") && msg.contains("finite-difference"),
            "{msg}"
        );

        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::from(2)]);
        let y = b
            .op_in_domain("com.example", "Fancy", &[&x], vec![], 1)
            .pop()
            .unwrap();
        b.output_typed(&y, "y", DataType::FLOAT, Some(&[Dim::from(2)]));
        let e = crate::testutil::vjp_error(&b.build().unwrap(), "x");
        assert!(
            e.to_string().contains("Fancy") && e.to_string().contains("com.example"),
            "{e}"
        );
    }

    /// An If whose branches read x from the outer scope depends on x although x is not among
    /// its inputs: its gradient must be refused, not silently zero.
    #[test]
    fn control_flow_reading_the_differentiated_input_is_refused() {
        use crate::proto::NodeProto;
        let branch = |op: &str, out: &str| crate::testutil::one_node_branch(op, "r", out, &[2]);
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::from(2)]);
        let cond = b.input("cond", DataType::BOOL, &[]);
        b.node(NodeProto {
            op_type: "Sigmoid".into(),
            input: vec![x],
            output: vec!["r".into()],
            ..Default::default()
        });
        let y = b.op(
            "If",
            &[&cond],
            vec![
                attrs::graph("then_branch", branch("Identity", "t")),
                attrs::graph("else_branch", branch("Neg", "e")),
            ],
        );
        b.nodes.last_mut().unwrap().name = "choose".into();
        b.output_typed(&y, "y", DataType::FLOAT, Some(&[Dim::from(2)]));
        let e = crate::testutil::vjp_error(&b.build().unwrap(), "x");
        let msg = e.to_string();
        assert!(
            matches!(&e, Error::UnsupportedVariant { op_type, .. } if op_type == "If")
                && msg.contains("choose")
                && msg.contains("\"r\""),
            "{msg}"
        );
    }

    #[test]
    fn bad_arguments_are_clear() {
        let m = dynamic_model();
        let err = |spec: VjpSpec| build_vjp(&m, &spec).unwrap_err().to_string();
        assert!(err(VjpSpec {
            wrt: vec!["q".into()],
            ..Default::default()
        })
        .contains("\"q\" is not an input of the model (inputs: x)"));
        assert!(err(VjpSpec {
            wrt: vec!["x".into()],
            of: vec!["z".into()],
            ..Default::default()
        })
        .contains("int64, not a float"));
        assert!(err(VjpSpec {
            wrt: vec!["x".into()],
            of: vec!["nope".into()],
            ..Default::default()
        })
        .contains("outputs: y, z"));
        assert!(err(VjpSpec::default()).contains("--wrt"));
        let spec = VjpSpec {
            wrt: vec!["x".into()],
            ..Default::default()
        };
        // Older models are upgraded (with a warning) down to opset 7, refused below.
        let mut old = m.clone();
        old.opset_import[0].version = 11;
        let (_, warnings) = build_vjp(&old, &spec).unwrap();
        assert!(warnings
            .iter()
            .any(|w| w.to_string().contains("opset 11; upgraded to 17")));
        old.opset_import[0].version = 6;
        let e = build_vjp(&old, &spec).unwrap_err().to_string();
        assert!(
            e.contains("opset 6") && e.contains("upgrading it failed"),
            "{e}"
        );
    }

    #[test]
    fn independent_output_gives_zero_gradient_and_warning() {
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::from(2)]);
        let u = b.input("u", DataType::FLOAT, &[Dim::from(2)]);
        let y = b.op("Exp", &[&x], vec![]);
        let z = b.op("Neg", &[&u], vec![]);
        b.output(&y, "y");
        b.output(&z, "z");
        let m = b.build().unwrap();
        let (v, w) = build_vjp(
            &m,
            &VjpSpec {
                wrt: vec!["u".into()],
                of: vec!["y".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            w.iter().any(|w| w.message.contains("does not depend")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.message.contains("\"u_grad\" is zero")),
            "{w:?}"
        );
        let mut r = Runner::new(&v).unwrap();
        let t = HostTensor::float(DataType::FLOAT, vec![2], vec![1.0, 2.0]);
        let out = r.run(&[("x", &t), ("u", &t), ("y_grad", &t)]).unwrap();
        assert_eq!(out["u_grad"].to_f64s(), vec![0.0, 0.0]);
    }

    #[test]
    fn integer_and_shape_paths_stop_gradients() {
        // y = x * cast(argmax(x)) + reshape(x, shape(x)): only the float paths carry gradient.
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::from(3)]);
        let am = b.op("ArgMax", &[&x], vec![attrs::int("keepdims", 1)]);
        let c = b.cast(&am, DataType::FLOAT);
        let p = b.mul(&x, &c);
        let s = b.op("Shape", &[&x], vec![]);
        let rx = b.op("Reshape", &[&x, &s], vec![]);
        let y = b.add(&p, &rx);
        b.output(&y, "y");
        let (v, _) = build_vjp(
            &b.build().unwrap(),
            &VjpSpec {
                wrt: vec!["x".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let mut r = Runner::new(&v).unwrap();
        let t = HostTensor::float(DataType::FLOAT, vec![3], vec![0.5, 3.0, 1.0]);
        let ones = HostTensor::float(DataType::FLOAT, vec![3], vec![1.0; 3]);
        let out = r.run(&[("x", &t), ("y_grad", &ones)]).unwrap();
        assert_eq!(out["x_grad"].to_f64s(), vec![2.0, 2.0, 2.0]); // argmax = 1: d/dx (x·1 + x) = 2
                                                                  // The Shape node was folded away: no Shape, no Cast of the index on the gradient path.
        assert!(v
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .all(|n| n.op_type != "Shape"));
    }

    #[test]
    fn write_read_round_trip_of_a_vjp_model() {
        let (m, _) = build_vjp(
            &dynamic_model(),
            &VjpSpec {
                wrt: vec!["x".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grad.onnx");
        crate::write_model(&m, &p).unwrap();
        assert_eq!(crate::read_model(&p).unwrap(), m);
    }
}
