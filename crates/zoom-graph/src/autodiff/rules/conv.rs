//! Convolution data gradients (any number of spatial axes, groups/depthwise, strides,
//! dilations, explicit or automatic padding).
//!
//! Conv y = conv(x, W): with stride 1, dx = Conv(g, W') where W' is W flipped in space with
//! input and output channels swapped (per group), padded by (k−1)·d − pad. Otherwise
//! dx = ConvTranspose(g, W) with the same strides, dilations, group and (resolved) pads, and
//! `output_padding` = the rows of x the last window never reached, so the result has x's size.
//! Under [`Tuning::CpuFloat32`] a strided depthwise Conv's dx is instead the cotangent spread
//! with zeros and a stride-1 depthwise Conv (see `spread_depthwise`).
//! ConvTranspose y = convᵀ(x, W): dx = Conv(g, W) with the same strides, dilations, group and
//! the (resolved) pads of the transposed convolution.
//! Bias: db = Σ g over batch and spatial axes. Weight gradients are not implemented (an error).
//! `conv_data_gradient` also serves the pooling rules (a window sum is a depthwise Conv by ones).

use super::dy0;
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::autodiff::Tuning;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::shapes::{conv_transpose_pads, ConvGeometry};
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("Conv", conv);
    r.add("ConvTranspose", conv_transpose);
}

fn bias_grad(ctx: &mut VjpCtx, g: &str, rank: usize) -> String {
    let axes: Vec<i64> = std::iter::once(0).chain(2..rank as i64).collect();
    ctx.b.reduce("ReduceSum", g, &axes, false)
}

fn conv(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, w, y) = (&n.input[0], &n.input[1], &n.output[0]);
    if need[1] {
        return Err(n.unsupported(
            "gradient with respect to the Conv weight (it depends on the differentiated input)",
        ));
    }
    let xs = ctx.shape(x)?;
    let ws = ctx.shape(w)?;
    let ys = ctx.shape(y)?;
    let wk: Vec<i64> = ws[2..].iter().map(|&d| d as i64).collect();
    let geo = ConvGeometry::read(n, xs.len() - 2, Some(wk))?;
    let mut out = vec![None; n.input.len()];
    if need[0] {
        let conv = ConvAdjoint {
            w,
            ws: &ws,
            geo: &geo,
            group: n.attr_or::<i64>("group", 1)?,
            xs: &xs,
            ys: &ys,
            dt: ctx.dtype(x)?,
        };
        out[0] = Some(conv_data_gradient(ctx, &g, &conv));
    }
    if need.get(2).copied().unwrap_or(false) {
        out[2] = Some(bias_grad(ctx, &g, xs.len()));
    }
    Ok(out)
}

/// A convolution whose data gradient is wanted: its weight (a model constant, or one a rule
/// built, such as a pooling window of ones), shapes and geometry.
pub(super) struct ConvAdjoint<'a> {
    pub w: &'a str,
    pub ws: &'a [usize],
    pub geo: &'a ConvGeometry,
    pub group: i64,
    pub xs: &'a [usize],
    pub ys: &'a [usize],
    pub dt: DataType,
}

