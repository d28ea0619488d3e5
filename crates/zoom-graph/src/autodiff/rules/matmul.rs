//! MatMul (numpy semantics: 1-D promotion, batch broadcasting) and Gemm.
//!
//! MatMul Y = A·B: dA = dY·Bᵀ, dB = Aᵀ·dY, with 1-D operands promoted to matrices and broadcast
//! batch dimensions summed back. No outer products are formed (two MatMuls per input at most).
//! Gemm Y = α·op(A)·op(B) + β·C: the same with the transposes folded into Gemm's flags.

use super::dy0;
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    r.add("MatMul", matmul);
    r.add("Gemm", gemm);
}

/// Swap the last two axes of a value of rank `rank` (≥ 2).
fn swap_last(ctx: &mut VjpCtx, v: &str, rank: usize) -> String {
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 1, rank - 2);
    ctx.b.transpose(v, &perm)
}

fn matmul(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (a, b) = (&n.input[0], &n.input[1]);
    let (sa, sb) = (ctx.shape(a)?, ctx.shape(b)?);
    // Promote 1-D operands.
    let mut pa = sa.clone();
    let mut pb = sb.clone();
    let (va, vb) = (sa.len() == 1, sb.len() == 1);
    if va {
        pa.insert(0, 1);
    }
    if vb {
        pb.push(1);
    }
    let batch = crate::shapes::broadcast_static(&pa[..pa.len() - 2], &pb[..pb.len() - 2])?;
    let (m, nn) = (pa[pa.len() - 2], pb[pb.len() - 1]);
    let mut py = batch.clone();
    py.push(m);
    py.push(nn);
    let gy = if va || vb {
        let s: Vec<i64> = py.iter().map(|&d| d as i64).collect();
        ctx.b.reshape(&g, &s)
    } else {
        g
    };
    let a2 = if va {
        ctx.b.reshape(a, &[1, sa[0] as i64])
    } else {
        a.clone()
    };
    let b2 = if vb {
        ctx.b.reshape(b, &[sb[0] as i64, 1])
    } else {
        b.clone()
    };
    let mut out = vec![None, None];
    if need[0] {
        let bt = swap_last(ctx, &b2, pb.len());
        let d = ctx.b.matmul(&gy, &bt);
        let mut ds = batch.clone();
        ds.push(m);
        ds.push(pa[pa.len() - 1]);
        let d = ctx.unbroadcast(&d, &ds, &pa);
        out[0] = Some(if va {
            ctx.b.reshape(&d, &[sa[0] as i64])
        } else {
            d
        });
    }
    if need[1] {
        let at = swap_last(ctx, &a2, pa.len());
        let d = ctx.b.matmul(&at, &gy);
        let mut ds = batch.clone();
        ds.push(pb[pb.len() - 2]);
        ds.push(nn);
        let d = ctx.unbroadcast(&d, &ds, &pb);
        out[1] = Some(if vb {
            ctx.b.reshape(&d, &[sb[0] as i64])
        } else {
            d
        });
    }
    Ok(out)
}

fn gemm(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let (a, b) = (&n.input[0], &n.input[1]);
    let alpha = n.attr_or::<f32>("alpha", 1.0)?;
    let beta = n.attr_or::<f32>("beta", 1.0)?;
    let ta = n.attr_or::<i64>("transA", 0)?;
    let tb = n.attr_or::<i64>("transB", 0)?;
    let gemm = |ctx: &mut VjpCtx, x: &str, y: &str, tx: i64, ty: i64| {
        ctx.b.op(
            "Gemm",
            &[x, y],
            vec![
                attrs::float("alpha", alpha),
                attrs::int("transA", tx),
                attrs::int("transB", ty),
            ],
        )
    };
    let mut out = vec![None; n.input.len()];
    if need[0] {
        out[0] = Some(if ta == 0 {
            // dA = α·dY·op(B)ᵀ
            gemm(ctx, &g, b, 0, 1 - tb)
        } else {
            // dA = (α·dY·op(B)ᵀ)ᵀ = α·op(B)·dYᵀ
            gemm(ctx, b, &g, tb, 1)
        });
    }
    if need[1] {
        out[1] = Some(if tb == 0 {
            // dB = α·op(A)ᵀ·dY
            gemm(ctx, a, &g, 1 - ta, 0)
        } else {
            // dB = α·dYᵀ·op(A)
            gemm(ctx, &g, a, 1, ta)
        });
    }
    if need.get(2).copied().unwrap_or(false) {
        let c = &n.input[2];
        let gs = ctx.shape(&n.output[0])?;
        let cs = ctx.shape(c)?;
        let t = if beta == 1.0 {
            g.clone()
        } else {
            let k = ctx.scalar(beta as f64, ctx.dtype(c)?);
            ctx.b.mul(&g, &k)
        };
        out[2] = Some(ctx.unbroadcast(&t, &gs, &cs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    #[test]
    fn matmul_rules() {
        let mut cases = vec![];
        for (a, b) in [
            (&[3, 4][..], &[4, 2][..]),
            (&[2, 3, 4], &[4, 5]),
            (&[3, 4], &[2, 4, 5]),
            (&[2, 1, 3, 4], &[3, 4, 2]),
            (&[4], &[4, 3]),
            (&[2, 3, 4], &[4]),
            (&[4], &[4]),
        ] {
            cases.push(
                Case::op("MatMul")
                    .input("a", a)
                    .input("b", b)
                    .named(&format!("{a:?}@{b:?}")),
            );
        }
        cases.push(
            Case::op("MatMul")
                .input("a", &[2, 3, 4])
                .weight("w", &[4, 5])
                .named("weight"),
        );
        for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let sa: &[usize] = if ta == 1 { &[4, 3] } else { &[3, 4] };
            let sb: &[usize] = if tb == 1 { &[5, 4] } else { &[4, 5] };
            cases.push(
                Case::op("Gemm")
                    .input("a", sa)
                    .input("b", sb)
                    .input("c", &[5])
                    .attr(attrs::int("transA", ta))
                    .attr(attrs::int("transB", tb))
                    .attr(attrs::float("alpha", 0.7))
                    .attr(attrs::float("beta", 1.3))
                    .named(&format!("transA {ta} transB {tb}")),
            );
        }
        cases.push(
            Case::op("Gemm")
                .input("a", &[3, 4])
                .weight("w", &[5, 4])
                .weight("bias", &[5])
                .attr(attrs::int("transB", 1))
                .named("linear layer"),
        );
        cases.push(
            Case::op("Gemm")
                .input("a", &[3, 4])
                .weight("w", &[4, 5])
                .input("c", &[3, 1])
                .named("c broadcast column"),
        );
        cases.push(
            Case::op("MatMul")
                .input("a", &[3, 4])
                .input("b", &[4, 2])
                .wrt(&["b"])
                .named("wrt b only"),
        );
        run_cases(cases);
    }
}
