//! Normalisations.
//!
//! BatchNormalization (inference: running statistics are constants of the formula):
//! y = γ·(x−μ)/√(σ²+ε) + β, so dx = g·γ/√(σ²+ε) per channel; dγ = Σ g·x̂, dβ = Σ g,
//! dμ = −Σ g·γ/√(σ²+ε), dσ² = −½ Σ g·γ·(x−μ)·(σ²+ε)^(−3/2). Training mode is not supported.
//!
//! LayerNormalization / InstanceNormalization (statistics of x over the normalised axes):
//! with x̂ = (x−μ)·r, r = 1/√(var+ε) and ĝ = g·γ,
//! dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)); dγ = Σ g·x̂ and dβ = Σ g over the other axes.
//! The statistics are recomputed from x in the gradient graph (a few cheap reductions).

use super::dy0;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    r.add("BatchNormalization", batch_norm);
    r.add("LayerNormalization", layer_norm);
    r.add("InstanceNormalization", instance_norm);
}

/// Reshape a per-channel vector [C] to [C, 1, …] so it broadcasts over NC… tensors.
fn per_channel(ctx: &mut VjpCtx, v: &str, c: usize, rank: usize) -> String {
    let mut s = vec![c as i64];
    s.extend(std::iter::repeat_n(1, rank - 2));
    ctx.b.reshape(v, &s)
}

fn batch_norm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    if n.attr_or::<i64>("training_mode", 0)? == 1 {
        return Err(n.unsupported("BatchNormalization in training mode"));
    }
    if dy.iter().skip(1).any(Option::is_some) {
        return Err(n.unsupported("gradients of the running-statistics outputs"));
    }
    let g = dy0(n, dy)?;
    let x = &n.input[0];
    let (scale, mean, var) = (&n.input[1], &n.input[3], &n.input[4]);
    let xs = ctx.shape(x)?;
    let dt = ctx.dtype(x)?;
    let c = xs[1];
    let r = xs.len();
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let e = ctx.scalar(eps, dt);
    let ve = ctx.b.add(var, &e);
    let sd = ctx.b.op("Sqrt", &[&ve], vec![]);
    let inv = ctx.b.op("Reciprocal", &[&sd], vec![]);
    let k = ctx.b.mul(scale, &inv); // γ/√(σ²+ε), [C]
    let mut out = vec![None; n.input.len()];
    if need[0] {
        let kr = per_channel(ctx, &k, c, r);
        out[0] = Some(ctx.b.mul(&g, &kr));
    }
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    if need[2] {
        out[2] = Some(ctx.b.reduce("ReduceSum", &g, &axes, false));
    }
    if need[1] || need[3] || need[4] {
        let mr = per_channel(ctx, mean, c, r);
        let xc = ctx.b.sub(x, &mr);
        if need[1] {
            let ir = per_channel(ctx, &inv, c, r);
            let xh = ctx.b.mul(&xc, &ir);
            let t = ctx.b.mul(&g, &xh);
            out[1] = Some(ctx.b.reduce("ReduceSum", &t, &axes, false));
        }
        if need[3] {
            let s = ctx.b.reduce("ReduceSum", &g, &axes, false);
            let t = ctx.b.mul(&s, &k);
            out[3] = Some(ctx.b.neg(&t));
        }
        if need[4] {
            // −½·γ·(σ²+ε)^(−3/2)·Σ g·(x−μ)
            let t = ctx.b.mul(&g, &xc);
            let s = ctx.b.reduce("ReduceSum", &t, &axes, false);
            let inv3 = ctx.b.mul(&inv, &inv);
            let inv3 = ctx.b.mul(&inv3, &inv);
            let h = ctx.scalar(-0.5, dt);
            let f = ctx.b.mul(scale, &inv3);
            let f = ctx.b.mul(&f, &h);
            out[4] = Some(ctx.b.mul(&s, &f));
        }
    }
    Ok(out)
}

/// Shared part of Layer/InstanceNormalization: returns (dx, x̂) for normalisation over `axes`,
/// with `gamma_b` = γ broadcastable against x.
fn normalized_grad(
    ctx: &mut VjpCtx,
    x: &str,
    g: &str,
    gamma_b: &str,
    axes: &[i64],
    eps: f64,
    need_xhat_only: bool,
) -> Result<(Option<String>, String)> {
    let dt = ctx.dtype(x)?;
    let mu = ctx.b.reduce("ReduceMean", x, axes, true);
    let xc = ctx.b.sub(x, &mu);
    let sq = ctx.b.mul(&xc, &xc);
    let var = ctx.b.reduce("ReduceMean", &sq, axes, true);
    let e = ctx.scalar(eps, dt);
    let ve = ctx.b.add(&var, &e);
    let sd = ctx.b.op("Sqrt", &[&ve], vec![]);
    let r = ctx.b.op("Reciprocal", &[&sd], vec![]);
    let xh = ctx.b.mul(&xc, &r);
    if need_xhat_only {
        return Ok((None, xh));
    }
    let gh = ctx.b.mul(g, gamma_b);
    let m1 = ctx.b.reduce("ReduceMean", &gh, axes, true);
    let ghx = ctx.b.mul(&gh, &xh);
    let m2 = ctx.b.reduce("ReduceMean", &ghx, axes, true);
    let t = ctx.b.sub(&gh, &m1);
    let u = ctx.b.mul(&xh, &m2);
    let t = ctx.b.sub(&t, &u);
    Ok((Some(ctx.b.mul(&t, &r)), xh))
}

