//! Layout operators. With static shapes, every pure reshaping (Reshape, Flatten, Squeeze,
//! Unsqueeze) has the gradient "reshape back to the input's shape". Transpose: the inverse
//! permutation. Expand: sum over the broadcast axes. Tile: reshape to (reps, dim) pairs and sum
//! the reps. DepthToSpace/SpaceToDepth: the inverse reshape–transpose–reshape.

use super::{dy0, norm_axis};
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    for op in ["Reshape", "Flatten", "Squeeze", "Unsqueeze"] {
        r.add(op, reshape_back);
    }
    r.add("Transpose", transpose);
    r.add("Expand", expand);
    r.add("Tile", tile);
    r.add("DepthToSpace", depth_space);
    r.add("SpaceToDepth", depth_space);
}

fn first_only(n: &NodeProto, g: String) -> Vec<Option<String>> {
    let mut out = vec![None; n.input.len()];
    out[0] = Some(g);
    out
}

fn reshape_back(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let s = ctx.shape_i64(&n.input[0])?;
    let r = ctx.b.reshape(&g, &s);
    Ok(first_only(n, r))
}

fn transpose(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let r = ctx.shape(&n.input[0])?.len();
    let perm: Vec<usize> = match n.get_attr::<Vec<i64>>("perm")? {
        Some(p) => p
            .iter()
            .map(|&v| norm_axis(n, v, r))
            .collect::<Result<_>>()?,
        None => (0..r).rev().collect(),
    };
    let mut inv = vec![0i64; r];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i as i64;
    }
    Ok(first_only(n, ctx.b.transpose(&g, &inv)))
}

fn expand(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let r = ctx.unbroadcast_to(&g, &n.output[0], &n.input[0])?;
    Ok(first_only(n, r))
}

fn tile(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let xs = ctx.shape(&n.input[0])?;
    let reps = ctx.const_ints(n, 1, "repeats")?;
    if reps.iter().all(|&r| r == 1) {
        return Ok(first_only(n, g));
    }
    // [r0*d0, r1*d1, …] -> [r0, d0, r1, d1, …] -> sum over the r axes.
    let mut split = vec![];
    let mut axes = vec![];
    for (k, (&d, &r)) in xs.iter().zip(&reps).enumerate() {
        split.push(r);
        split.push(d as i64);
        if r != 1 {
            axes.push(2 * k as i64);
        }
    }
    let t = ctx.b.reshape(&g, &split);
    let s = ctx.b.reduce("ReduceSum", &t, &axes, false);
    let xs64: Vec<i64> = xs.iter().map(|&d| d as i64).collect();
    Ok(first_only(n, ctx.b.reshape(&s, &xs64)))
}

fn depth_space(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let b = n.attr_req::<i64>("blocksize")?;
    let (xs, ys) = (ctx.shape_i64(&n.input[0])?, ctx.shape_i64(&n.output[0])?);
    // Both take `mode`: DCR puts the block offset (i, j) before the channel c in the depth
    // axis, CRD after it. (SpaceToDepth has it since opset 28, still in development: ONNX
    // Runtime 1.31 refuses that opset, so only scripts/autodiff_bench/onnx_node_sweep.py checks
    // it, with the Python onnxruntime.)
    let crd = n.attr_or::<String>("mode", "DCR".into())? == "CRD";
    let r = if n.op_type == "DepthToSpace" {
        // y[n, c, h*b+i, w*b+j] = x[n, channel(i, j, c), h, w]
        let (nn, c, h, w) = (ys[0], ys[1], xs[2], xs[3]);
        let t = ctx.b.reshape(&g, &[nn, c, h, b, w, b]); // (n, c, h, i, w, j)
        let t = if crd {
            ctx.b.transpose(&t, &[0, 1, 3, 5, 2, 4]) // (n, c, i, j, h, w)
        } else {
            ctx.b.transpose(&t, &[0, 3, 5, 1, 2, 4]) // (n, i, j, c, h, w)
        };
        ctx.b.reshape(&t, &xs)
    } else {
        // SpaceToDepth: y[n, channel(i, j, c), h, w] = x[n, c, h*b+i, w*b+j]
        let (nn, c, h, w) = (xs[0], xs[1], ys[2], ys[3]);
        let t = if crd {
            let t = ctx.b.reshape(&g, &[nn, c, b, b, h, w]); // (n, c, i, j, h, w)
            ctx.b.transpose(&t, &[0, 1, 4, 2, 5, 3])
        } else {
            let t = ctx.b.reshape(&g, &[nn, b, b, c, h, w]); // (n, i, j, c, h, w)
            ctx.b.transpose(&t, &[0, 3, 4, 1, 5, 2])
        }; // (n, c, h, i, w, j)
        ctx.b.reshape(&t, &xs)
    };
    Ok(first_only(n, r))
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    #[test]
    fn layout_rules() {
        run_cases(vec![
            Case::op("Reshape")
                .input("x", &[2, 3, 4])
                .ints("s", &[0, -1]),
            Case::op("Flatten")
                .input("x", &[2, 3, 4])
                .attr(attrs::int("axis", 2)),
            Case::op("Squeeze")
                .input("x", &[2, 1, 4, 1])
                .ints("axes", &[1, -1])
                .named("axes input (13+)"),
            Case::op("Squeeze")
                .input("x", &[2, 1, 4])
                .opset(13)
                .named("no axes, opset 13"),
            Case::op("Squeeze")
                .input("x", &[2, 1, 4])
                .ints("axes", &[1])
                .opset(21)
                .named("opset 21"),
            Case::op("Unsqueeze")
                .input("x", &[2, 4])
                .ints("axes", &[0, 3]),
            Case::op("Transpose")
                .input("x", &[2, 3, 4])
                .attr(attrs::ints("perm", &[1, 2, 0])),
            Case::op("Transpose")
                .input("x", &[2, 3, 4])
                .named("default perm"),
            Case::op("Expand").input("x", &[3, 1]).ints("s", &[2, 3, 4]),
            Case::op("Tile").input("x", &[2, 3]).ints("r", &[2, 1]),
            Case::op("Tile")
                .input("x", &[2, 1, 3])
                .ints("r", &[1, 3, 2])
                .named("3-D"),
            Case::op("DepthToSpace")
                .input("x", &[1, 8, 2, 3])
                .attr(attrs::int("blocksize", 2))
                .named("DCR"),
            Case::op("DepthToSpace")
                .input("x", &[1, 8, 2, 3])
                .attr(attrs::int("blocksize", 2))
                .attr(attrs::string("mode", "CRD"))
                .named("CRD"),
            Case::op("SpaceToDepth")
                .input("x", &[1, 2, 4, 6])
                .attr(attrs::int("blocksize", 2)),
        ]);
    }
}
