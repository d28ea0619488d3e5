//! Indexing and joining: Slice, Gather, GatherElements, Concat, Split, Pad.
//!
//! - Slice (any steps, negative too): the cotangent is reversed where the step is negative,
//!   spread out with zeros between elements where |step| > 1 (unsqueeze, pad, reshape) and
//!   zero-padded into place: no scatter needed.
//! - Gather: a scalar or contiguous constant index → zero padding; other indices → a one-hot
//!   matrix (constant when the indices are) contracted with the cotangent by MatMul, which sums
//!   repeated indices correctly on every opset.
//! - GatherElements: ScatterElements(reduction=add) into zeros (opset 16+).
//! - Concat ↔ Split: split / concatenate the cotangents (zeros for outputs without one).
//! - GatherND: ScatterND(reduction=add) into zeros (opset 16+, batch_dims 0).
//! - ScatterND / ScatterElements: the data cotangent with the overwritten positions zeroed
//!   (unchanged for reduction=add); the updates get the cotangent gathered back (GatherND /
//!   GatherElements).
//! - CumSum: a cumulative sum in the opposite direction. Trilu: the same Trilu.
//! - CenterCropPad: a centred crop (Slice) and zero pad per axis; the cotangent is cropped where
//!   the input was padded and zero-padded where it was cropped.
//! - TopK: the values' cotangent scattered back to the Indices output (distinct along the axis,
//!   so a plain ScatterElements, any opset).
//! - Pad: constant mode → Slice (and zero padding for negative pads); edge/reflect/wrap → the
//!   centre slice plus each border folded back onto the input positions it copied.

use super::{dy0, norm_axis};
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::eval::slice_params;
use crate::proto::NodeProto;
use crate::tensor::HostTensor;
use crate::DataType;

pub(crate) fn register(r: &mut Registry) {
    r.add("Slice", slice);
    r.add("Gather", gather);
    r.add("GatherElements", gather_elements);
    r.add("Concat", concat);
    r.add("Split", split);
    r.add("Pad", pad);
    r.add("GatherND", gather_nd);
    r.add("ScatterND", scatter);
    r.add("ScatterElements", scatter);
    r.add("CumSum", cumsum);
    r.add("Trilu", trilu);
    r.add("TopK", top_k);
    r.add("CenterCropPad", center_crop_pad);
}

fn first_only(n: &NodeProto, g: String) -> Vec<Option<String>> {
    let mut out = vec![None; n.input.len()];
    out[0] = Some(g);
    out
}

/// Reverse `v` along `axis`.
fn reverse(ctx: &mut VjpCtx, v: &str, axis: usize) -> String {
    ctx.b.slice(v, &[-1], &[i64::MIN], &[axis as i64], &[-1])
}

fn slice(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let x = &n.input[0];
    let xs = ctx.shape(x)?;
    let r = xs.len();
    let starts = ctx.const_ints(n, 1, "starts")?;
    let ends = ctx.const_ints(n, 2, "ends")?;
    let axes = ctx
        .opt_const_ints(n, 3, "axes")?
        .unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = ctx
        .opt_const_ints(n, 4, "steps")?
        .unwrap_or_else(|| vec![1; starts.len()]);
    let mut cur = g;
    let mut cur_shape = ctx.shape(&n.output[0])?;
    let mut pads = vec![0i64; 2 * r];
    for k in 0..starts.len() {
        let a = norm_axis(n, axes[k], r)?;
        let (first, step, count) = slice_params(starts[k], ends[k], steps[k], xs[a]);
        if count == 0 {
            return Ok(first_only(n, ctx.zeros_like(x)?));
        }
        let mut lo = first as i64;
        if step < 0 {
            cur = reverse(ctx, &cur, a);
            lo = first as i64 + (count as i64 - 1) * step;
        }
        let s = step.abs();
        let mut len = count as i64;
        if s > 1 {
            // [.., count, ..] -> [.., count, s, ..] (zeros after each element) -> [.., count·s, ..]
            let u = ctx.b.unsqueeze(&cur, &[a as i64 + 1]);
            let mut p = vec![0i64; 2 * (r + 1)];
            p[r + 1 + a + 1] = s - 1;
            let padded = ctx.b.pad(&u, &p, "constant");
            let mut shape: Vec<i64> = cur_shape.iter().map(|&d| d as i64).collect();
            shape[a] = count as i64 * s;
            let merged = ctx.b.reshape(&padded, &shape);
            len = (count as i64 - 1) * s + 1;
            cur = ctx.b.slice(&merged, &[0], &[len], &[a as i64], &[1]);
        }
        cur_shape[a] = len as usize;
        pads[a] = lo;
        pads[r + a] = xs[a] as i64 - lo - len;
    }
    if pads.iter().any(|&p| p != 0) {
        cur = ctx.b.pad(&cur, &pads, "constant");
    }
    Ok(first_only(n, cur))
}

