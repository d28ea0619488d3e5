//! Raising a model's default-domain opset, so that models exported at different opsets can be
//! composed into one graph (a target exported at opset 12 behind a generator at opset 17).
//!
//! Only what changed between the two versions is rewritten, and only for the operators whose
//! signature or meaning changed in a way that matters:
//!
//! - attributes that became inputs: `Slice` (10), `Pad`, `Clip` (11), `Squeeze`, `Unsqueeze`,
//!   `ReduceSum`, `Split` (13), the other reductions (18);
//! - `Softmax`/`LogSoftmax`/`Hardmax` (13): before 13 they flattened the input to 2-D at `axis`
//!   (default 1); since 13 they work along one axis (default −1). A last-axis case keeps one node
//!   with an explicit axis; any other becomes Flatten → op → Reshape, which is exactly the old
//!   meaning;
//! - `Dropout` (12: `ratio` became an input): at inference it is the identity, so it becomes
//!   `Identity` (the mask output, if used, is refused);
//! - `BatchNormalization`'s `spatial` (removed in 9) is dropped when it is 1.
//!
//! Everything else keeps its node as is: the remaining changes between opsets 7 and 26 only add
//! types, operators, or optional inputs and attributes whose defaults keep the old behaviour
//! (22–26: more element types, Attention's cache and window, Cast's round_mode for float8,
//! Quantize/DequantizeLinear's precision and output_dtype). Opsets below 7 (before
//! numpy broadcasting) and operators removed from the standard (`Upsample`, `Scatter`) are
//! refused with an error naming the node, as are graphs with subgraphs (If/Loop/Scan bodies would
//! need the same rewrite).

use std::collections::HashMap;

use crate::attrs;
use crate::error::{Error, Result};
use crate::model::{ir_version_for_opset, is_default_domain, NameGen};
use crate::proto::{GraphProto, ModelProto, NodeProto};
use crate::tensor::{float_tensor, i64_tensor};
use crate::DataType;

/// Oldest opset [`upgrade_opset`] accepts.
pub const OLDEST_UPGRADABLE: i64 = 7;
/// Newest opset [`upgrade_opset`] targets (the newest the bundled ONNX Runtime 1.31 supports).
pub const NEWEST_TARGET: i64 = 26;

/// Rewrites `model` from its default-domain opset to `target`. A model already at `target` is
/// returned unchanged; a newer one is an error (downgrades are not offered).
pub fn upgrade_opset(model: &ModelProto, target: i64) -> Result<ModelProto> {
    let from = model.default_opset()?;
    if from == target {
        return Ok(model.clone());
    }
    if from > target {
        return Err(Error::InvalidArgument(format!(
            "cannot lower a model from opset {from} to {target}; only upgrades are supported"
        )));
    }
    if from < OLDEST_UPGRADABLE {
        return Err(Error::InvalidArgument(format!(
            "opset {from} is older than {OLDEST_UPGRADABLE} (pre-broadcasting semantics); \
             re-export the model at a newer opset"
        )));
    }
    if target > NEWEST_TARGET {
        return Err(Error::InvalidArgument(format!(
            "opset {target} is newer than {NEWEST_TARGET}, the newest this upgrader knows"
        )));
    }
    let mut out = model.clone();
    let graph = out.graph_mut()?;
    upgrade_graph(graph, from, target)?;
    for o in out.opset_import.iter_mut() {
        if is_default_domain(&o.domain) {
            o.version = target;
        }
    }
    out.ir_version = out.ir_version.max(ir_version_for_opset(target));
    Ok(out)
}

/// Crossing an opset boundary: the change happened at `at`, so a model at `from` < `at` ≤
/// `target` needs it.
fn crosses(from: i64, target: i64, at: i64) -> bool {
    from < at && at <= target
}

const REDUCTIONS_18: [&str; 9] = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

struct Upgrader<'g> {
    names: NameGen,
    dtypes: HashMap<String, DataType>,
    new_initializers: Vec<crate::proto::TensorProto>,
    graph_name: &'g str,
}

