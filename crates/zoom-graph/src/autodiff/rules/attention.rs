//! Attention (opset 23): Y = softmax(Z)·V with Z = cap(s·Q·Kᵀ) + bias, where cap is the optional
//! softcap c·tanh(·/c) and bias comes from attn_mask (boolean: 0 or −∞; float: added) and
//! is_causal (key j visible to query i iff j ≤ i). K and V heads are repeated for grouped-query
//! attention; 3-D inputs are [batch, sequence, heads·size].
//!
//! The rule recomputes P = softmax(Z) (a fully masked row gives P = 0, as the operator defines
//! its output there) and, with G = dY (the softmax step shared with the Softmax rule):
//! dV = Pᵀ·G, dZ = P ⊙ (G·Vᵀ − rowsum(P ⊙ G·Vᵀ)), dS = s·cap′ ⊙ dZ, dQ = dS·K, dK = dSᵀ·Q, with
//! the repeated heads summed back; a float mask gets dZ.
//!
//! Not supported (clear errors): the KV cache (past_key/past_value), cotangents of the present
//! key/value or qk_matmul outputs, and masks whose last axis is not the key length.

use super::dy0;
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("Attention", attention);
}

/// Heads of one input in 4-D form.
struct Heads {
    /// The input as [batch, heads, sequence, size].
    v: String,
    heads: i64,
    seq: i64,
    size: i64,
    /// The input was 3-D ([batch, sequence, heads·size]).
    flat: bool,
}

fn to_heads(ctx: &mut VjpCtx, n: &NodeProto, x: &str, heads_attr: &str) -> Result<Heads> {
    let s = ctx.shape_i64(x)?;
    match s.len() {
        4 => Ok(Heads {
            v: x.to_string(),
            heads: s[1],
            seq: s[2],
            size: s[3],
            flat: false,
        }),
        3 => {
            let heads = n.attr_req::<i64>(heads_attr)?;
            if heads <= 0 || s[2] % heads != 0 {
                return Err(n.attr_error(
                    heads_attr,
                    format!("{heads} does not divide the hidden size {}", s[2]),
                ));
            }
            let size = s[2] / heads;
            let r = ctx.b.reshape(x, &[s[0], s[1], heads, size]);
            Ok(Heads {
                v: ctx.b.transpose(&r, &[0, 2, 1, 3]),
                heads,
                seq: s[1],
                size,
                flat: true,
            })
        }
        r => Err(n.error(format!(
            "\"{x}\" has rank {r}; Attention takes 3-D or 4-D inputs"
        ))),
    }
}

/// A [batch, heads, sequence, size] gradient back in the layout of its input.
fn from_heads(ctx: &mut VjpCtx, d: &str, h: &Heads, batch: i64) -> String {
    if h.flat {
        let t = ctx.b.transpose(d, &[0, 2, 1, 3]);
        ctx.b.reshape(&t, &[batch, h.seq, h.heads * h.size])
    } else {
        d.to_string()
    }
}

/// K or V heads repeated `group` times each (head h of Q reads head h / group).
fn repeat_heads(ctx: &mut VjpCtx, v: &str, h: &Heads, batch: i64, group: i64) -> String {
    if group == 1 {
        return v.to_string();
    }
    let u = ctx.b.unsqueeze(v, &[2]);
    let e = ctx.b.expand(&u, &[batch, h.heads, group, h.seq, h.size]);
    ctx.b.reshape(&e, &[batch, h.heads * group, h.seq, h.size])
}

/// The gradient of repeated heads summed back onto the original ones.
fn sum_heads(ctx: &mut VjpCtx, d: &str, h: &Heads, batch: i64, group: i64) -> String {
    if group == 1 {
        return d.to_string();
    }
    let r = ctx.b.reshape(d, &[batch, h.heads, group, h.seq, h.size]);
    ctx.b.reduce("ReduceSum", &r, &[2], false)
}

