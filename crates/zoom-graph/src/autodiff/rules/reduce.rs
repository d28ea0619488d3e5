//! Reductions. With gk = the cotangent reshaped to keepdims form (so it broadcasts against x)
//! and yk = the output in keepdims form:
//!
//! ReduceSum: gk · ReduceMean: gk/N · ReduceSumSquare: 2·x·gk · ReduceL2: x·gk/yk ·
//! ReduceL1: sign(x)·gk · ReduceLogSumExp: gk·e^(x−yk) · ReduceLogSum: gk·e^(−yk) ·
//! ReduceMax/Min: gk shared equally by the elements equal to the extremum · ReduceProd: gk·Π of
//! the other elements (exact at zeros).
//!
//! `axes` is an attribute before opset 13 (ReduceSum) / 18 (the others) and an input after.

use super::{dy0, norm_axis};
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    for op in [
        "ReduceSum",
        "ReduceMean",
        "ReduceSumSquare",
        "ReduceL2",
        "ReduceL1",
        "ReduceLogSumExp",
        "ReduceLogSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
    ] {
        r.add(op, reduce);
    }
}

/// The reduced axes of a Reduce* node (empty result = "no-op").
pub(crate) fn reduce_axes(ctx: &VjpCtx, n: &NodeProto, rank: usize) -> Result<Option<Vec<usize>>> {
    let as_input = (n.op_type == "ReduceSum" && ctx.opset() >= 13) || ctx.opset() >= 18;
    let axes = if as_input {
        ctx.opt_const_ints(n, 1, "axes")?
    } else {
        n.get_attr::<Vec<i64>>("axes")?
    };
    let noop = n.attr_or::<i64>("noop_with_empty_axes", 0)? == 1;
    Ok(match axes {
        Some(a) if !a.is_empty() => Some(
            a.iter()
                .map(|&v| norm_axis(n, v, rank))
                .collect::<Result<_>>()?,
        ),
        _ if noop => None,
        _ => Some((0..rank).collect()),
    })
}

