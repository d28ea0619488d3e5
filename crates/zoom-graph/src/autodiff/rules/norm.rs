//! Normalisations.
//!
//! BatchNormalization (inference: running statistics are constants of the formula):
//! y = γ·(x−μ)/√(σ²+ε) + β, so dx = g·γ/√(σ²+ε) per channel; dγ = Σ g·x̂, dβ = Σ g,
//! dμ = −Σ g·γ/√(σ²+ε), dσ² = −½ Σ g·γ·(x−μ)·(σ²+ε)^(−3/2). Training mode is not supported.
//!
//! Layer/Instance/GroupNormalization (statistics of x over the normalised axes):
//! with x̂ = (x−μ)·r, r = 1/√(var+ε) and ĝ = g·γ,
//! dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)); dγ = Σ g·x̂ and dβ = Σ g over the other axes.
//! The statistics are recomputed from x in the gradient graph (a few cheap reductions).
//!
//! RMSNormalization (opset 23): x̂ = x·r with r = 1/√(mean(x²)+ε), no centring; with ĝ = g·γ,
//! dx = r·(ĝ − x̂·mean(ĝ·x̂)); dγ = Σ g·x̂.
//!
//! LRN: y = x·s^(−β), s = bias + α/size·Σ_window x² over neighbouring channels, so
//! dx = g·s^(−β) − (2αβ/size)·x·Σ_window' (g·x·s^(−β−1)), where window' is the mirrored
//! channel window. Both window sums are 1×1 convolutions with a constant band matrix.
//!
//! LpNormalization: y = x/‖x‖ₚ along an axis; dx = (g − d·Σ g·y)/‖x‖ₚ with d = y (p = 2) or
//! sign(x) (p = 1).

use super::dy0;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("BatchNormalization", batch_norm);
    r.add("LayerNormalization", layer_norm);
    r.add("InstanceNormalization", instance_norm);
    r.add("GroupNormalization", group_norm);
    r.add("RMSNormalization", rms_norm);
    r.add("LRN", lrn);
    r.add("LpNormalization", lp_normalization);
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

/// Statistics of x over the normalised axes, kept for the gradients that need them.
struct Normalized {
    /// dx through y (None when y has no cotangent or x̂ alone was asked for).
    dx: Option<String>,
    /// x̂ = (x − μ)·r.
    xh: String,
    /// r = 1/√(var + ε), keepdims over the normalised axes.
    r: String,
}

/// Whether a normalisation subtracts the mean (Layer/Instance/GroupNormalization) or only
/// divides by the root mean square (RMSNormalization).
#[derive(Clone, Copy, PartialEq)]
enum Centring {
    Mean,
    None,
}

/// Shared part of the normalisations: the statistics of x over `axes`, and dx through
/// y = γ·x̂ + β for the output cotangent `g`, with `gamma_b` = γ broadcastable against x (of
/// element type `dt`: x may be a view the shape inference has not seen). Without centring the
/// mean terms drop out: x̂ = x·r and dx = r·(ĝ − x̂·mean(ĝ·x̂)).
#[allow(clippy::too_many_arguments)]
fn normalized_grad(
    ctx: &mut VjpCtx,
    x: &str,
    dt: DataType,
    g: Option<&str>,
    gamma_b: &str,
    axes: &[i64],
    eps: f64,
    centring: Centring,
) -> Result<Normalized> {
    let xc = match centring {
        Centring::Mean => {
            let mu = ctx.b.reduce("ReduceMean", x, axes, true);
            ctx.b.sub(x, &mu)
        }
        Centring::None => x.to_string(),
    };
    let sq = ctx.b.mul(&xc, &xc);
    let var = ctx.b.reduce("ReduceMean", &sq, axes, true);
    let e = ctx.scalar(eps, dt);
    let ve = ctx.b.add(&var, &e);
    let sd = ctx.b.op("Sqrt", &[&ve], vec![]);
    let r = ctx.b.op("Reciprocal", &[&sd], vec![]);
    let xh = ctx.b.mul(&xc, &r);
    let Some(g) = g else {
        return Ok(Normalized { dx: None, xh, r });
    };
    let gh = ctx.b.mul(g, gamma_b);
    let ghx = ctx.b.mul(&gh, &xh);
    let m2 = ctx.b.reduce("ReduceMean", &ghx, axes, true);
    let t = match centring {
        Centring::Mean => {
            let m1 = ctx.b.reduce("ReduceMean", &gh, axes, true);
            ctx.b.sub(&gh, &m1)
        }
        Centring::None => gh,
    };
    let u = ctx.b.mul(&xh, &m2);
    let t = ctx.b.sub(&t, &u);
    let dx = ctx.b.mul(&t, &r);
    Ok(Normalized {
        dx: Some(dx),
        xh,
        r,
    })
}

