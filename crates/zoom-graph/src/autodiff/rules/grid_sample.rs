//! Sampling grids: AffineGrid and GridSample (a spatial transformer is the two in a row).
//!
//! AffineGrid: grid[n, …, :] = θ[n]·[x, y, (z,) 1] at evenly spaced base positions B (constant
//! for a constant `size`), so dθ[n] = dgrid[n]ᵀ·B, one batched MatMul.
//!
//! GridSample (4-D, bilinear or nearest; zeros or border padding).
//!
//! Bilinear: each output reads the four input pixels around its source point (ix, iy) (the grid
//! unnormalised per align_corners) with weights wx·wy; corners outside the image read 0 (zeros) or
//! the point is clamped into it first (border). Then
//! - dX: every output's cotangent times each corner's weight, scatter-added at that corner
//!   (one ScatterElements over the flattened pixels);
//! - dgrid: ∂Y/∂ix = Σ_rows wy·(X[y, x1] − X[y, x0]), ∂Y/∂iy likewise, summed over channels
//!   against the cotangent, times ∂ix/∂gx (W−1)/2 or W/2, and 0 where border clamping held
//!   the point still.
//!
//! Nearest: dX scatters the cotangent to the rounded pixel; the grid gets 0 (piecewise
//! constant). Not supported (clear errors): bicubic, reflection padding, 5-D inputs.

use super::dy0;
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("GridSample", grid_sample);
    r.add("AffineGrid", affine_grid);
}

/// The base positions of AffineGrid in [−1, 1] along an axis of `n` pixels.
fn base_positions(n: i64, align: bool) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if align {
                if n > 1 {
                    -1.0 + 2.0 * i as f64 / (n - 1) as f64
                } else {
                    0.0
                }
            } else {
                (2 * i + 1) as f64 / n as f64 - 1.0
            }
        })
        .collect()
}

fn affine_grid(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let theta = &n.input[0];
    let ts = ctx.shape_i64(theta)?;
    let dt = ctx.dtype(theta)?;
    let size = ctx.const_ints(n, 1, "size")?;
    let align = n.attr_or::<i64>("align_corners", 0)? == 1;
    let spatial: Vec<i64> = size[2..].to_vec(); // (D,) H, W
    let k = spatial.len(); // 2 or 3
    if ts.len() != 3 || ts[1] != k as i64 || ts[2] != k as i64 + 1 {
        return Err(n.error(format!(
            "theta {ts:?} does not fit a {k}-D size {size:?} (want [N, {k}, {}])",
            k + 1
        )));
    }
    // B: one row [x, y, (z,) 1] per position, positions in row-major order over (D,) H, W.
    let axes: Vec<Vec<f64>> = spatial.iter().map(|&m| base_positions(m, align)).collect();
    let count: usize = spatial.iter().map(|&m| m as usize).product();
    let mut base = Vec::with_capacity(count * (k + 1));
    for flat in 0..count {
        let mut rem = flat;
        let mut idx = vec![0usize; k];
        for a in (0..k).rev() {
            idx[a] = rem % spatial[a] as usize;
            rem /= spatial[a] as usize;
        }
        // x follows the last spatial axis (W), y the one before, z the first (D).
        for a in (0..k).rev() {
            base.push(axes[a][idx[a]]);
        }
        base.push(1.0);
    }
    let b = ctx
        .b
        .constant_float("affine_base", dt, &[count, k + 1], &base);
    let gflat = ctx.b.reshape(&g, &[ts[0], count as i64, k as i64]);
    let gt = ctx.b.transpose(&gflat, &[0, 2, 1]);
    Ok(vec![Some(ctx.b.matmul(&gt, &b)), None])
}

/// One axis of the sampling: the unnormalised, possibly clamped coordinate and what the
/// gradient needs of it.
struct Axis {
    /// Source coordinate in pixels, [N, Ho·Wo].
    at: String,
    /// ∂at/∂grid: the unnormalisation scale (a scalar), zeroed where clamping held the point.
    slope: String,
}

