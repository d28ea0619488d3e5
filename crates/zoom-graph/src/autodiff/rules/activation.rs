//! Activation functions. With g the cotangent, x the input and y the output:
//!
//! | op | dx |
//! |---|---|
//! | Relu | g·𝟙(x>0) |
//! | LeakyRelu(α) | g·(x>0 ? 1 : α) |
//! | PRelu(slope) | g·(x<0 ? slope : 1); dslope = Σ g·x·𝟙(x<0) |
//! | Sigmoid | g·y·(1−y) |
//! | Tanh | g·(1−y²) |
//! | Softplus | g·σ(x) |
//! | Softsign | g/(1+\|x\|)² |
//! | Elu(α) | g·(x>0 ? 1 : y+α) |
//! | Selu(α,γ) | g·(x>0 ? γ : y+αγ) |
//! | Celu(α) | g·(x>0 ? 1 : e^(x/α)) |
//! | ThresholdedRelu(α) | g·𝟙(x>α) |
//! | HardSigmoid(α,β) | g·α·𝟙(0<αx+β<1) |
//! | HardSwish | g·(x<−3 ? 0 : x>3 ? 1 : x/3+½) |
//! | Mish | g·(tanh(sp) + x·σ(x)·(1−tanh²(sp))), sp = softplus(x) |
//! | Gelu (none) | g·(Φ(x) + x·φ(x)) |
//! | Gelu (tanh) | g·(½(1+t) + ½x(1−t²)·√(2/π)(1+3·0.044715x²)), t = tanh(√(2/π)(x+0.044715x³)) |
//! | Clip(min,max) | g·𝟙(min ≤ x ≤ max), tested as 𝟙(y = x) |

use super::{dy0, grads, per_channel_conv};
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::autodiff::Tuning;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    for op in [
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Softsign",
        "Elu",
        "Selu",
        "Celu",
        "ThresholdedRelu",
        "HardSigmoid",
        "HardSwish",
        "Mish",
        "Gelu",
        "Shrink",
        "Swish",
    ] {
        r.add(op, activation);
    }
    r.add("PRelu", prelu);
    r.add("Clip", clip);
}

/// 2¹²⁷, the largest power of two in float32.
const F32_BIG: f32 = 1.701_411_8e38;

/// 𝟙(y > 0) for a Relu output `y`, as a multiplier of the cotangent.
///
/// Portable: cast(y > 0). Testing the output rather than the input leaves the input to Relu
/// alone, so ONNX Runtime still fuses Conv+Relu (gender demo 3.9× → 3.8×); a Mul by the cast
/// mask is vectorised where a Where with a broadcast scalar is not; Sign(y) was slower (4.35×).
///
/// [`Tuning::CpuFloat32`], for NCHW float32: HardSigmoid(α = 2¹²⁷) of a per-channel 1×1 Conv
/// by 2¹²⁷. The cotangent then stays in ONNX Runtime's blocked layout instead of being converted
/// to NCHW and back around each backward convolution (selfie demo 3.78× → 3.50–3.59× in
/// interleaved runs; gender unchanged). Exact: a Relu output is 0 or at least 2⁻¹⁴⁹ (the
/// smallest subnormal), and both scalings are by powers of two, so 0 stays 0 and anything
/// positive reaches at least 2¹⁰⁵ (or +inf) before the clip to [0, 1]. A NaN gives a NaN mask
/// where the portable form gives 0. float16 would overflow 2¹²⁷, hence CPU float32 only.
fn relu_mask(ctx: &mut VjpCtx, y: &str, dt: DataType) -> Result<String> {
    let shape = ctx.shape(y)?;
    if ctx.tuning == Tuning::CpuFloat32 && dt == DataType::FLOAT && shape.len() == 4 {
        return Ok(blocked_step(
            ctx,
            y,
            shape[1],
            "relu_mask",
            (F32_BIG, None),
            F32_BIG,
        ));
    }
    let zero = ctx.scalar(0.0, dt);
    let pos = ctx.b.op("Greater", &[y, &zero], vec![]);
    Ok(ctx.b.cast(&pos, dt))
}

/// 𝟙(scale·v + shift > 0) for an NCHW float32 `v` with `c` channels: HardSigmoid(α, β = 0) of
/// a per-channel 1×1 Conv by (scale, shift), which ONNX Runtime's CPU provider fuses and runs in
/// its blocked layout. Exact when scale and α are powers of two large enough that every nonzero
/// value of scale·v + shift, times α, is at least 1 (the callers' documents say why theirs are).
fn blocked_step(
    ctx: &mut VjpCtx,
    v: &str,
    c: usize,
    hint: &str,
    (scale, shift): (f32, Option<f32>),
    alpha: f32,
) -> String {
    let (w_name, b_name) = (format!("{hint}_scale"), format!("{hint}_shift"));
    let bias = shift.map(|b| (b_name.as_str(), b));
    let z = per_channel_conv(ctx, v, c, (&w_name, scale), bias);
    let hard = vec![attrs::float("alpha", alpha), attrs::float("beta", 0.0)];
    ctx.b.op("HardSigmoid", &[&z], hard)
}