/// LayerNormalization, including cotangents of its Mean and InvStdDev outputs (statistics
/// over the N normalised elements): dMean/dx = 1/N, and, since Σ(x − μ) = 0,
/// dr/dx = −r³·(x − μ)/N = −r²·x̂/N.
fn layer_norm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy.first().cloned().flatten();
    let (g_mean, g_inv) = (dy.get(1).cloned().flatten(), dy.get(2).cloned().flatten());
    let (x, scale, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let xs = ctx.shape(x)?;
    let dt = ctx.dtype(x)?;
    let r = xs.len();
    let axis = super::norm_axis(n, n.attr_or::<i64>("axis", -1)?, r)?;
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (axis as i64..r as i64).collect();
    let count: usize = xs[axis..].iter().product();
    let g_dx = g.as_deref().filter(|_| need[0]);
    let st = normalized_grad(ctx, x, dt, g_dx, scale, &axes, eps, Centring::Mean)?;
    let mut out = vec![None; n.input.len()];
    if need[0] {
        let mut parts: Vec<String> = st.dx.iter().cloned().collect();
        let inv_n = ctx.scalar(1.0 / count as f64, dt);
        if let Some(gm) = &g_mean {
            // gm has x's rank with the normalised axes kept as 1.
            let t = ctx.b.mul(gm, &inv_n);
            let xs64: Vec<i64> = xs.iter().map(|&d| d as i64).collect();
            parts.push(ctx.b.expand(&t, &xs64));
        }
        if let Some(gi) = &g_inv {
            let r2 = ctx.b.mul(&st.r, &st.r);
            let k = ctx.b.mul(&r2, &inv_n);
            let k = ctx.b.mul(&k, gi);
            let t = ctx.b.mul(&st.xh, &k);
            parts.push(ctx.b.neg(&t));
        }
        out[0] = Some(ctx.sum(&parts));
    }
    if let Some(g) = &g {
        if need[1] {
            let t = ctx.b.mul(g, &st.xh);
            out[1] = Some(ctx.unbroadcast_to(&t, y, scale)?);
        }
        if need.get(2).copied().unwrap_or(false) {
            out[2] = Some(ctx.unbroadcast_to(g, y, &n.input[2])?);
        }
    } else if need[1..].iter().any(|&b| b) {
        // Mean and InvStdDev do not depend on scale or bias.
        for (k, &nd) in need.iter().enumerate().skip(1) {
            if nd {
                let shape = ctx.shape(&n.input[k])?;
                out[k] = Some(ctx.b.fill(&shape, dt, 0.0));
            }
        }
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
    let dt = ctx.dtype(x)?;
    let r = xs.len();
    let c = xs[1];
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (2..r as i64).collect();
    let gamma = per_channel(ctx, scale, c, r);
    let g_dx = Some(g.as_str()).filter(|_| need[0]);
    let st = normalized_grad(ctx, x, dt, g_dx, &gamma, &axes, eps, Centring::Mean)?;
    let mut out = vec![None; n.input.len()];
    out[0] = st.dx;
    let red: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    if need[1] {
        let t = ctx.b.mul(&g, &st.xh);
        out[1] = Some(ctx.b.reduce("ReduceSum", &t, &red, false));
    }
    if need[2] {
        out[2] = Some(ctx.b.reduce("ReduceSum", &g, &red, false));
    }
    Ok(out)
}

/// GroupNormalization: the statistics are over each group of C/G channels and all spatial
/// positions. In the view [N, G, C/G, S] (S = the spatial size) it is a normalisation over
/// the last two axes, with γ and β per channel ([C], opset 21) or per group ([G], opset 18).
fn group_norm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, scale) = (&n.input[0], &n.input[1]);
    let xs = ctx.shape_i64(x)?;
    let dt = ctx.dtype(x)?;
    if xs.len() < 2 {
        return Err(n.error(format!("input of rank {} (want N, C, …)", xs.len())));
    }
    let (nn, c) = (xs[0], xs[1]);
    let groups = n.attr_req::<i64>("num_groups")?;
    if groups <= 0 || c % groups != 0 {
        return Err(n.attr_error(
            "num_groups",
            format!("{groups} does not divide the {c} channels"),
        ));
    }
    let s: i64 = xs[2..].iter().product();
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let per_channel_params = ctx.opset() >= 21;
    let view = [nn, groups, c / groups, s];
    let gamma_shape: &[i64] = if per_channel_params {
        &[groups, c / groups, 1]
    } else {
        &[groups, 1, 1]
    };
    let xv = ctx.b.reshape(x, &view);
    let gv = ctx.b.reshape(&g, &view);
    let gamma = ctx.b.reshape(scale, gamma_shape);
    let g_dx = Some(gv.as_str()).filter(|_| need[0]);
    let st = normalized_grad(ctx, &xv, dt, g_dx, &gamma, &[2, 3], eps, Centring::Mean)?;
    let mut out = vec![None; n.input.len()];
    out[0] = st.dx.map(|d| ctx.b.reshape(&d, &xs));
    // Parameter gradients sum over what each parameter is shared across.
    let red: &[i64] = if per_channel_params {
        &[0, 3]
    } else {
        &[0, 2, 3]
    };
    let param_shape = [if per_channel_params { c } else { groups }];
    if need[1] {
        let t = ctx.b.mul(&gv, &st.xh);
        let t = ctx.b.reduce("ReduceSum", &t, red, false);
        out[1] = Some(ctx.b.reshape(&t, &param_shape));
    }
    if need[2] {
        let t = ctx.b.reduce("ReduceSum", &gv, red, false);
        out[2] = Some(ctx.b.reshape(&t, &param_shape));
    }
    Ok(out)
}

