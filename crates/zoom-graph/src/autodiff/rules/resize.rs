//! Resize (opset 13+; nearest, linear, cubic; every coordinate transformation, including
//! tf_crop_and_resize with a constant roi; `axes`, `keep_aspect_ratio_policy` and `antialias`
//! of opset 18).
//!
//! Resize is separable: along each resized axis, output o = Σ_t w_t(o)·input[i_t(o)], with
//! taps and weights that depend only on the sizes and attributes. The rule computes those taps
//! at transformation time exactly as the specification defines them and applies their transpose
//! along each axis. Integer-factor nearest upsampling, whose transpose is a block sum, is
//! Reshape + ReduceSum. Integer-factor upsampling of an NCHW spatial axis whose taps repeat
//! (bilinear and bicubic in segmentation nets) is a depthwise strided Conv with small border
//! corrections, linear in the size. Everything else: one MatMul with the dense interpolation
//! matrix when in×out is moderate (≤ 2¹⁸ entries: GEMM kernels are fast), else Gather + Mul +
//! ReduceSum over the transposed taps (for each input position, the outputs that read it). No
//! scatter is needed. Antialiased downsampling only changes the taps (a filter stretched by
//! 1/scale, see `Interp::antialias_taps`); antialiased upsampling is plain interpolation.

use super::dy0;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::tensor::HostTensor;
use crate::DataType;
use std::collections::HashMap;

pub(crate) fn register(r: &mut Registry) {
    r.add("Resize", resize);
}

/// Largest in×out interpolation matrix applied densely (MatMul); bigger ones use Gather.
const DENSE_LIMIT: usize = 1 << 18;

/// The interpolation attributes of one Resize node.
#[derive(Debug, Clone)]
pub struct Interp {
    /// nearest / linear / cubic.
    pub mode: String,
    /// coordinate_transformation_mode.
    pub coord: String,
    /// nearest_mode.
    pub nearest: String,
    /// cubic_coeff_a.
    pub cubic_a: f64,
    /// exclude_outside.
    pub exclude_outside: bool,
    /// antialias (opset 18): linear and cubic downsampling stretch their filter by 1/scale.
    pub antialias: bool,
}

