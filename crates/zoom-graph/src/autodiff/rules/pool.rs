//! Pooling gradients, in standard operators only (no MaxPoolGrad):
//!
//! - MaxPool, opset 16+ (row-major indices, overlapping windows): the forward node is asked
//!   for its `Indices` output and the cotangent is scatter-added there (ScatterElements with
//!   reduction=add).
//! - MaxPool otherwise: the K window positions of every window are unfolded from x (padded with −∞) by
//!   strided slices; ArgMax over them finds each window's *first* maximum (row-major, the one
//!   MaxPool picks, so ties are never counted twice), and a one-hot mask routes the cotangent
//!   there. The K masked cotangents, stacked as C·K channels, go back to
//!   input positions with a grouped ConvTranspose whose kernel is one-hot at t (col2im).
//!   Overlapping windows, padding, dilation and ceil_mode need nothing special. Non-overlapping
//!   windows (kernel = stride, no padding) use a reshape instead of the ConvTranspose.
//!   Tiling windows take this route on every opset (no Indices needed, no ConvTranspose).
//! - AveragePool: the cotangent divided by each window's element count (with or without the
//!   padding, as `count_include_pad` says, computed per output position) is spread back by a
//!   grouped ConvTranspose with an all-ones kernel (or a reshape/expand when windows tile).
//! - GlobalAveragePool: g/(H·W) expanded. GlobalMaxPool: g shared by the maxima.

use super::dy0;
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::shapes::ConvGeometry;
use crate::tensor::HostTensor;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("MaxPool", max_pool);
    r.add("AveragePool", average_pool);
    r.add("GlobalAveragePool", global_pool);
    r.add("GlobalMaxPool", global_pool);
}

struct Pool {
    geo: ConvGeometry,
    pads: Vec<(i64, i64)>,
    xs: Vec<usize>,
    ys: Vec<usize>,
}

impl Pool {
    fn read(ctx: &VjpCtx, n: &NodeProto) -> Result<Self> {
        let xs = ctx.shape(&n.input[0])?;
        let ys = ctx.shape(&n.output[0])?;
        let geo = ConvGeometry::read(n, xs.len() - 2, None)?;
        let sp: Vec<i64> = xs[2..].iter().map(|&d| d as i64).collect();
        let pads = geo.resolved_pads(&sp);
        Ok(Pool { geo, pads, xs, ys })
    }

    fn spatial(&self) -> usize {
        self.xs.len() - 2
    }

    /// Windows tile the input exactly: kernel = stride, no dilation, no padding.
    fn tiles(&self) -> bool {
        (0..self.spatial()).all(|i| {
            self.geo.kernel[i] == self.geo.strides[i]
                && self.geo.dilations[i] == 1
                && self.pads[i] == (0, 0)
        })
    }
}

/// Spread `v` ([N, G·Kin, *o]) back to input positions with ConvTranspose(weight) (groups `group`),
/// cropping or padding to the input's spatial size.
fn spread(ctx: &mut VjpCtx, v: &str, weight: &str, group: usize, p: &Pool) -> String {
    let sp = p.spatial();
    let mut pads_b = vec![];
    let mut pads_e = vec![];
    let mut out_pad = vec![];
    for i in 0..sp {
        let (s, k, d) = (p.geo.strides[i], p.geo.kernel[i], p.geo.dilations[i]);
        let full = s * (p.ys[2 + i] as i64 - 1) + (k - 1) * d + 1;
        let pb = p.pads[i].0;
        let pe = full - pb - p.xs[2 + i] as i64;
        if pe >= 0 {
            pads_b.push(pb);
            pads_e.push(pe);
            out_pad.push(0);
        } else {
            pads_b.push(pb);
            pads_e.push(0);
            out_pad.push(-pe);
        }
    }
    let mut a = vec![
        attrs::ints("strides", &p.geo.strides),
        attrs::ints("dilations", &p.geo.dilations),
        attrs::ints("pads", &[pads_b, pads_e].concat()),
        attrs::int("group", group as i64),
        attrs::ints("kernel_shape", &p.geo.kernel),
    ];
    if out_pad.iter().any(|&o| o != 0) {
        a.push(attrs::ints("output_padding", &out_pad));
    }
    ctx.b.op("ConvTranspose", &[v, weight], a)
}

