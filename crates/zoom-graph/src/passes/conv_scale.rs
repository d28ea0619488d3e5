//! Folding a constant per-channel scale of a convolution's input into its weights:
//! `Conv(x ⊙ d, W) = Conv(x, W')` with W' scaling each input channel c by d[c] (and the same for
//! ConvTranspose). Convolutions are linear in their input channel by channel, and zero padding
//! stays zero, so only the rounding changes.
//!
//! In a gradient graph the pattern is the backward step of an unfused inference
//! BatchNormalization (`g·γ/√(σ²+ε)`) followed by the data gradient of the convolution before
//! it, as PaddlePaddle and other exporters that keep BatchNormalization nodes write them. ONNX
//! Runtime fuses a BatchNormalization *after* a Conv in a forward pass, but a scale *before* a
//! Conv stays a separate pass over the whole activation (PaddleOCR's text-direction classifier:
//! 35 such passes, its gradient 4.1× → 4.0× its forward pass).

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::model::NameGen;
use crate::proto::ModelProto;
use crate::shapes::infer;
use crate::tensor::HostTensor;

use super::FoldLimits;

/// Fold every `Mul(x, d)` whose output is not in `keep` (e.g. the forward pass's own values,
/// which should stay bit-for-bit what the model computes), whose `d` is a constant scalar or
/// per-channel vector (`[C, 1, …]` broadcast over axis 1), and whose every consumer is a Conv or
/// ConvTranspose reading it as data with a constant weight. Returns true if the graph changed;
/// the Mul is then dead (run DCE).
pub fn fold_input_scales_into_convs(
    model: &mut ModelProto,
    keep: &HashSet<String>,
    limits: FoldLimits,
) -> Result<bool> {
    let inf = infer(model, limits.max_elems)?;
    let graph = model.graph_mut()?;
    let outputs: HashSet<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
    let consumers = graph.consumers();
    // Weights are initializers too big for `infer` to decode eagerly; decode the ones needed
    // (not those a graph input can override).
    let inputs: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
    let initializers: HashMap<&str, &crate::proto::TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| !inputs.contains(t.name.as_str()))
        .map(|t| (t.name.as_str(), t))
        .collect();
    let constant = |name: &str| -> Option<HostTensor> {
        if let Some(t) = inf.consts.get(name) {
            return Some(t.clone());
        }
        let t = initializers.get(name)?;
        let elems: i64 = t.dims.iter().product();
        if elems < 0 || elems as usize > limits.max_elems {
            return None;
        }
        HostTensor::from_proto(t).ok()
    };
    let mut names = NameGen::for_graph(graph);
    // (consumer, new data input, new weight name, new weight)
    let mut rewrites: Vec<(usize, String, String, HostTensor)> = vec![];
    let mut claimed: HashSet<usize> = HashSet::new();
    for n in &graph.node {
        if n.op_type != "Mul" || !n.is_default_domain() || n.input.len() != 2 {
            continue;
        }
        let y = &n.output[0];
        if keep.contains(y) || outputs.contains(y.as_str()) {
            continue;
        }
        let (x, d) = match (inf.consts.get(&n.input[0]), inf.consts.get(&n.input[1])) {
            (None, Some(d)) => (&n.input[0], d),
            (Some(d), None) => (&n.input[1], d),
            _ => continue,
        };
        let (Ok(xs), Ok(ys)) = (inf.shape(x), inf.shape(y)) else {
            continue;
        };
        if xs != ys || xs.len() < 3 {
            continue;
        }
        let Some(scale) = channel_scale(d, &xs) else {
            continue;
        };
        let Some(uses) = consumers.get(y.as_str()) else {
            continue;
        };
        let mut planned = vec![];
        for &ci in uses {
            let c = &graph.node[ci];
            let weight = c.input.get(1).and_then(|w| constant(w));
            // y as the data input only (a node reading it twice is listed twice: refused too).
            let as_data = c.input[0] == *y && !c.input[1..].contains(y);
            let ok = as_data
                && c.is_default_domain()
                && matches!(c.op_type.as_str(), "Conv" | "ConvTranspose")
                && !claimed.contains(&ci);
            let scaled = match (ok, weight) {
                (true, Some(w)) => scale_weight(&w, &scale, &c.op_type, c.attr_or("group", 1i64)?),
                _ => None,
            };
            match scaled {
                Some(w) => planned.push((ci, w)),
                None => {
                    planned.clear();
                    break;
                }
            }
        }
        if planned.is_empty() {
            continue;
        }
        for (ci, w) in planned {
            let name = names.fresh(&format!("{}_input_scaled", graph.node[ci].input[1]));
            claimed.insert(ci);
            rewrites.push((ci, x.clone(), name, w));
        }
    }
    let changed = !rewrites.is_empty();
    for (ci, x, name, w) in rewrites {
        graph.initializer.push(w.to_proto(&name));
        let node = &mut graph.node[ci];
        node.input[0] = x;
        node.input[1] = name;
    }
    Ok(changed)
}