#[allow(clippy::too_many_arguments)]
fn axis(
    ctx: &mut VjpCtx,
    g: &str,
    k: i64,
    size: i64,
    n: i64,
    out: i64,
    align: bool,
    border: bool,
    dt: DataType,
) -> Axis {
    // grid[..., k] as [N, Ho·Wo].
    let c = ctx.b.slice(g, &[k], &[k + 1], &[3], &[1]);
    let c = ctx.b.reshape(&c, &[n, out]);
    let (scale, offset) = if align {
        ((size - 1) as f64 / 2.0, (size - 1) as f64 / 2.0)
    } else {
        (size as f64 / 2.0, (size - 1) as f64 / 2.0)
    };
    let s = ctx.scalar(scale, dt);
    let o = ctx.scalar(offset, dt);
    let t = ctx.b.mul(&c, &s);
    let at = ctx.b.add(&t, &o);
    if !border {
        return Axis { at, slope: s };
    }
    let lo = ctx.scalar(0.0, dt);
    let hi = ctx.scalar((size - 1) as f64, dt);
    let clamped = ctx.b.op("Clip", &[&at, &lo, &hi], vec![]);
    let free = ctx.b.op("Equal", &[&clamped, &at], vec![]);
    let slope = ctx.mask(&free, &s, dt);
    Axis { at: clamped, slope }
}