fn gather(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, ind) = (&n.input[0], &n.input[1]);
    let xs = ctx.shape(x)?;
    let dt = ctx.dtype(x)?;
    let r = xs.len();
    let a = norm_axis(n, n.attr_or::<i64>("axis", 0)?, r)?;
    let len = xs[a] as i64;
    let is = ctx.shape(ind)?;
    let consts = ctx.const_value(ind).map(|t| {
        t.to_i64s()
            .iter()
            .map(|&i| if i < 0 { i + len } else { i })
            .collect::<Vec<_>>()
    });
    if let Some(ids) = &consts {
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= len) {
            return Err(n.error(format!(
                "index {bad} is out of range for an axis of size {len}"
            )));
        }
        let contiguous = !ids.is_empty() && ids.windows(2).all(|w| w[1] == w[0] + 1);
        if is.is_empty() || (is.len() == 1 && contiguous) {
            let gi = if is.is_empty() {
                ctx.b.unsqueeze(&g, &[a as i64])
            } else {
                g
            };
            let mut pads = vec![0i64; 2 * r];
            pads[a] = ids[0];
            pads[r + a] = len - ids[0] - ids.len() as i64;
            return Ok(vec![Some(ctx.b.pad(&gi, &pads, "constant")), None]);
        }
    }
    // One-hot route: O[j, k] = [idx_j == k], m = #indices.
    let m: usize = is.iter().product();
    let pre: i64 = xs[..a].iter().product::<usize>() as i64;
    let post: i64 = xs[a + 1..].iter().product::<usize>() as i64;
    let onehot_t = match &consts {
        Some(ids) => {
            // Oᵀ [len, m] as a constant.
            let mut v = vec![0.0; len as usize * m];
            for (j, &k) in ids.iter().enumerate() {
                v[k as usize * m + j] = 1.0;
            }
            ctx.b
                .constant_float("gather_onehot_t", dt, &[len as usize, m], &v)
        }
        None => {
            let flat = ctx.b.reshape(ind, &[1, m as i64]);
            let flat = ctx.b.cast(&flat, DataType::INT64);
            let zero = ctx
                .b
                .constant("zero", &HostTensor::int(DataType::INT64, vec![], vec![0]));
            let l = ctx
                .b
                .constant("len", &HostTensor::int(DataType::INT64, vec![], vec![len]));
            let neg = ctx.b.op("Less", &[&flat, &zero], vec![]);
            let wrapped = ctx.b.add(&flat, &l);
            let flat = ctx.b.where_(&neg, &wrapped, &flat);
            let range = ctx.b.constant(
                "range",
                &HostTensor::int(DataType::INT64, vec![len as usize, 1], (0..len).collect()),
            );
            let eq = ctx.b.op("Equal", &[&range, &flat], vec![]);
            ctx.b.cast(&eq, dt)
        }
    };
    let g3 = ctx.b.reshape(&g, &[pre, m as i64, post]);
    // [len, m] @ [pre, m, post] -> [pre, len, post]
    let d = ctx.b.matmul(&onehot_t, &g3);
    let xs64: Vec<i64> = xs.iter().map(|&v| v as i64).collect();
    Ok(vec![Some(ctx.b.reshape(&d, &xs64)), None])
}

