//! Einsum. Y = einsum(terms → out) is linear in each operand, so the gradient of operand k is
//! the einsum of the cotangent (subscripts `out`) with the other operands, producing operand k's
//! subscripts. A letter of operand k found nowhere else was summed away in the forward pass: the
//! gradient is constant along it, so it is left out of the einsum and restored by Unsqueeze and
//! Expand.
//!
//! Shapes are static here, so an ellipsis is rewritten into letters of its own
//! ([`crate::einsum::parse`]). Not supported
//! (clear errors): a letter repeated within one operand (diagonals) and broadcasting (one
//! letter or ellipsis dimension with different sizes in different operands).

use super::dy0;
use crate::attrs;
use crate::autodiff::ctx::VjpCtx;
use crate::autodiff::registry::Registry;
use crate::einsum::parse;
use crate::error::Result;
use crate::proto::NodeProto;
use std::collections::HashMap;

pub(crate) fn register(r: &mut Registry) {
    r.add("Einsum", einsum);
}

fn einsum(
    ctx: &mut VjpCtx,
    n: &NodeProto,
    dy: &[Option<String>],
    need: &[bool],
) -> Result<Vec<Option<String>>> {
    let g = dy0(n, dy)?;
    let equation = n.attr_req::<String>("equation")?;
    let shapes: Vec<Vec<usize>> = n
        .input
        .iter()
        .map(|x| ctx.shape(x))
        .collect::<Result<_>>()?;
    let ranks: Vec<usize> = shapes.iter().map(Vec::len).collect();
    let eq = parse(&equation, &ranks).map_err(|e| n.attr_error("equation", e))?;
    let mut size: HashMap<char, usize> = HashMap::new();
    for (term, shape) in eq.terms.iter().zip(&shapes) {
        for (k, (&c, &d)) in term.iter().zip(shape).enumerate() {
            if term[..k].contains(&c) {
                return Err(n.unsupported(format!(
                    "Einsum \"{equation}\": subscript {c} repeated within one operand (a diagonal)"
                )));
            }
            if *size.entry(c).or_insert(d) != d {
                return Err(n.unsupported(format!(
                    "Einsum \"{equation}\": subscript {c} has sizes {} and {d} (broadcasting)",
                    size[&c]
                )));
            }
        }
    }
    let text = |t: &[char]| t.iter().collect::<String>();
    let mut out = vec![None; n.input.len()];
    for (k, target) in eq.terms.iter().enumerate() {
        if !need[k] {
            continue;
        }
        let others: Vec<usize> = (0..n.input.len()).filter(|&j| j != k).collect();
        let reachable =
            |c: &char| eq.out.contains(c) || others.iter().any(|&j| eq.terms[j].contains(c));
        let kept: Vec<char> = target.iter().copied().filter(reachable).collect();
        let mut inputs = vec![g.clone()];
        inputs.extend(others.iter().map(|&j| n.input[j].clone()));
        let lhs: Vec<String> = std::iter::once(text(&eq.out))
            .chain(others.iter().map(|&j| text(&eq.terms[j])))
            .collect();
        let grad_eq = format!("{}->{}", lhs.join(","), text(&kept));
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut d = ctx
            .b
            .op("Einsum", &refs, vec![attrs::string("equation", &grad_eq)]);
        if kept.len() < target.len() {
            let missing: Vec<i64> = (0..target.len())
                .filter(|&i| !kept.contains(&target[i]))
                .map(|i| i as i64)
                .collect();
            d = ctx.b.unsqueeze(&d, &missing);
            let full: Vec<i64> = shapes[k].iter().map(|&v| v as i64).collect();
            d = ctx.b.expand(&d, &full);
        }
        out[k] = Some(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::attrs;
    use crate::autodiff::testing::{run_cases, Case};

    fn case(equation: &str, shapes: &[&[usize]]) -> Case {
        let mut c = Case::op("Einsum").attr(attrs::string("equation", equation));
        for (k, s) in shapes.iter().enumerate() {
            c = c.input(&format!("x{k}"), s);
        }
        c.named(equation)
    }

    #[test]
    fn diagonals_are_refused_by_name() {
        use crate::{DataType, GraphBuilder};
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[3.into(), 3.into()]);
        let d = b.op("Einsum", &[&x], vec![attrs::string("equation", "ii->i")]);
        b.output(&d, "diag");
        let e = crate::testutil::vjp_error(&b.build().unwrap(), "x").to_string();
        assert!(e.contains("Einsum") && e.contains("diagonal"), "{e}");
    }

    #[test]
    fn einsum_rule() {
        run_cases(vec![
            case("ij,jk->ik", &[&[2, 3], &[3, 4]]),
            case("bhqd,bhkd->bhqk", &[&[1, 2, 3, 4], &[1, 2, 5, 4]]),
            case("bij,bjk", &[&[2, 3, 4], &[2, 4, 2]]),
            case("...ij,jk->...ik", &[&[2, 2, 3, 4], &[4, 3]]),
            case("i,j->ij", &[&[3], &[4]]),
            case("ij->ji", &[&[2, 3]]),
            case("ijk->j", &[&[2, 3, 4]]),
            case("ij->", &[&[2, 3]]),
            case("ij,ij->i", &[&[2, 3], &[2, 3]]),
            case("ab,bc,cd->ad", &[&[2, 3], &[3, 2], &[2, 4]]),
        ]);
    }
}