/// dx for y = Conv(x, w) and the cotangent `g` of y, in the form that suits the geometry and
/// the tuning (see the module doc).
pub(super) fn conv_data_gradient(ctx: &mut VjpCtx, g: &str, c: &ConvAdjoint) -> String {
    let ConvAdjoint {
        w,
        ws,
        geo,
        group,
        xs,
        ..
    } = *c;
    let sp = xs.len() - 2;
    let xsp: Vec<i64> = xs[2..].iter().map(|&d| d as i64).collect();
    let pads = geo.resolved_pads(&xsp);
    // Stride 1: dx is a plain convolution of g with the flipped, in/out-swapped kernel. ONNX
    // Runtime's Conv kernels are much faster than its ConvTranspose, and the kernel transform
    // folds to a constant. Not when dx has few channels (a network's first layer: 1 or 3):
    // that Conv cannot use ORT's blocked NCHWc kernels (channel counts must be multiples of
    // 8) and its im2col buffer is many times larger than g, while ConvTranspose is one GEMM
    // and a col2im into the small output (gender's first layer: 97 µs against 18 µs).
    let few_channels = sp == 2 && xs[1] % 8 != 0;
    let flip_pads: Vec<(i64, i64)> = (0..sp)
        .map(|i| {
            let eff = (geo.kernel[i] - 1) * geo.dilations[i] + 1;
            (eff - 1 - pads[i].0, eff - 1 - pads[i].1)
        })
        .collect();
    if !few_channels
        && geo.strides.iter().all(|&s| s == 1)
        && flip_pads.iter().all(|p| p.0 >= 0 && p.1 >= 0)
    {
        let wf = flipped_kernel(ctx, w, ws, group as usize);
        let pads_v: Vec<i64> = flip_pads
            .iter()
            .map(|p| p.0)
            .chain(flip_pads.iter().map(|p| p.1))
            .collect();
        ctx.b.op(
            "Conv",
            &[g, &wf],
            vec![
                attrs::ints("dilations", &geo.dilations),
                attrs::ints("pads", &pads_v),
                attrs::int("group", group),
                attrs::ints("kernel_shape", &geo.kernel),
            ],
        )
    } else if ctx.tuning == Tuning::CpuFloat32
        && is_depthwise(xs, ws, group)
        && geo.strides.iter().any(|&s| s > 1)
    {
        // (Stride 1 reaches here only with few channels or padding beyond the kernel reach;
        // a spread by 1 would be a plain copy, so those keep ConvTranspose.)
        spread_depthwise(ctx, g, c, &pads)
    } else {
        transposed_conv(ctx, g, c)
    }
}

/// dx as one ConvTranspose with the convolution's own weight and geometry, and
/// `output_padding` for the rows of x the last window never reached.
pub(super) fn transposed_conv(ctx: &mut VjpCtx, g: &str, c: &ConvAdjoint) -> String {
    let ConvAdjoint {
        w, geo, group, ys, ..
    } = *c;
    let xsp: Vec<i64> = c.xs[2..].iter().map(|&d| d as i64).collect();
    let pads = geo.resolved_pads(&xsp);
    let out_pad: Vec<i64> = (0..xsp.len())
        .map(|i| {
            let o = ys[2 + i] as i64;
            let eff = (geo.kernel[i] - 1) * geo.dilations[i] + 1;
            xsp[i] - (geo.strides[i] * (o - 1) + eff - pads[i].0 - pads[i].1)
        })
        .collect();
    let pads_v: Vec<i64> = pads
        .iter()
        .map(|p| p.0)
        .chain(pads.iter().map(|p| p.1))
        .collect();
    let mut a = vec![
        attrs::ints("strides", &geo.strides),
        attrs::ints("dilations", &geo.dilations),
        attrs::ints("pads", &pads_v),
        attrs::int("group", group),
        attrs::ints("kernel_shape", &geo.kernel),
    ];
    if out_pad.iter().any(|&p| p != 0) {
        a.push(attrs::ints("output_padding", &out_pad));
    }
    ctx.b.op("ConvTranspose", &[g, w], a)
}

/// One input and one output channel per group: a depthwise convolution.
fn is_depthwise(xs: &[usize], ws: &[usize], group: i64) -> bool {
    ws[1] == 1 && ws[0] == xs[1] && group as usize == xs[1]
}