fn gather_elements(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    if ctx.opset() < 16 {
        return Err(n.unsupported(
            "GatherElements needs ScatterElements(reduction=add), opset 16 or newer",
        ));
    }
    let g = dy0(n, dy)?;
    let (x, ind) = (&n.input[0], &n.input[1]);
    let axis = n.attr_or::<i64>("axis", 0)?;
    let z = ctx.zeros_like(x)?;
    let d = ctx.b.op(
        "ScatterElements",
        &[&z, ind, &g],
        vec![attrs::int("axis", axis), attrs::string("reduction", "add")],
    );
    Ok(vec![Some(d), None])
}

fn center_crop_pad(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let xs = ctx.shape_i64(&n.input[0])?;
    let r = xs.len();
    let target = ctx.const_ints(n, 1, "shape")?;
    let axes: Vec<i64> = n
        .get_attr::<Vec<i64>>("axes")?
        .unwrap_or_else(|| (0..r as i64).collect());
    if axes.len() != target.len() {
        return Err(n.error(format!(
            "{} axes but a target shape of {} dimensions",
            axes.len(),
            target.len()
        )));
    }
    // Where the output is larger (padded) the cotangent's centre is sliced out; where it is
    // smaller (cropped) it is padded back with zeros. Either way the offset is ⌊|Δ|/2⌋.
    let (mut starts, mut ends, mut slice_axes) = (vec![], vec![], vec![]);
    let mut pads = vec![0i64; 2 * r];
    for (&a, &t) in axes.iter().zip(&target) {
        let a = norm_axis(n, a, r)?;
        let d = xs[a];
        if t > d {
            let before = (t - d) / 2;
            starts.push(before);
            ends.push(before + d);
            slice_axes.push(a as i64);
        } else if t < d {
            let before = (d - t) / 2;
            pads[a] = before;
            pads[a + r] = d - t - before;
        }
    }
    let mut v = g;
    if !slice_axes.is_empty() {
        let steps = vec![1; slice_axes.len()];
        v = ctx.b.slice(&v, &starts, &ends, &slice_axes, &steps);
    }
    if pads.iter().any(|&p| p != 0) {
        v = ctx.b.pad(&v, &pads, "constant");
    }
    Ok(vec![Some(v), None])
}

fn top_k(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let axis = n.attr_or::<i64>("axis", -1)?;
    let idx = ctx.forward_output(n, 1);
    let z = ctx.zeros_like(&n.input[0])?;
    let d = ctx.b.op(
        "ScatterElements",
        &[&z, &idx, &g],
        vec![attrs::int("axis", axis)],
    );
    Ok(vec![Some(d), None])
}

fn gather_nd(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    if ctx.opset() < 16 {
        return Err(n.unsupported("GatherND needs ScatterND(reduction=add), opset 16 or newer"));
    }
    if n.attr_or::<i64>("batch_dims", 0)? != 0 {
        return Err(n.unsupported("GatherND with batch_dims ≠ 0"));
    }
    let g = dy0(n, dy)?;
    let z = ctx.zeros_like(&n.input[0])?;
    let d = ctx.b.op(
        "ScatterND",
        &[&z, &n.input[1], &g],
        vec![attrs::string("reduction", "add")],
    );
    Ok(vec![Some(d), None])
}

fn scatter(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (ind, upd) = (&n.input[1], &n.input[2]);
    let reduction = n.attr_or::<String>("reduction", "none".into())?;
    if reduction != "none" && reduction != "add" {
        return Err(n.unsupported(format!("reduction {reduction:?}")));
    }
    let elements = n.op_type == "ScatterElements";
    let axis = vec![attrs::int("axis", n.attr_or::<i64>("axis", 0)?)];
    let mut out = vec![None, None, None];
    if need[0] {
        out[0] = Some(if reduction == "add" {
            g.clone()
        } else {
            let z = ctx.zeros_like(upd)?;
            let a = if elements { axis.clone() } else { vec![] };
            ctx.b.op(&n.op_type, &[&g, ind, &z], a)
        });
    }
    if need[2] {
        out[2] = Some(if elements {
            ctx.b.op("GatherElements", &[&g, ind], axis)
        } else {
            ctx.b.op("GatherND", &[&g, ind], vec![])
        });
    }
    Ok(out)
}

