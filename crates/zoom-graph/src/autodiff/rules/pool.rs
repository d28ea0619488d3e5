//! Pooling gradients, in standard operators only (no MaxPoolGrad):
//!
//! - MaxPool, float and double: the forward node stays a plain MaxPool (ONNX Runtime's
//!   MaxPool with `Indices` is a naive loop, 10–80× slower than the plain one). The
//!   cotangent goes to each window's *first* maximum in row-major order (the element MaxPool's
//!   Indices point to; ties, e.g. ReLU zeros, are never counted twice, padding never wins),
//!   found one spatial axis at a time: the first window row holding the maximum, then the
//!   first maximum in that row. Each axis is a 1-D pool done with contiguous slices of the
//!   input cut into blocks of the stride, equality with the window maximum, and a "what is
//!   left" chain in window order; the cotangents go back by zero-padding and a concatenation
//!   of the stride phases. All in NHWC layout, so that no slice or pad works on small inner
//!   blocks. Padding, dilation, ceil_mode, auto_pad and storage_order need nothing special;
//!   1-D to 3-D pools alike. See `separable_max_pool`. Under the CPU tuning (float32) each
//!   axis's window maxima come from MaxPools instead of a Max over the sliced positions.
//! - MaxPool whose model already uses the `Indices` output (opset 16+, row-major): the
//!   cotangent is scatter-added at those indices (ScatterElements, reduction=add).
//! - MaxPool of other element types (float16, …): as above at opset 16+ with overlapping
//!   windows; otherwise the K window positions of every window are unfolded from x (padded
//!   with −∞) by strided slices, ArgMax finds each window's first maximum, a one-hot mask
//!   routes the cotangent there, and a grouped ConvTranspose with one-hot kernels (col2im), or
//!   a reshape when windows tile, puts the K masked cotangents back.
//! - AveragePool: the cotangent divided by each window's element count (with or without the
//!   padding, as `count_include_pad` says, computed per output position) is spread back as the
//!   data gradient of a depthwise Conv with an all-ones kernel, in the convolution rule's forms
//!   (a stride-1 Conv, a zero spread and a Conv, or ConvTranspose), or a reshape/expand when
//!   windows tile. LpPool spreads its scaled cotangent the same way.
//! - GlobalAveragePool: g/(H·W) expanded. GlobalMaxPool: g shared by the maxima.

use std::collections::HashMap;

use super::{conv, dy0};
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::autodiff::Tuning;
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
    r.add("LpPool", lp_pool);
    r.add("GlobalLpPool", lp_pool);
}

struct Pool {
    geo: ConvGeometry,
    pads: Vec<(i64, i64)>,
    xs: Vec<usize>,
    ys: Vec<usize>,
    ceil_mode: i64,
}

impl Pool {
    fn read(ctx: &VjpCtx, n: &NodeProto) -> Result<Self> {
        let xs = ctx.shape(&n.input[0])?;
        let ys = ctx.shape(&n.output[0])?;
        let geo = ConvGeometry::read(n, xs.len() - 2, None)?;
        let sp: Vec<i64> = xs[2..].iter().map(|&d| d as i64).collect();
        let pads = geo.resolved_pads(&sp);
        let ceil_mode = n.attr_or::<i64>("ceil_mode", 0)?;
        Ok(Pool {
            geo,
            pads,
            xs,
            ys,
            ceil_mode,
        })
    }

    fn spatial(&self) -> usize {
        self.xs.len() - 2
    }

