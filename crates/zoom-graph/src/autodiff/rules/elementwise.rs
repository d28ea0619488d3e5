//! Elementwise arithmetic and math functions. Binary operators broadcast (numpy rules), so each
//! input's gradient is summed back to its own shape ("unbroadcast").
//!
//! Derivatives (g = output cotangent, y = output):
//! Add: g, g · Sub: g, −g · Mul: g·b, g·a · Div: g/b, −g·y/b · Pow: g·b·a^(b−1), g·y·ln a ·
//! Neg: −g · Abs: g·sign(x) · Sqrt: g/(2y) · Exp: g·y · Log: g/x · Reciprocal: −g·y² ·
//! Mod: g, −g·k (k the integer a/b was rounded to) · Erf: g·2/√π·e^(−x²) · Sin: g·cos x ·
//! Cos: −g·sin x · Tan: g·(1+y²) · Atan: g/(1+x²) ·
//! Asin, Acos: ±g/√(1−x²) · Asinh: g/√(x²+1) · Acosh: g/√(x²−1) · Atanh: g/(1−x²) ·
//! Sinh: g·cosh x · Cosh: g·sinh x · Min/Max: g to the (first) selected input ·
//! Sum: g to each · Mean: g/n to each · Where: g to the chosen branch.

use super::{grads, need_any, per_channel_conv};
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::autodiff::Tuning;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("Add", add_sub);
    r.add("Sub", add_sub);
    r.add("Mul", mul);
    r.add("Div", div);
    r.add("Pow", pow);
    r.add("Mod", modulo);
    r.add("Neg", unary);
    r.add("Abs", unary);
    r.add("Sqrt", unary);
    r.add("Exp", unary);
    r.add("Log", unary);
    r.add("Reciprocal", unary);
    r.add("Erf", unary);
    r.add("Sin", unary);
    r.add("Cos", unary);
    r.add("Tan", unary);
    r.add("Atan", unary);
    r.add("Asin", unary);
    r.add("Acos", unary);
    r.add("Asinh", unary);
    r.add("Acosh", unary);
    r.add("Atanh", unary);
    r.add("Sinh", unary);
    r.add("Cosh", unary);
    r.add("Min", min_max);
    r.add("Max", min_max);
    r.add("Sum", sum_mean);
    r.add("Mean", sum_mean);
    r.add("Where", where_);
}

fn add_sub(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let y = &n.output[0];
    let mut out = vec![None, None];
    if need[0] {
        out[0] = Some(ctx.unbroadcast_to(&g, y, &n.input[0])?);
    }
    if need.get(1).copied().unwrap_or(false) {
        let gb = if n.op_type == "Sub" {
            ctx.b.neg(&g)
        } else {
            g.clone()
        };
        out[1] = Some(ctx.unbroadcast_to(&gb, y, &n.input[1])?);
    }
    Ok(out)
}

