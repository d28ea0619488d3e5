//! RotaryEmbedding (opset 23): rotary position embeddings (RoPE), as newer vision transformers
//! apply them to queries and keys.
//!
//! Each rotated pair of channels (interleaved, or the two halves of the rotary part) at a
//! position with angle θ is multiplied by the rotation [[cos θ, −sin θ], [sin θ, cos θ]]; the
//! channels past `rotary_embedding_dim` pass through. The transpose of a rotation is the
//! rotation by −θ, so the input gradient is the same operator applied to the cotangent with the
//! sine cache negated (same attributes, same position ids): one node, exact.

use super::dy0;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::error::Result;
use crate::proto::NodeProto;

pub(crate) fn register(r: &mut Registry) {
    r.add("RotaryEmbedding", rotary_embedding);
}

fn rotary_embedding(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    if need.get(1).copied().unwrap_or(false) || need.get(2).copied().unwrap_or(false) {
        return Err(n.unsupported(
            "gradient with respect to the cos/sin caches (they depend on the differentiated input)",
        ));
    }
    let g = dy0(n, dy)?;
    let sin = n.input_req(2)?;
    let neg_sin = ctx.b.neg(sin);
    let mut inputs: Vec<&str> = vec![&g, &n.input[1], &neg_sin];
    if let Some(p) = n.input_opt(3) {
        inputs.push(p);
    }
    let mut out = vec![None; n.input.len()];
    out[0] = Some(ctx.b.op("RotaryEmbedding", &inputs, n.attribute.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    /// x [batch, heads, seq, head_dim] or [batch, seq, heads·head_dim] (num_heads given); the
    /// caches are random (any angles), `position_ids` picks rows of them.
    fn rope(x: &[usize], half: usize, positions: Option<(&[usize], &[i64])>) -> Case {
        let (b, s) = if x.len() == 4 {
            (x[0], x[2])
        } else {
            (x[0], x[1])
        };
        let cache = match positions {
            Some(_) => vec![8, half],
            None => vec![b, s, half],
        };
        let mut c = Case::op("RotaryEmbedding")
            .input("x", x)
            .weight("cos_cache", &cache)
            .weight("sin_cache", &cache);
        if let Some((shape, ids)) = positions {
            c = c.ints_shaped("position_ids", shape, ids);
        }
        c.opset(23).float_only().linear()
    }

    #[test]
    fn rotary_embedding_rule() {
        let ids: &[i64] = &[0, 3, 5, 1, 2, 7];
        run_cases(vec![
            rope(&[1, 2, 3, 4], 2, Some((&[1, 3], &ids[..3]))).named("4-D, halves"),
            rope(&[1, 2, 3, 4], 2, Some((&[1, 3], &ids[..3])))
                .attr(attrs::int("interleaved", 1))
                .named("4-D, interleaved"),
            rope(&[2, 3, 8], 2, Some((&[2, 3], ids)))
                .attr(attrs::int("num_heads", 2))
                .named("3-D, 2 heads"),
            rope(&[1, 2, 3, 6], 2, Some((&[1, 3], &ids[..3])))
                .attr(attrs::int("rotary_embedding_dim", 4))
                .named("partial rotary dim"),
            rope(&[1, 2, 3, 6], 2, Some((&[1, 3], &ids[..3])))
                .attr(attrs::int("rotary_embedding_dim", 4))
                .attr(attrs::int("interleaved", 1))
                .named("partial rotary dim, interleaved"),
            rope(&[1, 2, 3, 4], 2, None).named("no position ids"),
        ]);
    }
}