fn attention(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    if dy.iter().skip(1).any(Option::is_some) {
        return Err(n.unsupported("gradients of the present_key/present_value/qk_matmul outputs"));
    }
    if n.input_opt(4).is_some() || n.input_opt(5).is_some() {
        return Err(n.unsupported("the KV cache (past_key/past_value inputs)"));
    }
    if n.input.len() > 6 && n.input_opt(6).is_some() {
        return Err(n.unsupported("nonpad_kv_seqlen"));
    }
    // What the rule models; anything newer is refused rather than ignored.
    const KNOWN: &[&str] = &[
        "is_causal",
        "kv_num_heads",
        "q_num_heads",
        "qk_matmul_output_mode",
        "scale",
        "softcap",
        "softmax_precision",
        "left_window_size",
        "right_window_size",
    ];
    if let Some(a) = n
        .attribute
        .iter()
        .find(|a| !KNOWN.contains(&a.name.as_str()))
    {
        return Err(n.unsupported(format!("attribute {}", a.name)));
    }
    let g = dy0(n, dy)?;
    let dt = ctx.dtype(&n.input[0])?;
    let batch = ctx.shape_i64(&n.input[0])?[0];
    let q = to_heads(ctx, n, &n.input[0], "q_num_heads")?;
    let k = to_heads(ctx, n, &n.input[1], "kv_num_heads")?;
    let v = to_heads(ctx, n, &n.input[2], "kv_num_heads")?;
    if k.heads == 0 || q.heads % k.heads != 0 || v.heads != k.heads {
        return Err(n.error(format!(
            "{} query heads cannot share {} key / {} value heads",
            q.heads, k.heads, v.heads
        )));
    }
    let group = q.heads / k.heads;
    let scale = match n.attr_or::<f32>("scale", 0.0)? {
        s if s != 0.0 => s as f64,
        _ => 1.0 / (q.size as f64).sqrt(),
    };
    let softcap = n.attr_or::<f32>("softcap", 0.0)? as f64;

    // Forward recomputation.
    let kr = repeat_heads(ctx, &k.v, &k, batch, group);
    let vr = repeat_heads(ctx, &v.v, &v, batch, group);
    let kt = ctx.b.transpose(&kr, &[0, 1, 3, 2]);
    let qk = ctx.b.matmul(&q.v, &kt);
    let sc = ctx.scalar(scale, dt);
    let s_raw = ctx.b.mul(&qk, &sc);
    let (mut z, tanh) = if softcap > 0.0 {
        let c = ctx.scalar(softcap, dt);
        let t = ctx.b.div(&s_raw, &c);
        let t = ctx.b.op("Tanh", &[&t], vec![]);
        (ctx.b.mul(&t, &c), Some(t))
    } else {
        (s_raw, None)
    };
    let mut masked = false;
    let mask = n.input_opt(3).map(str::to_string);
    if let Some(m) = &mask {
        let ms = ctx.shape_i64(m)?;
        if ms.last() != Some(&k.seq) {
            return Err(n.unsupported(format!(
                "attn_mask of shape {ms:?}: its last axis must be the key length {}",
                k.seq
            )));
        }
        let bias = if ctx.dtype(m)? == DataType::BOOL {
            let zero = ctx.scalar(0.0, dt);
            let ninf = ctx.scalar(f64::NEG_INFINITY, dt);
            ctx.b.where_(m, &zero, &ninf)
        } else {
            m.clone()
        };
        z = ctx.b.add(&z, &bias);
        masked = true;
    }
    // Key j is visible to query i if j ≤ i (causal) and i − left ≤ j ≤ i + right (the sliding
    // window of opset 25; −1 leaves a side open). Without a KV cache the offset is 0.
    let causal = n.attr_or::<i64>("is_causal", 0)? == 1;
    let left = n.attr_or::<i64>("left_window_size", -1)?;
    let right = n.attr_or::<i64>("right_window_size", -1)?;
    if causal || left >= 0 || right >= 0 {
        let (sq, sk) = (q.seq as usize, k.seq as usize);
        let visible = |i: i64, j: i64| {
            (!causal || j <= i) && (left < 0 || i - j <= left) && (right < 0 || j - i <= right)
        };
        let vals: Vec<f64> = (0..sq * sk)
            .map(|e| match visible((e / sk) as i64, (e % sk) as i64) {
                true => 0.0,
                false => f64::NEG_INFINITY,
            })
            .collect();
        let window = ctx.b.constant_float("visible", dt, &[sq, sk], &vals);
        z = ctx.b.add(&z, &window);
        masked = true;
    }
    let mut p = ctx.b.op("Softmax", &[&z], vec![attrs::int("axis", -1)]);
    if masked {
        // A fully masked row is NaN after Softmax; the operator outputs zeros there.
        let nan = ctx.b.op("IsNaN", &[&p], vec![]);
        let zero = ctx.scalar(0.0, dt);
        p = ctx.b.where_(&nan, &zero, &p);
    }

    // Backward.
    let gq = if q.flat {
        let r = ctx.b.reshape(&g, &[batch, q.seq, q.heads, v.size]);
        ctx.b.transpose(&r, &[0, 2, 1, 3])
    } else {
        g
    };
    let mut out = vec![None; n.input.len()];
    if need[2] {
        let pt = ctx.b.transpose(&p, &[0, 1, 3, 2]);
        let d = ctx.b.matmul(&pt, &gq);
        let d = sum_heads(ctx, &d, &v, batch, group);
        out[2] = Some(from_heads(ctx, &d, &v, batch));
    }
    let need_mask = need.get(3).copied().unwrap_or(false);
    if need[0] || need[1] || need_mask {
        let vt = ctx.b.transpose(&vr, &[0, 1, 3, 2]);
        let dp = ctx.b.matmul(&gq, &vt);
        let dz = super::softmax::softmax_backward(ctx, &p, &dp, -1);
        if need_mask {
            // The score-shaped cotangent summed down to the mask's broadcast shape.
            let m = mask.as_deref().expect("a needed mask exists");
            let ms = ctx.shape(m)?;
            let scores = [
                batch as usize,
                q.heads as usize,
                q.seq as usize,
                k.seq as usize,
            ];
            out[3] = Some(ctx.unbroadcast(&dz, &scores, &ms));
        }
        let mut ds = dz;
        if let Some(t) = &tanh {
            let one = ctx.scalar(1.0, dt);
            let t2 = ctx.b.mul(t, t);
            let d = ctx.b.sub(&one, &t2);
            ds = ctx.b.mul(&ds, &d);
        }
        let ds = ctx.b.mul(&ds, &sc);
        if need[0] {
            let d = ctx.b.matmul(&ds, &kr);
            out[0] = Some(from_heads(ctx, &d, &q, batch));
        }
        if need[1] {
            let dst = ctx.b.transpose(&ds, &[0, 1, 3, 2]);
            let d = ctx.b.matmul(&dst, &q.v);
            let d = sum_heads(ctx, &d, &k, batch, group);
            out[1] = Some(from_heads(ctx, &d, &k, batch));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    /// Attributes from later opsets change the result: they are refused, not ignored. (The
    /// sliding window of opset 25 is modelled, and checked by scripts/autodiff_bench/
    /// onnx_node_sweep.py: the bundled ONNX Runtime 1.31 does not know it.)
    #[test]
    fn unknown_attributes_are_refused() {
        use crate::{DataType, GraphBuilder};
        let mut b = GraphBuilder::new(23);
        let dims = [1.into(), 1.into(), 3.into(), 2.into()];
        let q = b.input("q", DataType::FLOAT, &dims);
        let y = b.op(
            "Attention",
            &[&q, &q, &q],
            vec![attrs::int("future_mode", 1)],
        );
        b.output(&y, "y");
        let e = crate::testutil::vjp_error(&b.build().unwrap(), "q").to_string();
        assert!(e.contains("Attention") && e.contains("future_mode"), "{e}");
    }

    #[test]
    fn attention_rule() {
        use crate::tensor::HostTensor;
        use crate::{DataType, Dim};
        run_cases(vec![
            // Query row 1 sees no key: its output is 0 and its gradients too, not NaN.
            Case::graph(
                "Attention, boolean mask with a fully masked row",
                23,
                |b, dt| {
                    let dims =
                        |d: &[usize]| d.iter().map(|&v| Dim::Fixed(v as i64)).collect::<Vec<_>>();
                    let q = b.input("q", dt, &dims(&[1, 2, 3, 4]));
                    let k = b.input("k", dt, &dims(&[1, 2, 4, 4]));
                    let v = b.input("v", dt, &dims(&[1, 2, 4, 2]));
                    let allowed = [1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1];
                    let m = b.constant(
                        "mask",
                        &HostTensor::int(DataType::BOOL, vec![3, 4], allowed.to_vec()),
                    );
                    let y = b.op("Attention", &[&q, &k, &v, &m], vec![]);
                    b.output(&y, "y");
                },
            )
            .float_only(),
            Case::op("Attention")
                .input("q", &[1, 2, 3, 4])
                .input("k", &[1, 2, 5, 4])
                .input("v", &[1, 2, 5, 3])
                .opset(23)
                .float_only()
                .named("4-D"),
            Case::op("Attention")
                .input("q", &[2, 4, 3, 2])
                .input("k", &[2, 2, 3, 2])
                .input("v", &[2, 2, 3, 2])
                .attr(attrs::int("is_causal", 1))
                .attr(attrs::float("scale", 0.7))
                .opset(23)
                .float_only()
                .named("grouped-query, causal, scale"),
            Case::op("Attention")
                .input("q", &[1, 3, 4])
                .input("k", &[1, 4, 4])
                .input("v", &[1, 4, 6])
                .attr(attrs::int("q_num_heads", 2))
                .attr(attrs::int("kv_num_heads", 2))
                .attr(attrs::float("softcap", 2.0))
                .opset(23)
                .float_only()
                .named("3-D, softcap"),
            Case::op("Attention")
                .input("q", &[1, 2, 3, 4])
                .input("k", &[1, 2, 4, 4])
                .input("v", &[1, 2, 4, 4])
                .input("mask", &[3, 4])
                .opset(23)
                .float_only()
                .named("float mask, differentiated"),
        ]);
    }
}
