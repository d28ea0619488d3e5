//! Operators that pass the cotangent through: Identity, Dropout (inference), Cast between
//! float types (the cotangent is cast back).

use super::dy0;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    r.add("Identity", identity);
    r.add("Dropout", dropout);
    r.add("Cast", cast);
    r.add("CastLike", cast);
}

fn identity(
    _: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    Ok(vec![Some(dy0(n, dy)?)])
}

/// Dropout in inference mode is the identity. With a training_mode input that is not a
/// constant false, the mask would matter: not supported.
fn dropout(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    if let Some(t) = n.input_opt(2) {
        let training = ctx
            .const_value(t)
            .map(|v| v.to_i64s().first().copied().unwrap_or(0) != 0);
        if training != Some(false) {
            return Err(
                n.unsupported("Dropout in training mode (training_mode is not a constant false)")
            );
        }
    }
    let mut out = vec![None; n.input.len()];
    out[0] = Some(dy0(n, dy)?);
    Ok(out)
}

fn cast(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    _: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let x = &n.input[0];
    let dt = ctx.dtype(x)?;
    let g = if ctx.dtype(&n.output[0])? == dt {
        g
    } else {
        ctx.b.cast(&g, dt)
    };
    let mut out = vec![None; n.input.len()];
    out[0] = Some(g);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};
    use crate::DataType;

    #[test]
    fn passthrough_rules() {
        run_cases(vec![
            Case::op("Identity").input("x", &[2, 3]),
            Case::op("Dropout")
                .input("x", &[2, 3])
                .floats("ratio", &[], &[0.5]),
            Case::op("Dropout")
                .input("x", &[2, 3])
                .floats("ratio", &[], &[0.5])
                .attr(attrs::int("seed", 3))
                .outputs(2)
                .named("mask output"),
            Case::op("CastLike")
                .input("x", &[2, 3])
                .weight("like", &[1]),
            // Exported function bodies cast constants to the type of the input itself
            // (`CastLike(0.5, x)`): its `target_type` carries no gradient.
            Case::graph(
                "CastLike to the differentiated input's type",
                17,
                |b, dt| {
                    let x = b.input("x", dt, &[crate::Dim::Fixed(3)]);
                    let half = b.scalar(DataType::DOUBLE, 0.5);
                    let c = b.op("CastLike", &[&half, &x], vec![]);
                    let s = b.op("Sin", &[&x], vec![]);
                    let y = b.mul(&c, &s);
                    b.output(&y, "y");
                },
            ),
            Case::graph("Cast float->double->float", 17, |b, dt| {
                let x = b.input("x", dt, &[crate::Dim::Fixed(3)]);
                let c = b.cast(&x, DataType::DOUBLE);
                let s = b.op("Sin", &[&c], vec![]);
                let y = b.cast(&s, dt);
                b.output(&y, "y");
            })
            .float_only(),
        ]);
    }
}