fn cumsum(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let mut a: Vec<_> = n
        .attribute
        .iter()
        .filter(|a| a.name != "reverse")
        .cloned()
        .collect();
    a.push(attrs::int("reverse", 1 - n.attr_or::<i64>("reverse", 0)?));
    Ok(vec![Some(ctx.b.op("CumSum", &[&g, &n.input[1]], a)), None])
}

fn trilu(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let mut inputs = vec![g.as_str()];
    if let Some(k) = n.input_opt(1) {
        inputs.push(k);
    }
    let d = ctx.b.op("Trilu", &inputs, n.attribute.clone());
    let mut out = vec![None; n.input.len()];
    out[0] = Some(d);
    Ok(out)
}

fn concat(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let r = ctx.shape(&n.output[0])?.len();
    let a = norm_axis(n, n.attr_req::<i64>("axis")?, r)?;
    let mut sizes = vec![];
    for x in &n.input {
        sizes.push(ctx.shape(x)?[a] as i64);
    }
    // Zero-sized inputs get no piece of the Split (which rejects zero sizes on some runtimes).
    let nonzero: Vec<usize> = (0..sizes.len()).filter(|&k| sizes[k] > 0).collect();
    let pieces = if nonzero.len() == 1 {
        vec![g]
    } else {
        let s: Vec<i64> = nonzero.iter().map(|&k| sizes[k]).collect();
        ctx.b.split(&g, a as i64, &s)
    };
    let mut out = vec![None; n.input.len()];
    for (p, &k) in pieces.into_iter().zip(&nonzero) {
        if need[k] {
            out[k] = Some(p);
        }
    }
    for k in 0..n.input.len() {
        if need[k] && out[k].is_none() {
            out[k] = Some(ctx.zeros_like(&n.input[k])?);
        }
    }
    Ok(out)
}