/// Tiling windows: `v` is [N, C, K, *o] (one slice per kernel position, row-major) or
/// [N, C, 1, *o] (same value for every position); rearrange to [N, C, o1·k1, …] and fit to the
/// input size.
fn untile(ctx: &mut VjpCtx, v: &str, per_position: bool, p: &Pool) -> String {
    let sp = p.spatial();
    let (n, c) = (p.xs[0] as i64, p.xs[1] as i64);
    let k: Vec<i64> = p.geo.kernel.clone();
    let o: Vec<i64> = p.ys[2..].iter().map(|&d| d as i64).collect();
    // [N, C, k1..km, o1..om] -> [N, C, o1, k1, o2, k2, …]
    let mut shape = vec![n, c];
    shape.extend(if per_position { k.clone() } else { vec![1; sp] });
    shape.extend(o.iter());
    let t = ctx.b.reshape(v, &shape);
    let mut perm = vec![0, 1];
    for i in 0..sp {
        perm.push((2 + sp + i) as i64);
        perm.push((2 + i) as i64);
    }
    let t = ctx.b.transpose(&t, &perm);
    let t = if per_position {
        t
    } else {
        let mut full = vec![n, c];
        for i in 0..sp {
            full.push(o[i]);
            full.push(k[i]);
        }
        let s = ctx.b.const_i64s(&full);
        ctx.b.op("Expand", &[&t, &s], vec![])
    };
    let mut merged = vec![n, c];
    merged.extend((0..sp).map(|i| o[i] * k[i]));
    let t = ctx.b.reshape(&t, &merged);
    fit(ctx, &t, &merged[2..], p)
}

/// Crop or zero-pad the spatial axes from `have` to the input's size.
fn fit(ctx: &mut VjpCtx, v: &str, have: &[i64], p: &Pool) -> String {
    let sp = p.spatial();
    let want: Vec<i64> = p.xs[2..].iter().map(|&d| d as i64).collect();
    let mut v = v.to_string();
    if have.iter().zip(&want).any(|(h, w)| h > w) {
        let axes: Vec<i64> = (2..2 + sp as i64).collect();
        let ends: Vec<i64> = have.iter().zip(&want).map(|(h, w)| *h.min(w)).collect();
        v = ctx.b.slice(&v, &vec![0; sp], &ends, &axes, &vec![1; sp]);
    }
    if have.iter().zip(&want).any(|(h, w)| h < w) {
        let mut pads = vec![0i64; 2 * (sp + 2)];
        for i in 0..sp {
            pads[sp + 2 + 2 + i] = (want[i] - have[i]).max(0);
        }
        v = ctx.b.pad(&v, &pads, "constant");
    }
    v
}