/// The per-channel factors of a constant `d` that multiplies a tensor of shape `xs`: one per
/// channel (axis 1), or a single one for a scalar. None if `d` varies along another axis or
/// is not a float.
fn channel_scale(d: &HostTensor, xs: &[usize]) -> Option<Vec<f64>> {
    if !d.dtype.is_float() || d.shape.len() > xs.len() {
        return None;
    }
    let values = d.to_f64s();
    if values.len() == 1 {
        return Some(values);
    }
    // Right-align d's shape with x's: only axis 1 may be other than 1, and it must match C.
    let pad = xs.len() - d.shape.len();
    for (k, &dim) in d.shape.iter().enumerate() {
        let axis = k + pad;
        if dim != 1 && (axis != 1 || dim != xs[1]) {
            return None;
        }
    }
    (values.len() == xs[1]).then_some(values)
}

/// `w` with each input channel scaled: Conv weights are [M, C/group, k…] (output channel m of
/// group m ÷ (M/group) reads input channels of that group), ConvTranspose weights [C, M/group,
/// k…] (axis 0 is the input channel).
fn scale_weight(w: &HostTensor, scale: &[f64], op: &str, group: i64) -> Option<HostTensor> {
    if !w.dtype.is_float() || w.shape.len() < 3 || group < 1 {
        return None;
    }
    let (a0, a1) = (w.shape[0], w.shape[1]);
    let group = group as usize;
    let per_channel = scale.len() > 1;
    let transposed = op == "ConvTranspose";
    if per_channel
        && (if transposed {
            a0 != scale.len()
        } else {
            a0 % group != 0 || a1 * group != scale.len()
        })
    {
        return None;
    }
    let factor = |o: usize, i: usize| match (per_channel, transposed) {
        (false, _) => scale[0],
        (true, true) => scale[o],
        (true, false) => scale[(o / (a0 / group)) * a1 + i],
    };
    let values = w.to_f64s();
    let inner: usize = w.shape[2..].iter().product();
    let mut out = Vec::with_capacity(values.len());
    for o in 0..a0 {
        for i in 0..a1 {
            let f = factor(o, i);
            let start = (o * a1 + i) * inner;
            out.extend(values[start..start + inner].iter().map(|v| v * f));
        }
    }
    Some(HostTensor::float(w.dtype, w.shape.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs;
    use crate::testutil::{Rng, Runner};
    use crate::{DataType, GraphBuilder};

    const C: usize = 6;

    /// x [1, C, 5, 5] ⊙ d → `op` with weight `w_dims` and `extra` attributes → "y".
    fn scaled_conv(
        op: &str,
        d_dims: &[usize],
        w_dims: &[usize],
        extra: Vec<crate::proto::AttributeProto>,
    ) -> ModelProto {
        let mut rng = Rng::new(7);
        let mut b = GraphBuilder::new(17);
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[1.into(), (C as i64).into(), 5.into(), 5.into()],
        );
        let dn: usize = d_dims.iter().product();
        let dv: Vec<f32> = (0..dn).map(|_| rng.uniform(0.5, 2.0) as f32).collect();
        let d = b.constant_f32("scale", d_dims, &dv);
        let wn: usize = w_dims.iter().product();
        let wv: Vec<f32> = (0..wn).map(|_| rng.normal() as f32).collect();
        let w = b.constant_f32("w", w_dims, &wv);
        let s = b.op("Mul", &[&x, &d], vec![]);
        let mut a = vec![attrs::ints("pads", &[1, 1, 1, 1])];
        a.extend(extra);
        let y = b.op(op, &[&s, &w], a);
        b.output(&y, "y");
        b.build().unwrap()
    }

    fn run(m: &ModelProto, x: &HostTensor) -> Vec<f64> {
        Runner::new(m).unwrap().run(&[("x", x)]).unwrap()["y"].to_f64s()
    }

    fn fold(m: &ModelProto, keep: &HashSet<String>) -> (bool, ModelProto) {
        let mut m = m.clone();
        let changed = fold_input_scales_into_convs(&mut m, keep, FoldLimits::default()).unwrap();
        super::super::optimize(&mut m).unwrap();
        (changed, m)
    }

    /// The folded graph computes the same thing without the Mul, for every weight layout.
    #[test]
    fn channel_scales_fold_into_conv_weights() {
        let mut rng = Rng::new(3);
        let xv: Vec<f64> = (0..C * 25).map(|_| rng.normal()).collect();
        let x = HostTensor::float(DataType::FLOAT, vec![1, C, 5, 5], xv);
        let group = |g: i64| vec![attrs::int("group", g)];
        for (what, m) in [
            (
                "dense Conv",
                scaled_conv("Conv", &[C, 1, 1], &[4, C, 3, 3], vec![]),
            ),
            (
                "4-D scale",
                scaled_conv("Conv", &[1, C, 1, 1], &[4, C, 3, 3], vec![]),
            ),
            (
                "scalar scale",
                scaled_conv("Conv", &[], &[4, C, 3, 3], vec![]),
            ),
            (
                "grouped Conv",
                scaled_conv("Conv", &[C, 1, 1], &[4, 3, 3, 3], group(2)),
            ),
            (
                "depthwise ×2",
                scaled_conv("Conv", &[C, 1, 1], &[2 * C, 1, 3, 3], group(C as i64)),
            ),
            (
                "ConvTranspose",
                scaled_conv("ConvTranspose", &[C, 1, 1], &[C, 2, 3, 3], group(2)),
            ),
        ] {
            let (changed, folded) = fold(&m, &HashSet::new());
            assert!(changed, "{what}: not folded");
            let ops: Vec<&str> = folded
                .graph_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.as_str())
                .collect();
            assert!(
                !ops.contains(&"Mul"),
                "{what}: the Mul is still there: {ops:?}"
            );
            let (want, got) = (run(&m, &x), run(&folded, &x));
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{what}: y[{i}] = {b}, expected {a}"
                );
            }
        }
    }

    /// Scales that are not per channel, forward values, and Muls read by anything but a
    /// convolution's data input stay as they are.
    #[test]
    fn other_muls_are_left_alone() {
        let spatial = scaled_conv("Conv", &[1, 1, 5, 1], &[4, C, 3, 3], vec![]);
        assert!(
            !fold(&spatial, &HashSet::new()).0,
            "a scale varying along H was folded"
        );
        let dense = scaled_conv("Conv", &[C, 1, 1], &[4, C, 3, 3], vec![]);
        let mul_out = dense
            .graph_ref()
            .unwrap()
            .node
            .iter()
            .find(|n| n.op_type == "Mul")
            .unwrap()
            .output[0]
            .clone();
        let keep: HashSet<String> = [mul_out.clone()].into();
        assert!(!fold(&dense, &keep).0, "a value to keep was rewritten");
        let mut shared = dense.clone();
        let g = shared.graph_mut().unwrap();
        g.node.push(crate::proto::NodeProto {
            op_type: "Relu".into(),
            input: vec![mul_out],
            output: vec!["r".into()],
            ..Default::default()
        });
        g.output.push(crate::proto::ValueInfoProto {
            name: "r".into(),
            ..g.output[0].clone()
        });
        assert!(
            !fold(&shared, &HashSet::new()).0,
            "a Mul with another reader was folded"
        );
    }
}