impl Interp {
    fn original_coordinate(
        &self,
        x: f64,
        scale: f64,
        (in_len, out_len): (usize, usize),
        (start, end): (f64, f64),
    ) -> Option<f64> {
        let (inl, outl) = (in_len as f64, out_len as f64);
        Some(match self.coord.as_str() {
            "tf_crop_and_resize" => {
                if out_len > 1 {
                    start * (inl - 1.0) + x * (end - start) * (inl - 1.0) / (outl - 1.0)
                } else {
                    0.5 * (start + end) * (inl - 1.0)
                }
            }
            "half_pixel" => (x + 0.5) / scale - 0.5,
            "half_pixel_symmetric" => {
                let adj = outl / (scale * inl);
                let centre = inl / 2.0;
                centre * (1.0 - adj) + (x + 0.5) / scale - 0.5
            }
            "pytorch_half_pixel" => {
                if out_len > 1 {
                    (x + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if out_len == 1 {
                    0.0
                } else {
                    x * (inl - 1.0) / (outl - 1.0)
                }
            }
            "asymmetric" => x / scale,
            "tf_half_pixel_for_nn" => (x + 0.5) / scale,
            _ => return None,
        })
    }

    /// Whether an output whose source coordinate is `x` is the extrapolation value (a constant)
    /// rather than an interpolation: tf_crop_and_resize outside the input.
    fn extrapolated(&self, x: f64, in_len: usize) -> bool {
        self.coord == "tf_crop_and_resize" && (x < 0.0 || x > (in_len - 1) as f64)
    }

    /// Taps (input index, weight) of each output position along one axis; `roi` is the
    /// (start, end) of the region of interest along it (only tf_crop_and_resize reads it). An
    /// extrapolated output has no taps.
    pub fn taps(
        &self,
        in_len: usize,
        out_len: usize,
        scale: f64,
        roi: (f64, f64),
    ) -> Option<Vec<Vec<(usize, f64)>>> {
        if self.antialias && self.mode != "nearest" && (scale as f32) < 1.0 {
            return self.antialias_taps(in_len, out_len, scale, roi);
        }
        let last = in_len as i64 - 1;
        let clampi = |i: i64| i.clamp(0, last) as usize;
        let mut all = Vec::with_capacity(out_len);
        for o in 0..out_len {
            // ONNX Runtime computes coordinates in float32; do the same so taps agree.
            let x =
                self.original_coordinate(o as f64, scale as f32 as f64, (in_len, out_len), roi)?
                    as f32 as f64;
            if self.extrapolated(x, in_len) {
                all.push(vec![]);
                continue;
            }
            let taps = match self.mode.as_str() {
                "nearest" => {
                    let f = x.floor();
                    let frac = x - f;
                    let i = match self.nearest.as_str() {
                        "round_prefer_floor" => {
                            if frac == 0.5 {
                                f
                            } else {
                                x.round()
                            }
                        }
                        "round_prefer_ceil" => {
                            if frac == 0.5 {
                                f + 1.0
                            } else {
                                x.round()
                            }
                        }
                        "floor" => f,
                        "ceil" => x.ceil(),
                        _ => return None,
                    };
                    vec![(clampi(i as i64), 1.0)]
                }
                "linear" => {
                    let xc = x.clamp(0.0, last as f64);
                    let x0 = xc.floor();
                    let w1 = xc - x0;
                    let i0 = clampi(x0 as i64);
                    let i1 = clampi(x0 as i64 + 1);
                    vec![(i0, 1.0 - w1), (i1, w1)]
                }
                "cubic" => {
                    let a = self.cubic_a;
                    let x0 = x.floor();
                    let r = x - x0;
                    let c = [
                        ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                        ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                        ((a + 2.0) * (1.0 - r) - (a + 3.0)) * (1.0 - r) * (1.0 - r) + 1.0,
                        ((a * (2.0 - r) - 5.0 * a) * (2.0 - r) + 8.0 * a) * (2.0 - r) - 4.0 * a,
                    ];
                    let base = x0 as i64 - 1;
                    let mut t: Vec<(i64, f64)> =
                        (0..4).map(|k| (base + k, c[k as usize])).collect();
                    if self.exclude_outside {
                        t.retain(|&(i, _)| i >= 0 && i <= last);
                        let s: f64 = t.iter().map(|p| p.1).sum();
                        t.iter().map(|&(i, w)| (i as usize, w / s)).collect()
                    } else {
                        t.into_iter().map(|(i, w)| (clampi(i), w)).collect()
                    }
                }
                _ => return None,
            };
            all.push(taps);
        }
        Some(all)
    }

    /// Taps of antialiased linear or cubic downsampling.
    ///
    /// The specification stretches the filter by 1/scale, so each output reads every input
    /// within (filter support)/scale of its source coordinate, with the filter evaluated at
    /// distance × scale and the weights normalised to sum to one. Taps past either end are
    /// folded onto the edge element (or, with exclude_outside, dropped before normalising).
    /// Everything is computed in float32 in ONNX Runtime's order (window bounds rounded from
    /// the centre of the source pixel), so that the taps are those of the forward pass being
    /// differentiated, not merely close to them.
    fn antialias_taps(
        &self,
        in_len: usize,
        out_len: usize,
        scale: f64,
        roi: (f64, f64),
    ) -> Option<Vec<Vec<(usize, f64)>>> {
        let cubic = match self.mode.as_str() {
            "linear" => false,
            "cubic" => true,
            _ => return None,
        };
        let a = self.cubic_a as f32;
        let filter = |x: f32| -> f32 {
            let x = x.abs();
            if !cubic {
                return if x < 1.0 { 1.0 - x } else { 0.0 };
            }
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        };
        let rscale = scale as f32;
        let stretch = 1.0f32 / rscale;
        // Half the filter's width: the triangle spans ±1, the cubic kernel ±2.
        let half_width: f32 = if cubic { 2.0 } else { 1.0 };
        let support = half_width * stretch;
        let inv_stretch = 1.0f32 / stretch;
        let window = support.ceil() as i64 * 2 + 1;
        let n = in_len as i64;
        let mut all = Vec::with_capacity(out_len);
        for o in 0..out_len {
            let source =
                self.original_coordinate(o as f64, rscale as f64, (in_len, out_len), roi)? as f32;
            if self.extrapolated(source as f64, in_len) {
                all.push(vec![]);
                continue;
            }
            let centre = 0.5f32 + source;
            let lo = (centre - support + 0.5).floor() as i64;
            let hi = lo + ((centre + support + 0.5).floor() as i64 - lo).clamp(0, window);
            let (lo_in, hi_in) = (lo.clamp(0, n), hi.clamp(0, n));
            if lo_in >= hi_in {
                all.push(vec![]);
                continue;
            }
            let (first, end) = if self.exclude_outside {
                (lo_in, hi_in)
            } else {
                (lo, hi)
            };
            let mut total = 0.0f32;
            let mut taps: Vec<(usize, f32)> = vec![];
            for i in first..end {
                let w = filter(((i as f32 - centre) + 0.5) * inv_stretch);
                total += w;
                let at = i.clamp(0, n - 1) as usize;
                match taps.last_mut() {
                    Some(last) if last.0 == at => last.1 += w,
                    _ => taps.push((at, w)),
                }
            }
            let norm = if total == 0.0 { 1.0 } else { 1.0 / total };
            all.push(
                taps.into_iter()
                    .map(|(i, w)| (i, (w * norm) as f64))
                    .collect(),
            );
        }
        Some(all)
    }
}

fn resize(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (&n.input[0], &n.output[0]);
    let xs = ctx.shape(x)?;
    let ys = ctx.shape(y)?;
    let dt = ctx.dtype(x)?;
    let r = xs.len();
    let interp = Interp {
        mode: n.attr_or::<String>("mode", "nearest".into())?,
        coord: n.attr_or::<String>("coordinate_transformation_mode", "half_pixel".into())?,
        nearest: n.attr_or::<String>("nearest_mode", "round_prefer_floor".into())?,
        cubic_a: n.attr_or::<f32>("cubic_coeff_a", -0.75)? as f64,
        exclude_outside: n.attr_or::<i64>("exclude_outside", 0)? == 1,
        antialias: n.attr_or::<i64>("antialias", 0)? == 1,
    };
    let axes: Vec<usize> = match n.get_attr::<Vec<i64>>("axes")? {
        Some(a) => a
            .iter()
            .map(|&v| super::norm_axis(n, v, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    // Region of interest per axis (start, end), read only by tf_crop_and_resize: [starts…,
    // ends…] over `axes`.
    let mut roi = vec![(0.0f64, 1.0f64); r];
    if interp.coord == "tf_crop_and_resize" {
        let name = n
            .input_opt(1)
            .ok_or_else(|| n.unsupported("tf_crop_and_resize without a roi input (input 1)"))?;
        let v = ctx.const_input(n, 1, "roi")?.to_f64s();
        if v.len() != 2 * axes.len() {
            return Err(n.unsupported(format!(
                "roi (input 1, \"{name}\") has {} values; expected {} (start and end for each of {} axes)",
                v.len(),
                2 * axes.len(),
                axes.len()
            )));
        }
        for (k, &a) in axes.iter().enumerate() {
            roi[a] = (v[k], v[k + axes.len()]);
        }
    }
    // Scale per axis: the given scales, else out/in (or the common scale of a kept aspect ratio).
    let mut scale = vec![1.0f64; r];
    let scales = n
        .input_opt(2)
        .and_then(|s| ctx.const_value(s))
        .map(|t| t.to_f64s())
        .filter(|v| !v.is_empty());
    let sizes_given = n
        .input_opt(3)
        .and_then(|s| ctx.const_value(s))
        .is_some_and(|t| !t.is_empty());
    if let Some(s) = scales.filter(|_| !sizes_given) {
        for (k, &a) in axes.iter().enumerate() {
            scale[a] = s[k];
        }
    } else {
        let policy = n.attr_or::<String>("keep_aspect_ratio_policy", "stretch".into())?;
        if policy == "stretch" {
            for &a in &axes {
                scale[a] = ys[a] as f64 / xs[a] as f64;
            }
        } else {
            let sizes = ctx.const_ints(n, 3, "sizes")?;
            let ratios = axes
                .iter()
                .enumerate()
                .map(|(k, &a)| sizes[k] as f64 / xs[a] as f64);
            let common = if policy == "not_larger" {
                ratios.fold(f64::INFINITY, f64::min)
            } else {
                ratios.fold(0.0, f64::max)
            };
            for &a in &axes {
                scale[a] = common;
            }
        }
    }
    let mut todo: Vec<usize> = (0..r)
        // ONNX Runtime copies an axis whose scale is 1, even where tf_crop_and_resize's roi
        // would crop it (the specification's reference crops): the gradient follows the runtime.
        .filter(|&a| xs[a] != ys[a] || scale[a] != 1.0)
        .collect();
    // Shrink the biggest expansions first: later axes then work on smaller tensors.
    todo.sort_by(|&a, &b| (ys[b] as f64 / xs[b] as f64).total_cmp(&(ys[a] as f64 / xs[a] as f64)));
    let mut cur = g;
    let mut shape: Vec<usize> = ys.clone();
    let mut forms = HashMap::new();
    for &a in &todo {
        let t = interp
            .taps(xs[a], ys[a], scale[a], roi[a])
            .ok_or_else(|| n.unsupported(format!("Resize variant {interp:?}")))?;
        forms.insert(a, AxisForm::of(&shape, a, xs[a], t, dt));
    }
    // A 2-D upsampling whose both axes are plain strided Convs (nearest's block sums stay as
    // they are): one Conv with the separable kernel, half the padding and layout conversions.
    if let [a0, a1] = todo[..] {
        if let (AxisForm::Strided(p0), AxisForm::Strided(p1)) = (&forms[&a0], &forms[&a1]) {
            if p0.is_pure() && p1.is_pure() {
                let mut plans = [(a0, p0), (a1, p1)];
                plans.sort_by_key(|(a, _)| *a);
                todo.clear();
                cur = conv_along(ctx, &cur, shape[1], &plans, dt);
            }
        }
    }
    for a in todo {
        cur = transpose_axis(ctx, &cur, &mut shape, a, xs[a], &forms[&a], dt);
    }
    let mut out = vec![None; n.input.len()];
    out[0] = Some(cur);
    Ok(out)
}

/// How one axis's transposed interpolation is built, decided once from its taps.
enum AxisForm {
    /// Nearest upsampling by an integer factor f, each input copied to f consecutive outputs:
    /// the transpose is a block sum.
    BlockSum(usize),
    /// Periodic taps: a strided depthwise Conv (see [`StridedPlan`]).
    Strided(StridedPlan),
    /// Anything else, from its taps (out → in): a dense matrix, or a gather of each input's
    /// readers.
    General(Vec<Vec<(usize, f64)>>),
}

impl AxisForm {
    fn of(
        shape: &[usize],
        axis: usize,
        in_len: usize,
        taps: Vec<Vec<(usize, f64)>>,
        dt: DataType,
    ) -> Self {
        let out_len = taps.len();
        let f = out_len.checked_div(in_len).unwrap_or(0).max(1);
        let copies = |(o, t): (usize, &Vec<(usize, f64)>)| t.len() == 1 && t[0] == (o / f, 1.0);
        if in_len > 0 && out_len.is_multiple_of(in_len) && taps.iter().enumerate().all(copies) {
            return AxisForm::BlockSum(f);
        }
        match StridedPlan::new(shape, axis, in_len, &taps, dt) {
            Some(plan) => AxisForm::Strided(plan),
            None => AxisForm::General(taps),
        }
    }
}

/// Apply the transpose of one axis's interpolation along `axis`, in the form chosen for it.
fn transpose_axis(
    ctx: &mut VjpCtx,
    g: &str,
    shape: &mut [usize],
    axis: usize,
    in_len: usize,
    form: &AxisForm,
    dt: DataType,
) -> String {
    let r = shape.len();
    let taps = match form {
        AxisForm::BlockSum(f) => {
            let mut s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            s[axis] = in_len as i64;
            s.insert(axis + 1, *f as i64);
            let t = ctx.b.reshape(g, &s);
            shape[axis] = in_len;
            return ctx.b.reduce("ReduceSum", &t, &[axis as i64 + 1], false);
        }
        AxisForm::Strided(plan) => return strided_conv(ctx, g, shape, axis, plan, dt),
        AxisForm::General(taps) => taps,
    };
    let out_len = taps.len();
    // Moderate sizes: a dense interpolation matrix and one MatMul (fast GEMM kernels) beat a
    // gather of scattered elements.
    if in_len * out_len <= DENSE_LIMIT {
        let mut at = vec![0.0; in_len * out_len];
        for (o, t) in taps.iter().enumerate() {
            for &(i, w) in t {
                at[i * out_len + o] += w;
            }
        }
        shape[axis] = in_len;
        return matmul_along(ctx, g, r, axis, &at, (in_len, out_len), dt);
    }
    let readers = readers(taps, in_len);
    let m = readers.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut idx = Vec::with_capacity(in_len * m);
    let mut wts = Vec::with_capacity(in_len * m);
    for rd in &readers {
        for k in 0..m {
            let (o, w) = rd.get(k).copied().unwrap_or((0, 0.0));
            idx.push(o as i64);
            wts.push(w);
        }
    }
    let (ishape, wshape): (Vec<usize>, Vec<usize>) = if m == 1 {
        (
            vec![in_len],
            std::iter::once(in_len)
                .chain(std::iter::repeat_n(1, r - axis - 1))
                .collect(),
        )
    } else {
        (
            vec![in_len, m],
            [in_len, m]
                .into_iter()
                .chain(std::iter::repeat_n(1, r - axis - 1))
                .collect(),
        )
    };
    let j = ctx
        .b
        .constant("resize_src", &HostTensor::int(DataType::INT64, ishape, idx));
    let w = ctx.b.constant_float("resize_w", dt, &wshape, &wts);
    let gathered = ctx.b.op(
        "Gather",
        &[g, &j],
        vec![crate::attrs::int("axis", axis as i64)],
    );
    let weighted = ctx.b.mul(&gathered, &w);
    shape[axis] = in_len;
    if m == 1 {
        weighted
    } else {
        ctx.b
            .reduce("ReduceSum", &weighted, &[axis as i64 + 1], false)
    }
}

/// For each input position, the (output, weight) pairs that read it (repeated taps summed).
fn readers(taps: &[Vec<(usize, f64)>], in_len: usize) -> Vec<Vec<(usize, f64)>> {
    let mut readers: Vec<Vec<(usize, f64)>> = vec![vec![]; in_len];
    for (o, t) in taps.iter().enumerate() {
        for &(i, w) in t {
            if w != 0.0 {
                match readers[i].iter_mut().find(|p| p.0 == o) {
                    Some(p) => p.1 += w,
                    None => readers[i].push((o, w)),
                }
            }
        }
    }
    readers
}

/// `out[.., r, ..] = Σ_c m[r][c] · v[.., c, ..]` along `axis` of the rank-`rank` tensor `v`, for
/// the row-major `rows × cols` matrix `m`: one MatMul (transposes around it for leading axes).
fn matmul_along(
    ctx: &mut VjpCtx,
    v: &str,
    rank: usize,
    axis: usize,
    m: &[f64],
    (rows, cols): (usize, usize),
    dt: DataType,
) -> String {
    if axis == rank - 1 {
        let mut mt = vec![0.0; cols * rows];
        for r in 0..rows {
            for c in 0..cols {
                mt[c * rows + r] = m[r * cols + c];
            }
        }
        let mt = ctx
            .b
            .constant_float("resize_matrix", dt, &[cols, rows], &mt);
        return ctx.b.matmul(v, &mt);
    }
    let mc = ctx
        .b
        .constant_float("resize_matrix_t", dt, &[rows, cols], m);
    if axis == rank - 2 {
        return ctx.b.matmul(&mc, v);
    }
    // Move the axis to the second-last position, multiply, move it back.
    let mut perm: Vec<i64> = (0..rank as i64)
        .filter(|&k| k != axis as i64 && k != rank as i64 - 1)
        .collect();
    perm.push(axis as i64);
    perm.push(rank as i64 - 1);
    let t = ctx.b.transpose(v, &perm);
    let t = ctx.b.matmul(&mc, &t);
    let mut inv = vec![0i64; rank];
    for (k, &p) in perm.iter().enumerate() {
        inv[p as usize] = k as i64;
    }
    ctx.b.transpose(&t, &inv)
}

/// The transposed interpolation along a spatial axis of an integer-factor upsampling, as a
/// depthwise strided Conv plus small corrections at the borders.
///
/// Upsampling by an integer factor `f` reads the same pattern of taps for every output phase
/// away from the borders, so input row `i` collects `Σ_t K[t]·g[f·i − q + t]` with one kernel
/// `K`: a Conv over the cotangent with stride `f`, linear in the size (the dense matrix is
/// quadratic: at 256 → 512 it cost more than two forward passes of a segmentation net). Rows
/// near the borders, where the forward clamps or drops taps, differ from the pattern; their
/// differences are applied as small MatMuls on the border columns of the cotangent. The kernel
/// and differences are read off the exact taps, so any mode and coordinate transformation whose
/// taps are periodic qualifies; others (align_corners, non-integer factors) have no plan.
struct StridedPlan {
    f: usize,
    /// Leading and trailing padding of the cotangent (`edge`: copies of its border values,
    /// else zeros).
    q: usize,
    pe: usize,
    edge: bool,
    kernel: Vec<f64>,
    in_len: usize,
    out_len: usize,
    /// Rows the Conv yields (≥ in_len; the extra ones are cropped).
    conv_len: usize,
    /// (row, column, difference) for the border rows that break the pattern, each end, and
    /// how many rows and columns from that end they span.
    head: Vec<(usize, usize, f64)>,
    tail: Vec<(usize, usize, f64)>,
    head_extent: (usize, usize),
    tail_extent: (usize, usize),
}

impl StridedPlan {
    /// Border rows (each end) and their columns that may differ from the periodic pattern.
    const MAX_BORDER_ROWS: usize = 8;

    fn new(
        shape: &[usize],
        axis: usize,
        in_len: usize,
        taps: &[Vec<(usize, f64)>],
        dt: DataType,
    ) -> Option<Self> {
        // ONNX Runtime's CPU Conv is float32 only (float16 graphs come from the float32 one).
        if shape.len() != 4 || !(axis == 2 || axis == 3) || dt != DataType::FLOAT {
            return None;
        }
        let out_len = taps.len();
        let max_rows = Self::MAX_BORDER_ROWS;
        if in_len < 2 * max_rows + 2 || !out_len.is_multiple_of(in_len) || out_len == in_len {
            return None;
        }
        let f = out_len / in_len;
        let rows: Vec<HashMap<usize, f64>> = readers(taps, in_len)
            .into_iter()
            .map(|r| r.into_iter().collect())
            .collect();
        let reference = &rows[in_len / 2];
        let lo = reference
            .iter()
            .filter(|e| *e.1 != 0.0)
            .map(|e| *e.0)
            .min()?;
        let hi = reference
            .iter()
            .filter(|e| *e.1 != 0.0)
            .map(|e| *e.0)
            .max()?;
        let q = (f * (in_len / 2)).checked_sub(lo)?;
        let kernel: Vec<f64> = (lo..=hi)
            .map(|o| reference.get(&o).copied().unwrap_or(0.0))
            .collect();
        let len = kernel.len();
        // Differences below float32 resolution are rounding of the coordinates, not structure.
        let tol = 1e-7 * kernel.iter().fold(0.0f64, |m, w| m.max(w.abs()));
        // (row, column, difference) for the rows that break the pattern, when the Conv reads
        // the cotangent padded with zeros or (`edge`) with copies of its border values.
        let pattern_diffs = |edge: bool| {
            let mut diffs: Vec<(usize, usize, f64)> = vec![];
            for (i, row) in rows.iter().enumerate() {
                let mut d = row.clone();
                for (t, &k) in kernel.iter().enumerate() {
                    let o = (f * i + t) as i64 - q as i64;
                    if (0..out_len as i64).contains(&o) || edge {
                        *d.entry(o.clamp(0, out_len as i64 - 1) as usize)
                            .or_default() -= k;
                    }
                }
                diffs.extend(
                    d.into_iter()
                        .filter(|e| e.1.abs() > tol)
                        .map(|(o, w)| (i, o, w)),
                );
            }
            diffs
        };
        // Clamped coordinates (linear half_pixel) often make the border rows exactly an edge pad.
        let edge = pattern_diffs(true).is_empty();
        let diffs = if edge { vec![] } else { pattern_diffs(false) };
        let (head, tail): (Vec<(usize, usize, f64)>, Vec<_>) =
            diffs.into_iter().partition(|d| d.0 < in_len / 2);
        let extent = |part: &[(usize, usize, f64)], at_end: bool| {
            let rows = part
                .iter()
                .map(|d| if at_end { in_len - d.0 } else { d.0 + 1 });
            let cols = part
                .iter()
                .map(|d| if at_end { out_len - d.1 } else { d.1 + 1 });
            (rows.max().unwrap_or(0), cols.max().unwrap_or(0))
        };
        let (head_extent, tail_extent) = (extent(&head, false), extent(&tail, true));
        let max_cols = f * (max_rows + 1) + len;
        if [head_extent, tail_extent]
            .iter()
            .any(|&(r, c)| r > max_rows || c > max_cols)
        {
            return None;
        }
        // Conv: output length ⌊(out + q + pe − len)/f⌋ + 1 must reach in_len.
        let pe = (f * (in_len - 1) + len).saturating_sub(out_len + q);
        let conv_len = (out_len + q + pe - len) / f + 1;
        Some(StridedPlan {
            f,
            q,
            pe,
            edge,
            kernel,
            in_len,
            out_len,
            conv_len,
            head,
            tail,
            head_extent,
            tail_extent,
        })
    }

    /// The Conv alone is the transposed interpolation (no border corrections).
    fn is_pure(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty()
    }
}

/// The depthwise strided Conv of `plans` (one per axis, 2 and/or 3) over `g`, with edge
/// padding where a plan asks for it, cropped to the input's length. A separable kernel: one
/// Conv does both axes of a 2-D upsampling, so ONNX Runtime pads and converts layouts once.
fn conv_along(
    ctx: &mut VjpCtx,
    g: &str,
    c: usize,
    plans: &[(usize, &StridedPlan)],
    dt: DataType,
) -> String {
    let (mut strides, mut kdims, mut pads, mut edge_pads) =
        ([1i64, 1], [1i64, 1], [0i64; 4], [0i64; 8]);
    let mut kernel = vec![1.0];
    for &(axis, p) in plans {
        // Outer product over the axes in order (axis 2 rows, axis 3 columns).
        kernel = if axis == 2 {
            p.kernel
                .iter()
                .flat_map(|a| kernel.iter().map(move |b| a * b))
                .collect()
        } else {
            kernel
                .iter()
                .flat_map(|a| p.kernel.iter().map(move |b| a * b))
                .collect()
        };
        strides[axis - 2] = p.f as i64;
        kdims[axis - 2] = p.kernel.len() as i64;
        if p.edge {
            edge_pads[axis] = p.q as i64;
            edge_pads[4 + axis] = p.pe as i64;
        } else {
            pads[axis - 2] = p.q as i64;
            pads[axis] = p.pe as i64;
        }
    }
    let mut kshape = [c, 1, 1, 1];
    kshape[2] = kdims[0] as usize;
    kshape[3] = kdims[1] as usize;
    let weights: Vec<f64> = (0..c).flat_map(|_| kernel.iter().copied()).collect();
    let w = ctx.b.constant_float("resize_kernel", dt, &kshape, &weights);
    let padded;
    let input = if edge_pads.iter().any(|&p| p > 0) {
        padded = ctx.b.pad(g, &edge_pads, "edge");
        &padded
    } else {
        g
    };
    let mut conv = ctx.b.op(
        "Conv",
        &[input, &w],
        vec![
            crate::attrs::int("group", c as i64),
            crate::attrs::ints("kernel_shape", &kdims),
            crate::attrs::ints("strides", &strides),
            crate::attrs::ints("pads", &pads),
        ],
    );
    let crop: Vec<(usize, &StridedPlan)> = plans
        .iter()
        .copied()
        .filter(|(_, p)| p.conv_len > p.in_len)
        .collect();
    if !crop.is_empty() {
        let axes: Vec<i64> = crop.iter().map(|(a, _)| *a as i64).collect();
        let ends: Vec<i64> = crop.iter().map(|(_, p)| p.in_len as i64).collect();
        conv = ctx.b.slice(
            &conv,
            &vec![0; axes.len()],
            &ends,
            &axes,
            &vec![1; axes.len()],
        );
    }
    conv
}

/// One axis by [`StridedPlan`]: the Conv, plus the border corrections as a [rows, cols]
/// matrix on the border columns of the cotangent.
fn strided_conv(
    ctx: &mut VjpCtx,
    g: &str,
    shape: &mut [usize],
    axis: usize,
    plan: &StridedPlan,
    dt: DataType,
) -> String {
    let conv = conv_along(ctx, g, shape[1], &[(axis, plan)], dt);
    let (in_len, out_len, ax) = (plan.in_len, plan.out_len, axis as i64);
    let mut terms = vec![conv];
    for (part, (rows_n, cols_n), at_end) in [
        (&plan.head, plan.head_extent, false),
        (&plan.tail, plan.tail_extent, true),
    ] {
        if part.is_empty() {
            continue;
        }
        let (row0, col0) = if at_end {
            (in_len - rows_n, out_len - cols_n)
        } else {
            (0, 0)
        };
        let mut m = vec![0.0; rows_n * cols_n];
        for &(i, o, d) in part.iter() {
            m[(i - row0) * cols_n + (o - col0)] += d;
        }
        let cols = ctx
            .b
            .slice(g, &[col0 as i64], &[(col0 + cols_n) as i64], &[ax], &[1]);
        let corr = matmul_along(ctx, &cols, 4, axis, &m, (rows_n, cols_n), dt);
        let mut p = [0i64; 8];
        p[axis] = row0 as i64;
        p[4 + axis] = (in_len - row0 - rows_n) as i64;
        terms.push(ctx.b.pad(&corr, &p, "constant"));
    }
    shape[axis] = in_len;
    ctx.sum(&terms)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    fn resize_scales(x: &[usize], scales: &[f64]) -> Case {
        Case::op("Resize")
            .input("x", x)
            .absent()
            .floats("scales", &[scales.len()], scales)
            .float_only()
            .linear()
    }

    fn resize_sizes(x: &[usize], sizes: &[i64]) -> Case {
        Case::op("Resize")
            .input("x", x)
            .absent()
            .absent()
            .ints("sizes", sizes)
            .float_only()
            .linear()
    }

    fn interp(case: Case, mode: &str, coord: &str) -> Case {
        case.attr(attrs::string("mode", mode))
            .attr(attrs::string("coordinate_transformation_mode", coord))
    }

    #[test]
    fn resize_rules() {
        let mut cases = vec![];
        for coord in [
            "half_pixel",
            "pytorch_half_pixel",
            "align_corners",
            "asymmetric",
            "half_pixel_symmetric",
        ] {
            let opset = if coord == "half_pixel_symmetric" {
                19
            } else {
                13
            };
            for mode in ["nearest", "linear", "cubic"] {
                cases.push(
                    interp(
                        resize_scales(&[1, 2, 4, 5], &[1.0, 1.0, 2.0, 1.5]),
                        mode,
                        coord,
                    )
                    .opset(opset)
                    .named(&format!("{mode} {coord} up")),
                );
                cases.push(
                    interp(resize_sizes(&[1, 2, 7, 6], &[1, 2, 3, 4]), mode, coord)
                        .opset(opset)
                        .named(&format!("{mode} {coord} down (sizes)")),
                );
            }
        }
        for nearest in ["round_prefer_ceil", "floor", "ceil"] {
            cases.push(
                resize_scales(&[1, 1, 5, 4], &[1.0, 1.0, 1.7, 0.6])
                    .attr(attrs::string("nearest_mode", nearest))
                    .attr(attrs::string(
                        "coordinate_transformation_mode",
                        "asymmetric",
                    ))
                    .named(&format!("nearest {nearest}")),
            );
        }
        cases.push(
            resize_scales(&[1, 3, 4, 4], &[1.0, 1.0, 2.0, 2.0]).named("nearest 2x (block sum)"),
        );
        cases.push(
            resize_scales(&[1, 2, 5, 5], &[1.0, 1.0, 1.6, 0.7])
                .attr(attrs::string("mode", "cubic"))
                .attr(attrs::int("exclude_outside", 1))
                .attr(attrs::float("cubic_coeff_a", -0.5))
                .named("cubic exclude_outside a=-0.5"),
        );
        cases.push(
            Case::op("Resize")
                .input("x", &[1, 2, 4, 6])
                .absent()
                .floats("scales", &[2], &[1.5, 0.5])
                .attr(attrs::ints("axes", &[2, 3]))
                .attr(attrs::string("mode", "linear"))
                .opset(18)
                .float_only()
                .linear()
                .named("axes (18)"),
        );
        cases.push(
            Case::op("Resize")
                .input("x", &[1, 2, 4, 6])
                .absent()
                .absent()
                .ints("sizes", &[8, 8])
                .attr(attrs::ints("axes", &[2, 3]))
                .attr(attrs::string("keep_aspect_ratio_policy", "not_larger"))
                .attr(attrs::string("mode", "linear"))
                .opset(18)
                .float_only()
                .linear()
                .named("keep_aspect_ratio not_larger (18)"),
        );
        cases.push(
            resize_sizes(&[1, 3, 32, 32], &[1, 3, 12, 20])
                .attr(attrs::string("mode", "linear"))
                .named("linear big downsample"),
        );
        // Integer-factor upsampling with room for interior rows: the strided-Conv route (with
        // border corrections), for every mode and coordinate transformation; align_corners
        // and factor 3 (coordinates not exact in float32) exercise its refusals.
        for (mode, coord, f, opset, route) in [
            ("linear", "half_pixel", 2.0, 13, "strided Conv"),
            ("linear", "pytorch_half_pixel", 4.0, 13, "strided Conv"),
            ("linear", "asymmetric", 2.0, 13, "strided Conv"),
            ("linear", "half_pixel_symmetric", 2.0, 19, "strided Conv"),
            ("linear", "align_corners", 2.0, 13, "dense"),
            ("linear", "half_pixel", 3.0, 13, "dense"),
            ("cubic", "half_pixel", 2.0, 13, "strided Conv"),
            ("cubic", "asymmetric", 4.0, 13, "strided Conv"),
            ("nearest", "half_pixel", 4.0, 13, "block sum"),
        ] {
            cases.push(
                interp(
                    resize_scales(&[1, 2, 66, 65], &[1.0, 1.0, f, f]),
                    mode,
                    coord,
                )
                .opset(opset)
                .named(&format!("{mode} {coord} x{f}, {route} route")),
            );
        }
        cases.push(
            resize_scales(&[2, 1, 64, 66], &[1.0, 1.0, 2.0, 2.0])
                .attr(attrs::string("mode", "cubic"))
                .attr(attrs::int("exclude_outside", 1))
                .named("cubic exclude_outside x2, strided Conv route"),
        );
        // Antialiased downsampling (opset 18): the taps must be ONNX Runtime's own (window
        // bounds, edge folding, normalisation), or the finite differences of its forward pass
        // disagree. Upsampling with antialias set is plain interpolation.
        // (mode, coordinate transformation, input shape, output sizes, exclude_outside, cubic a)
        type Antialiased = (&'static str, &'static str, [usize; 4], [i64; 4], i64, f32);
        #[rustfmt::skip]
        let antialiased: [Antialiased; 10] = [
            ("linear", "half_pixel", [1, 2, 9, 8], [1, 2, 4, 5], 0, -0.75),
            ("linear", "pytorch_half_pixel", [1, 2, 13, 7], [1, 2, 3, 6], 0, -0.75),
            ("linear", "align_corners", [1, 1, 9, 10], [1, 1, 4, 3], 0, -0.75),
            ("linear", "asymmetric", [1, 1, 9, 10], [1, 1, 5, 3], 0, -0.75),
            ("linear", "half_pixel", [2, 1, 10, 9], [2, 1, 3, 4], 1, -0.75),
            ("linear", "half_pixel", [1, 2, 5, 4], [1, 2, 9, 2], 0, -0.75),
            ("cubic", "half_pixel", [1, 2, 11, 9], [1, 2, 4, 5], 0, -0.75),
            ("cubic", "half_pixel", [1, 1, 12, 10], [1, 1, 5, 3], 1, -0.5),
            ("cubic", "align_corners", [1, 1, 9, 11], [1, 1, 4, 6], 0, -0.75),
            ("cubic", "half_pixel", [1, 1, 6, 5], [1, 1, 12, 2], 0, -0.75),
        ];
        for (mode, coord, x, sizes, excl, a) in antialiased {
            cases.push(
                interp(resize_sizes(&x, &sizes), mode, coord)
                    .attr(attrs::int("antialias", 1))
                    .attr(attrs::int("exclude_outside", excl))
                    .attr(attrs::float("cubic_coeff_a", a))
                    .opset(18)
                    .named(&format!(
                        "{mode} {coord} antialias {x:?}->{sizes:?} exclude_outside={excl}"
                    )),
            );
        }
        cases.push(
            interp(
                resize_scales(&[1, 2, 10, 12], &[1.0, 1.0, 0.45, 0.7]),
                "linear",
                "half_pixel",
            )
            .attr(attrs::int("antialias", 1))
            .opset(18)
            .named("linear antialias scales 0.45 x 0.7"),
        );
        cases.push(
            resize_sizes(&[1, 1, 1, 1200], &[1, 1, 1, 390])
                .attr(attrs::string("mode", "cubic"))
                .attr(attrs::int("antialias", 1))
                .opset(18)
                .named("cubic antialias, gather route"),
        );
        // tf_crop_and_resize: a constant region of interest, outputs outside the input take
        // the extrapolation value (no gradient).
        for (mode, roi, sizes) in [
            (
                "nearest",
                [0.0, 0.0, 0.1, 0.2, 1.0, 1.0, 0.8, 0.9],
                [1, 2, 5, 4],
            ),
            (
                "linear",
                [0.0, 0.0, 0.2, -0.3, 1.0, 1.0, 0.7, 1.4],
                [1, 2, 4, 7],
            ),
            (
                "cubic",
                [0.0, 0.0, 0.3, 0.1, 1.0, 1.0, 0.9, 0.6],
                [1, 2, 6, 6],
            ),
        ] {
            cases.push(
                Case::op("Resize")
                    .input("x", &[1, 2, 7, 8])
                    .floats("roi", &[8], &roi)
                    .absent()
                    .ints("sizes", &sizes)
                    .attr(attrs::string("mode", mode))
                    .attr(attrs::string(
                        "coordinate_transformation_mode",
                        "tf_crop_and_resize",
                    ))
                    .attr(attrs::float("extrapolation_value", 0.5))
                    .float_only()
                    .linear()
                    .named(&format!("{mode} tf_crop_and_resize")),
            );
        }
        cases.push(
            Case::op("Resize")
                .input("x", &[1, 2, 6, 6])
                .floats("roi", &[2], &[0.25, 0.75])
                .floats("scales", &[1], &[1.0])
                .attr(attrs::ints("axes", &[3]))
                .attr(attrs::string("mode", "linear"))
                .attr(attrs::string(
                    "coordinate_transformation_mode",
                    "tf_crop_and_resize",
                ))
                .opset(18)
                .float_only()
                .linear()
                .named("tf_crop_and_resize, scale 1: ONNX Runtime ignores the roi"),
        );
        // Above the dense-matrix limit: the gather route.
        cases.push(
            resize_sizes(&[1, 1, 1, 600], &[1, 1, 1, 520])
                .attr(attrs::string("mode", "linear"))
                .named("gather route"),
        );
        cases.push(
            resize_sizes(&[1, 1, 600, 1], &[1, 1, 700, 1])
                .attr(attrs::string("mode", "cubic"))
                .named("gather route, cubic, axis 2"),
        );
        run_cases(cases);
    }

    /// A region of interest computed in the graph (crop boxes) cannot be turned into taps.
    #[test]
    fn computed_roi_is_refused_by_name() {
        use crate::{DataType, GraphBuilder};
        let mut b = GraphBuilder::new(13);
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[1.into(), 1.into(), 4.into(), 4.into()],
        );
        let roi = b.input("boxes", DataType::FLOAT, &[8.into()]);
        let sizes = b.const_i64s(&[1, 1, 2, 2]);
        let y = b.op(
            "Resize",
            &[&x, &roi, "", &sizes],
            vec![
                attrs::string("mode", "linear"),
                attrs::string("coordinate_transformation_mode", "tf_crop_and_resize"),
            ],
        );
        b.output(&y, "y");
        let e = crate::testutil::vjp_error(&b.build().unwrap(), "x").to_string();
        assert!(
            e.contains("Resize") && e.contains("roi") && e.contains("boxes"),
            "{e}"
        );
    }

    /// Bilinear 2× upsampling, the common case in segmentation nets, must take the strided-Conv
    /// route (the dense matrix grows with the square of the size), both axes in one Conv.
    #[test]
    fn bilinear_upsampling_gradient_is_a_strided_conv() {
        use crate::builder::GraphBuilder;
        use crate::testutil::vjp_wrt_inputs;
        use crate::DataType;
        use crate::Dim;
        let mut b = GraphBuilder::new(13);
        let dims: Vec<Dim> = [1, 4, 64, 64].iter().map(|&d| Dim::Fixed(d)).collect();
        let x = b.input("x", DataType::FLOAT, &dims);
        let scales = b.constant_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
        let y = b.op(
            "Resize",
            &[&x, "", &scales],
            vec![attrs::string("mode", "linear")],
        );
        b.output(&y, "y");
        let vjp = vjp_wrt_inputs(&b.build().unwrap());
        let graph = vjp.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        // Both axes in one Conv with the separable kernel.
        assert_eq!(ops.iter().filter(|&&o| o == "Conv").count(), 1, "{ops:?}");
        let conv = graph.node.iter().find(|n| n.op_type == "Conv");
        let kernel: Vec<i64> = conv.unwrap().attr_or("kernel_shape", vec![]).unwrap();
        assert_eq!(kernel, [4, 4]);
        // Only the small border corrections remain as MatMuls (at most a few rows each).
        for t in &graph.initializer {
            assert!(
                t.dims.iter().product::<i64>() < 64 * 16,
                "{}: {:?}",
                t.name,
                t.dims
            );
        }
    }
}
