//! Einsum equations: parsing shared by shape inference and the Einsum gradient rule.

/// An equation with every ellipsis spelled out: one string of letters per operand and the output.
#[derive(Debug, PartialEq)]
pub(crate) struct Equation {
    /// Each operand's subscripts.
    pub terms: Vec<Vec<char>>,
    /// The output's subscripts.
    pub out: Vec<char>,
}

/// Parse `equation` for operands of the given ranks (spaces ignored; implicit output = the
/// letters used exactly once, in alphabetical order, after the ellipsis dimensions).
pub(crate) fn parse(equation: &str, ranks: &[usize]) -> std::result::Result<Equation, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let raw: Vec<&str> = lhs.split(',').collect();
    if raw.len() != ranks.len() {
        return Err(format!(
            "the equation has {} operands, the node {}",
            raw.len(),
            ranks.len()
        ));
    }
    let used: Vec<char> = eq.chars().filter(char::is_ascii_alphabetic).collect();
    let mut spare = ('a'..='z').chain('A'..='Z').filter(|c| !used.contains(c));
    // Ellipsis dimensions align from the right, as numpy broadcasting does.
    let mut ell_len = 0;
    for (t, &rank) in raw.iter().zip(ranks) {
        let letters = t.chars().filter(char::is_ascii_alphabetic).count();
        if t.contains("...") {
            ell_len = ell_len.max(rank.saturating_sub(letters));
        } else if letters != rank {
            return Err(format!(
                "term \"{t}\" has {letters} letters for rank {rank}"
            ));
        }
    }
    let ell: Vec<char> = (0..ell_len)
        .map(|_| spare.next().ok_or("no letters left for the ellipsis"))
        .collect::<std::result::Result<_, _>>()?;
    let expand = |t: &str, k: usize| -> Vec<char> {
        let mut v = vec![];
        let (pre, post) = t.split_once("...").unwrap_or((t, ""));
        v.extend(pre.chars());
        if t.contains("...") {
            v.extend(&ell[ell_len - k..]);
        }
        v.extend(post.chars());
        v
    };
    let terms: Vec<Vec<char>> = raw
        .iter()
        .zip(ranks)
        .map(|(t, &rank)| {
            let letters = t.chars().filter(char::is_ascii_alphabetic).count();
            expand(t, rank.saturating_sub(letters))
        })
        .collect();
    let out = match rhs {
        Some(r) => expand(r, ell_len),
        None => {
            let mut once: Vec<char> = used
                .iter()
                .copied()
                .filter(|c| used.iter().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            ell.iter().copied().chain(once).collect()
        }
    };
    Ok(Equation { terms, out })
}

#[cfg(test)]
mod tests {
    use super::{parse, Equation};

    fn eq(terms: &[&str], out: &str) -> Equation {
        Equation {
            terms: terms.iter().map(|t| t.chars().collect()).collect(),
            out: out.chars().collect(),
        }
    }

    #[test]
    fn equations_are_spelled_out() {
        assert_eq!(
            parse("ij,jk->ik", &[2, 2]).unwrap(),
            eq(&["ij", "jk"], "ik")
        );
        // Implicit output: the letters used once (numpy: "bij,bjk" sums over b too).
        assert_eq!(
            parse("bij, bjk", &[3, 3]).unwrap(),
            eq(&["bij", "bjk"], "ik")
        );
        // Ellipses get letters of their own, aligned from the right.
        assert_eq!(
            parse("...ij,jk->...ik", &[4, 2]).unwrap(),
            eq(&["abij", "jk"], "abik")
        );
        assert_eq!(
            parse("...i,...i->...", &[3, 1]).unwrap(),
            eq(&["abi", "i"], "ab")
        );
        assert!(parse("ij,jk->ik", &[2]).unwrap_err().contains("2 operands"));
        assert!(parse("ijk->i", &[2]).unwrap_err().contains("rank 2"));
    }
}