fn split(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let x = &n.input[0];
    let r = ctx.shape(x)?.len();
    let a = norm_axis(n, n.attr_or::<i64>("axis", 0)?, r)?;
    let mut parts = vec![];
    for (k, o) in n.output.iter().enumerate() {
        match dy.get(k).cloned().flatten() {
            Some(g) => parts.push(g),
            None => parts.push(ctx.zeros_like(o)?),
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let d = if refs.len() == 1 {
        parts[0].clone()
    } else {
        ctx.b.concat(&refs, a as i64)
    };
    Ok(first_only(n, d))
}

fn pad(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    if need.iter().skip(1).any(|&b| b) {
        return Err(n.unsupported("gradient with respect to Pad's constant_value"));
    }
    let g = dy0(n, dy)?;
    let x = &n.input[0];
    let xs = ctx.shape(x)?;
    let r = xs.len();
    let pads = ctx.const_ints(n, 1, "pads")?;
    let axes: Vec<usize> = match ctx.opt_const_ints(n, 3, "axes")? {
        Some(a) => a
            .iter()
            .map(|&v| norm_axis(n, v, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let na = axes.len();
    let mode = n.attr_or::<String>("mode", "constant".into())?;
    let mut cur = g;
    let mut cur_shape = ctx.shape(&n.output[0])?;
    if mode == "constant" {
        // Output index o holds input o − pb: slice where pb ≥ 0, zero-pad where pb < 0.
        let (mut st, mut en, mut ax) = (vec![], vec![], vec![]);
        let mut back = vec![0i64; 2 * r];
        for (k, &a) in axes.iter().enumerate() {
            let (pb, pe) = (pads[k], pads[k + na]);
            let len = xs[a] as i64 - (-pb).max(0) - (-pe).max(0);
            if pb > 0 || pe > 0 {
                st.push(pb.max(0));
                en.push(pb.max(0) + len);
                ax.push(a as i64);
            }
            back[a] = (-pb).max(0);
            back[r + a] = (-pe).max(0);
        }
        if !ax.is_empty() {
            let steps = vec![1; ax.len()];
            cur = ctx.b.slice(&cur, &st, &en, &ax, &steps);
        }
        if back.iter().any(|&v| v != 0) {
            cur = ctx.b.pad(&cur, &back, "constant");
        }
        return Ok(first_only(n, cur));
    }
    for (k, &a) in axes.iter().enumerate() {
        let (pb, pe) = (pads[k], pads[k + na]);
        if pb == 0 && pe == 0 {
            continue;
        }
        if pb < 0 || pe < 0 {
            return Err(n.unsupported(format!("negative pads in {mode} mode")));
        }
        let len = xs[a] as i64;
        let ai = a as i64;
        let centre = ctx.b.slice(&cur, &[pb], &[pb + len], &[ai], &[1]);
        let mut terms = vec![centre];
        // Each border block, folded back (and zero-padded) onto the input positions it copied.
        let pad_axis = |ctx: &mut VjpCtx, v: &str, before: i64, after: i64| {
            let mut p = vec![0i64; 2 * r];
            p[a] = before;
            p[r + a] = after;
            ctx.b.pad(v, &p, "constant")
        };
        match mode.as_str() {
            "edge" => {
                if pb > 0 {
                    let s = ctx.b.slice(&cur, &[0], &[pb], &[ai], &[1]);
                    let s = ctx.b.reduce("ReduceSum", &s, &[ai], true);
                    terms.push(pad_axis(ctx, &s, 0, len - 1));
                }
                if pe > 0 {
                    let s = ctx
                        .b
                        .slice(&cur, &[pb + len], &[pb + len + pe], &[ai], &[1]);
                    let s = ctx.b.reduce("ReduceSum", &s, &[ai], true);
                    terms.push(pad_axis(ctx, &s, len - 1, 0));
                }
            }
            "reflect" => {
                if pb >= len || pe >= len {
                    return Err(n.unsupported("reflect padding wider than the axis"));
                }
                if pb > 0 {
                    // out[i] (i < pb) = in[pb − i]: reversed block lands on in[1..=pb].
                    let s = ctx.b.slice(&cur, &[pb - 1], &[i64::MIN], &[ai], &[-1]);
                    let s = ctx.b.slice(&s, &[0], &[pb], &[ai], &[1]);
                    terms.push(pad_axis(ctx, &s, 1, len - 1 - pb));
                }
                if pe > 0 {
                    // out[pb+len+j] = in[len−2−j]: reversed block lands on in[len−1−pe..len−1].
                    let s = ctx
                        .b
                        .slice(&cur, &[pb + len + pe - 1], &[pb + len - 1], &[ai], &[-1]);
                    terms.push(pad_axis(ctx, &s, len - 1 - pe, 1));
                }
            }
            "wrap" => {
                if pb > len || pe > len {
                    return Err(n.unsupported("wrap padding wider than the axis"));
                }
                if pb > 0 {
                    // out[i] (i < pb) = in[len − pb + i]
                    let s = ctx.b.slice(&cur, &[0], &[pb], &[ai], &[1]);
                    terms.push(pad_axis(ctx, &s, len - pb, 0));
                }
                if pe > 0 {
                    // out[pb+len+j] = in[j]
                    let s = ctx
                        .b
                        .slice(&cur, &[pb + len], &[pb + len + pe], &[ai], &[1]);
                    terms.push(pad_axis(ctx, &s, 0, len - pe));
                }
            }
            other => return Err(n.unsupported(format!("Pad mode {other:?}"))),
        }
        cur = ctx.sum(&terms);
        cur_shape[a] = len as usize;
    }
    let _ = cur_shape;
    Ok(first_only(n, cur))
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    #[test]
    fn index_rules() {
        let x = &[4, 7][..];
        let mut cases = vec![
            Case::op("Slice")
                .input("x", x)
                .ints("s", &[1])
                .ints("e", &[5])
                .ints("a", &[1])
                .named("step 1"),
            Case::op("Slice")
                .input("x", x)
                .ints("s", &[0, 1])
                .ints("e", &[3, 7])
                .ints("a", &[0, 1])
                .ints("st", &[2, 3])
                .named("steps 2 3"),
            Case::op("Slice")
                .input("x", x)
                .ints("s", &[-1])
                .ints("e", &[i64::MIN])
                .ints("a", &[1])
                .ints("st", &[-1])
                .named("reverse"),
            Case::op("Slice")
                .input("x", x)
                .ints("s", &[6])
                .ints("e", &[0])
                .ints("a", &[1])
                .ints("st", &[-2])
                .named("step -2"),
            Case::op("Slice")
                .input("x", x)
                .ints("s", &[1, -3])
                .ints("e", &[100, -1])
                .named("clamped, no axes"),
            Case::op("Slice")
                .input("x", &[2, 3, 8])
                .ints("s", &[1])
                .ints("e", &[8])
                .ints("a", &[-1])
                .ints("st", &[3])
                .named("Swin-like stride 3"),
            Case::op("Gather")
                .input("x", &[5, 3])
                .ints_shaped("i", &[], &[2])
                .named("scalar index (class token)"),
            Case::op("Gather")
                .input("x", &[2, 5, 3])
                .ints("i", &[1, 2, 3])
                .attr(attrs::int("axis", 1))
                .named("contiguous"),
            Case::op("Gather")
                .input("x", &[2, 5, 3])
                .ints_shaped("i", &[2, 2], &[4, 0, 4, -1])
                .attr(attrs::int("axis", 1))
                .named("repeated, negative, 2-D"),
            Case::op("Gather")
                .input("x", &[5, 3])
                .ints("i", &[2, 0, 2])
                .attr(attrs::int("axis", -1))
                .named("last axis"),
            Case::graph("Gather runtime indices", 17, |b, dt| {
                // Indices computed at run time (ArgMax), so they cannot be folded.
                let x = b.input("x", dt, &[crate::Dim::Fixed(5), crate::Dim::Fixed(3)]);
                let i = b.op(
                    "ArgMax",
                    &[&x],
                    vec![attrs::int("axis", 1), attrs::int("keepdims", 0)],
                );
                let y = b.op("Gather", &[&x, &i], vec![]);
                b.output(&y, "y");
            }),
            Case::op("GatherElements")
                .input("x", &[3, 4])
                .ints_shaped("i", &[3, 2], &[0, 3, 1, 1, 2, 0])
                .attr(attrs::int("axis", 1)),
            Case::op("Concat")
                .input("a", &[2, 3])
                .input("b", &[2, 1])
                .input("c", &[2, 2])
                .attr(attrs::int("axis", 1)),
            Case::op("Concat")
                .input("a", &[2, 3])
                .weight("b", &[1, 3])
                .attr(attrs::int("axis", -2))
                .named("with constant"),
            Case::op("Split")
                .input("x", &[2, 6])
                .ints("s", &[1, 2, 3])
                .attr(attrs::int("axis", 1))
                .outputs(3)
                .named("sizes input"),
            Case::op("Split")
                .input("x", &[4, 3])
                .outputs(2)
                .named("even, opset 17"),
            Case::op("Split")
                .input("x", &[4, 3])
                .attr(attrs::int("num_outputs", 2))
                .outputs(2)
                .opset(18)
                .named("num_outputs (18)"),
            Case::op("Split")
                .input("x", &[2, 6])
                .ints("s", &[2, 4])
                .attr(attrs::int("axis", 1))
                .outputs(2)
                .of(&["y1"])
                .named("one output used"),
        ];
        for mode in ["constant", "edge", "reflect"] {
            cases.push(
                Case::op("Pad")
                    .input("x", &[2, 3, 4])
                    .ints("p", &[0, 1, 2, 0, 2, 1])
                    .attr(attrs::string("mode", mode))
                    .named(mode),
            );
            cases.push(
                Case::op("Pad")
                    .input("x", &[2, 3, 4])
                    .ints("p", &[2, 1, 3, 0])
                    .absent()
                    .ints("a", &[-1, 1])
                    .attr(attrs::string("mode", mode))
                    .opset(18)
                    .named(&format!("{mode} with axes (18)")),
            );
        }
        cases.push(
            Case::op("Pad")
                .input("x", &[2, 3, 4])
                .ints("p", &[0, 2, 1, 0, 3, 2])
                .attr(attrs::string("mode", "wrap"))
                .opset(19)
                .named("wrap (19)"),
        );
        cases.push(
            Case::op("Pad")
                .input("x", &[3, 5])
                .ints("p", &[-1, 2, 1, -2])
                .floats("v", &[], &[0.5])
                .named("negative pads, value"),
        );
        cases.extend([
            Case::op("GatherND")
                .input("x", &[3, 4])
                .ints_shaped("i", &[3, 2], &[0, 1, 2, 3, 0, 1])
                .named("repeated index"),
            Case::op("GatherND")
                .input("x", &[3, 4, 2])
                .ints_shaped("i", &[2, 1], &[2, 0])
                .named("row slices"),
            Case::op("ScatterND")
                .input("x", &[4, 3])
                .ints_shaped("i", &[2, 1], &[1, 3])
                .input("u", &[2, 3]),
            Case::op("ScatterND")
                .input("x", &[4, 3])
                .ints_shaped("i", &[2, 1], &[1, 1])
                .input("u", &[2, 3])
                .attr(attrs::string("reduction", "add"))
                .named("add"),
            Case::op("ScatterElements")
                .input("x", &[3, 4])
                .ints_shaped("i", &[3, 2], &[0, 2, 1, 3, 2, 0])
                .input("u", &[3, 2])
                .attr(attrs::int("axis", 1)),
            Case::op("ScatterElements")
                .input("x", &[3, 4])
                .ints_shaped("i", &[1, 4], &[2, 0, 2, 1])
                .input("u", &[1, 4])
                .attr(attrs::string("reduction", "add"))
                .named("add"),
            Case::op("CumSum")
                .input("x", &[2, 5])
                .ints_shaped("axis", &[], &[1]),
            Case::op("CumSum")
                .input("x", &[2, 5])
                .ints_shaped("axis", &[], &[-1])
                .attr(attrs::int("reverse", 1))
                .attr(attrs::int("exclusive", 1))
                .named("reverse exclusive"),
            Case::op("Trilu").input("x", &[3, 4]),
            Case::op("Trilu")
                .input("x", &[2, 3, 4])
                .ints_shaped("k", &[], &[1])
                .attr(attrs::int("upper", 0))
                .named("lower k=1"),
            Case::op("CenterCropPad")
                .input("x", &[5, 4, 3])
                .ints("shape", &[3, 7, 3])
                .opset(18)
                .named("crop, pad, keep"),
            Case::op("CenterCropPad")
                .input("x", &[2, 6, 5])
                .ints("shape", &[3, 3])
                .attr(attrs::ints("axes", &[-1, 1]))
                .opset(18)
                .named("odd crop, negative axes"),
            Case::op("TopK")
                .input("x", &[3, 5])
                .ints("k", &[2])
                .outputs(2)
                .of(&["y0"]),
            Case::op("TopK")
                .input("x", &[4, 3, 2])
                .ints("k", &[3])
                .attr(attrs::int("axis", 0))
                .attr(attrs::int("largest", 0))
                .outputs(2)
                .of(&["y0"])
                .named("smallest, axis 0"),
            Case::op("TopK")
                .input("x", &[2, 6])
                .ints("k", &[2])
                .outputs(2)
                .of(&["y0"])
                .opset(13)
                .named("opset 13"),
        ]);
        run_cases(cases);
    }
}