fn rms_norm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, scale, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let rank = ctx.shape(x)?.len();
    let dt = ctx.dtype(x)?;
    let axis = super::norm_axis(n, n.attr_or::<i64>("axis", -1)?, rank)?;
    let eps = n.attr_or::<f32>("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (axis as i64..rank as i64).collect();
    let g_dx = Some(g.as_str()).filter(|_| need[0]);
    let st = normalized_grad(ctx, x, dt, g_dx, scale, &axes, eps, Centring::None)?;
    let mut out = vec![None; n.input.len()];
    out[0] = st.dx;
    if need[1] {
        let t = ctx.b.mul(&g, &st.xh);
        out[1] = Some(ctx.unbroadcast_to(&t, y, scale)?);
    }
    Ok(out)
}

fn lrn(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (&n.input[0], &n.output[0]);
    let xs = ctx.shape(x)?;
    let dt = ctx.dtype(x)?;
    if xs.len() < 3 {
        return Err(n.error(format!("input of rank {} (want N, C, D1, …)", xs.len())));
    }
    let size = n.attr_req::<i64>("size")?;
    if size < 1 {
        return Err(n.attr_error("size", format!("{size}, want at least 1")));
    }
    let alpha = n.attr_or::<f32>("alpha", 1e-4)? as f64;
    let beta = n.attr_or::<f32>("beta", 0.75)? as f64;
    let bias = n.attr_or::<f32>("bias", 1.0)? as f64;
    let c = xs[1];
    // Channel i is in the window of channel k when k − ⌊(size−1)/2⌋ ≤ i ≤ k + ⌈(size−1)/2⌉.
    let (lo, hi) = ((size - 1) / 2, size / 2);
    let in_window = |k: usize, i: usize| {
        let d = i as i64 - k as i64;
        -lo <= d && d <= hi
    };
    let mut dims = vec![c, c];
    dims.extend(std::iter::repeat_n(1, xs.len() - 2));
    let band: Vec<f64> = (0..c * c)
        .map(|e| f64::from(u8::from(in_window(e / c, e % c))))
        .collect();
    let band_t: Vec<f64> = (0..c * c)
        .map(|e| f64::from(u8::from(in_window(e % c, e / c))))
        .collect();
    let w = ctx.b.constant_float("lrn_window", dt, &dims, &band);
    let wt = ctx.b.constant_float("lrn_window_t", dt, &dims, &band_t);
    let sq = ctx.b.mul(x, x);
    let sum = ctx.b.op("Conv", &[&sq, &w], vec![]);
    let k = ctx.scalar(alpha / size as f64, dt);
    let b0 = ctx.scalar(bias, dt);
    let t = ctx.b.mul(&sum, &k);
    let s = ctx.b.add(&t, &b0); // s
    let direct = {
        // s^(−β) = y/x where x ≠ 0; computed as a power so x = 0 is no special case.
        let nb = ctx.scalar(-beta, dt);
        let p = ctx.b.op("Pow", &[&s, &nb], vec![]);
        ctx.b.mul(&g, &p)
    };
    let gy = ctx.b.mul(&g, y); // g·x·s^(−β)
    let gys = ctx.b.div(&gy, &s); // g·x·s^(−β−1)
    let back = ctx.b.op("Conv", &[&gys, &wt], vec![]);
    let f = ctx.scalar(2.0 * alpha * beta / size as f64, dt);
    let t = ctx.b.mul(x, &back);
    let t = ctx.b.mul(&t, &f);
    Ok(vec![Some(ctx.b.sub(&direct, &t))])
}