fn mul(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    if let Some(out) = silu(ctx, n, &g, need) {
        return Ok(out);
    }
    if let Some(out) = clip_gate(ctx, n, &g, need)? {
        return Ok(out);
    }
    let (a, b, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let mut out = vec![None, None];
    if need[0] {
        let t = ctx.b.mul(&g, b);
        out[0] = Some(ctx.unbroadcast_to(&t, y, a)?);
    }
    if need[1] {
        let t = ctx.b.mul(&g, a);
        out[1] = Some(ctx.unbroadcast_to(&t, y, b)?);
    }
    Ok(out)
}

/// y = x·Sigmoid(x) (SiLU, as exporters spell it: EfficientNet, YOLO) differentiated as one
/// function: dx = g·(s + y·(1 − s)) with s = Sigmoid(x), four passes over the activation. Rule
/// by rule it is six (g·s, g·x, the Sigmoid's s·(1−s) and its product, and the sum of the two
/// paths). The Sigmoid then gets no cotangent from this Mul (`absorb_input`); any other reader
/// of s still sends it one.
fn silu(ctx: &mut VjpCtx, n: &NodeProto, g: &str, need: &[bool]) -> Option<Vec<Option<String>>> {
    let y = &n.output[0];
    for (xi, si) in [(0, 1), (1, 0)] {
        let (x, s) = (&n.input[xi], &n.input[si]);
        let is_sigmoid_of_x = ctx.producer(s).is_some_and(|p| {
            p.op_type == "Sigmoid" && p.is_default_domain() && p.input.first() == Some(x)
        });
        if !is_sigmoid_of_x || !need[xi] {
            continue;
        }
        let dt = ctx.dtype(x).ok()?;
        let d = one_minus(ctx, s, dt);
        let d = ctx.b.mul(y, &d);
        let d = ctx.b.add(s, &d);
        let mut out = vec![None, None];
        out[xi] = Some(ctx.b.mul(g, &d));
        ctx.absorb_input(si);
        return Some(out);
    }
    None
}

/// y = a·Clip(s + β) where a and s are the same value up to constant factors (a = k·h,
/// s = α·h, either factor possibly absent): hard-swish as TensorFlow, Keras and PaddlePaddle
/// exports spell it (`h·relu6(h + 3)/6`, `(h/6)·relu6(h + 3)`, `h·clip(h/6 + ½, 0, 1)`), and
/// selfie's and PaddleOCR's mobile networks are full of it. With m = 𝟙(s + β inside the
/// bounds), dy/dh = k·(r + s·m) for r = Clip(s + β), so a receives g·(r + s·m) and its own
/// Mul (if any) applies k: five passes over the activation against seven rule by rule (two
/// products with g, a scaling, the mask and its product, and the sum of the two paths). The
/// Clip gets no cotangent from this Mul (`absorb_input`); other readers of r, s + β or s
/// still send theirs. The mask is the Clip rule's own: r = s + β exactly where Clip passes
/// its input through.
fn clip_gate(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    g: &str,
    need: &[bool],
) -> Result<Option<Vec<Option<String>>>> {
    let y = &n.output[0];
    for (ai, ri) in [(0, 1), (1, 0)] {
        let (a, r) = (&n.input[ai], &n.input[ri]);
        if !need[ai] {
            continue;
        }
        let Some(clip) = ctx.producer(r).filter(|p| {
            p.op_type == "Clip"
                && p.is_default_domain()
                && (1..p.input.len())
                    .all(|i| p.input_opt(i).is_none_or(|v| ctx.const_value(v).is_some()))
        }) else {
            continue;
        };
        let t = &clip.input[0];
        let Some(s) = ctx
            .producer(t)
            .filter(|p| p.op_type == "Add" && p.is_default_domain())
            .and_then(|p| non_constant_operand(ctx, p))
        else {
            continue;
        };
        let same_shape = [a, r, t, s]
            .iter()
            .all(|v| ctx.shape(v).ok() == ctx.shape(y).ok());
        if !same_shape || scaled_base(ctx, a) != scaled_base(ctx, s) {
            continue;
        }
        let dt = ctx.dtype(y)?;
        let inside = ctx.b.op("Equal", &[r, t], vec![]);
        let m = ctx.b.cast(&inside, dt);
        let sm = ctx.b.mul(s, &m);
        let f = ctx.b.add(r, &sm);
        let mut out = vec![None, None];
        out[ai] = Some(ctx.b.mul(g, &f));
        ctx.absorb_input(ri);
        return Ok(Some(out));
    }
    Ok(None)
}

/// The one non-constant operand of a binary node whose other operand is a constant.
fn non_constant_operand<'p>(ctx: &VjpCtx, p: &'p NodeProto) -> Option<&'p str> {
    match (p.input.first(), p.input.get(1)) {
        (Some(u), Some(v)) if ctx.const_value(v).is_some() && ctx.const_value(u).is_none() => {
            Some(u)
        }
        (Some(u), Some(v)) if ctx.const_value(u).is_some() && ctx.const_value(v).is_none() => {
            Some(v)
        }
        _ => None,
    }
}

/// `h` if `v` is `h` times a constant of no larger shape (so v = k·h elementwise), else `v`.
fn scaled_base<'v>(ctx: &'v VjpCtx, v: &'v str) -> &'v str {
    ctx.producer(v)
        .filter(|p| p.op_type == "Mul" && p.is_default_domain())
        .and_then(|p| non_constant_operand(ctx, p))
        .filter(|h| ctx.shape(h).ok() == ctx.shape(v).ok())
        .unwrap_or(v)
}