fn reduce(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (x, y) = (&n.input[0], &n.output[0]);
    let xs = ctx.shape(x)?;
    let dt = ctx.dtype(x)?;
    let mut out = vec![None; n.input.len()];
    let Some(axes) = reduce_axes(ctx, n, xs.len())? else {
        out[0] = Some(g); // noop_with_empty_axes: identity
        return Ok(out);
    };
    let keep = n.attr_or::<i64>("keepdims", 1)? == 1;
    let kept: Vec<i64> = (0..xs.len())
        .map(|i| if axes.contains(&i) { 1 } else { xs[i] as i64 })
        .collect();
    let (gk, yk) = if keep {
        (g, y.clone())
    } else {
        (ctx.b.reshape(&g, &kept), ctx.b.reshape(y, &kept))
    };
    let xs64: Vec<i64> = xs.iter().map(|&d| d as i64).collect();
    let expand = |ctx: &mut VjpCtx, v: &str| ctx.b.expand(v, &xs64);
    let d = match n.op_type.as_str() {
        "ReduceSum" => expand(ctx, &gk),
        "ReduceMean" => {
            let count: usize = axes.iter().map(|&a| xs[a]).product();
            let k = ctx.scalar(1.0 / count as f64, dt);
            let t = ctx.b.mul(&gk, &k);
            expand(ctx, &t)
        }
        "ReduceSumSquare" => {
            let two = ctx.scalar(2.0, dt);
            let t = ctx.b.mul(&gk, &two);
            ctx.b.mul(x, &t)
        }
        "ReduceL2" => {
            let t = ctx.b.div(&gk, &yk);
            ctx.b.mul(x, &t)
        }
        "ReduceL1" => {
            let s = ctx.b.op("Sign", &[x], vec![]);
            ctx.b.mul(&s, &gk)
        }
        "ReduceLogSumExp" => {
            let t = ctx.b.sub(x, &yk);
            let e = ctx.b.op("Exp", &[&t], vec![]);
            ctx.b.mul(&e, &gk)
        }
        "ReduceLogSum" => {
            // y = ln Σx, so every x gets g/Σx = g·e^(−y).
            let ny = ctx.b.neg(&yk);
            let e = ctx.b.op("Exp", &[&ny], vec![]);
            let t = ctx.b.mul(&e, &gk);
            expand(ctx, &t)
        }
        "ReduceMax" | "ReduceMin" => {
            let eq = ctx.b.op("Equal", &[x, &yk], vec![]);
            let m = ctx.b.cast(&eq, dt);
            let axes64: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
            let cnt = ctx.b.reduce("ReduceSum", &m, &axes64, true);
            let share = ctx.b.div(&gk, &cnt);
            ctx.b.mul(&m, &share)
        }
        "ReduceProd" => {
            // ∂y/∂xᵢ is the product of the other elements; y/xᵢ fails at 0. With P′ the
            // product of the non-zero elements and z the count of zeros: xᵢ gets gk·P′/xᵢ
            // when z = 0, the zero element gets gk·P′ when z = 1 (the others 0), everything
            // gets 0 when z ≥ 2; no division by zero on any path.
            let axes64: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
            let zero = ctx.scalar(0.0, dt);
            let one = ctx.scalar(1.0, dt);
            let is_zero = ctx.b.op("Equal", &[x, &zero], vec![]);
            let nonzero = ctx.b.where_(&is_zero, &one, x);
            let p = ctx.b.reduce("ReduceProd", &nonzero, &axes64, true);
            let zf = ctx.b.cast(&is_zero, dt);
            let zeros = ctx.b.reduce("ReduceSum", &zf, &axes64, true);
            let none = ctx.b.op("Equal", &[&zeros, &zero], vec![]);
            let none = ctx.b.cast(&none, dt);
            let single = ctx.b.op("Equal", &[&zeros, &one], vec![]);
            let single = ctx.b.cast(&single, dt);
            let others = ctx.b.div(&none, &nonzero); // 1/xᵢ where no zero
            let at_zero = ctx.b.mul(&single, &zf); // the lone zero
            let f = ctx.b.add(&others, &at_zero);
            let gp = ctx.b.mul(&gk, &p);
            ctx.b.mul(&gp, &f)
        }
        other => return Err(n.unsupported(format!("no reduction rule for {other}"))),
    };
    out[0] = Some(d);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case, Inputs};

    /// Random inputs never hit 0, where y/x fails: rows with no zero, one zero and two zeros.
    #[test]
    fn reduce_prod_at_zeros() {
        use crate::tensor::HostTensor;
        use crate::testutil::{vjp_wrt_inputs, Runner};
        use crate::{DataType, GraphBuilder};
        let mut b = GraphBuilder::new(18);
        let x = b.input("x", DataType::FLOAT, &[3.into(), 3.into()]);
        let axes = b.const_i64s(&[1]);
        let y = b.op("ReduceProd", &[&x, &axes], vec![attrs::int("keepdims", 0)]);
        b.output(&y, "y");
        let vjp = vjp_wrt_inputs(&b.build().unwrap());
        let x = HostTensor::float(
            DataType::FLOAT,
            vec![3, 3],
            vec![2.0, 3.0, 4.0, 0.0, 3.0, 4.0, 0.0, 3.0, 0.0],
        );
        let g = HostTensor::float(DataType::FLOAT, vec![3], vec![1.0, 1.0, 1.0]);
        let out = Runner::new(&vjp)
            .unwrap()
            .run(&[("x", &x), ("y_grad", &g)])
            .unwrap();
        assert_eq!(
            out["x_grad"].to_f64s(),
            [12.0, 8.0, 6.0, 12.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn reduce_rules() {
        let mut cases = vec![];
        for op in [
            "ReduceSum",
            "ReduceMean",
            "ReduceSumSquare",
            "ReduceL2",
            "ReduceL1",
            "ReduceLogSumExp",
            "ReduceLogSum",
            "ReduceMax",
            "ReduceMin",
        ] {
            let values = if op == "ReduceL1" {
                Inputs::away_from_zero()
            } else if op == "ReduceLogSum" {
                Inputs::positive()
            } else {
                Inputs::any()
            };
            for opset in [13, 18] {
                let axes_input = op == "ReduceSum" || opset >= 18;
                for keep in [0, 1] {
                    let mut c = Case::op(op)
                        .input("x", &[2, 3, 4])
                        .values(values)
                        .opset(opset);
                    c = if axes_input {
                        c.ints("axes", &[1, -1])
                    } else {
                        c.attr(attrs::ints("axes", &[1, -1]))
                    };
                    cases.push(
                        c.attr(attrs::int("keepdims", keep))
                            .named(&format!("opset {opset} keepdims {keep}")),
                    );
                }
            }
            cases.push(
                Case::op(op)
                    .input("x", &[2, 3])
                    .values(values)
                    .named("all axes"),
            );
        }
        cases.push(
            Case::op("ReduceSum")
                .input("x", &[2, 3])
                .attr(attrs::int("noop_with_empty_axes", 1))
                .named("noop"),
        );
        for keep in [0, 1] {
            cases.push(
                Case::op("ReduceProd")
                    .input("x", &[2, 3, 4])
                    .ints("axes", &[1])
                    .attr(attrs::int("keepdims", keep))
                    .opset(18)
                    .named(&format!("keepdims {keep}")),
            );
        }

        run_cases(cases);
    }
}