fn activation(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (n.input[0].as_str(), n.output[0].as_str());
    let dt = ctx.dtype(x)?;
    let zero = ctx.scalar(0.0, dt);
    let one = ctx.scalar(1.0, dt);
    let d = match n.op_type.as_str() {
        "Relu" => {
            let mask = relu_mask(ctx, y, dt)?;
            return grads(vec![ctx.b.mul(&g, &mask)]);
        }
        "LeakyRelu" => {
            let alpha = n.attr_or::<f32>("alpha", 0.01)? as f64;
            let a = ctx.scalar(alpha, dt);
            // With a positive slope y > 0 exactly where x > 0: test the output (as for Relu).
            let src = if alpha > 0.0 { y } else { x };
            let pos = ctx.b.op("Greater", &[src, &zero], vec![]);
            ctx.b.where_(&pos, &one, &a)
        }
        "Sigmoid" => {
            let om = ctx.b.sub(&one, y);
            ctx.b.mul(y, &om)
        }
        "Tanh" => {
            let y2 = ctx.b.mul(y, y);
            ctx.b.sub(&one, &y2)
        }
        "Softplus" => ctx.b.op("Sigmoid", &[x], vec![]),
        "Softsign" => {
            let a = ctx.b.op("Abs", &[x], vec![]);
            let d = ctx.b.add(&a, &one);
            let d2 = ctx.b.mul(&d, &d);
            return grads(vec![ctx.b.div(&g, &d2)]);
        }
        "Elu" | "Selu" => {
            let (alpha, gamma) = if n.op_type == "Elu" {
                (n.attr_or::<f32>("alpha", 1.0)? as f64, 1.0)
            } else {
                (
                    n.attr_or::<f32>("alpha", 1.673_263_2)? as f64,
                    n.attr_or::<f32>("gamma", 1.050_701)? as f64,
                )
            };
            let pos = ctx.b.op("Greater", &[x, &zero], vec![]);
            let ag = ctx.scalar(alpha * gamma, dt);
            let neg = ctx.b.add(y, &ag);
            let gm = ctx.scalar(gamma, dt);
            ctx.b.where_(&pos, &gm, &neg)
        }
        "Celu" => {
            let alpha = n.attr_or::<f32>("alpha", 1.0)? as f64;
            let ia = ctx.scalar(1.0 / alpha, dt);
            let xs = ctx.b.mul(x, &ia);
            let e = ctx.b.op("Exp", &[&xs], vec![]);
            let pos = ctx.b.op("Greater", &[x, &zero], vec![]);
            ctx.b.where_(&pos, &one, &e)
        }
        "ThresholdedRelu" => {
            let alpha = n.attr_or::<f32>("alpha", 1.0)? as f64;
            let a = ctx.scalar(alpha, dt);
            let pos = ctx.b.op("Greater", &[x, &a], vec![]);
            return grads(vec![ctx.b.where_(&pos, &g, &zero)]);
        }
        "Shrink" => {
            // y = x ∓ bias outside [−λ, λ], 0 inside: slope 1 where |x| > λ.
            let lambd = n.attr_or::<f32>("lambd", 0.5)? as f64;
            let l = ctx.scalar(lambd, dt);
            let ax = ctx.b.op("Abs", &[x], vec![]);
            let out = ctx.b.op("Greater", &[&ax, &l], vec![]);
            return grads(vec![ctx.mask(&out, &g, dt)]);
        }
        "HardSigmoid" => {
            // αx+β lies strictly inside (0, 1) exactly where the output does (the clamp is the
            // identity there and pins the output to 0 or 1 elsewhere), so the output is tested
            // and αx+β is not recomputed. A Mul by the cast mask, not a Where: ONNX Runtime's
            // Where with a scalar branch is several times slower.
            let alpha = n.attr_or::<f32>("alpha", 0.2)? as f64;
            let a = ctx.scalar(alpha, dt);
            let lo = ctx.b.op("Greater", &[y, &zero], vec![]);
            let hi = ctx.b.op("Less", &[y, &one], vec![]);
            let inside = ctx.b.op("And", &[&lo, &hi], vec![]);
            let d = ctx.mask(&inside, &g, dt);
            return grads(vec![ctx.b.mul(&d, &a)]);
        }
        "HardSwish" if blocked_after_conv(ctx, x)? => blocked_hard_swish_slope(ctx, x)?,
        "HardSwish" => {
            // x·h(x) with h = HardSigmoid(x; ⅙, ½): the slope is h + x/6 on (−3, 3), where h is
            // not clamped, and h (0 or 1) outside. As h + (x/6)·𝟙(−3 < x < 3) it needs no
            // Where (two of them cost 14% of MobileNetV3-small's gradient graph).
            let sixth = ctx.scalar(1.0 / 6.0, dt);
            // (Computing y as x·h here too, as ONNX Runtime's CPU provider does, and dropping
            // the forward HardSwish measured no better.)
            let h = ctx.b.op(
                "HardSigmoid",
                &[x],
                vec![attrs::float("alpha", 1.0 / 6.0), attrs::float("beta", 0.5)],
            );
            let m3 = ctx.scalar(-3.0, dt);
            let p3 = ctx.scalar(3.0, dt);
            let lo = ctx.b.op("Greater", &[x, &m3], vec![]);
            let hi = ctx.b.op("Less", &[x, &p3], vec![]);
            let inside = ctx.b.op("And", &[&lo, &hi], vec![]);
            let x6 = ctx.b.mul(x, &sixth);
            let slope = ctx.mask(&inside, &x6, dt);
            ctx.b.add(&h, &slope)
        }
        "Swish" => {
            // y = x·σ(αx): y' = s + α·y·(1 − s) with s = σ(αx).
            let alpha = n.attr_or::<f32>("alpha", 1.0)? as f64;
            let a = ctx.scalar(alpha, dt);
            let ax = ctx.b.mul(x, &a);
            let s = ctx.b.op("Sigmoid", &[&ax], vec![]);
            let oms = ctx.b.sub(&one, &s);
            let t = ctx.b.mul(y, &oms);
            let t = ctx.b.mul(&t, &a);
            ctx.b.add(&s, &t)
        }
        "Mish" => {
            let sp = ctx.b.op("Softplus", &[x], vec![]);
            let t = ctx.b.op("Tanh", &[&sp], vec![]);
            let s = ctx.b.op("Sigmoid", &[x], vec![]);
            let t2 = ctx.b.mul(&t, &t);
            let omt2 = ctx.b.sub(&one, &t2);
            let xs = ctx.b.mul(x, &s);
            let r = ctx.b.mul(&xs, &omt2);
            ctx.b.add(&t, &r)
        }
        "Gelu" => {
            let approx = n.attr_or::<String>("approximate", "none".into())?;
            if approx == "tanh" {
                let c = ctx.scalar((2.0 / std::f64::consts::PI).sqrt(), dt);
                let k = ctx.scalar(0.044715, dt);
                let k3 = ctx.scalar(3.0 * 0.044715, dt);
                let half = ctx.scalar(0.5, dt);
                let x2 = ctx.b.mul(x, x);
                let x3 = ctx.b.mul(&x2, x);
                let kx3 = ctx.b.mul(&x3, &k);
                let inner = ctx.b.add(x, &kx3);
                let inner = ctx.b.mul(&inner, &c);
                let t = ctx.b.op("Tanh", &[&inner], vec![]);
                let opt = ctx.b.add(&one, &t);
                let a = ctx.b.mul(&opt, &half);
                let t2 = ctx.b.mul(&t, &t);
                let omt2 = ctx.b.sub(&one, &t2);
                let k3x2 = ctx.b.mul(&x2, &k3);
                let dinner = ctx.b.add(&one, &k3x2);
                let dinner = ctx.b.mul(&dinner, &c);
                let b1 = ctx.b.mul(x, &half);
                let b2 = ctx.b.mul(&b1, &omt2);
                let b3 = ctx.b.mul(&b2, &dinner);
                ctx.b.add(&a, &b3)
            } else if approx == "none" {
                // Φ(x) + x·φ(x)
                let is2 = ctx.scalar(std::f64::consts::FRAC_1_SQRT_2, dt);
                let half = ctx.scalar(0.5, dt);
                let xs = ctx.b.mul(x, &is2);
                let e = ctx.b.op("Erf", &[&xs], vec![]);
                let cdf = ctx.b.add(&e, &one);
                let cdf = ctx.b.mul(&cdf, &half);
                let x2 = ctx.b.mul(x, x);
                let mhalf = ctx.scalar(-0.5, dt);
                let ex = ctx.b.mul(&x2, &mhalf);
                let ex = ctx.b.op("Exp", &[&ex], vec![]);
                let inv = ctx.scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt(), dt);
                let pdf = ctx.b.mul(&ex, &inv);
                let xp = ctx.b.mul(x, &pdf);
                ctx.b.add(&cdf, &xp)
            } else {
                return Err(n.attr_error("approximate", format!("unknown value {approx:?}")));
            }
        }
        other => return Err(n.unsupported(format!("no activation rule for {other}"))),
    };
    grads(vec![ctx.b.mul(&g, &d)])
}