impl Upgrader<'_> {
    fn const_i64s(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.names.fresh(hint);
        self.new_initializers.push(i64_tensor(&name, values));
        name
    }

    fn const_scalar(&mut self, hint: &str, dtype: DataType, v: f64) -> String {
        let name = self.names.fresh(hint);
        self.new_initializers
            .push(float_tensor(&name, dtype, &[], &[v]));
        name
    }

    fn dtype_of(&self, value: &str) -> DataType {
        // Clip and Pad before opset 11 took only float types; FLOAT is the common case when the
        // graph does not record the type.
        self.dtypes.get(value).copied().unwrap_or(DataType::FLOAT)
    }

    /// Moves an int-list attribute to input `index` (filling skipped optional inputs with "").
    fn attr_to_input(&mut self, node: &mut NodeProto, attr: &str, index: usize) -> Result<()> {
        let values: Option<Vec<i64>> = node.get_attr(attr)?;
        remove_attr(node, attr);
        if let Some(values) = values {
            let hint = format!("{}_{attr}", node_label(node, self.graph_name));
            let c = self.const_i64s(&hint, &values);
            set_input(node, index, c);
        }
        Ok(())
    }
}

fn node_label(node: &NodeProto, graph: &str) -> String {
    if node.name.is_empty() {
        format!("{graph}_{}", node.op_type.to_lowercase())
    } else {
        node.name.clone()
    }
}

fn remove_attr(node: &mut NodeProto, name: &str) {
    node.attribute.retain(|a| a.name != name);
}

fn set_input(node: &mut NodeProto, index: usize, value: String) {
    while node.input.len() < index {
        node.input.push(String::new());
    }
    if node.input.len() == index {
        node.input.push(value);
    } else {
        node.input[index] = value;
    }
}

fn upgrade_graph(graph: &mut GraphProto, from: i64, target: i64) -> Result<()> {
    let graph_name = graph.name.clone();
    let mut dtypes = HashMap::new();
    for v in graph
        .input
        .iter()
        .chain(&graph.value_info)
        .chain(&graph.output)
    {
        if let Some(t) = v.dtype() {
            dtypes.insert(v.name.clone(), t);
        }
    }
    for t in &graph.initializer {
        dtypes.insert(t.name.clone(), DataType(t.data_type));
    }
    let ranks: HashMap<String, usize> = graph
        .input
        .iter()
        .chain(&graph.value_info)
        .chain(&graph.output)
        .filter_map(|v| v.dims().map(|d| (v.name.clone(), d.len())))
        .collect();
    let mut up = Upgrader {
        names: NameGen::for_graph(graph),
        dtypes,
        new_initializers: vec![],
        graph_name: &graph_name,
    };
    let used: std::collections::HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    let old_nodes = std::mem::take(&mut graph.node);
    let mut nodes = Vec::with_capacity(old_nodes.len());
    for mut node in old_nodes {
        if !node.is_default_domain() {
            nodes.push(node);
            continue;
        }
        if node.has_subgraphs() {
            return Err(node.error(format!(
                "has subgraphs; upgrading them from opset {from} to {target} is not supported"
            )));
        }
        let op = node.op_type.clone();
        match op.as_str() {
            "Upsample" | "Scatter" if crosses(from, target, 10) || op == "Scatter" => {
                return Err(node.error(format!(
                    "{op} was removed from the standard; re-export the model with Resize / \
                     ScatterElements"
                )));
            }
            "Slice" if crosses(from, target, 10) => {
                // Opset 1: starts/ends/axes attributes → inputs 1, 2, 3.
                up.attr_to_input(&mut node, "starts", 1)?;
                up.attr_to_input(&mut node, "ends", 2)?;
                up.attr_to_input(&mut node, "axes", 3)?;
            }
            "Pad" if crosses(from, target, 11) => {
                let pads: Vec<i64> = node.attr_req("pads")?;
                let value: f32 = node.attr_or("value", 0.0)?;
                remove_attr(&mut node, "pads");
                remove_attr(&mut node, "value");
                let p = up.const_i64s(&format!("{}_pads", node_label(&node, &graph_name)), &pads);
                set_input(&mut node, 1, p);
                if value != 0.0 {
                    let dt = up.dtype_of(&node.input[0]);
                    let v = up.const_scalar("pad_value", dt, value as f64);
                    set_input(&mut node, 2, v);
                }
            }
            "Clip" if crosses(from, target, 11) => {
                let min: Option<f32> = node.get_attr("min")?;
                let max: Option<f32> = node.get_attr("max")?;
                remove_attr(&mut node, "min");
                remove_attr(&mut node, "max");
                let dt = up.dtype_of(&node.input[0]);
                if let Some(v) = min {
                    let c = up.const_scalar("clip_min", dt, v as f64);
                    set_input(&mut node, 1, c);
                }
                if let Some(v) = max {
                    let c = up.const_scalar("clip_max", dt, v as f64);
                    set_input(&mut node, 2, c);
                }
            }
            "Dropout" if crosses(from, target, 12) => {
                if node.output.len() > 1 && used.contains(&node.output[1]) {
                    return Err(node.error("its mask output is used; only inference use upgrades"));
                }
                node.op_type = "Identity".into();
                node.attribute.clear();
                node.input.truncate(1);
                node.output.truncate(1);
            }
            "Squeeze" | "Unsqueeze" | "ReduceSum" if crosses(from, target, 13) => {
                up.attr_to_input(&mut node, "axes", 1)?;
            }
            "Split" if crosses(from, target, 13) => {
                up.attr_to_input(&mut node, "split", 1)?;
            }
            "Softmax" | "LogSoftmax" | "Hardmax" if crosses(from, target, 13) => {
                let axis: i64 = node.attr_or("axis", 1)?;
                let rank = ranks.get(&node.input[0]).copied();
                let last = match rank {
                    Some(r) => axis == r as i64 - 1 || axis == -1,
                    None => axis == -1,
                };
                if last {
                    node.set_attr(attrs::int("axis", axis));
                } else {
                    nodes.extend(flattened_softmax(&mut up, node, axis));
                    continue;
                }
            }
            r if REDUCTIONS_18.contains(&r) && crosses(from, target, 18) => {
                up.attr_to_input(&mut node, "axes", 1)?;
            }
            "BatchNormalization" if from < 9 => {
                let spatial: i64 = node.attr_or("spatial", 1)?;
                if spatial != 1 {
                    return Err(node.error("spatial = 0 has no equivalent after opset 9"));
                }
                remove_attr(&mut node, "spatial");
            }
            _ => {}
        }
        nodes.push(node);
    }
    graph.node = nodes;
    graph.initializer.append(&mut up.new_initializers);
    Ok(())
}