fn grid_sample(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, grid) = (&n.input[0], &n.input[1]);
    let xs = ctx.shape_i64(x)?;
    if xs.len() != 4 {
        return Err(n.unsupported(format!("GridSample on a rank-{} input", xs.len())));
    }
    let dt = ctx.dtype(x)?;
    let mode = n.attr_or::<String>("mode", "bilinear".into())?;
    let linear = match mode.as_str() {
        "bilinear" | "linear" => true,
        "nearest" => false,
        other => return Err(n.unsupported(format!("mode {other}"))),
    };
    let padding = n.attr_or::<String>("padding_mode", "zeros".into())?;
    if padding != "zeros" && padding != "border" {
        return Err(n.unsupported(format!("padding_mode {padding}")));
    }
    let border = padding == "border";
    let align = n.attr_or::<i64>("align_corners", 0)? == 1;
    let gs = ctx.shape_i64(grid)?;
    let (nb, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let out = gs[1] * gs[2];
    let ax = axis(ctx, grid, 0, w, nb, out, align, border, dt);
    let ay = axis(ctx, grid, 1, h, nb, out, align, border, dt);

    // Corners as [N, Ho·Wo] values: flat pixel index (clamped, so always valid), inside-image
    // mask (None with border padding: always inside), and weight (mask included; None = 1, the
    // nearest pixel). Bilinear corner order: (y0, x0), (y0, x1), (y1, x0), (y1, x1).
    let one = ctx.scalar(1.0, dt);
    let (points, fx, fy) = if linear {
        let (x0, x1, wx0, wx1) = floor_weights(ctx, &ax, &one);
        let (y0, y1, wy0, wy1) = floor_weights(ctx, &ay, &one);
        let mut p = vec![];
        for (yy, wy) in [(&y0, &wy0), (&y1, &wy1)] {
            for (xx, wx) in [(&x0, &wx0), (&x1, &wx1)] {
                p.push((xx.clone(), yy.clone(), Some(ctx.b.mul(wy, wx))));
            }
        }
        (p, Some((wx0, wx1)), Some((wy0, wy1)))
    } else {
        // Round half to even, as ONNX Runtime and the reference do.
        let rx = ctx.b.op("Round", &[&ax.at], vec![]);
        let ry = ctx.b.op("Round", &[&ay.at], vec![]);
        (vec![(rx, ry, None)], None, None)
    };
    let zero = ctx.scalar(0.0, dt);
    let clip = |ctx: &mut VjpCtx, v: &str, size: i64| {
        let hi = ctx.scalar((size - 1) as f64, dt);
        ctx.b.op("Clip", &[v, &zero, &hi], vec![])
    };
    let mut corners = vec![];
    for (xx, yy, wgt) in &points {
        let (cx, cy) = (clip(ctx, xx, w), clip(ctx, yy, h));
        let mask = (!border).then(|| {
            let inx = ctx.b.op("Equal", &[&cx, xx], vec![]);
            let iny = ctx.b.op("Equal", &[&cy, yy], vec![]);
            let inside = ctx.b.op("And", &[&inx, &iny], vec![]);
            ctx.b.cast(&inside, dt)
        });
        let ww = ctx.scalar(w as f64, dt);
        let row = ctx.b.mul(&cy, &ww);
        let idx = ctx.b.add(&row, &cx);
        let idx = ctx.b.cast(&idx, DataType::INT64);
        let weight = match (wgt, &mask) {
            (Some(w), Some(m)) => Some(ctx.b.mul(w, m)),
            (w, m) => w.clone().or_else(|| m.clone()),
        };
        corners.push((idx, mask, weight));
    }
    let gflat = ctx.b.reshape(&g, &[nb, c, out]);
    let per_channel = |ctx: &mut VjpCtx, v: &str| ctx.b.unsqueeze(v, &[1]);
    let expand_idx = |ctx: &mut VjpCtx, i: &str| {
        let u = ctx.b.unsqueeze(i, &[1]);
        ctx.b.expand(&u, &[nb, c, out])
    };
    let mut res = vec![None, None];
    if need[0] {
        let mut idx = vec![];
        let mut upd = vec![];
        for (i, _, weight) in &corners {
            idx.push(expand_idx(ctx, i));
            upd.push(match weight {
                Some(w) => {
                    let u = per_channel(ctx, w);
                    ctx.b.mul(&gflat, &u)
                }
                None => gflat.clone(),
            });
        }
        let ir: Vec<&str> = idx.iter().map(String::as_str).collect();
        let ur: Vec<&str> = upd.iter().map(String::as_str).collect();
        let (idx, upd) = match (ir.as_slice(), ur.as_slice()) {
            ([i], [u]) => (i.to_string(), u.to_string()),
            _ => (ctx.b.concat(&ir, 2), ctx.b.concat(&ur, 2)),
        };
        let zeros = ctx
            .b
            .fill(&[nb as usize, c as usize, (h * w) as usize], dt, 0.0);
        let d = ctx.b.op(
            "ScatterElements",
            &[&zeros, &idx, &upd],
            vec![attrs::int("axis", 2), attrs::string("reduction", "add")],
        );
        res[0] = Some(ctx.b.reshape(&d, &xs));
    }
    if need[1] {
        let d = match (fx, fy) {
            (Some((wx0, wx1)), Some((wy0, wy1))) => {
                // Corner values, 0 outside the image (zeros padding).
                let xflat = ctx.b.reshape(x, &[nb, c, h * w]);
                let mut v = vec![];
                for (i, mask, _) in &corners {
                    let e = expand_idx(ctx, i);
                    let val =
                        ctx.b
                            .op("GatherElements", &[&xflat, &e], vec![attrs::int("axis", 2)]);
                    v.push(match mask {
                        Some(m) => {
                            let m = per_channel(ctx, m);
                            ctx.b.mul(&val, &m)
                        }
                        None => val,
                    });
                }
                let step = |ctx: &mut VjpCtx, a: &str, b: &str, weight: &str| {
                    let d = ctx.b.sub(b, a);
                    let u = per_channel(ctx, weight);
                    ctx.b.mul(&d, &u)
                };
                // ∂Y/∂ix along both rows, ∂Y/∂iy along both columns.
                let r0 = step(ctx, &v[0], &v[1], &wy0);
                let r1 = step(ctx, &v[2], &v[3], &wy1);
                let dyx = ctx.b.add(&r0, &r1);
                let c0 = step(ctx, &v[0], &v[2], &wx0);
                let c1 = step(ctx, &v[1], &v[3], &wx1);
                let dyy = ctx.b.add(&c0, &c1);
                let to_grid = |ctx: &mut VjpCtx, dyd: &str, a: &Axis| {
                    let t = ctx.b.mul(&gflat, dyd);
                    let s = ctx.b.reduce("ReduceSum", &t, &[1], false);
                    let s = ctx.b.mul(&s, &a.slope);
                    ctx.b.reshape(&s, &[nb, gs[1], gs[2], 1])
                };
                let gx = to_grid(ctx, &dyx, &ax);
                let gy = to_grid(ctx, &dyy, &ay);
                ctx.b.concat(&[&gx, &gy], 3)
            }
            _ => ctx.zeros_like(grid)?,
        };
        res[1] = Some(d);
    }
    Ok(res)
}