fn prelu(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, slope, y) = (&n.input[0], &n.input[1], &n.output[0]);
    let dt = ctx.dtype(x)?;
    let zero = ctx.scalar(0.0, dt);
    let neg = ctx.b.op("Less", &[x, &zero], vec![]);
    let mut out = vec![None, None];
    if need[0] {
        let one = ctx.scalar(1.0, dt);
        let d = ctx.b.where_(&neg, slope, &one);
        // y = x·d exactly (x·1 = x, x·slope = slope·x, NaN stays NaN), and ONNX Runtime's
        // PRelu with a per-channel slope is a scalar loop several times slower than this Where
        // and Mul together (mtcnn-onet: its first PRelu alone is 30% of the forward pass). So
        // the gradient graph computes y from the slope field it needs anyway.
        let yy = ctx.b.mul(x, &d);
        ctx.recompute_forward(n, 0, &yy);
        let t = ctx.b.mul(&g, &d);
        out[0] = Some(ctx.unbroadcast_to(&t, y, x)?);
    }
    if need[1] {
        let gx = ctx.b.mul(&g, x);
        let t = ctx.b.where_(&neg, &gx, &zero);
        out[1] = Some(ctx.unbroadcast_to(&t, y, slope)?);
    }
    Ok(out)
}

/// Whether `x` is an NCHW float32 Conv output in a graph for the CPU tuning: ONNX Runtime
/// then holds it in its blocked layout, and a gradient written with its blocked operators
/// (Conv with a fused activation or sum, Add, Mul) needs no layout conversions.
fn blocked_after_conv(ctx: &VjpCtx, x: &str) -> Result<bool> {
    let after_conv = ctx
        .producer(x)
        .is_some_and(|p| p.op_type == "Conv" && p.is_default_domain());
    Ok(ctx.tuning == Tuning::CpuFloat32
        && after_conv
        && ctx.dtype(x)? == DataType::FLOAT
        && ctx.shape(x)?.len() == 4)
}