fn lp_normalization(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (&n.input[0], &n.output[0]);
    let rank = ctx.shape(x)?.len();
    let axis = super::norm_axis(n, n.attr_or::<i64>("axis", -1)?, rank)?;
    let p = n.attr_or::<i64>("p", 2)?;
    let ax = [axis as i64];
    let (norm, d) = match p {
        2 => (ctx.b.reduce("ReduceL2", x, &ax, true), y.clone()),
        1 => (
            ctx.b.reduce("ReduceL1", x, &ax, true),
            ctx.b.op("Sign", &[x], vec![]),
        ),
        _ => return Err(n.attr_error("p", format!("{p}, want 1 or 2"))),
    };
    let gy = ctx.b.mul(&g, y);
    let sum = ctx.b.reduce("ReduceSum", &gy, &ax, true);
    let t = ctx.b.mul(&d, &sum);
    let t = ctx.b.sub(&g, &t);
    Ok(vec![Some(ctx.b.div(&t, &norm))])
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
            Case::op("LayerNormalization")
                .input("x", &[2, 3, 4])
                .input("scale", &[3, 4])
                .weight("bias", &[3, 4])
                .attr(attrs::int("axis", -2))
                .outputs(3)
                .named("Mean/InvStdDev outputs differentiated"),
            Case::op("LayerNormalization")
                .input("x", &[2, 5])
                .input("scale", &[5])
                .outputs(3)
                .of(&["y1", "y2"])
                .named("only Mean/InvStdDev"),
            Case::op("GroupNormalization")
                .input("x", &[2, 6, 3, 2])
                .input("scale", &[6])
                .input("bias", &[6])
                .attr(attrs::int("num_groups", 3))
                .opset(21)
                // stash_type (float32 statistics) makes even a float64 model float32-exact.
                .float_only()
                .f32_fd(1e-2, 2e-2)
                .named("opset 21, per-channel scale"),
            Case::op("GroupNormalization")
                .input("x", &[2, 4, 5])
                .input("scale", &[2])
                .input("bias", &[2])
                .attr(attrs::int("num_groups", 2))
                .attr(attrs::float("epsilon", 1e-3))
                .opset(18)
                .named("opset 18, per-group scale"),
            Case::op("RMSNormalization")
                .input("x", &[2, 3, 4])
                .input("scale", &[4])
                .opset(23)
                .float_only()
                .f32_fd(1e-2, 2e-2)
                .named("last axis"),
            Case::op("RMSNormalization")
                .input("x", &[2, 3, 4])
                .weight("scale", &[3, 4])
                .attr(attrs::int("axis", 1))
                .attr(attrs::float("epsilon", 1e-3))
                .opset(23)
                .float_only()
                .f32_fd(1e-2, 2e-2)
                .named("axis 1"),
            Case::op("LRN")
                .input("x", &[2, 5, 3, 2])
                .attr(attrs::int("size", 3))
                .attr(attrs::float("alpha", 0.5))
                .attr(attrs::float("bias", 1.5))
                .float_only()
                .f32_fd(1e-2, 2e-2)
                .named("size 3"),
            // ONNX Runtime supports odd sizes and rank 4 only.
            Case::op("LRN")
                .input("x", &[1, 6, 4, 1])
                .attr(attrs::int("size", 5))
                .attr(attrs::float("alpha", 0.8))
                .attr(attrs::float("beta", 0.6))
                .float_only()
                .f32_fd(1e-2, 2e-2)
                .named("size 5"),
            Case::op("LpNormalization")
                .input("x", &[3, 4])
                .attr(attrs::int("axis", 0))
                .named("p 2, axis 0"),
            Case::op("LpNormalization")
                .input("x", &[2, 3, 4])
                .attr(attrs::int("p", 1))
                .values(Inputs::away_from_zero())
                .named("p 1, last axis"),
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