/// (floor, floor + 1, weight of floor, weight of floor + 1) of a coordinate.
fn floor_weights(ctx: &mut VjpCtx, a: &Axis, one: &str) -> (String, String, String, String) {
    let f = ctx.b.op("Floor", &[&a.at], vec![]);
    let frac = ctx.b.sub(&a.at, &f);
    let f1 = ctx.b.add(&f, one);
    let w0 = ctx.b.sub(one, &frac);
    (f, f1, w0, frac)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case, Inputs};

    /// float32 only (ONNX Runtime has no float64 GridSample), with a small step: the output is
    /// piecewise linear in the grid, kinked at every pixel, so a coarse step crosses kinks. The
    /// nearest mode is piecewise constant in the grid: only its input gradient is checked.
    fn case(mode: &str, padding: &str, align: i64) -> Case {
        let c = Case::op("GridSample")
            .input("x", &[2, 3, 4, 5])
            .input("grid", &[2, 3, 2, 2])
            .attr(attrs::string("mode", mode))
            .attr(attrs::string("padding_mode", padding))
            .attr(attrs::int("align_corners", align))
            // Points up to 20 % outside the image, so padding is exercised.
            .values(Inputs::uniform(-1.2, 1.2))
            .opset(16)
            .float_only()
            .f32_fd(1e-3, 1e-2)
            .named(&format!("{mode} {padding} align {align}"));
        if mode == "nearest" {
            c.wrt(&["x"])
        } else {
            c
        }
    }

    #[test]
    fn affine_grid_rule() {
        let affine = |size: &[i64], align: i64| {
            let k = size.len() - 2;
            Case::op("AffineGrid")
                .input("theta", &[2, k, k + 1])
                .ints("size", size)
                .attr(attrs::int("align_corners", align))
                .opset(20)
                .linear()
                .named(&format!("{size:?} align {align}"))
        };
        // A spatial transformer: the grid from θ, the image sampled at it; both differentiated.
        let stn = Case::graph(
            "AffineGrid → GridSample (spatial transformer)",
            20,
            |b, dt| {
                let dims = |d: &[i64]| d.iter().map(|&v| v.into()).collect::<Vec<crate::Dim>>();
                let theta = b.input("theta", dt, &dims(&[2, 2, 3]));
                let x = b.input("x", dt, &dims(&[2, 3, 5, 6]));
                let size = b.const_i64s(&[2, 3, 4, 4]);
                let grid = b.op("AffineGrid", &[&theta, &size], vec![]);
                let y = b.op("GridSample", &[&x, &grid], vec![]);
                b.output(&y, "y");
            },
        )
        .values(Inputs::uniform(-0.6, 0.6))
        .float_only()
        .f32_fd(1e-3, 1e-2);
        run_cases(vec![
            affine(&[2, 3, 4, 5], 0),
            affine(&[2, 3, 4, 5], 1),
            affine(&[2, 1, 2, 3, 4], 0),
            stn,
        ]);
    }

    #[test]
    fn grid_sample_rule() {
        run_cases(vec![
            case("bilinear", "zeros", 0),
            case("bilinear", "zeros", 1),
            case("bilinear", "border", 0),
            case("bilinear", "border", 1),
            case("nearest", "zeros", 0),
            case("nearest", "border", 1),
        ]);
    }
}