/// 1 − v. Under the CPU tuning, for an NCHW float32 `v`, as a per-channel 1×1 Conv (weight −1,
/// bias 1; the same single rounding as the subtraction): ONNX Runtime has blocked kernels for
/// Conv, Mul and Add but not for Sub, so the SiLU derivative s + y·(1 − s) then stays in its
/// blocked layout next to the convolutions around it, with no layout conversions of s, y, the
/// cotangent or the result (EfficientNet and YOLO have one after nearly every convolution).
fn one_minus(ctx: &mut VjpCtx, v: &str, dt: DataType) -> String {
    let shape = ctx.shape(v).unwrap_or_default();
    if ctx.tuning == Tuning::CpuFloat32 && dt == DataType::FLOAT && shape.len() == 4 {
        let (w, b) = (("one_minus_w", -1.0), Some(("one_minus_b", 1.0)));
        return per_channel_conv(ctx, v, shape[1], w, b);
    }
    let one = ctx.scalar(1.0, dt);
    ctx.b.sub(&one, v)
}

fn div(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let (a, b, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let mut out = vec![None, None];
    let gb = ctx.b.div(&g, b);
    if need[0] {
        out[0] = Some(ctx.unbroadcast_to(&gb, y, a)?);
    }
    if need[1] {
        // d(a/b)/db = −a/b² = −y/b
        let t = ctx.b.mul(&gb, y);
        let t = ctx.b.neg(&t);
        out[1] = Some(ctx.unbroadcast_to(&t, y, b)?);
    }
    Ok(out)
}

/// Mod on floats (fmod = 1, as ONNX requires): y = a − b·k with k = trunc(a/b), an integer
/// constant between the jumps, so da = g and db = −g·k; k is recovered as round((a − y)/b).
fn modulo(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let (a, b, y) = (&n.input[0], &n.input[1], &n.output[0]);
    if !ctx.dtype(y)?.is_float() {
        return Err(n.unsupported("integer Mod"));
    }
    let mut out = vec![None, None];
    if need[0] {
        out[0] = Some(ctx.unbroadcast_to(&g, y, a)?);
    }
    if need[1] {
        let r = ctx.b.sub(a, y);
        let q = ctx.b.div(&r, b);
        let k = ctx.b.op("Round", &[&q], vec![]);
        let t = ctx.b.mul(&g, &k);
        let t = ctx.b.neg(&t);
        out[1] = Some(ctx.unbroadcast_to(&t, y, b)?);
    }
    Ok(out)
}

fn pow(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let (a, b, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let dt = ctx.dtype(a)?;
    let mut out = vec![None, None];
    if need[0] {
        // The exponent may have another type (Pow-13 allows int exponents).
        let bf = if ctx.dtype(b)? == dt {
            b.clone()
        } else {
            ctx.b.cast(b, dt)
        };
        let d = match ctx
            .const_value(b)
            .filter(|t| t.len() == 1)
            .map(|t| t.to_f64s()[0])
        {
            Some(1.0) => None,
            Some(2.0) => {
                let two = ctx.scalar(2.0, dt);
                Some(ctx.b.mul(a, &two))
            }
            Some(e) => {
                let em1 = ctx.scalar(e - 1.0, dt);
                let p = ctx.b.op("Pow", &[a, &em1], vec![]);
                let k = ctx.scalar(e, dt);
                Some(ctx.b.mul(&p, &k))
            }
            None => {
                let one = ctx.scalar(1.0, dt);
                let em1 = ctx.b.sub(&bf, &one);
                let p = ctx.b.op("Pow", &[a, &em1], vec![]);
                Some(ctx.b.mul(&p, &bf))
            }
        };
        let t = match d {
            Some(d) => ctx.b.mul(&g, &d),
            None => g.clone(),
        };
        out[0] = Some(ctx.unbroadcast_to(&t, y, a)?);
    }
    if need[1] {
        // 0^b is 0 for every b > 0, so its slope in b is 0, not 0 · ln 0 = NaN.
        let ln = ctx.b.op("Log", &[a], vec![]);
        let zero = ctx.scalar(0.0, dt);
        let at_zero = ctx.b.op("Equal", &[a, &zero], vec![]);
        let ln = ctx.b.where_(&at_zero, &zero, &ln);
        let t = ctx.b.mul(&g, y);
        let t = ctx.b.mul(&t, &ln);
        out[1] = Some(ctx.unbroadcast_to(&t, y, b)?);
    }
    Ok(out)
}

fn unary(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    if !need_any(need) {
        return Ok(vec![None]);
    }
    let g = super::dy0(n, dy)?;
    let (x, y) = (n.input[0].as_str(), n.output[0].as_str());
    let dt = ctx.dtype(x)?;
    let d = match n.op_type.as_str() {
        "Neg" => return grads(vec![ctx.b.neg(&g)]),
        "Abs" => {
            let s = ctx.b.op("Sign", &[x], vec![]);
            ctx.b.mul(&g, &s)
        }
        "Sqrt" => {
            // g / (2y)
            let two = ctx.scalar(2.0, dt);
            let d = ctx.b.mul(y, &two);
            ctx.b.div(&g, &d)
        }
        "Exp" => ctx.b.mul(&g, y),
        "Log" => ctx.b.div(&g, x),
        "Reciprocal" => {
            let y2 = ctx.b.mul(y, y);
            let t = ctx.b.mul(&g, &y2);
            ctx.b.neg(&t)
        }
        "Erf" => {
            let x2 = ctx.b.mul(x, x);
            let nx2 = ctx.b.neg(&x2);
            let e = ctx.b.op("Exp", &[&nx2], vec![]);
            let k = ctx.scalar(std::f64::consts::FRAC_2_SQRT_PI, dt);
            let d = ctx.b.mul(&e, &k);
            ctx.b.mul(&g, &d)
        }
        "Sin" => {
            let c = ctx.b.op("Cos", &[x], vec![]);
            ctx.b.mul(&g, &c)
        }
        "Cos" => {
            let s = ctx.b.op("Sin", &[x], vec![]);
            let t = ctx.b.mul(&g, &s);
            ctx.b.neg(&t)
        }
        "Tan" => {
            let y2 = ctx.b.mul(y, y);
            let one = ctx.scalar(1.0, dt);
            let d = ctx.b.add(&y2, &one);
            ctx.b.mul(&g, &d)
        }
        "Atan" => {
            let x2 = ctx.b.mul(x, x);
            let one = ctx.scalar(1.0, dt);
            let d = ctx.b.add(&x2, &one);
            ctx.b.div(&g, &d)
        }
        // asin' = 1/√(1−x²), acos' = −asin', asinh' = 1/√(x²+1), acosh' = 1/√(x²−1),
        // atanh' = 1/(1−x²).
        "Asin" | "Acos" | "Asinh" | "Acosh" | "Atanh" => {
            let x2 = ctx.b.mul(x, x);
            let one = ctx.scalar(1.0, dt);
            let q = match n.op_type.as_str() {
                "Asinh" => ctx.b.add(&x2, &one),
                "Acosh" => ctx.b.sub(&x2, &one),
                _ => ctx.b.sub(&one, &x2),
            };
            let q = if n.op_type == "Atanh" {
                q
            } else {
                ctx.b.op("Sqrt", &[&q], vec![])
            };
            let d = ctx.b.div(&g, &q);
            if n.op_type == "Acos" {
                ctx.b.neg(&d)
            } else {
                d
            }
        }
        "Sinh" => {
            let c = ctx.b.op("Cosh", &[x], vec![]);
            ctx.b.mul(&g, &c)
        }
        "Cosh" => {
            let s = ctx.b.op("Sinh", &[x], vec![]);
            ctx.b.mul(&g, &s)
        }
        other => return Err(n.unsupported(format!("no unary rule for {other}"))),
    };
    grads(vec![d])
}

/// Min/Max: the cotangent goes to the input that was selected; on ties, to the first one (so
/// the total is never double counted).
fn min_max(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let y = &n.output[0];
    let dt = ctx.dtype(y)?;
    let mut out = vec![None; n.input.len()];
    let mut claimed: Option<String> = None;
    for (k, x) in n.input.iter().enumerate() {
        let eq = ctx.b.op("Equal", &[x, y], vec![]);
        let mine = match &claimed {
            None => eq.clone(),
            Some(c) => {
                let nc = ctx.b.op("Not", &[c], vec![]);
                ctx.b.op("And", &[&eq, &nc], vec![])
            }
        };
        if need[k] {
            let t = ctx.mask(&mine, &g, dt);
            out[k] = Some(ctx.unbroadcast_to(&t, y, x)?);
        }
        if k + 1 < n.input.len() {
            claimed = Some(match &claimed {
                None => mine,
                Some(c) => ctx.b.op("Or", &[c, &eq], vec![]),
            });
        }
    }
    Ok(out)
}

fn sum_mean(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let y = &n.output[0];
    let g = if n.op_type == "Mean" {
        let k = ctx.scalar(1.0 / n.input.len() as f64, ctx.dtype(y)?);
        ctx.b.mul(&g, &k)
    } else {
        g
    };
    let mut out = vec![None; n.input.len()];
    for (k, x) in n.input.iter().enumerate() {
        if need[k] {
            out[k] = Some(ctx.unbroadcast_to(&g, y, x)?);
        }
    }
    Ok(out)
}

fn where_(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = super::dy0(n, dy)?;
    let (c, a, b, y) = (&n.input[0], &n.input[1], &n.input[2], &n.output[0]);
    let dt = ctx.dtype(y)?;
    let zero = ctx.scalar(0.0, dt);
    let mut out = vec![None, None, None];
    if need[1] {
        let t = ctx.b.where_(c, &g, &zero);
        out[1] = Some(ctx.unbroadcast_to(&t, y, a)?);
    }
    if need[2] {
        let t = ctx.b.where_(c, &zero, &g);
        out[2] = Some(ctx.unbroadcast_to(&t, y, b)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::autodiff::testing::{binary_case, run_cases, unary_case, Case, Inputs};
    use crate::autodiff::Tuning;
    use crate::{DataType, Dim, GraphBuilder};

    /// x·Sigmoid(x), differentiated as one SiLU, in either operand order, and with the Sigmoid
    /// also read elsewhere (another consumer, a graph output): those paths still reach x.
    #[test]
    fn silu_is_differentiated_as_one_function() {
        let silu = |b: &mut GraphBuilder, dt: DataType, sigmoid_first: bool| {
            let x = b.input("x", dt, &[Dim::Fixed(2), Dim::Fixed(5)]);
            let s = b.op("Sigmoid", &[&x], vec![]);
            let y = if sigmoid_first {
                b.op("Mul", &[&s, &x], vec![])
            } else {
                b.op("Mul", &[&x, &s], vec![])
            };
            (x, s, y)
        };
        run_cases(vec![
            Case::graph("SiLU x·σ(x)", 17, move |b, dt| {
                let (_, _, y) = silu(b, dt, false);
                b.output(&y, "y");
            }),
            Case::graph("SiLU σ(x)·x", 17, move |b, dt| {
                let (_, _, y) = silu(b, dt, true);
                b.output(&y, "y");
            }),
            Case::graph("SiLU with the sigmoid read twice", 17, move |b, dt| {
                let (x, s, y) = silu(b, dt, false);
                let t = b.op("Mul", &[&s, &s], vec![]);
                let z = b.op("Add", &[&y, &t], vec![]);
                let z = b.op("Add", &[&z, &x], vec![]);
                b.output(&z, "z");
            }),
            Case::graph("SiLU with the sigmoid as an output", 17, move |b, dt| {
                let (_, s, y) = silu(b, dt, false);
                b.output(&y, "y");
                b.output(&s, "s");
            }),
            // NCHW float32 under the CPU tuning: 1 − s as a per-channel 1×1 Conv.
            Case::graph("SiLU of NCHW, CPU tuning", 17, move |b, dt| {
                let x = b.input("x", dt, &[2, 3, 4, 5].map(Dim::Fixed));
                let s = b.op("Sigmoid", &[&x], vec![]);
                let y = b.op("Mul", &[&x, &s], vec![]);
                b.output(&y, "y");
            })
            .tuned(Tuning::CpuFloat32)
            .float_only(),
        ]);
    }

    /// Hard-swish as exporters spell it: the three factorings, the Clip's output or input also
    /// read elsewhere, and a gate whose scale is not a constant (no pattern: rule by rule).
    #[test]
    fn clip_gated_products_are_differentiated_as_one_function() {
        // selfie's exported constant, not 1/6.
        const K: f64 = 0.16662598;
        fn relu6_of_plus3(b: &mut GraphBuilder, dt: DataType, h: &str) -> (String, String) {
            let three = b.scalar(dt, 3.0);
            let t = b.op("Add", &[h, &three], vec![]);
            let (lo, hi) = (b.scalar(dt, 0.0), b.scalar(dt, 6.0));
            let r = b.op("Clip", &[&t, &lo, &hi], vec![]);
            (t, r)
        }
        let input = |b: &mut GraphBuilder, dt| b.input("h", dt, &[Dim::Fixed(3), Dim::Fixed(8)]);
        // ±[0.2, 5]: both sides of both kinks at ±3.
        let values = Inputs::away_from_zero().range(0.2, 5.0);
        run_cases(vec![
            Case::graph("hard-swish (k·h)·relu6(h + 3)", 17, move |b, dt| {
                let h = input(b, dt);
                let k = b.scalar(dt, K);
                let a = b.op("Mul", &[&k, &h], vec![]);
                let (_, r) = relu6_of_plus3(b, dt, &h);
                let y = b.op("Mul", &[&a, &r], vec![]);
                b.output(&y, "y");
            })
            .values(values),
            Case::graph("hard-swish relu6(h + 3)·h/6", 17, move |b, dt| {
                let h = input(b, dt);
                let (_, r) = relu6_of_plus3(b, dt, &h);
                let p = b.op("Mul", &[&r, &h], vec![]);
                let six = b.scalar(dt, 6.0);
                let y = b.op("Div", &[&p, &six], vec![]);
                b.output(&y, "y");
            })
            .values(values),
            Case::graph("hard-swish h·clip(h/6 + 1/2, 0, 1)", 17, move |b, dt| {
                let h = input(b, dt);
                let k = b.scalar(dt, 1.0 / 6.0);
                let s = b.op("Mul", &[&h, &k], vec![]);
                let half = b.scalar(dt, 0.5);
                let t = b.op("Add", &[&half, &s], vec![]);
                let (lo, hi) = (b.scalar(dt, 0.0), b.scalar(dt, 1.0));
                let r = b.op("Clip", &[&t, &lo, &hi], vec![]);
                let y = b.op("Mul", &[&h, &r], vec![]);
                b.output(&y, "y");
            })
            .values(values),
            Case::graph(
                "hard-swish with its gate and pre-gate read again",
                17,
                move |b, dt| {
                    let h = input(b, dt);
                    let (t, r) = relu6_of_plus3(b, dt, &h);
                    let y = b.op("Mul", &[&h, &r], vec![]);
                    let z = b.op("Mul", &[&y, &r], vec![]);
                    b.output(&z, "z");
                    b.output(&t, "t");
                },
            )
            .values(values),
            Case::graph("clip gate with a non-constant scale", 17, move |b, dt| {
                let h = input(b, dt);
                let k = b.input("k", dt, &[Dim::Fixed(3), Dim::Fixed(8)]);
                let a = b.op("Mul", &[&k, &h], vec![]);
                let (_, r) = relu6_of_plus3(b, dt, &h);
                let y = b.op("Mul", &[&a, &r], vec![]);
                b.output(&y, "y");
            })
            .values(values),
        ]);
    }

    /// The pattern is taken: one mask, and four products besides the forward's two (g·(r + s·m)
    /// and k·that) where rule by rule there are six.
    #[test]
    fn hard_swish_gradient_has_five_passes() {
        use crate::testutil::vjp_wrt_inputs;
        let mut b = GraphBuilder::new(17);
        let dt = DataType::FLOAT;
        let h = b.input("h", dt, &[Dim::Fixed(4)]);
        let k = b.scalar(dt, 1.0 / 6.0);
        let a = b.op("Mul", &[&h, &k], vec![]);
        let three = b.scalar(dt, 3.0);
        let t = b.op("Add", &[&h, &three], vec![]);
        let (lo, hi) = (b.scalar(dt, 0.0), b.scalar(dt, 6.0));
        let r = b.op("Clip", &[&t, &lo, &hi], vec![]);
        let y = b.op("Mul", &[&a, &r], vec![]);
        b.output(&y, "y");
        let vjp = vjp_wrt_inputs(&b.build().unwrap());
        let nodes = &vjp.graph_ref().unwrap().node;
        let count = |op: &str| nodes.iter().filter(|n| n.op_type == op).count();
        assert_eq!(
            (count("Equal"), count("Mul"), count("Add")),
            (1, 5, 2),
            "{:?}",
            nodes.iter().map(|n| &n.op_type).collect::<Vec<_>>()
        );
    }

    #[test]
    fn elementwise_rules() {
        let mut cases: Vec<Case> = vec![];
        for op in ["Add", "Sub", "Mul", "Div", "Max", "Min"] {
            for (a, b) in [
                (&[2, 3][..], &[2, 3][..]),
                (&[2, 3], &[3]),
                (&[2, 1, 4], &[3, 1]),
                (&[1], &[2, 2]),
            ] {
                cases.push(binary_case(op, a, b, Inputs::away_from_zero()));
            }
        }
        cases.push(binary_case("Pow", &[2, 3], &[2, 3], Inputs::positive()));
        cases.push(binary_case("Pow", &[2, 3], &[1], Inputs::positive()));
        cases.push(
            Case::op("Pow")
                .floats("a", &[2, 3], &[0.0, 0.5, 0.0, 1.0, 2.0, 0.0])
                .input("b", &[2, 3])
                .values(Inputs::positive())
                .named("exponent gradient where the base is 0"),
        );
        // Float Mod requires fmod = 1 (C fmod: the sign of a).
        cases.push(
            binary_case(
                "Mod",
                &[2, 3],
                &[3],
                Inputs::away_from_zero().range(0.3, 2.5),
            )
            .attr(crate::attrs::int("fmod", 1)),
        );
        cases.push(Case::pow_const_exponent(2.0));
        cases.push(Case::pow_const_exponent(0.5));
        cases.push(Case::pow_const_exponent(-1.5));
        for op in [
            "Neg", "Abs", "Exp", "Erf", "Sin", "Cos", "Atan", "Sinh", "Cosh", "Tan",
        ] {
            cases.push(unary_case(
                op,
                &[],
                &[2, 3],
                Inputs::away_from_zero().range(0.2, 1.2),
            ));
        }
        for op in ["Sqrt", "Log", "Reciprocal"] {
            cases.push(unary_case(op, &[], &[2, 3], Inputs::positive()));
        }
        // Inside each domain, away from the poles of the derivative at ±1.
        for op in ["Asin", "Acos", "Atanh"] {
            let inside = Inputs::away_from_zero().range(0.1, 0.8);
            cases.push(unary_case(op, &[], &[2, 3], inside));
        }
        cases.push(unary_case("Asinh", &[], &[2, 3], Inputs::any()));
        cases.push(unary_case("Acosh", &[], &[2, 3], Inputs::uniform(1.2, 3.0)));
        cases.push(Case::variadic("Sum", &[&[2, 3], &[3], &[2, 1]]));
        cases.push(Case::variadic("Mean", &[&[2, 3], &[3], &[2, 1]]));
        cases.push(Case::variadic("Max", &[&[2, 3], &[3], &[2, 1]]));
        cases.push(Case::variadic("Min", &[&[2, 3], &[2, 3]]));
        cases.push(Case::where_case());
        cases.push(Case::same_input_twice());
        run_cases(cases);
    }
}