/// The pre-13 meaning of Softmax-like `node` along `axis`: coerce to 2-D at `axis`, normalise the
/// rows, restore the input's shape.
fn flattened_softmax(up: &mut Upgrader, node: NodeProto, axis: i64) -> Vec<NodeProto> {
    let label = node_label(&node, up.graph_name);
    let x = node.input[0].clone();
    let flat = up.names.fresh(&format!("{label}_flat"));
    let normed = up.names.fresh(&format!("{label}_2d"));
    let shape = up.names.fresh(&format!("{label}_shape"));
    let mk = |op: &str, inputs: Vec<String>, outputs: Vec<String>, a| NodeProto {
        op_type: op.into(),
        name: format!("{label}_{}", op.to_lowercase()),
        input: inputs,
        output: outputs,
        attribute: a,
        ..Default::default()
    };
    vec![
        mk(
            "Flatten",
            vec![x.clone()],
            vec![flat.clone()],
            vec![attrs::int("axis", axis)],
        ),
        mk(
            &node.op_type,
            vec![flat],
            vec![normed.clone()],
            vec![attrs::int("axis", -1)],
        ),
        mk("Shape", vec![x], vec![shape.clone()], vec![]),
        mk(
            "Reshape",
            vec![normed, shape],
            vec![node.output[0].clone()],
            vec![],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::tensor::HostTensor;
    use crate::testutil::{Rng, Runner};
    use crate::Dim;

    fn random(shape: &[usize], seed: u64) -> HostTensor {
        let mut rng = Rng::new(seed);
        let n = shape.iter().product();
        HostTensor::float(
            DataType::FLOAT,
            shape.to_vec(),
            (0..n).map(|_| rng.normal()).collect(),
        )
    }

    /// Builds `f` at `old`, upgrades to `new`, and checks both give the same outputs on ORT.
    fn same_after_upgrade(
        old: i64,
        new: i64,
        shape: &[usize],
        f: impl Fn(&mut GraphBuilder, &str) -> String,
    ) {
        let mut b = GraphBuilder::new(old);
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        let x = b.input("x", DataType::FLOAT, &dims);
        let y = f(&mut b, &x);
        b.output(&y, "y");
        let m = b.build().unwrap();
        let up = upgrade_opset(&m, new).unwrap();
        assert_eq!(up.default_opset().unwrap(), new);
        let input = random(shape, 3);
        let a = Runner::new(&m).unwrap().run(&[("x", &input)]).unwrap();
        let b = Runner::new(&up)
            .unwrap_or_else(|e| panic!("upgraded model rejected: {e}"))
            .run(&[("x", &input)])
            .unwrap();
        let (a, b) = (a["y"].to_f64s(), b["y"].to_f64s());
        assert_eq!(a.len(), b.len());
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-6, "{u} vs {v}");
        }
    }

    fn node(
        b: &mut GraphBuilder,
        op: &str,
        x: &str,
        a: Vec<crate::proto::AttributeProto>,
    ) -> String {
        b.op(op, &[x], a)
    }

    #[test]
    fn softmax_before_13_keeps_its_flattening_meaning() {
        // axis 1 of a rank-3 tensor normalises over dims 1 and 2 together before opset 13.
        same_after_upgrade(12, 17, &[2, 3, 4], |b, x| {
            node(b, "Softmax", x, vec![attrs::int("axis", 1)])
        });
        same_after_upgrade(12, 17, &[2, 5], |b, x| node(b, "LogSoftmax", x, vec![]));
        same_after_upgrade(11, 18, &[2, 3, 4], |b, x| node(b, "Softmax", x, vec![]));
    }

    #[test]
    fn attributes_that_became_inputs_move() {
        same_after_upgrade(12, 17, &[2, 1, 4], |b, x| {
            let s = node(b, "Squeeze", x, vec![attrs::ints("axes", &[1])]);
            node(b, "Unsqueeze", &s, vec![attrs::ints("axes", &[0])])
        });
        same_after_upgrade(12, 18, &[2, 3, 4], |b, x| {
            let r = node(
                b,
                "ReduceMean",
                x,
                vec![attrs::ints("axes", &[1]), attrs::int("keepdims", 0)],
            );
            node(b, "ReduceSum", &r, vec![attrs::ints("axes", &[1])])
        });
        same_after_upgrade(10, 17, &[2, 6], |b, x| {
            let outs = b.op_multi(
                "Split",
                &[x],
                vec![attrs::int("axis", 1), attrs::ints("split", &[2, 4])],
                2,
            );
            let c = node(
                b,
                "Clip",
                &outs[1],
                vec![attrs::float("min", -0.5), attrs::float("max", 0.3)],
            );
            b.op("Concat", &[&outs[0], &c], vec![attrs::int("axis", 1)])
        });
        same_after_upgrade(9, 17, &[1, 2, 5, 5], |b, x| {
            let p = node(
                b,
                "Pad",
                x,
                vec![
                    attrs::ints("pads", &[0, 0, 1, 2, 0, 0, 2, 1]),
                    attrs::float("value", 0.5),
                ],
            );
            node(
                b,
                "Slice",
                &p,
                vec![
                    attrs::ints("starts", &[1]),
                    attrs::ints("ends", &[4]),
                    attrs::ints("axes", &[3]),
                ],
            )
        });
        same_after_upgrade(11, 13, &[3, 4], |b, x| {
            node(b, "Dropout", x, vec![attrs::float("ratio", 0.3)])
        });
    }

    /// A generator exported at 17 composes with a target exported at 23 or 26 (transformer
    /// exports at opset 23 and newer).
    #[test]
    fn upgrades_to_the_newest_opsets() {
        for new in [22, 23, 24, 26] {
            same_after_upgrade(17, new, &[2, 3, 4], |b, x| {
                let r = node(b, "ReduceMean", x, vec![attrs::ints("axes", &[1])]);
                let s = b.op("Sub", &[x, &r], vec![]);
                let p = b.const_i64s(&[0, 0, 1, 0, 0, 1]);
                let t = b.op("Pad", &[&s, &p], vec![]);
                let c = b.cast(&t, DataType::DOUBLE);
                let c = b.cast(&c, DataType::FLOAT);
                node(b, "Softmax", &c, vec![attrs::int("axis", -1)])
            });
        }
    }

    #[test]
    fn refuses_what_it_cannot_upgrade() {
        let mut b = GraphBuilder::new(6);
        let x = b.input("x", DataType::FLOAT, &[Dim::Fixed(2)]);
        let y = b.op("Relu", &[&x], vec![]);
        b.output(&y, "y");
        let m = b.build().unwrap();
        assert!(upgrade_opset(&m, 17)
            .unwrap_err()
            .to_string()
            .contains("older than 7"));
        let m17 = upgrade_opset(&upgrade_opset(&m, 6).unwrap(), 6).unwrap();
        assert!(upgrade_opset(&m17, 5)
            .unwrap_err()
            .to_string()
            .contains("only upgrades"));
    }
}