    /// The geometry of the convolution that reads the same windows: explicit pads, the end
    /// pad making the last window end where it does (ceil_mode can take it past the padded
    /// input; trailing positions no window reaches would make it negative, and get no
    /// gradient: the convolution's data gradient leaves them to `output_padding`).
    fn conv_geometry(&self) -> ConvGeometry {
        let mut geo = self.geo.clone();
        geo.auto_pad = "NOTSET".into();
        geo.pads = (0..self.spatial())
            .map(|i| {
                let (s, k, d) = (geo.strides[i], geo.kernel[i], geo.dilations[i]);
                let pb = self.pads[i].0;
                let reach = s * (self.ys[2 + i] as i64 - 1) + (k - 1) * d + 1;
                (pb, (reach - pb - self.xs[2 + i] as i64).max(0))
            })
            .collect();
        geo
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

/// Tiling windows: `v` is [N, C, K, *o] (one slice per kernel position, row-major) or
/// [N, C, 1, *o] (same value for every position); rearrange to [N, C, o1·k1, …] and fit to the
/// input size.
fn untile(ctx: &mut VjpCtx, v: &str, per_position: bool, p: &Pool) -> String {
    let sp = p.spatial();
    let (n, c) = (p.xs[0] as i64, p.xs[1] as i64);
    let k: Vec<i64> = p.geo.kernel.clone();
    let o: Vec<i64> = p.ys[2..].iter().map(|&d| d as i64).collect();
    if !per_position && o.iter().all(|&d| d == 1) {
        // One window over the whole input (squeeze-excite pools): a plain Expand, which
        // `passes::broadcast` can then leave to the Add or Sum that reads it.
        let mut full = vec![n, c];
        full.extend(std::iter::repeat_n(1, sp));
        let t = ctx.b.reshape(v, &full);
        full.truncate(2);
        full.extend(k.iter());
        let t = ctx.b.expand(&t, &full);
        return fit(ctx, &t, &k, p);
    }
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
        ctx.b.expand(&t, &full)
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
    let row_major = n.attr_or::<i64>("storage_order", 0)? == 0;
    let has_indices = n.output.get(1).is_some_and(|s| !s.is_empty());
    let d = if ctx.opset() >= 16 && row_major && has_indices {
        // The model computes Indices anyway: scatter-add there.
        scatter_at_indices(ctx, n, &g, &p, dt)
    } else if (dt == DataType::FLOAT || dt == DataType::DOUBLE) && !force_unfold() {
        separable_max_pool(ctx, x, &n.output[0], &g, &p, dt)
    } else if ctx.opset() >= 16 && row_major && !p.tiles() {
        scatter_at_indices(ctx, n, &g, &p, dt)
    } else {
        unfold_max_pool(ctx, x, &g, &p, dt)
    };
    Ok(vec![Some(d)])
}

/// Tests can route float MaxPool gradients through the unfold form.
fn force_unfold() -> bool {
    #[cfg(test)]
    return tests::force_unfold();
    #[cfg(not(test))]
    false
}

/// The forward MaxPool also returns Indices (flat over N·C·spatial), and the cotangent is
/// scatter-added there. (Indices make ONNX Runtime's MaxPool itself 10–80× slower.)
fn scatter_at_indices(ctx: &mut VjpCtx, n: &NodeProto, g: &str, p: &Pool, dt: DataType) -> String {
    let idx = ctx.forward_output(n, 1);
    let total: usize = p.xs.iter().product();
    let zeros = ctx.b.fill(&[total], dt, 0.0);
    let fi = ctx.b.reshape(&idx, &[-1]);
    let fg = ctx.b.reshape(g, &[-1]);
    let s = ctx.b.op(
        "ScatterElements",
        &[&zeros, &fi, &fg],
        vec![attrs::int("axis", 0), attrs::string("reduction", "add")],
    );
    let xs64: Vec<i64> = p.xs.iter().map(|&d| d as i64).collect();
    ctx.b.reshape(&s, &xs64)
}

/// Reshapes that skip earlier reshapes of ours (a reshape of a reshape is one reshape).
#[derive(Default)]
struct Views(HashMap<String, String>);

impl Views {
    fn reshape(&mut self, ctx: &mut VjpCtx, v: &str, shape: &[i64]) -> String {
        let src = self.0.get(v).cloned().unwrap_or_else(|| v.to_string());
        let out = ctx.b.reshape(&src, shape);
        self.0.insert(out.clone(), src);
        out
    }
}

/// One pooling axis of the separable max-pool: a `[P, n, F]` view of the input, pooled along
/// its middle axis (window `k`, stride `s`, dilation `d`, `pb` leading pads, `m` outputs).
///
/// The axis is cut into `nb = ⌈n/s⌉` blocks of `s` (`[P, nb, s, F]`, −∞ fill if `s ∤ n`).
/// Window position `a` of output `j` is input element `j·s + a·d − pb = (j + q)·s + r`, so
/// position `a` of all windows is the contiguous slice `[P, j+q, r, F]` for the windows
/// `lo ≤ j < hi` that reach it inside the input (−∞ for the others: padding never equals a
/// maximum).
struct Stage {
    p: i64,
    f: i64,
    n: i64,
    m: i64,
    s: i64,
    nb: i64,
    /// (q, r, lo, hi) per window position, in window order.
    pos: Vec<(i64, i64, i64, i64)>,
    /// Window position values, `[P, m, 1, F]` each (all but the last when the maxima were
    /// given).
    parts: Vec<String>,
    /// Their maximum: the pooled value, `[P, m, 1, F]`.
    out: String,
}

fn stage_forward(
    ctx: &mut VjpCtx,
    views: &mut Views,
    inp: &str,
    (p, n, f): (i64, i64, i64),
    (k, s, d, pb, m): (i64, i64, i64, i64, i64),
    dt: DataType,
    known_out: Option<&str>,
) -> Stage {
    let nb = (n + s - 1) / s;
    let pos: Vec<(i64, i64, i64, i64)> = (0..k)
        .map(|a| {
            let off = a * d - pb;
            let (q, r) = (off.div_euclid(s), off.rem_euclid(s));
            // Window j reads block j + q: inside the input for -q ≤ j < nb - q (the last
            // block only up to n when s ∤ n: those elements are −∞ fill).
            let lo = (-q).clamp(0, m);
            let hi = (nb - q).clamp(lo, m);
            (q, r, lo, hi)
        })
        .collect();
    let ninf = ctx.scalar(f64::NEG_INFINITY, dt);
    let v4 = if s * nb > n {
        let v = views.reshape(ctx, inp, &[p, n, f]);
        let pv = ctx.b.const_i64s(&[0, 0, 0, 0, s * nb - n, 0]);
        let v = ctx.b.op(
            "Pad",
            &[&v, &pv, &ninf],
            vec![attrs::string("mode", "constant")],
        );
        views.reshape(ctx, &v, &[p, nb, s, f])
    } else {
        views.reshape(ctx, inp, &[p, nb, s, f])
    };
    // With the maxima known, the last window position is never compared (it takes the rest).
    let compared = if known_out.is_some() {
        pos.len() - 1
    } else {
        pos.len()
    };
    let mut parts = vec![];
    for &(q, r, lo, hi) in &pos[..compared] {
        if hi == lo {
            parts.push(ctx.b.fill(
                &[p as usize, m as usize, 1, f as usize],
                dt,
                f64::NEG_INFINITY,
            ));
            continue;
        }
        let mut t = if s == 1 && q + lo == 0 && q + hi == nb {
            v4.clone()
        } else {
            ctx.b
                .slice(&v4, &[q + lo, r], &[q + hi, r + 1], &[1, 2], &[1, 1])
        };
        if lo > 0 || hi < m {
            let pv = ctx.b.const_i64s(&[0, lo, 0, 0, 0, m - hi, 0, 0]);
            t = ctx.b.op(
                "Pad",
                &[&t, &pv, &ninf],
                vec![attrs::string("mode", "constant")],
            );
        }
        parts.push(t);
    }
    let out = match known_out {
        Some(o) => views.reshape(ctx, o, &[p, m, 1, f]),
        None if parts.len() == 1 => parts[0].clone(),
        None => {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            ctx.b.op("Max", &refs, vec![])
        }
    };
    Stage {
        p,
        f,
        n,
        m,
        s,
        nb,
        pos,
        parts,
        out,
    }
}

/// Route `cot` (`P·m·F` elements, in the order of [`Stage::out`]) to the first maximum of each
/// window; returns the gradient of the stage input (`P·n·F` elements in `[P, n, F]` order).
fn stage_backward(
    ctx: &mut VjpCtx,
    views: &mut Views,
    st: &Stage,
    cot: &str,
    dt: DataType,
) -> String {
    let (p, f, m, s, nb) = (st.p, st.f, st.m, st.s, st.nb);
    // Positions in window order take what is left of the cotangent where they equal the
    // maximum; the last position takes the rest (some position is the maximum).
    let mut rest = views.reshape(ctx, cot, &[p, m, 1, f]);
    let mut contrib = vec![];
    for part in &st.parts[..st.pos.len() - 1] {
        let eq = ctx.b.op("Equal", &[part, &st.out], vec![]);
        let e = ctx.b.cast(&eq, dt);
        let c = ctx.b.mul(&e, &rest);
        rest = ctx.b.sub(&rest, &c);
        contrib.push(c);
    }
    contrib.push(rest);
    // Each phase r of the blocks sums the positions with that phase, shifted by q blocks
    // (windows outside [lo, hi) read −∞ there and contribute nothing).
    let mut planes = vec![];
    for r in 0..s {
        let mut terms = vec![];
        for (c, &(q, pr, lo, hi)) in contrib.iter().zip(&st.pos) {
            if pr != r || hi == lo {
                continue;
            }
            let mut t = if lo > 0 || hi < m {
                ctx.b.slice(c, &[lo], &[hi], &[1], &[1])
            } else {
                c.clone()
            };
            let (b0, b1) = (q + lo, nb - q - hi);
            if b0 > 0 || b1 > 0 {
                t = ctx.b.pad(&t, &[0, b0, 0, 0, 0, b1, 0, 0], "constant");
            }
            terms.push(t);
        }
        planes.push(if terms.is_empty() {
            ctx.b
                .fill(&[p as usize, nb as usize, 1, f as usize], dt, 0.0)
        } else {
            ctx.sum(&terms)
        });
    }
    let d = if planes.len() == 1 {
        planes.pop().unwrap()
    } else {
        let refs: Vec<&str> = planes.iter().map(String::as_str).collect();
        ctx.b.concat(&refs, 2)
    };
    if s * nb > st.n {
        let d = views.reshape(ctx, &d, &[p, s * nb, f]);
        ctx.b.slice(&d, &[0], &[st.n], &[1], &[1])
    } else {
        d
    }
}

/// MaxPool gradient without Indices and without unfolding the windows.
///
/// A window's maximum is taken one axis at a time (last spatial axis first), and its *first*
/// maximum in row-major order is the first maximum along the first axis of the window of
/// per-row maxima, then the first along the next axis within that row, and so on. So the
/// cotangent is routed back one axis at a time through 1-D pools (see [`Stage`]). Everything
/// runs channel-last (NHWC: x, the cotangent and the result are transposed), so that every
/// slice, pad and concatenation moves contiguous blocks of at least C values and the
/// comparisons are between same-shaped tensors (ONNX Runtime is slow on strided slices and on
/// broadcasts over small inner dimensions). Ties are common (ReLU zeros); the comparisons
/// only find candidates, and each window position takes what the earlier ones left.
fn separable_max_pool(
    ctx: &mut VjpCtx,
    x: &str,
    y: &str,
    g: &str,
    p: &Pool,
    dt: DataType,
) -> String {
    let sp = p.spatial();
    let ns: Vec<i64> = p.xs[2..].iter().map(|&d| d as i64).collect();
    let os: Vec<i64> = p.ys[2..].iter().map(|&d| d as i64).collect();
    // NCHW ↔ NHWC (ONNX Runtime folds these into the NCHWc reorders of neighbouring convs).
    let to_last: Vec<i64> = std::iter::once(0)
        .chain(2..2 + sp as i64)
        .chain(std::iter::once(1))
        .collect();
    let to_first: Vec<i64> = [0, sp as i64 + 1]
        .into_iter()
        .chain(1..1 + sp as i64)
        .collect();
    let mut views = Views::default();
    // Forward, last spatial axis first; `cur` is the current shape [N, spatial…, C].
    let mut cur: Vec<i64> = vec![p.xs[0] as i64];
    cur.extend(ns.iter());
    cur.push(p.xs[1] as i64);
    let mut v = ctx.b.transpose(x, &to_last);
    let mut stages = vec![];
    for i in (0..sp).rev() {
        let pre: i64 = cur[..i + 1].iter().product();
        let post: i64 = cur[i + 2..].iter().product();
        let known = pooled_from(ctx, x, y, p, i, dt).map(|m| ctx.b.transpose(&m, &to_last));
        let st = stage_forward(
            ctx,
            &mut views,
            &v,
            (pre, cur[i + 1], post),
            (
                p.geo.kernel[i],
                p.geo.strides[i],
                p.geo.dilations[i],
                p.pads[i].0,
                os[i],
            ),
            dt,
            known.as_deref(),
        );
        cur[i + 1] = os[i];
        v = st.out.clone();
        stages.push(st);
    }
    // Backward, first spatial axis first.
    let mut cot = ctx.b.transpose(g, &to_last);
    for st in stages.iter().rev() {
        cot = stage_backward(ctx, &mut views, st, &cot, dt);
    }
    let mut nhwc = vec![p.xs[0] as i64];
    nhwc.extend(ns.iter());
    nhwc.push(p.xs[1] as i64);
    let d = views.reshape(ctx, &cot, &nhwc);
    ctx.b.transpose(&d, &to_first)
}

/// Under the CPU tuning (float32 only), the maxima of the stage that pools spatial axes `i..`
/// (NCHW): the forward MaxPool's own output for the last stage, a MaxPool over just those
/// axes for the others. ONNX Runtime runs MaxPool vectorised in its blocked layout, which
/// saves the stage a slice, often a −∞ pad and a Max. (Not in the portable graph: in float16
/// ORT's CPU MaxPool skips a rounding the slices it is compared with get.)
fn pooled_from(
    ctx: &mut VjpCtx,
    x: &str,
    y: &str,
    p: &Pool,
    i: usize,
    dt: DataType,
) -> Option<String> {
    if ctx.tuning != Tuning::CpuFloat32 || dt != DataType::FLOAT {
        return None;
    }
    if i == 0 {
        return Some(y.to_string());
    }
    let sp = p.spatial();
    let pick = |j: usize, v: i64, identity: i64| if j >= i { v } else { identity };
    let kernel: Vec<i64> = (0..sp).map(|j| pick(j, p.geo.kernel[j], 1)).collect();
    let strides: Vec<i64> = (0..sp).map(|j| pick(j, p.geo.strides[j], 1)).collect();
    let dilations: Vec<i64> = (0..sp).map(|j| pick(j, p.geo.dilations[j], 1)).collect();
    let pads: Vec<i64> = (0..2 * sp)
        .map(|k| {
            let j = k % sp;
            let (b, e) = p.pads[j];
            pick(j, if k < sp { b } else { e }, 0)
        })
        .collect();
    let attrs = vec![
        attrs::ints("kernel_shape", &kernel),
        attrs::ints("strides", &strides),
        attrs::ints("dilations", &dilations),
        attrs::ints("pads", &pads),
        attrs::int("ceil_mode", p.ceil_mode),
    ];
    Some(ctx.b.op("MaxPool", &[x], attrs))
}

/// The K window positions of every window are unfolded from x (padded with −∞) by strided
/// slices; ArgMax finds each window's first maximum and a one-hot mask routes the cotangent
/// there; a grouped one-hot ConvTranspose (or a reshape for tiling windows) puts it back.
/// Kept for element types other than float and double.
fn unfold_max_pool(ctx: &mut VjpCtx, x: &str, g: &str, p: &Pool, dt: DataType) -> String {
    let sp = p.spatial();
    let (nn, c) = (p.xs[0], p.xs[1]);
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
        x.to_string()
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
    let gu = ctx.b.unsqueeze(g, &[2]);
    let contrib = ctx.mask(&mask, &gu, dt); // [N, C, K, *o]
    let d = if p.tiles() {
        untile(ctx, &contrib, true, p)
    } else {
        let mut stacked_shape = vec![nn, c * kk];
        stacked_shape.extend(&p.ys[2..]);
        let s: Vec<i64> = stacked_shape.iter().map(|&d| d as i64).collect();
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
        // The adjoint of the grouped Conv that unfolds the windows (K channels per group).
        let unfold = conv::ConvAdjoint {
            w: &wt,
            ws: &wshape,
            geo: &p.conv_geometry(),
            group: c as i64,
            xs: &p.xs,
            ys: &stacked_shape,
            dt,
        };
        conv::transposed_conv(ctx, &stacked, &unfold)
    };
    d
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
    Ok(vec![Some(window_sum_adjoint(ctx, &scaled, &p, dt))])
}

/// The adjoint of summing every window: each output's value added back to every input position
/// of its window. For tiling windows a reshape; otherwise the window sum is a depthwise Conv
/// with a kernel of ones, and its adjoint is that Conv's data gradient in whichever form the
/// convolution rule picks. At stride 1 that is a depthwise Conv over `v` (ONNX Runtime's CPU
/// provider runs it blocked: 3.5–4× faster than the grouped ConvTranspose it replaces on
/// Inception-style 3×3/1 pools); strided, under the CPU tuning, a zero spread and that Conv.
fn window_sum_adjoint(ctx: &mut VjpCtx, v: &str, p: &Pool, dt: DataType) -> String {
    let c = p.xs[1];
    if p.tiles() {
        let u = ctx.b.unsqueeze(v, &[2]);
        return untile(ctx, &u, false, p);
    }
    let kk: usize = p.geo.kernel.iter().product::<i64>() as usize;
    let mut wshape = vec![c, 1];
    wshape.extend(p.geo.kernel.iter().map(|&v| v as usize));
    let w = ctx
        .b
        .constant_float("pool_ones", dt, &wshape, &vec![1.0; c * kk]);
    let geo = p.conv_geometry();
    let window_sum = conv::ConvAdjoint {
        w: &w,
        ws: &wshape,
        geo: &geo,
        group: c as i64,
        xs: &p.xs,
        ys: &p.ys,
        dt,
    };
    conv::conv_data_gradient(ctx, v, &window_sum)
}

/// LpPool / GlobalLpPool: y = (Σ_window |x|^p)^(1/p), so
/// dx = Σ_windows g·y^(1−p) · |x|^(p−1)·sign(x) (0 where a window is all zeros).
fn lp_pool(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (&n.input[0], &n.output[0]);
    let dt = ctx.dtype(x)?;
    let pw = n.attr_or::<i64>("p", 2)?;
    if pw < 1 {
        return Err(n.attr_error("p", format!("{pw}, want at least 1")));
    }
    let t = if pw == 1 {
        g
    } else {
        let zero = ctx.scalar(0.0, dt);
        let empty = ctx.b.op("Equal", &[y, &zero], vec![]);
        let e = ctx.scalar((1 - pw) as f64, dt);
        let one = ctx.scalar(1.0, dt);
        let safe = ctx.b.where_(&empty, &one, y);
        let f = ctx.b.op("Pow", &[&safe, &e], vec![]);
        let f = ctx.b.where_(&empty, &zero, &f);
        ctx.b.mul(&g, &f)
    };
    let spread_back = if n.op_type == "GlobalLpPool" {
        let xs = ctx.shape_i64(x)?;
        ctx.b.expand(&t, &xs)
    } else {
        let p = Pool::read(ctx, n)?;
        window_sum_adjoint(ctx, &t, &p, dt)
    };
    let local = match pw {
        1 => ctx.b.op("Sign", &[x], vec![]),
        2 => x.clone(),
        _ => {
            let a = ctx.b.op("Abs", &[x], vec![]);
            let e = ctx.scalar((pw - 1) as f64, dt);
            let m = ctx.b.op("Pow", &[&a, &e], vec![]);
            let sg = ctx.b.op("Sign", &[x], vec![]);
            ctx.b.mul(&m, &sg)
        }
    };
    Ok(vec![Some(ctx.b.mul(&spread_back, &local))])
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
        ctx.b
            .expand(&t, &xs.iter().map(|&v| v as i64).collect::<Vec<_>>())
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
    use std::cell::Cell;

    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};
    use crate::autodiff::Tuning;
    use crate::builder::GraphBuilder;
    use crate::proto::AttributeProto;
    use crate::tensor::HostTensor;
    use crate::testutil::{vjp_wrt_inputs_tuned, Rng, Runner};
    use crate::{DataType, Dim};

    thread_local! {
        /// Route float MaxPool gradients through the unfold form (kept for other element
        /// types) so that its tests still run.
        static FORCE_UNFOLD: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn force_unfold() -> bool {
        FORCE_UNFOLD.with(Cell::get)
    }

    fn pool(op: &str, x: &[usize], k: &[i64]) -> Case {
        // MaxPool is piecewise linear: a small step keeps finite differences away from
        // near-ties between window elements.
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
                .named("ResNet 3x3/2 pad 1, opset 13"),
            pool("MaxPool", &[1, 2, 7, 7], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::int("ceil_mode", 1))
                .opset(15)
                .named("3x3/2 ceil, opset 15"),
            pool("MaxPool", &[1, 2, 8, 8], &[2, 2])
                .attr(attrs::ints("dilations", &[2, 2]))
                .opset(13)
                .named("dilation 2, opset 13"),
            pool("MaxPool", &[1, 2, 8, 7], &[3, 2])
                .attr(attrs::ints("strides", &[1, 2]))
                .attr(attrs::ints("pads", &[1, 0, 1, 1]))
                .opset(13)
                .named("overlapping asymmetric, opset 13"),
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
        // Eight channels: the window-sum adjoint takes the convolution rule's Conv forms
        // (fewer channels keep ConvTranspose, as the cases above do).
        let avg8 = |x: &[usize], k: &[i64], include: i64| {
            pool("AveragePool", x, k)
                .attr(attrs::int("count_include_pad", include))
                .float_only()
                .linear()
        };
        for tuning in [Tuning::Portable, Tuning::CpuFloat32] {
            for include in [0, 1] {
                cases.extend([
                    avg8(&[1, 8, 7, 7], &[3, 3], include)
                        .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                        .named(&format!("3x3/1 pad 1 (Inception), include_pad {include}"))
                        .tuned(tuning),
                    avg8(&[2, 8, 9, 8], &[3, 3], include)
                        .attr(attrs::ints("strides", &[2, 2]))
                        .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                        .named(&format!("3x3/2 pad 1, include_pad {include}"))
                        .tuned(tuning),
                    avg8(&[1, 8, 8, 7], &[3, 2], include)
                        .attr(attrs::ints("strides", &[2, 1]))
                        .attr(attrs::ints("pads", &[0, 1, 1, 0]))
                        .attr(attrs::int("ceil_mode", 1))
                        .named(&format!("ceil asymmetric, include_pad {include}"))
                        .tuned(tuning),
                    avg8(&[1, 8, 8, 8], &[3, 3], include)
                        .attr(attrs::ints("strides", &[3, 3]))
                        .named(&format!("3x3/3 leftover rows, include_pad {include}"))
                        .tuned(tuning),
                ]);
            }
            cases.push(
                avg8(&[1, 8, 9, 9], &[3, 3], 0)
                    .attr(attrs::ints("dilations", &[2, 2]))
                    .attr(attrs::ints("strides", &[2, 1]))
                    .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                    .opset(19)
                    .named("dilation, 8 channels (opset 19)")
                    .tuned(tuning),
            );
            cases.extend([
                avg8(&[1, 8, 9], &[3], 0)
                    .attr(attrs::ints("strides", &[2]))
                    .attr(attrs::ints("pads", &[1, 1]))
                    .named("1-D, 8 channels")
                    .tuned(tuning),
                avg8(&[1, 8, 5, 6, 5], &[2, 3, 2], 1)
                    .attr(attrs::ints("strides", &[1, 2, 1]))
                    .attr(attrs::ints("pads", &[0, 1, 1, 1, 1, 0]))
                    .named("3-D, 8 channels")
                    .tuned(tuning),
            ]);
            cases.push(
                pool("LpPool", &[1, 8, 7, 7], &[3, 3])
                    .attr(attrs::ints("strides", &[2, 2]))
                    .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                    .float_only()
                    .named("p 2, 3x3/2 padded, 8 channels")
                    .tuned(tuning),
            );
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
        let away = crate::autodiff::testing::Inputs::away_from_zero();
        cases.push(
            pool("LpPool", &[1, 2, 7, 7], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .float_only()
                .named("p 2, 3x3/2 padded"),
        );
        cases.push(
            pool("LpPool", &[1, 2, 6, 6], &[2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::int("p", 1))
                .values(away)
                .float_only()
                .named("p 1, tiles"),
        );
        cases.push(
            pool("LpPool", &[2, 2, 5, 5], &[2, 3])
                .attr(attrs::int("p", 3))
                .values(away)
                .float_only()
                .named("p 3"),
        );
        cases.push(
            Case::op("GlobalLpPool")
                .input("x", &[2, 3, 4, 5])
                .float_only(),
        );
        run_cases(cases);
    }

    /// AveragePool's adjoint takes the convolution rule's forms: no grouped ConvTranspose of
    /// the input's size at stride 1, and only the zero spread when strided under the CPU tuning.
    #[test]
    fn average_pool_adjoint_is_a_depthwise_conv() {
        let conv_transposes = |strides: &[i64], tuning| {
            let mut b = GraphBuilder::new(17);
            let x = b.input("x", DataType::FLOAT, &[1, 16, 8, 8].map(Dim::Fixed));
            let y = b.op(
                "AveragePool",
                &[&x],
                vec![
                    attrs::ints("kernel_shape", &[3, 3]),
                    attrs::ints("strides", strides),
                    attrs::ints("pads", &[1, 1, 1, 1]),
                ],
            );
            b.output(&y, "y");
            let g = vjp_wrt_inputs_tuned(&b.build().unwrap(), tuning)
                .graph
                .unwrap();
            g.node
                .iter()
                .filter(|n| n.op_type == "ConvTranspose")
                .map(|n| n.input[1].clone())
                .collect::<Vec<_>>()
        };
        for tuning in [Tuning::Portable, Tuning::CpuFloat32] {
            assert_eq!(conv_transposes(&[1, 1], tuning), Vec::<String>::new());
        }
        assert_eq!(conv_transposes(&[2, 2], Tuning::Portable).len(), 1);
        let tuned = conv_transposes(&[2, 2], Tuning::CpuFloat32);
        assert!(
            tuned.len() == 1 && tuned[0].contains("spread_ones"),
            "{tuned:?}"
        );
    }

    /// 3-D pooling and kernels/strides that leave gaps or read one element per axis.
    #[test]
    fn max_pool_more_layouts() {
        run_cases(vec![
            pool("MaxPool", &[1, 2, 5, 6, 5], &[2, 3, 2])
                .attr(attrs::ints("strides", &[2, 2, 1]))
                .attr(attrs::ints("pads", &[0, 1, 1, 1, 1, 0]))
                .named("3-D"),
            pool("MaxPool", &[2, 2, 7, 8], &[1, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .named("1x3 kernel, batch 2"),
            pool("MaxPool", &[1, 2, 9, 8], &[2, 2])
                .attr(attrs::ints("strides", &[3, 3]))
                .named("stride 3 > kernel 2"),
            pool("MaxPool", &[1, 3, 7, 7], &[3, 3])
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("3x3/1 pad 1"),
        ]);
    }

    /// The previous form (window unfolding, ArgMax, one-hot ConvTranspose), still used for
    /// element types other than float and double.
    #[test]
    fn max_pool_unfold_form() {
        FORCE_UNFOLD.with(|f| f.set(true));
        run_cases(vec![
            pool("MaxPool", &[2, 3, 9, 9], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .opset(13)
                .float_only()
                .named("unfold: ResNet 3x3/2 pad 1"),
            pool("MaxPool", &[1, 2, 7, 7], &[3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::int("ceil_mode", 1))
                .opset(15)
                .float_only()
                .named("unfold: 3x3/2 ceil"),
            pool("MaxPool", &[1, 2, 6, 6], &[2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .float_only()
                .named("unfold: 2x2/2 tiles"),
        ]);
        FORCE_UNFOLD.with(|f| f.set(false));
    }

    /// Gradient by ONNX Runtime's own MaxPool Indices: `dx[idx[i]] += g[i]`.
    fn reference_by_indices(
        shape: &[usize],
        pool_attrs: &[AttributeProto],
        x: &HostTensor,
        g: &HostTensor,
    ) -> Vec<f64> {
        let mut b = GraphBuilder::new(17);
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        let xi = b.input("x", DataType::DOUBLE, &dims);
        let outs = b.op_multi("MaxPool", &[&xi], pool_attrs.to_vec(), 2);
        b.output(&outs[1], "idx");
        let m = b.build().unwrap();
        let idx = Runner::reference(&m).unwrap().run(&[("x", x)]).unwrap()["idx"].to_i64s();
        let mut dx = vec![0.0; x.len()];
        for (i, gv) in idx.iter().zip(g.to_f64s()) {
            dx[*i as usize] += gv;
        }
        dx
    }

    /// Ties (all-equal windows, ReLU zeros, small integers, all-negative next to padding): the
    /// cotangent goes to the first maximum of each window in row-major order, exactly where
    /// MaxPool's Indices point, and never to padding. Finite differences cannot check this.
    #[test]
    fn max_pool_ties_go_to_the_first_maximum() {
        type Fill = fn(&mut Rng) -> f64;
        let fills: [(&str, Fill); 5] = [
            ("all zero", |_| 0.0),
            ("all -1", |_| -1.0),
            ("relu", |r| r.normal().max(0.0)),
            ("integers 0..3", |r| r.uniform(0.0, 3.0).floor()),
            ("two values", |r| {
                if r.uniform(0.0, 1.0) < 0.5 {
                    -2.0
                } else {
                    5.0
                }
            }),
        ];
        let s2 = || attrs::ints("strides", &[2, 2]);
        let layouts: Vec<(&str, Vec<usize>, Vec<AttributeProto>)> = vec![
            (
                "3x3/2 pad 1",
                vec![2, 3, 9, 9],
                vec![
                    attrs::ints("kernel_shape", &[3, 3]),
                    s2(),
                    attrs::ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            (
                "3x3/2 end pads",
                vec![1, 3, 10, 10],
                vec![
                    attrs::ints("kernel_shape", &[3, 3]),
                    s2(),
                    attrs::ints("pads", &[0, 0, 1, 1]),
                ],
            ),
            (
                "2x2/2 tiles",
                vec![1, 2, 6, 8],
                vec![attrs::ints("kernel_shape", &[2, 2]), s2()],
            ),
            (
                "2x2/2 odd",
                vec![1, 2, 7, 5],
                vec![attrs::ints("kernel_shape", &[2, 2]), s2()],
            ),
            (
                "3x3/2 ceil",
                vec![1, 2, 8, 7],
                vec![
                    attrs::ints("kernel_shape", &[3, 3]),
                    s2(),
                    attrs::int("ceil_mode", 1),
                ],
            ),
            (
                "SAME_UPPER",
                vec![1, 2, 8, 9],
                vec![
                    attrs::ints("kernel_shape", &[3, 3]),
                    s2(),
                    attrs::string("auto_pad", "SAME_UPPER"),
                ],
            ),
            (
                "3x3/1 pad 1",
                vec![1, 2, 6, 6],
                vec![
                    attrs::ints("kernel_shape", &[3, 3]),
                    attrs::ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            (
                "dilation 2",
                vec![1, 2, 8, 8],
                vec![
                    attrs::ints("kernel_shape", &[2, 2]),
                    attrs::ints("dilations", &[2, 2]),
                ],
            ),
            (
                "column-major storage",
                vec![1, 2, 7, 7],
                vec![
                    attrs::ints("kernel_shape", &[3, 2]),
                    attrs::ints("strides", &[2, 1]),
                    attrs::int("storage_order", 1),
                ],
            ),
            (
                "1-D",
                vec![2, 3, 11],
                vec![
                    attrs::ints("kernel_shape", &[3]),
                    attrs::ints("strides", &[2]),
                    attrs::ints("pads", &[1, 1]),
                ],
            ),
            (
                "3-D",
                vec![1, 2, 5, 4, 5],
                vec![
                    attrs::ints("kernel_shape", &[2, 2, 3]),
                    attrs::ints("strides", &[2, 1, 2]),
                    attrs::ints("pads", &[1, 0, 1, 0, 1, 1]),
                ],
            ),
        ];
        let mut rng = Rng::new(42);
        let mut failures = vec![];
        for (lname, shape, pool_attrs) in &layouts {
            // The reference reads row-major Indices; storage_order only changes their encoding.
            let ref_attrs: Vec<AttributeProto> = pool_attrs
                .iter()
                .filter(|a| a.name != "storage_order")
                .cloned()
                .collect();
            // float64 in the portable graph; float32 in the CPU-tuned one, whose window maxima
            // come from MaxPools (values rounded to float32 first, so ties stay ties).
            let forms = [
                (13, DataType::DOUBLE, Tuning::Portable),
                (17, DataType::DOUBLE, Tuning::Portable),
                (17, DataType::FLOAT, Tuning::CpuFloat32),
            ];
            for (opset, dt, tuning) in forms {
                let mut b = GraphBuilder::new(opset);
                let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
                let xi = b.input("x", dt, &dims);
                let y = b.op("MaxPool", &[&xi], pool_attrs.clone());
                b.output(&y, "y");
                let model = b.build().unwrap();
                let vjp = vjp_wrt_inputs_tuned(&model, tuning);
                let mut fwd = Runner::reference(&model).unwrap();
                let mut back = Runner::new(&vjp).unwrap();
                let in_dt = |v: f64| {
                    if dt == DataType::FLOAT {
                        v as f32 as f64
                    } else {
                        v
                    }
                };
                for (fname, fill) in &fills {
                    let n: usize = shape.iter().product();
                    let xv: Vec<f64> = (0..n).map(|_| in_dt(fill(&mut rng))).collect();
                    let x = HostTensor::float(dt, shape.clone(), xv.clone());
                    let yv = &fwd.run(&[("x", &x)]).unwrap()["y"];
                    let gv: Vec<f64> = (0..yv.len()).map(|_| in_dt(rng.normal())).collect();
                    let g = HostTensor::float(dt, yv.shape.clone(), gv.clone());
                    let (x64, g64) = (
                        HostTensor::float(DataType::DOUBLE, shape.clone(), xv),
                        HostTensor::float(DataType::DOUBLE, yv.shape.clone(), gv),
                    );
                    let want = reference_by_indices(shape, &ref_attrs, &x64, &g64);
                    let got = back.run(&[("x", &x), ("y_grad", &g)]).unwrap()["x_grad"].to_f64s();
                    let err = want
                        .iter()
                        .zip(&got)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    // float32 sums up to a few routed cotangents: rounding only.
                    let tol = if dt == DataType::FLOAT { 1e-5 } else { 1e-12 };
                    if err > tol {
                        failures.push(format!(
                            "{lname}, opset {opset}, {dt:?} {tuning:?}, {fname}: max error {err}"
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