fn layer_norm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    if dy.iter().skip(1).any(Option::is_some) {
        return Err(n.unsupported("gradients of the Mean/InvStdDev outputs"));
    }
    let g = dy0(n, dy)?;
    let (x, scale, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let xs = ctx.shape(x)?;
    let r = xs.len();
    let axis = super::norm_axis(n, n.attr_or::<i64>("axis", -1)?, r)?;
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (axis as i64..r as i64).collect();
    let (dx, xh) = normalized_grad(ctx, x, &g, scale, &axes, eps, !need[0])?;
    let mut out = vec![None; n.input.len()];
    out[0] = dx;
    if need[1] {
        let t = ctx.b.mul(&g, &xh);
        out[1] = Some(ctx.unbroadcast_to(&t, y, scale)?);
    }
    if need.get(2).copied().unwrap_or(false) {
        out[2] = Some(ctx.unbroadcast_to(&g, y, &n.input[2])?);
    }
    Ok(out)
}

fn instance_norm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, scale) = (&n.input[0], &n.input[1]);
    let xs = ctx.shape(x)?;
    let r = xs.len();
    let c = xs[1];
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (2..r as i64).collect();
    let gamma = per_channel(ctx, scale, c, r);
    let (dx, xh) = normalized_grad(ctx, x, &g, &gamma, &axes, eps, !need[0])?;
    let mut out = vec![None; n.input.len()];
    out[0] = dx;
    let red: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    if need[1] {
        let t = ctx.b.mul(&g, &xh);
        out[1] = Some(ctx.b.reduce("ReduceSum", &t, &red, false));
    }
    if need[2] {
        out[2] = Some(ctx.b.reduce("ReduceSum", &g, &red, false));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case, Inputs};

    fn bn(x: &[usize]) -> Case {
        let c = x[1];
        Case::op("BatchNormalization")
            .input("x", x)
            .weight("scale", &[c])
            .weight("bias", &[c])
            .weight("mean", &[c])
            .weight_in("var", &[c], Inputs::positive())
    }

    #[test]
    fn norm_rules() {
        run_cases(vec![
            bn(&[2, 3, 4, 4]).attr(attrs::float("epsilon", 1e-3)),
            bn(&[2, 3, 5]).named("rank 3"),
            bn(&[2, 3]).named("rank 2"),
            bn(&[2, 3, 4, 4]).opset(14).named("opset 14"),
            Case::op("BatchNormalization")
                .input("x", &[2, 3, 2, 2])
                .input("scale", &[3])
                .input("bias", &[3])
                .input("mean", &[3])
                .input("var", &[3])
                .values(Inputs::positive())
                .named("all inputs"),
            Case::op("LayerNormalization")
                .input("x", &[2, 3, 4])
                .weight("scale", &[4])
                .weight("bias", &[4])
                .named("last axis"),
            Case::op("LayerNormalization")
                .input("x", &[2, 3, 4])
                .weight("scale", &[3, 4])
                .attr(attrs::int("axis", 1))
                .named("axis 1, no bias"),
            Case::op("LayerNormalization")
                .input("x", &[2, 3, 4])
                .input("scale", &[4])
                .input("bias", &[4])
                .attr(attrs::float("epsilon", 1e-3))
                .named("scale and bias inputs"),
            Case::op("LayerNormalization")
                .input("x", &[2, 5])
                .weight("scale", &[5])
                .weight("bias", &[5])
                .outputs(3)
                .of(&["y0"])
                .named("Mean/InvStdDev outputs"),
            Case::op("InstanceNormalization")
                .input("x", &[2, 3, 4, 3])
                .weight("scale", &[3])
                .weight("bias", &[3])
                .float_only()
                .f32_fd(1e-2, 2e-2),
            Case::op("InstanceNormalization")
                .input("x", &[2, 3, 5])
                .input("scale", &[3])
                .input("bias", &[3])
                .float_only()
                .f32_fd(1e-2, 2e-2)
                .named("all inputs"),
        ]);
    }
}