fn max_pool(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    if dy.get(1).is_some_and(Option::is_some) {
        return Err(n.error("internal error: cotangent for the integer Indices output"));
    }
    let g = dy0(n, dy)?;
    let x = &n.input[0];
    let p = Pool::read(ctx, n)?;
    let dt = ctx.dtype(x)?;
    let sp = p.spatial();
    let (nn, c) = (p.xs[0], p.xs[1]);
    if ctx.opset() >= 16 && n.attr_or::<i64>("storage_order", 0)? == 0 && !p.tiles() {
        // The forward MaxPool also returns Indices (flat over N·C·spatial), and the cotangent is
        // scatter-added there: one cheap pass. (Indices make ONNX Runtime's MaxPool itself ~9×
        // slower, which still beats unfolding the windows.)
        let idx = ctx.forward_output(n, 1);
        let total: usize = p.xs.iter().product();
        let zeros = ctx.b.fill(&[total], dt, 0.0);
        let fi = ctx.b.reshape(&idx, &[-1]);
        let fg = ctx.b.reshape(&g, &[-1]);
        let s = ctx.b.op(
            "ScatterElements",
            &[&zeros, &fi, &fg],
            vec![attrs::int("axis", 0), attrs::string("reduction", "add")],
        );
        let xs64: Vec<i64> = p.xs.iter().map(|&d| d as i64).collect();
        return Ok(vec![Some(ctx.b.reshape(&s, &xs64))]);
    }
    let k: Vec<usize> = p.geo.kernel.iter().map(|&v| v as usize).collect();
    let kk: usize = k.iter().product();
    // Pad x with −∞ so every window position can be sliced; padding never equals a maximum.
    let mut pads = vec![0i64; 2 * (sp + 2)];
    for a in 0..sp {
        let (s, d) = (p.geo.strides[a], p.geo.dilations[a]);
        let need_len = (p.ys[2 + a] as i64 - 1) * s + (p.geo.kernel[a] - 1) * d + 1;
        pads[2 + a] = p.pads[a].0;
        pads[sp + 2 + 2 + a] = (need_len - p.pads[a].0 - p.xs[2 + a] as i64).max(0);
    }
    let xp = if pads.iter().any(|&v| v != 0) {
        let pv = ctx.b.const_i64s(&pads);
        let ninf = ctx.scalar(f64::NEG_INFINITY, dt);
        ctx.b.op(
            "Pad",
            &[x, &pv, &ninf],
            vec![attrs::string("mode", "constant")],
        )
    } else {
        x.clone()
    };
    // Unfold: the K window positions (row-major) of every window, stacked on axis 2. ArgMax
    // picks the first maximum, as MaxPool does, so ties are never counted twice.
    let axes: Vec<i64> = (2..2 + sp as i64).collect();
    let mut parts = vec![];
    for t in 0..kk {
        let mut rem = t;
        let mut off = vec![0i64; sp];
        for a in (0..sp).rev() {
            off[a] = (rem % k[a]) as i64 * p.geo.dilations[a];
            rem /= k[a];
        }
        let ends: Vec<i64> = (0..sp)
            .map(|a| off[a] + (p.ys[2 + a] as i64 - 1) * p.geo.strides[a] + 1)
            .collect();
        let xt = ctx.b.slice(&xp, &off, &ends, &axes, &p.geo.strides);
        parts.push(ctx.b.unsqueeze(&xt, &[2]));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let unfolded = if refs.len() == 1 {
        parts[0].clone()
    } else {
        ctx.b.concat(&refs, 2)
    }; // [N, C, K, *o]
    let first = ctx.b.op(
        "ArgMax",
        &[&unfolded],
        vec![attrs::int("axis", 2), attrs::int("keepdims", 1)],
    );
    let mut oshape = vec![1, 1, kk];
    oshape.extend(std::iter::repeat_n(1, sp));
    let positions = ctx.b.constant(
        "pool_positions",
        &HostTensor::int(DataType::INT64, oshape, (0..kk as i64).collect()),
    );
    let mask = ctx.b.op("Equal", &[&first, &positions], vec![]);
    let gu = ctx.b.unsqueeze(&g, &[2]);
    let contrib = ctx.mask(&mask, &gu, dt); // [N, C, K, *o]
    let d = if p.tiles() {
        untile(ctx, &contrib, true, &p)
    } else {
        let mut s = vec![nn as i64, (c * kk) as i64];
        s.extend(p.ys[2..].iter().map(|&d| d as i64));
        let stacked = ctx.b.reshape(&contrib, &s);
        // One-hot kernels: channel c·K + t has a 1 at kernel position t.
        let mut w = vec![0.0; c * kk * kk];
        for ci in 0..c {
            for t in 0..kk {
                w[(ci * kk + t) * kk + t] = 1.0;
            }
        }
        let mut wshape = vec![c * kk, 1];
        wshape.extend(k.iter());
        let wt = ctx.b.constant_float("pool_onehot", dt, &wshape, &w);
        spread(ctx, &stacked, &wt, c, &p)
    };
    Ok(vec![Some(d)])
}

/// Number of window elements counted by AveragePool for each output position along one axis.
fn window_counts(p: &Pool, axis: usize, include_pad: bool) -> Vec<f64> {
    let (s, k, d) = (
        p.geo.strides[axis],
        p.geo.kernel[axis],
        p.geo.dilations[axis],
    );
    let (pb, pe) = p.pads[axis];
    let len = p.xs[2 + axis] as i64;
    (0..p.ys[2 + axis] as i64)
        .map(|o| {
            let start = o * s - pb;
            (0..k)
                .map(|t| start + t * d)
                .filter(|&pos| {
                    if include_pad {
                        pos < len + pe
                    } else {
                        pos >= 0 && pos < len
                    }
                })
                .count() as f64
        })
        .collect()
}

fn average_pool(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let p = Pool::read(ctx, n)?;
    let dt = ctx.dtype(&n.input[0])?;
    let sp = p.spatial();
    let include_pad = n.attr_or::<i64>("count_include_pad", 0)? == 1;
    // 1 / count per output position, as a constant broadcast over N and C.
    let per_axis: Vec<Vec<f64>> = (0..sp).map(|a| window_counts(&p, a, include_pad)).collect();
    let o: Vec<usize> = p.ys[2..].to_vec();
    let total: usize = o.iter().product();
    let mut inv = Vec::with_capacity(total);
    for flat in 0..total {
        let mut rem = flat;
        let mut cnt = 1.0;
        for a in (0..sp).rev() {
            cnt *= per_axis[a][rem % o[a]];
            rem /= o[a];
        }
        inv.push(if cnt > 0.0 { 1.0 / cnt } else { 0.0 });
    }
    let uniform = inv.iter().all(|&v| v == inv[0]);
    let scaled = if uniform {
        let s = ctx.scalar(inv[0], dt);
        ctx.b.mul(&g, &s)
    } else {
        let mut shape = vec![1, 1];
        shape.extend(o.iter());
        let c = ctx.b.constant_float("pool_inv_count", dt, &shape, &inv);
        ctx.b.mul(&g, &c)
    };
    let c = p.xs[1];
    let d = if p.tiles() {
        let u = ctx.b.unsqueeze(&scaled, &[2]);
        untile(ctx, &u, false, &p)
    } else {
        let kk: usize = p.geo.kernel.iter().product::<i64>() as usize;
        let mut wshape = vec![c, 1];
        wshape.extend(p.geo.kernel.iter().map(|&v| v as usize));
        let w = ctx
            .b
            .constant_float("pool_ones", dt, &wshape, &vec![1.0; c * kk]);
        spread(ctx, &scaled, &w, c, &p)
    };
    Ok(vec![Some(d)])
}

fn global_pool(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (&n.input[0], &n.output[0]);
    let xs = ctx.shape(x)?;
    let dt = ctx.dtype(x)?;
    let d = if n.op_type == "GlobalAveragePool" {
        let plane: usize = xs[2..].iter().product();
        let k = ctx.scalar(1.0 / plane as f64, dt);
        let t = ctx.b.mul(&g, &k);
        let s = ctx
            .b
            .const_i64s(&xs.iter().map(|&v| v as i64).collect::<Vec<_>>());
        ctx.b.op("Expand", &[&t, &s], vec![])
    } else {
        let eq = ctx.b.op("Equal", &[x, y], vec![]);
        let m = ctx.b.cast(&eq, dt);
        let axes: Vec<i64> = (2..xs.len() as i64).collect();
        let cnt = ctx.b.reduce("ReduceSum", &m, &axes, true);
        let share = ctx.b.div(&g, &cnt);
        ctx.b.mul(&m, &share)
    };
    Ok(vec![Some(d)])
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    fn pool(op: &str, x: &[usize], k: &[i64]) -> Case {
        // MaxPool's VJP uses ConvTranspose (float only): a small step keeps finite differences
        // away from near-ties between window elements.
        Case::op(op)
            .input("x", x)
            .attr(attrs::ints("kernel_shape", k))
            .f32_fd(1e-3, 2e-2)
    }

    #[test]
    fn pool_rules() {
        let mut cases = vec![
            pool("MaxPool", &[1, 2, 6, 6], &[2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .named("2x2/2 tiles"),
            pool("MaxPool", &[1, 2, 7, 7], &[2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .named("2x2/2 odd size"),
            pool("MaxPool", &[1, 2, 7, 7], &[2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::int("ceil_mode", 1))
                .named("2x2/2 ceil"),
            pool("MaxPool", &[2, 3, 9, 9], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("ResNet 3x3/2 pad 1"),
            pool("MaxPool", &[1, 2, 8, 7], &[3, 2])
                .attr(attrs::ints("strides", &[1, 2]))
                .attr(attrs::ints("pads", &[1, 0, 1, 1]))
                .named("overlapping asymmetric"),
            pool("MaxPool", &[1, 2, 8, 8], &[2, 2])
                .attr(attrs::ints("dilations", &[2, 2]))
                .named("dilation 2"),
            pool("MaxPool", &[1, 2, 7, 7], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::string("auto_pad", "SAME_UPPER"))
                .named("SAME_UPPER"),
            pool("MaxPool", &[1, 2, 7, 7], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::int("ceil_mode", 1))
                .named("3x3/2 ceil"),
            pool("MaxPool", &[2, 3, 10], &[3])
                .attr(attrs::ints("strides", &[2]))
                .named("1-D"),
            pool("MaxPool", &[1, 2, 5, 6], &[2, 3])
                .attr(attrs::ints("strides", &[1, 2]))
                .attr(attrs::int("storage_order", 1))
                .named("column-major indices"),
            pool("MaxPool", &[1, 2, 6, 6], &[2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .outputs(2)
                .named("with Indices output"),
            pool("MaxPool", &[2, 3, 9, 9], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .opset(13)
                .named("ResNet 3x3/2 pad 1, opset 13 (unfold)"),
            pool("MaxPool", &[1, 2, 7, 7], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::int("ceil_mode", 1))
                .opset(15)
                .named("3x3/2 ceil, opset 15 (unfold)"),
            pool("MaxPool", &[1, 2, 8, 8], &[2, 2])
                .attr(attrs::ints("dilations", &[2, 2]))
                .opset(13)
                .named("dilation 2, opset 13 (unfold)"),
            pool("MaxPool", &[1, 2, 8, 7], &[3, 2])
                .attr(attrs::ints("strides", &[1, 2]))
                .attr(attrs::ints("pads", &[1, 0, 1, 1]))
                .opset(13)
                .named("overlapping asymmetric, opset 13 (unfold)"),
        ];
        for include in [0, 1] {
            let avg = |x: &[usize], k: &[i64]| {
                pool("AveragePool", x, k)
                    .attr(attrs::int("count_include_pad", include))
                    .float_only()
                    .linear()
            };
            cases.extend([
                avg(&[1, 2, 6, 6], &[2, 2])
                    .attr(attrs::ints("strides", &[2, 2]))
                    .named(&format!("2x2/2 tiles, include_pad {include}")),
                avg(&[2, 3, 9, 8], &[3, 3])
                    .attr(attrs::ints("strides", &[2, 2]))
                    .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                    .named(&format!("3x3/2 pad 1, include_pad {include}")),
                avg(&[1, 2, 7, 7], &[3, 2])
                    .attr(attrs::ints("strides", &[2, 1]))
                    .attr(attrs::ints("pads", &[0, 1, 1, 0]))
                    .attr(attrs::int("ceil_mode", 1))
                    .named(&format!("ceil asymmetric, include_pad {include}")),
                avg(&[1, 2, 7, 7], &[3, 3])
                    .attr(attrs::ints("strides", &[2, 2]))
                    .attr(attrs::string("auto_pad", "SAME_LOWER"))
                    .named(&format!("SAME_LOWER, include_pad {include}")),
                avg(&[1, 2, 7, 7], &[2, 2])
                    .attr(attrs::ints("strides", &[2, 2]))
                    .attr(attrs::int("ceil_mode", 1))
                    .named(&format!("2x2/2 ceil, include_pad {include}")),
            ]);
        }
        cases.push(
            pool("AveragePool", &[1, 2, 9], &[3])
                .attr(attrs::ints("strides", &[2]))
                .attr(attrs::ints("pads", &[1, 1]))
                .float_only()
                .linear()
                .named("1-D"),
        );
        cases.push(
            pool("AveragePool", &[1, 2, 9, 9], &[3, 3])
                .attr(attrs::ints("dilations", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .opset(19)
                .float_only()
                .linear()
                .named("dilation (opset 19)"),
        );
        cases.push(
            Case::op("GlobalAveragePool")
                .input("x", &[2, 3, 4, 5])
                .float_only()
                .linear(),
        );
        cases.push(
            Case::op("GlobalMaxPool")
                .input("x", &[2, 3, 4, 5])
                .float_only()
                .f32_fd(1e-3, 2e-2),
        );
        run_cases(cases);
    }
}