/// HardSwish's slope from blocked operators only: clip(x/3 + ½, −½, 3/2) + ½·𝟙(x < −3) −
/// ½·𝟙(x > 3), that is x/3 + ½ on [−3, 3] (PyTorch's values at ±3 too) and 0 or 1 outside.
/// The clip is a per-channel 1×1 Conv with a fused Clip, each step a [`blocked_step`] (exact:
/// x + 3 and x − 3 are exact near the bounds, and 2¹⁰⁰·2¹⁰⁰ lifts their smallest nonzero value
/// past 1), and each ½-weighted step a 1×1 Conv whose sum with the rest ONNX Runtime fuses into
/// it. Six blocked passes against about seven plain ones plus the conversions around them.
fn blocked_hard_swish_slope(ctx: &mut VjpCtx, x: &str) -> Result<String> {
    let c = ctx.shape(x)?[1];
    let line = per_channel_conv(
        ctx,
        x,
        c,
        ("hard_swish_slope_w", 1.0 / 3.0),
        Some(("hard_swish_slope_b", 0.5)),
    );
    let (lo, hi) = (
        ctx.b.scalar(DataType::FLOAT, -0.5),
        ctx.b.scalar(DataType::FLOAT, 1.5),
    );
    let mut slope = ctx.b.op("Clip", &[&line, &lo, &hi], vec![]);
    let three = 3.0 * F32_STEP;
    for (sign, weight) in [(-1.0f32, 0.5f32), (1.0, -0.5)] {
        // 𝟙(−x − 3 > 0) and 𝟙(x − 3 > 0).
        let step = blocked_step(
            ctx,
            x,
            c,
            "hard_swish_bound",
            (sign * F32_STEP, Some(-three)),
            F32_STEP,
        );
        let jump = per_channel_conv(ctx, &step, c, ("hard_swish_jump_w", weight), None);
        slope = ctx.b.add(&jump, &slope);
    }
    Ok(slope)
}

/// 2¹⁰⁰: scales any nonzero float32 difference past 1 (2⁻¹⁴⁹·2²⁰⁰) without overflowing a
/// bound up to 2²⁰ (2¹²⁰).
const F32_STEP: f32 = 1.267_650_6e30;

/// [`Tuning::CpuFloat32`], NCHW float32, constant bounds: Clip's mask from its *output*,
/// 𝟙(min < y < max), as HardSigmoid(α = 2¹⁰⁰) of per-channel 1×1 Convs computing
/// 2¹⁰⁰·(y − min) and 2¹⁰⁰·(max − y). Reading only y leaves the Clip's input to the Clip, so
/// ONNX Runtime keeps fusing Conv+Clip (a ReLU6) in the gradient graph's forward pass, and the
/// masks run fused and blocked like the Relu masks. Exact for every non-NaN y in [min, max]
/// (the Conv's sum has the sign of the difference, any nonzero difference is at least 2⁻¹⁴⁹,
/// scaled twice by 2¹⁰⁰); at exactly min or max the slope is 0, PyTorch's choice, where the
/// portable mask (y = x) gives 1. NaN gives a NaN mask.
fn blocked_clip_mask(ctx: &mut VjpCtx, n: &NodeProto) -> Result<Option<String>> {
    let y = &n.output[0];
    // Only a Clip fed by a Conv gains: elsewhere (hard-swish's Clip(x + 3) in TFLite and
    // PaddlePaddle exports) y is plain NCHW already and the blocked masks cost a conversion
    // (PaddleOCR's classifier 3.84× → 4.25×; MobileNetV2's ReLU6 3.5× → 2.95×).
    if !blocked_after_conv(ctx, &n.input[0])? {
        return Ok(None);
    }
    let bound = |k: usize| -> Option<Option<f64>> {
        match n.input_opt(k) {
            None => Some(None),
            Some(v) => {
                let t = ctx.const_value(v)?;
                let b = *t.to_f64s().first()?;
                (t.len() == 1 && b.abs() <= 1_048_576.0).then_some(Some(b))
            }
        }
    };
    let (Some(lo), Some(hi)) = (bound(1), bound(2)) else {
        return Ok(None);
    };
    let c = ctx.shape(y)?[1];
    let step = F32_STEP as f64;
    let mut masks = vec![];
    for (sign, shift) in [(1.0, lo.map(|v| -v)), (-1.0, hi)] {
        let Some(shift) = shift else { continue };
        let affine = ((sign * step) as f32, Some((shift * step) as f32));
        masks.push(blocked_step(ctx, y, c, "clip_mask", affine, F32_STEP));
    }
    Ok(match masks.as_slice() {
        [m] => Some(m.clone()),
        [a, b] => Some(ctx.b.mul(a, b)),
        _ => None,
    })
}