/// Data gradient of a strided depthwise Conv for [`Tuning::CpuFloat32`]: the cotangent spread
/// with zeros to the stride (a 1×1 ConvTranspose by ones), then a stride-1 depthwise Conv with
/// the flipped kernel. ONNX Runtime's CPU ConvTranspose with one channel per group is a loop of
/// tiny GEMMs and col2ims, in plain NCHW, where the depthwise Conv runs in its blocked layout
/// beside the tuned Relu masks; the zeros cost little in a depthwise kernel. selfie demo, whose
/// three strided depthwise layers these are: 3.54× → 3.33× (interleaved, tuned graphs), and the
/// spread form alone, without the tuned masks, 3.70× → 3.58×; as a rule by itself it measured
/// about 2%. Exact up to summation order.
///
/// With y[o] = Σₜ x[o·s + t·d − p₀]·W[t], dx[i] = Σₜ u[i + p₀ − t·d]·W[t] where u is g spread
/// (u[o·s] = g[o], zero elsewhere, length (O−1)·s + 1). Substituting t = k−1−τ makes that a
/// correlation of u, front-padded by (k−1)·d − p₀, with the flipped kernel; the back pad makes
/// the output as long as x.
fn spread_depthwise(ctx: &mut VjpCtx, g: &str, c: &ConvAdjoint, pads: &[(i64, i64)]) -> String {
    let ConvAdjoint {
        w, ws, geo, ys, dt, ..
    } = *c;
    let xsp: Vec<i64> = c.xs[2..].iter().map(|&d| d as i64).collect();
    let sp = xsp.len();
    let ch = ws[0];
    let mut ones_shape = vec![ch, 1];
    ones_shape.extend(std::iter::repeat_n(1, sp));
    let ones = ctx
        .b
        .constant_float("spread_ones", dt, &ones_shape, &vec![1.0; ch]);
    let spread = ctx.b.op(
        "ConvTranspose",
        &[g, &ones],
        vec![
            attrs::ints("strides", &geo.strides),
            attrs::int("group", ch as i64),
            attrs::ints("kernel_shape", &vec![1; sp]),
        ],
    );
    let mut front = vec![];
    let mut back = vec![];
    for i in 0..sp {
        let eff = (geo.kernel[i] - 1) * geo.dilations[i] + 1;
        let spread_len = (ys[2 + i] as i64 - 1) * geo.strides[i] + 1;
        let p0 = eff - 1 - pads[i].0;
        front.push(p0);
        back.push(xsp[i] - spread_len - p0 + eff - 1);
    }
    // A front or back pad below zero (padding wider than the kernel reach) crops instead.
    let crop = front.iter().chain(&back).any(|&p| p < 0);
    let conv_pads: Vec<i64> = front.iter().chain(&back).map(|&p| p.max(0)).collect();
    let wf = flipped_kernel(ctx, w, ws, ch);
    let d = ctx.b.op(
        "Conv",
        &[&spread, &wf],
        vec![
            attrs::ints("dilations", &geo.dilations),
            attrs::ints("pads", &conv_pads),
            attrs::int("group", ch as i64),
            attrs::ints("kernel_shape", &geo.kernel),
        ],
    );
    if !crop {
        return d;
    }
    let starts: Vec<i64> = front.iter().map(|&p| (-p).max(0)).collect();
    let ends: Vec<i64> = (0..sp).map(|i| starts[i] + xsp[i]).collect();
    let axes: Vec<i64> = (2..2 + sp as i64).collect();
    ctx.b.slice(&d, &starts, &ends, &axes, &vec![1; sp])
}

/// W [M, C/g, k…] → W' [C, M/g, k…] with W'[c, m, κ] = W[m, c, k−1−κ] within each group.
fn flipped_kernel(ctx: &mut VjpCtx, w: &str, ws: &[usize], group: usize) -> String {
    let sp = ws.len() - 2;
    let (m, cg) = (ws[0], ws[1]);
    let t = if group == 1 {
        let mut perm: Vec<i64> = vec![1, 0];
        perm.extend(2..ws.len() as i64);
        ctx.b.transpose(w, &perm)
    } else {
        let mut s = vec![group as i64, (m / group) as i64, cg as i64];
        s.extend(ws[2..].iter().map(|&d| d as i64));
        let r = ctx.b.reshape(w, &s);
        let mut perm: Vec<i64> = vec![0, 2, 1];
        perm.extend(3..(3 + sp) as i64);
        let t = ctx.b.transpose(&r, &perm);
        let mut s2 = vec![(cg * group) as i64, (m / group) as i64];
        s2.extend(ws[2..].iter().map(|&d| d as i64));
        ctx.b.reshape(&t, &s2)
    };
    let axes: Vec<i64> = (2..2 + sp as i64).collect();
    ctx.b
        .slice(&t, &vec![-1; sp], &vec![i64::MIN; sp], &axes, &vec![-1; sp])
}

