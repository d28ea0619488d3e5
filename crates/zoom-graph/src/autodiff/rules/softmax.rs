//! Softmax: dx = y ⊙ (g − Σ_axis g⊙y). LogSoftmax: dx = g − e^y ⊙ Σ_axis g.
//! Opset 13+ semantics (one axis, default −1); older opsets coerce to 2-D, which the minimum
//! opset of the transformer excludes.

use super::{dy0, grads, norm_axis};
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    r.add("Softmax", softmax);
    r.add("LogSoftmax", softmax);
}

fn softmax(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let y = &n.output[0];
    let r = ctx.shape(y)?.len();
    let axis = norm_axis(n, n.attr_or::<i64>("axis", -1)?, r)? as i64;
    if n.op_type == "Softmax" {
        grads(vec![softmax_backward(ctx, y, &g, axis)])
    } else {
        let s = ctx.b.reduce("ReduceSum", &g, &[axis], true);
        let p = ctx.b.op("Exp", &[y], vec![]);
        let t = ctx.b.mul(&p, &s);
        grads(vec![ctx.b.sub(&g, &t)])
    }
}

/// The cotangent of a softmax's input from its output `y` and cotangent `g` along `axis`:
/// y ⊙ (g − Σ_axis g⊙y). (Attention's rule uses it for its probabilities too.)
pub(crate) fn softmax_backward(ctx: &mut VjpCtx, y: &str, g: &str, axis: i64) -> String {
    let gy = ctx.b.mul(g, y);
    let s = ctx.b.reduce("ReduceSum", &gy, &[axis], true);
    let t = ctx.b.sub(g, &s);
    ctx.b.mul(y, &t)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    #[test]
    fn softmax_rules() {
        let mut cases = vec![];
        for op in ["Softmax", "LogSoftmax"] {
            cases.push(Case::op(op).input("x", &[2, 5]));
            cases.push(
                Case::op(op)
                    .input("x", &[2, 3, 4])
                    .attr(attrs::int("axis", 1))
                    .named("axis 1"),
            );
            cases.push(
                Case::op(op)
                    .input("x", &[2, 3, 4])
                    .attr(attrs::int("axis", 0))
                    .opset(13)
                    .named("axis 0 opset 13"),
            );
        }
        run_cases(cases);
    }
}