fn clip(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let x = &n.input[0];
    if need.iter().skip(1).any(|&b| b) {
        return Err(n.unsupported("gradient with respect to Clip's min/max inputs"));
    }
    // min ≤ x ≤ max exactly where Clip passes x through unchanged, so one comparison of the
    // output with x is the mask (NaN compares false either way). Half the passes of two
    // bound tests and an And: hard-swish layers are full of Clips (selfie demo).
    let bounded = n.input_opt(1).is_some() || n.input_opt(2).is_some();
    let d = if !bounded {
        g
    } else if let Some(mask) = blocked_clip_mask(ctx, n)? {
        ctx.b.mul(&g, &mask)
    } else {
        let inside = ctx.b.op("Equal", &[&n.output[0], x], vec![]);
        let dt = ctx.dtype(x)?;
        ctx.mask(&inside, &g, dt)
    };
    let mut out = vec![None; n.input.len()];
    out[0] = Some(d);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, unary_case, Case, Inputs};

    #[test]
    fn activation_rules() {
        let s = &[2, 5][..];
        let away = Inputs::away_from_zero().range(0.1, 3.5);
        let mut cases = vec![
            unary_case("Relu", &[], s, away),
            unary_case("LeakyRelu", &[], s, away),
            unary_case("LeakyRelu", &[attrs::float("alpha", 0.2)], s, away).named("alpha 0.2"),
            unary_case("Sigmoid", &[], s, Inputs::any()),
            unary_case("Tanh", &[], s, Inputs::any()),
            unary_case("Softplus", &[], s, Inputs::any()).float_only(),
            unary_case("Softsign", &[], s, away).float_only(),
            unary_case("Elu", &[attrs::float("alpha", 0.7)], s, away).float_only(),
            unary_case("Selu", &[], s, away).float_only(),
            unary_case("Celu", &[attrs::float("alpha", 1.5)], s, away).float_only(),
            unary_case(
                "ThresholdedRelu",
                &[attrs::float("alpha", 0.5)],
                s,
                Inputs::uniform(0.6, 2.0),
            )
            .float_only(),
            unary_case(
                "Shrink",
                &[attrs::float("lambd", 0.3), attrs::float("bias", 0.2)],
                s,
                Inputs::away_from_zero().range(0.05, 2.0),
            )
            .float_only()
            .named("soft"),
            unary_case("HardSigmoid", &[], s, Inputs::uniform(-2.0, 2.0)).float_only(),
            unary_case(
                "HardSigmoid",
                &[attrs::float("alpha", 0.5), attrs::float("beta", 0.2)],
                s,
                Inputs::uniform(-1.0, 1.0),
            )
            .float_only()
            .named("alpha beta"),
            unary_case(
                "HardSwish",
                &[],
                s,
                Inputs::away_from_zero().range(0.1, 2.9),
            )
            .float_only()
            .named("inside"),
            unary_case("HardSwish", &[], s, Inputs::uniform(3.1, 5.0))
                .float_only()
                .named("above"),
            unary_case("HardSwish", &[], s, Inputs::uniform(-5.0, -3.1))
                .float_only()
                .named("below"),
            unary_case("Mish", &[], s, Inputs::any())
                .opset(18)
                .float_only(),
            unary_case("Gelu", &[], s, Inputs::any())
                .opset(20)
                .float_only(),
            unary_case(
                "Gelu",
                &[attrs::string("approximate", "tanh")],
                s,
                Inputs::any(),
            )
            .opset(20)
            .float_only()
            .named("tanh"),
        ];
        cases.push(
            Case::op("PRelu")
                .input("x", &[2, 3, 2])
                .weight("slope", &[3, 1])
                .values(away)
                .float_only(),
        );
        cases.push(
            Case::op("PRelu")
                .input("x", &[2, 3, 2])
                .input("slope", &[3, 1])
                .values(away)
                .float_only()
                .named("slope input"),
        );
        cases.push(
            Case::op("Clip")
                .input("x", &[2, 5])
                .floats("lo", &[], &[-0.5])
                .floats("hi", &[], &[0.7])
                .values(Inputs::any())
                .named("min max"),
        );
        cases.push(
            Case::op("Clip")
                .input("x", &[2, 5])
                .absent()
                .floats("hi", &[], &[0.7])
                .values(Inputs::any())
                .named("max only"),
        );
        cases.push(
            Case::op("Clip")
                .input("x", &[2, 5])
                .floats("lo", &[], &[0.0])
                .values(Inputs::away_from_zero())
                .named("relu-like"),
        );
        cases.push(
            unary_case("Swish", &[attrs::float("alpha", 1.5)], s, Inputs::any())
                .opset(24)
                .float_only(),
        );
        run_cases(cases);
    }

    /// The gradient graph computes PRelu's output itself (as x·(x<0 ? slope : 1)); it must be
    /// the very same float32 values as ONNX Runtime's PRelu, signed zeros and NaN included.
    #[test]
    fn prelu_recomputed_output_is_bit_identical() {
        use crate::builder::GraphBuilder;
        use crate::tensor::{float_tensor, HostTensor};
        use crate::testutil::{vjp_wrt_inputs, Rng, Runner};
        use crate::{DataType, Dim};

        let dt = DataType::FLOAT;
        let shape = [2usize, 3, 4, 5];
        let mut b = GraphBuilder::new(17);
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        let x = b.input("x", dt, &dims);
        let slope = b.initializer(float_tensor("slope", dt, &[3, 1, 1], &[0.1, -0.7, 1.3]));
        let y = b.op("PRelu", &[&x, &slope], vec![]);
        b.output(&y, "y");
        let model = b.build().unwrap();
        let vjp = vjp_wrt_inputs(&model);
        let mut rng = Rng::new(7);
        let n: usize = shape.iter().product();
        let mut xs: Vec<f64> = (0..n).map(|_| rng.normal() * 3.0).collect();
        xs[..4].copy_from_slice(&[0.0, -0.0, f64::NAN, -1e-40]);
        let xt = HostTensor::float(dt, shape.to_vec(), xs);
        let g = HostTensor::float(dt, shape.to_vec(), vec![1.0; n]);
        let want = Runner::new(&model).unwrap().run(&[("x", &xt)]).unwrap()["y"].clone();
        let got = Runner::new(&vjp)
            .unwrap()
            .run(&[("x", &xt), ("y_grad", &g)])
            .unwrap()["y"]
            .clone();
        let bits = |t: &HostTensor| -> Vec<u32> {
            t.to_f64s().iter().map(|&v| (v as f32).to_bits()).collect()
        };
        assert_eq!(bits(&got), bits(&want));
    }

    /// Float32 values where masks built from scaled Convs could go wrong: signed zeros, the
    /// smallest subnormals, the smallest normal, the extremes and the infinities.
    fn float32_extremes() -> [f64; 9] {
        let tiny = f32::from_bits(1) as f64;
        [
            0.0,
            -0.0,
            tiny,
            -tiny,
            f32::MIN_POSITIVE as f64,
            f32::MAX as f64,
            f32::MIN as f64,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]
    }

    /// The CPU-tuned VJP graph of `op(x, extra…)` on an NCHW float32 `x` of `shape`, with `x`
    /// first through a depthwise identity 1×1 Conv (no 0·inf from other channels) when
    /// `after_conv`, else through an Identity: the same values with or without a Conv in front.
    fn tuned_after_identity(
        shape: [usize; 4],
        after_conv: bool,
        op: &str,
        extra: &[f64],
    ) -> crate::proto::ModelProto {
        use crate::autodiff::Tuning;
        use crate::builder::GraphBuilder;
        use crate::testutil::vjp_wrt_inputs_tuned;
        use crate::{DataType, Dim};
        let (dt, c) = (DataType::FLOAT, shape[1]);
        let mut b = GraphBuilder::new(17);
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        let x = b.input("x", dt, &dims);
        let w = b.constant_f32("ones", &[c, 1, 1, 1], &vec![1.0; c]);
        let z = if after_conv {
            let a = vec![
                attrs::int("group", c as i64),
                attrs::ints("kernel_shape", &[1, 1]),
            ];
            b.op("Conv", &[&x, &w], a)
        } else {
            b.op("Identity", &[&x], vec![])
        };
        let mut inputs = vec![z];
        inputs.extend(extra.iter().map(|&v| b.scalar(dt, v)));
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let y = b.op(op, &refs, vec![]);
        b.output(&y, "y");
        vjp_wrt_inputs_tuned(&b.build().unwrap(), Tuning::CpuFloat32)
    }

    /// `x_grad` of `vjp` at `xs` for the cotangent `gs` (float32, `shape`).
    fn x_grad(
        vjp: &crate::proto::ModelProto,
        shape: [usize; 4],
        xs: &[f64],
        gs: &[f64],
    ) -> Vec<f64> {
        use crate::tensor::HostTensor;
        use crate::testutil::Runner;
        use crate::DataType;
        let xt = HostTensor::float(DataType::FLOAT, shape.to_vec(), xs.to_vec());
        let gt = HostTensor::float(DataType::FLOAT, shape.to_vec(), gs.to_vec());
        Runner::new(vjp)
            .unwrap()
            .run(&[("x", &xt), ("y_grad", &gt)])
            .unwrap()["x_grad"]
            .to_f64s()
    }

    /// The CPU-tuned mask of a Clip after a Conv (a ReLU6) must be exactly 𝟙(min < y < max):
    /// at and next to both bounds, at ±subnormals, the largest floats and infinities. The Conv
    /// in front is the identity, so y is the Clip of the fed values. A Clip that does not
    /// follow a Conv keeps the portable mask.
    #[test]
    fn cpu_tuned_clip_mask_is_exact() {
        use crate::testutil::Rng;

        let shape = [2usize, 16, 5, 7];
        let build = |after_conv: bool, lo: f32, hi: f32| {
            tuned_after_identity(shape, after_conv, "Clip", &[lo as f64, hi as f64])
        };
        let uses_hard_sigmoid = |m: &crate::proto::ModelProto| {
            m.graph_ref()
                .unwrap()
                .node
                .iter()
                .any(|n| n.op_type == "HardSigmoid")
        };
        assert!(
            !uses_hard_sigmoid(&build(false, 0.0, 6.0)),
            "a Clip without a Conv got the tuned mask"
        );
        // ReLU6 (differences down to the smallest subnormal at 0) and a lower bound of −½.
        for (lo, hi) in [(0.0f32, 6.0f32), (-0.5, 6.0)] {
            let tuned = build(true, lo, hi);
            assert!(uses_hard_sigmoid(&tuned), "the tuned mask is not used");

            let n: usize = shape.iter().product();
            let mut rng = Rng::new(5);
            let mut xs: Vec<f64> = (0..n).map(|_| rng.uniform(-2.0, 8.0)).collect();
            let bounds = [
                lo as f64,
                hi as f64,
                lo.next_down() as f64,
                lo.next_up() as f64,
                hi.next_down() as f64,
                hi.next_up() as f64,
            ];
            let special: Vec<f64> = bounds.into_iter().chain(float32_extremes()).collect();
            xs[..special.len()].copy_from_slice(&special);
            let gs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let got = x_grad(&tuned, shape, &xs, &gs);
            // Values compared as float32 (the sign of a zero gradient is immaterial).
            let wrong: Vec<(f64, f64)> = (0..n)
                .filter_map(|i| {
                    let x = xs[i] as f32;
                    let inside = x > lo && x < hi;
                    let want = gs[i] as f32 * if inside { 1.0 } else { 0.0 };
                    (got[i] as f32 != want).then_some((xs[i], got[i]))
                })
                .collect();
            assert!(
                wrong.is_empty(),
                "Clip({lo}, {hi}): (x, gradient) where the tuned mask is off: {wrong:?}"
            );
        }
    }

    /// HardSwish after a Conv under the CPU tuning gets its slope from blocked operators: it
    /// must be x/3 + ½ on [−3, 3] (−½ and 3/2 exactly at the bounds, as PyTorch) and exactly 0
    /// below, 1 above, next to the bounds, at the extremes and infinities too; in between the
    /// float32 rounding of x/3 + ½ is all that may differ. Without the Conv: the portable slope.
    #[test]
    fn cpu_tuned_hard_swish_slope() {
        use crate::testutil::Rng;

        let shape = [2usize, 16, 5, 7];
        let build = |after_conv: bool| tuned_after_identity(shape, after_conv, "HardSwish", &[]);
        let blocked = |m: &crate::proto::ModelProto| {
            let nodes = &m.graph_ref().unwrap().node;
            !nodes.iter().any(|n| n.op_type == "Less")
        };
        assert!(
            !blocked(&build(false)),
            "HardSwish without a Conv got the blocked slope"
        );
        let tuned = build(true);
        assert!(blocked(&tuned), "the blocked slope is not used");

        let n: usize = shape.iter().product();
        let mut rng = Rng::new(7);
        let mut xs: Vec<f64> = (0..n).map(|_| rng.uniform(-5.0, 5.0)).collect();
        let bounds = [-3.0f32, 3.0].map(|b| [b, b.next_down(), b.next_up()]);
        let special: Vec<f64> = bounds
            .iter()
            .flatten()
            .map(|&b| b as f64)
            .chain(float32_extremes())
            .collect();
        xs[..special.len()].copy_from_slice(&special);
        let gs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let got = x_grad(&tuned, shape, &xs, &gs);
        let wrong: Vec<(f64, f64)> = (0..n)
            .filter_map(|i| {
                let (x, g) = (xs[i] as f32, gs[i] as f32);
                let (slope, tol) = match x {
                    x if x < -3.0 => (0.0, 0.0),
                    x if x > 3.0 => (1.0, 0.0),
                    -3.0 => (-0.5, 0.0),
                    3.0 => (1.5, 0.0),
                    x => (x / 3.0 + 0.5, 2.0 * f32::EPSILON),
                };
                let want = g * slope;
                ((got[i] as f32 - want).abs() > tol * g.abs()).then_some((xs[i], got[i]))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "(x, gradient) where the blocked slope is off: {wrong:?}"
        );
    }

    /// The CPU-tuned Relu mask (1×1 Conv and HardSigmoid by 2¹²⁷) must give exactly the
    /// portable mask's gradient, at 0, ±subnormals, the largest floats and infinities too; the
    /// channel count is a multiple of 16 so that ONNX Runtime runs it in its blocked layout.
    #[test]
    fn cpu_tuned_relu_mask_is_exact() {
        use crate::autodiff::Tuning;
        use crate::builder::GraphBuilder;
        use crate::tensor::HostTensor;
        use crate::testutil::{vjp_wrt_inputs_tuned, Rng, Runner};
        use crate::{DataType, Dim};

        let dt = DataType::FLOAT;
        let shape = [2usize, 16, 5, 7];
        let mut b = GraphBuilder::new(17);
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        let x = b.input("x", dt, &dims);
        let y = b.op("Relu", &[&x], vec![]);
        b.output(&y, "y");
        let model = b.build().unwrap();
        let vjp = |tuning| vjp_wrt_inputs_tuned(&model, tuning);
        let (portable, cpu) = (vjp(Tuning::Portable), vjp(Tuning::CpuFloat32));
        let ops = |m: &crate::proto::ModelProto| -> Vec<String> {
            m.graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.clone())
                .collect()
        };
        assert!(
            ops(&cpu).contains(&"HardSigmoid".to_string()),
            "{:?}",
            ops(&cpu)
        );
        assert!(
            !ops(&cpu).contains(&"Greater".to_string()),
            "{:?}",
            ops(&cpu)
        );

        let n: usize = shape.iter().product();
        let mut rng = Rng::new(3);
        let mut xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let special = float32_extremes();
        xs[..special.len()].copy_from_slice(&special);
        let gs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let xt = HostTensor::float(dt, shape.to_vec(), xs.clone());
        let gt = HostTensor::float(dt, shape.to_vec(), gs.clone());
        let grad = |m: &crate::proto::ModelProto| -> Vec<u32> {
            let out = Runner::new(m)
                .unwrap()
                .run(&[("x", &xt), ("y_grad", &gt)])
                .unwrap();
            out["x_grad"]
                .to_f64s()
                .iter()
                .map(|&v| (v as f32).to_bits())
                .collect()
        };
        let want: Vec<u32> = xs
            .iter()
            .zip(&gs)
            .map(|(&x, &g)| (g as f32 * if x > 0.0 { 1.0 } else { 0.0 }).to_bits())
            .collect();
        for (form, m) in [("portable", &portable), ("cpu", &cpu)] {
            let got = grad(m);
            let wrong: Vec<(f64, u32, u32)> = (0..n)
                .filter(|&i| got[i] != want[i])
                .map(|i| (xs[i], got[i], want[i]))
                .collect();
            assert!(
                wrong.is_empty(),
                "{form}: {} wrong, first {:?}",
                wrong.len(),
                &wrong[..wrong.len().min(5)]
            );
        }
    }

    /// At the bounds themselves Clip's gradient passes (min ≤ x ≤ max, as PyTorch's clamp), and
    /// NaN gets none; finite differences cannot see either, so check them by value.
    #[test]
    fn clip_gradient_at_the_bounds_and_nan() {
        use crate::builder::GraphBuilder;
        use crate::tensor::HostTensor;
        use crate::testutil::{vjp_wrt_inputs, Runner};
        use crate::{DataType, Dim};

        let xs = [-0.5, 0.7, -0.6, 0.8, 0.1, f64::NAN, -0.0, f64::INFINITY];
        let want = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        for dt in [DataType::FLOAT, DataType::DOUBLE] {
            let mut b = GraphBuilder::new(17);
            let x = b.input("x", dt, &[Dim::Fixed(xs.len() as i64)]);
            let lo = b.scalar(dt, -0.5);
            let hi = b.scalar(dt, 0.7);
            let y = b.op("Clip", &[&x, &lo, &hi], vec![]);
            b.output(&y, "y");
            let vjp = vjp_wrt_inputs(&b.build().unwrap());
            let mut run = Runner::new(&vjp).unwrap();
            let xt = HostTensor::float(dt, vec![xs.len()], xs.to_vec());
            let g = HostTensor::float(dt, vec![xs.len()], vec![1.0; xs.len()]);
            let got = run.run(&[("x", &xt), ("y_grad", &g)]).unwrap()["x_grad"].to_f64s();
            assert_eq!(got, want, "{dt:?}");
        }
    }
}