fn conv_transpose(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, w, y) = (&n.input[0], &n.input[1], &n.output[0]);
    if need[1] {
        return Err(n.unsupported(
            "gradient with respect to the ConvTranspose weight (it depends on the differentiated input)",
        ));
    }
    let xs = ctx.shape(x)?;
    let ws = ctx.shape(w)?;
    let ys = ctx.shape(y)?;
    let sp = xs.len() - 2;
    let wk: Vec<i64> = ws[2..].iter().map(|&d| d as i64).collect();
    let geo = ConvGeometry::read(n, sp, Some(wk))?;
    let group = n.attr_or::<i64>("group", 1)?;
    let op_pad = n.attr_or::<Vec<i64>>("output_padding", vec![0; sp])?;
    let has_out_shape = n.get_attr::<Vec<i64>>("output_shape")?.is_some();
    let mut out = vec![None; n.input.len()];
    if need[0] {
        let mut pads = vec![];
        let mut crop = false;
        for i in 0..sp {
            let out_len = if has_out_shape {
                Some(ys[2 + i] as i64)
            } else {
                None
            };
            let p = conv_transpose_pads(
                &geo.auto_pad,
                xs[2 + i] as i64,
                geo.kernel[i],
                geo.strides[i],
                geo.dilations[i],
                op_pad[i],
                geo.pads[i],
                out_len,
            );
            if p.0 < 0 || p.1 < 0 {
                return Err(n.unsupported("negative padding"));
            }
            // dy padded by p is the full (uncropped) transposed output; the conv over it
            // yields in + floor(output_padding / stride) positions.
            if op_pad[i] >= geo.strides[i] {
                crop = true;
            }
            pads.push(p);
        }
        let pads_v: Vec<i64> = pads
            .iter()
            .map(|p| p.0)
            .chain(pads.iter().map(|p| p.1))
            .collect();
        let mut d = ctx.b.op(
            "Conv",
            &[&g, w],
            vec![
                attrs::ints("strides", &geo.strides),
                attrs::ints("dilations", &geo.dilations),
                attrs::ints("pads", &pads_v),
                attrs::int("group", group),
                attrs::ints("kernel_shape", &geo.kernel),
            ],
        );
        if crop {
            let axes: Vec<i64> = (2..xs.len() as i64).collect();
            let ends: Vec<i64> = xs[2..].iter().map(|&v| v as i64).collect();
            let starts = vec![0; sp];
            let steps = vec![1; sp];
            d = ctx.b.slice(&d, &starts, &ends, &axes, &steps);
        }
        out[0] = Some(d);
    }
    if need.get(2).copied().unwrap_or(false) {
        out[2] = Some(bias_grad(ctx, &g, xs.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};
    use crate::autodiff::Tuning;

    fn conv(x: &[usize], w: &[usize]) -> Case {
        Case::op("Conv")
            .input("x", x)
            .weight("w", w)
            .float_only()
            .linear()
    }

    fn convt(x: &[usize], w: &[usize]) -> Case {
        Case::op("ConvTranspose")
            .input("x", x)
            .weight("w", w)
            .float_only()
            .linear()
    }

    #[test]
    fn conv_rules() {
        let cases = vec![
            conv(&[1, 2, 5, 5], &[3, 2, 3, 3]).named("plain"),
            conv(&[2, 2, 7, 6], &[3, 2, 3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("stride 2 pad 1"),
            conv(&[1, 2, 8, 8], &[3, 2, 3, 3])
                .attr(attrs::ints("strides", &[2, 3]))
                .attr(attrs::ints("pads", &[0, 1, 2, 0]))
                .named("asymmetric pads, uneven strides"),
            conv(&[1, 2, 9, 9], &[2, 2, 3, 3])
                .attr(attrs::ints("dilations", &[2, 2]))
                .attr(attrs::ints("pads", &[2, 2, 2, 2]))
                .named("dilation 2"),
            // 8 input channels: stride-1 data gradients take the flipped-kernel Conv form
            // (fewer take ConvTranspose, see `few_channels`).
            conv(&[1, 8, 5, 4], &[3, 8, 3, 3])
                .attr(attrs::ints("pads", &[1, 0, 2, 1]))
                .named("8 channels, asymmetric pads"),
            conv(&[1, 8, 7, 7], &[2, 8, 3, 3])
                .attr(attrs::ints("dilations", &[2, 1]))
                .attr(attrs::ints("pads", &[2, 1, 2, 1]))
                .named("8 channels, dilation"),
            conv(&[1, 8, 5, 5], &[8, 1, 3, 3])
                .attr(attrs::int("group", 8))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("depthwise, 8 channels"),
            conv(&[1, 8, 5, 5], &[4, 2, 3, 3])
                .attr(attrs::int("group", 4))
                .named("groups 4, 8 channels"),
            conv(&[1, 4, 6, 6], &[4, 1, 3, 3])
                .attr(attrs::int("group", 4))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("depthwise"),
            conv(&[1, 4, 6, 6], &[6, 2, 3, 3])
                .attr(attrs::int("group", 2))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("groups 2"),
            conv(&[1, 2, 7, 6], &[3, 2, 3, 3])
                .attr(attrs::string("auto_pad", "SAME_UPPER"))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("SAME_UPPER"),
            conv(&[1, 2, 7, 6], &[3, 2, 3, 3])
                .attr(attrs::string("auto_pad", "SAME_LOWER"))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("SAME_LOWER"),
            conv(&[1, 2, 7, 6], &[3, 2, 2, 2])
                .attr(attrs::string("auto_pad", "VALID"))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("VALID"),
            conv(&[2, 3, 10], &[4, 3, 3])
                .attr(attrs::ints("strides", &[3]))
                .named("1-D"),
            conv(&[1, 2, 4, 5, 4], &[2, 2, 2, 3, 2])
                .attr(attrs::ints("pads", &[1, 0, 1, 0, 1, 1]))
                .named("3-D"),
            Case::op("Conv")
                .input("x", &[1, 2, 5, 5])
                .weight("w", &[3, 2, 3, 3])
                .input("b", &[3])
                .float_only()
                .linear()
                .named("bias input"),
            Case::op("Conv")
                .input("x", &[1, 2, 5, 5])
                .weight("w", &[3, 2, 1, 1])
                .weight("b", &[3])
                .float_only()
                .linear()
                .named("1x1 with bias"),
            convt(&[1, 3, 4, 4], &[3, 2, 3, 3]).named("plain"),
            convt(&[1, 3, 4, 5], &[3, 2, 3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("stride 2 pad 1"),
            convt(&[1, 3, 4, 5], &[3, 2, 3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .attr(attrs::ints("output_padding", &[1, 1]))
                .named("output_padding"),
            convt(&[1, 2, 4, 4], &[2, 2, 4, 4])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("U-Net up 4x4/2"),
            convt(&[1, 2, 3, 3], &[2, 2, 2, 2])
                .attr(attrs::ints("strides", &[2, 2]))
                .named("2x2/2"),
            convt(&[1, 4, 3, 3], &[4, 1, 3, 3])
                .attr(attrs::int("group", 4))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("depthwise"),
            convt(&[1, 4, 3, 4], &[4, 3, 3, 3])
                .attr(attrs::int("group", 2))
                .attr(attrs::ints("dilations", &[2, 1]))
                .named("groups 2 dilation"),
            convt(&[1, 2, 3, 4], &[2, 3, 3, 3])
                .attr(attrs::string("auto_pad", "SAME_UPPER"))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("SAME_UPPER"),
            convt(&[1, 2, 3, 4], &[2, 3, 3, 3])
                .attr(attrs::string("auto_pad", "SAME_LOWER"))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("SAME_LOWER"),
            convt(&[1, 2, 3, 3], &[2, 3, 3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("output_shape", &[6, 6]))
                .named("output_shape"),
            convt(&[1, 2, 3, 3], &[2, 3, 3, 3])
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("output_shape", &[6, 6]))
                .attr(attrs::string("auto_pad", "SAME_UPPER"))
                .named("output_shape SAME_UPPER"),
            convt(&[2, 3, 5], &[3, 2, 4])
                .attr(attrs::ints("strides", &[3]))
                .attr(attrs::ints("output_padding", &[2]))
                .named("1-D output_padding"),
            Case::op("ConvTranspose")
                .input("x", &[1, 3, 4, 4])
                .weight("w", &[3, 2, 3, 3])
                .input("b", &[2])
                .float_only()
                .linear()
                .named("bias input"),
        ];
        run_cases(cases);
    }

    /// The CPU tuning's route for strided depthwise convolutions (spread + stride-1 Conv), over
    /// the padding cases that change its front and back pads, including pads wider than the
    /// kernel reach (a crop) and x rows the last window never reached.
    #[test]
    fn cpu_tuned_depthwise_strided_gradients() {
        let dw = |x: &[usize], k: usize| {
            conv(x, &[x[1], 1, k, k])
                .attr(attrs::int("group", x[1] as i64))
                .tuned(Tuning::CpuFloat32)
        };
        let cases = vec![
            dw(&[1, 4, 8, 8], 3)
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[0, 0, 1, 1]))
                .named("TF SAME 3x3/2"),
            dw(&[2, 3, 9, 7], 5)
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[1, 1, 2, 2]))
                .named("5x5/2, odd sizes, batch 2"),
            dw(&[1, 2, 10, 9], 3)
                .attr(attrs::ints("strides", &[3, 2]))
                .named("no pads, rows never reached"),
            dw(&[1, 2, 9, 9], 3)
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("dilations", &[2, 1]))
                .attr(attrs::ints("pads", &[2, 1, 2, 1]))
                .named("dilation 2"),
            dw(&[1, 2, 8, 8], 2)
                .attr(attrs::ints("strides", &[2, 2]))
                .attr(attrs::ints("pads", &[2, 0, 0, 2]))
                .named("pads wider than the kernel reach"),
            dw(&[1, 2, 7, 6], 3)
                .attr(attrs::string("auto_pad", "SAME_UPPER"))
                .attr(attrs::ints("strides", &[2, 2]))
                .named("SAME_UPPER"),
            dw(&[1, 4, 6, 6], 3)
                .attr(attrs::ints("pads", &[1, 1, 1, 1]))
                .named("stride 1, few channels (ConvTranspose route)"),
        ];
        run_cases(cases);
    }

    /// The tuned graph really takes the spread route (no grouped ConvTranspose of the size of x).
    #[test]
    fn cpu_tuning_replaces_the_depthwise_conv_transpose() {
        use crate::testutil::vjp_wrt_inputs_tuned;
        use crate::{DataType, Dim, GraphBuilder};
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[1, 16, 8, 8].map(Dim::Fixed));
        let w = b.constant_f32("w", &[16, 1, 3, 3], &[0.5; 144]);
        let y = b.op(
            "Conv",
            &[&x, &w],
            vec![attrs::int("group", 16), attrs::ints("strides", &[2, 2])],
        );
        b.output(&y, "y");
        let model = b.build().unwrap();
        let kernels = |tuning| {
            let g = vjp_wrt_inputs_tuned(&model, tuning).graph.unwrap();
            g.node
                .iter()
                .filter(|n| n.op_type == "ConvTranspose")
                .map(|n| n.input[1].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(kernels(Tuning::Portable).len(), 1);
        let tuned = kernels(Tuning::CpuFloat32);
        assert!(
            tuned.len() == 1 && tuned[0].contains("spread_ones"),
            "{tuned:?}"
        );
    }

    #[test]
    fn weight_gradient_is_a_clear_error() {
        use crate::{DataType, Dim, GraphBuilder};
        let mut b = GraphBuilder::new(17);
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)],
        );
        let w = b.input(
            "w",
            DataType::FLOAT,
            &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(3)],
        );
        let mut y = b.op("Conv", &[&x, &w], vec![]);
        b.nodes.last_mut().unwrap().name = "conv_3".into();
        y = b.op("Relu", &[&y], vec![]);
        b.output(&y, "y");
        let m = b.build().unwrap();
        let e = crate::testutil::vjp_error(&m, "w");
        assert!(e.is_unsupported());
        let msg = e.to_string();
        assert!(
            msg.contains("in node \"conv_3\" (Conv)")
                && msg.contains("weight")
                && msg.contains("finite-difference"),
            "{msg}"
        );
    }
}
