//! Gradient rules, one file per operator family. Each file has a `register` function adding its
//! operators to the [`Registry`] and, at its bottom, a table of test cases checked against
//! finite differences (see `autodiff::testing`).
//!
//! Adding a rule: write the function (it emits standard ONNX ops through `ctx.b`), add one
//! `r.add("Op", rule)` line to the family's `register`, add a case to the family's table.

pub mod activation;
pub mod attention;
pub mod conv;
pub mod einsum;
pub mod elementwise;
pub mod grid_sample;
pub mod index;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod passthrough;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod rotary;
pub mod softmax;

use super::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

/// Register every family.
pub(crate) fn register_all(r: &mut Registry) {
    activation::register(r);
    attention::register(r);
    conv::register(r);
    einsum::register(r);
    elementwise::register(r);
    grid_sample::register(r);
    index::register(r);
    layout::register(r);
    matmul::register(r);
    norm::register(r);
    passthrough::register(r);
    pool::register(r);
    reduce::register(r);
    resize::register(r);
    rotary::register(r);
    softmax::register(r);
}

/// The cotangent of output 0 (rules of single-output operators).
pub(crate) fn dy0(n: &NodeProto, dy: &[Option<String>]) -> Result<String> {
    dy.first()
        .cloned()
        .flatten()
        .ok_or_else(|| n.error("internal error: no cotangent for output 0"))
}

/// Wrap per-input gradients.
pub(crate) fn grads(v: Vec<String>) -> Result<Vec<Option<String>>> {
    Ok(v.into_iter().map(Some).collect())
}

/// True if any input needs a gradient.
pub(crate) fn need_any(need: &[bool]) -> bool {
    need.iter().any(|&b| b)
}

/// w·v + b per channel of an NCHW tensor `v` with `c` channels (the same w and b for every
/// channel), as a depthwise 1×1 Conv with constant weight (and bias, if given), each named by
/// its hint: ONNX Runtime's CPU provider runs it, with an activation fused after it, in its
/// blocked layout.
pub(crate) fn per_channel_conv(
    ctx: &mut super::ctx::VjpCtx,
    v: &str,
    c: usize,
    (w_hint, w): (&str, f32),
    bias: Option<(&str, f32)>,
) -> String {
    let mut inputs = vec![v.to_string()];
    inputs.push(ctx.b.constant_f32(w_hint, &[c, 1, 1, 1], &vec![w; c]));
    if let Some((b_hint, b)) = bias {
        inputs.push(ctx.b.constant_f32(b_hint, &[c], &vec![b; c]));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attrs = vec![
        crate::attrs::int("group", c as i64),
        crate::attrs::ints("kernel_shape", &[1, 1]),
    ];
    ctx.b.op("Conv", &refs, attrs)
}

/// Normalise a possibly negative axis.
pub(crate) fn norm_axis(n: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(n.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// The rule registry must have a test case for every operator it knows: this lists the
/// operators covered by the family tables (kept in sync by `registry_is_covered`).
#[cfg(test)]
pub(crate) const TESTED_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "AffineGrid",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Attention",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Celu",
    "CenterCropPad",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DepthToSpace",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "GridSample",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LRN",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "LpPool",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "PRelu",
    "Pad",
    "Pow",
    "RMSNormalization",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "RotaryEmbedding",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Sin",
    "Sinh",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Swish",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
];

#[cfg(test)]
mod tests {
    /// API.md lists the operators with a rule for readers; it must not drift from the registry.
    #[test]
    fn api_md_lists_every_operator_with_a_rule() {
        let doc = include_str!("../../../API.md");
        let start = doc
            .find("lists the operators with a rule")
            .expect("API.md has the operator list");
        let list = &doc[start..];
        let list = &list[list.find("):").expect("the list follows the count") + 2..];
        let list = &list[..list.find('.').expect("the list ends with a full stop")];
        let mut documented: Vec<&str> = list.split(',').map(str::trim).collect();
        documented.sort_unstable();
        let mut ops = super::super::supported_ops();
        ops.sort_unstable();
        assert_eq!(
            documented, ops,
            "update the list in crates/zoom-graph/API.md"
        );
        assert!(
            doc.contains(&format!("with a rule ({};", ops.len())),
            "update the operator count in crates/zoom-graph/API.md"
        );
    }

    #[test]
    fn registry_is_covered() {
        let reg = super::super::registry::registry();
        let missing: Vec<&str> = reg
            .ops()
            .into_iter()
            .filter(|op| !super::TESTED_OPS.contains(op))
            .collect();
        assert!(
            missing.is_empty(),
            "registered operators without a test case: {missing:?}"
        );
    }
}
