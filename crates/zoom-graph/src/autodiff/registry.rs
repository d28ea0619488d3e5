//! Operator type → gradient rule. Each family file in `rules/` registers its operators in
//! `register`; an operator on the differentiated path without a rule becomes
//! [`crate::Error::UnsupportedOp`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::ctx::VjpCtx;
use crate::error::Result;
use crate::proto::NodeProto;

/// A gradient rule. Arguments: the context, the forward node, the cotangent of each output
/// (`None` = zero / not needed), and which inputs need a gradient. Returns one entry per input
/// (`None` where no gradient is produced); entries for inputs that need one must be `Some`.
pub type RuleFn =
    fn(&mut VjpCtx, &NodeProto, &[Option<String>], &[bool]) -> Result<Vec<Option<String>>>;

/// The rule table (default ONNX domain).
#[derive(Default)]
pub struct Registry {
    rules: BTreeMap<&'static str, RuleFn>,
}

impl Registry {
    /// Register `rule` for `op_type`.
    pub fn add(&mut self, op_type: &'static str, rule: RuleFn) {
        self.rules.insert(op_type, rule);
    }

    /// The rule for a default-domain operator.
    pub fn get(&self, op_type: &str) -> Option<RuleFn> {
        self.rules.get(op_type).copied()
    }

    /// Every operator with a rule, sorted.
    pub fn ops(&self) -> Vec<&'static str> {
        self.rules.keys().copied().collect()
    }
}

/// The registry with every family's rules.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = Registry::default();
        super::rules::register_all(&mut r);
        r
    })
}

/// Operators through which no gradient flows: their outputs are integers or booleans, or their
/// derivative is zero almost everywhere (Floor, Sign, …). Their outputs are never "active".
pub fn is_non_differentiable(op_type: &str) -> bool {
    matches!(
        op_type,
        "Shape"
            | "Size"
            | "Constant"
            | "ConstantOfShape"
            | "Range"
            | "Equal"
            | "Less"
            | "Greater"
            | "LessOrEqual"
            | "GreaterOrEqual"
            | "Not"
            | "And"
            | "Or"
            | "Xor"
            | "ArgMax"
            | "ArgMin"
            | "NonZero"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Sign"
            | "IsNaN"
            | "IsInf"
            | "OneHot"
            | "EyeLike"
            | "RandomNormal"
            | "RandomUniform"
            | "RandomNormalLike"
            | "RandomUniformLike"
            | "Multinomial"
            | "Bernoulli"
            | "Hardmax"
            | "BitShift"
            | "BitwiseAnd"
            | "BitwiseOr"
            | "BitwiseXor"
            | "BitwiseNot"
    )
}

/// Inputs whose values the result does not depend on: they give only their element type
/// (CastLike's `target_type`) or a ratio that inference-mode Dropout ignores. They get no
/// gradient even when they depend on a differentiated input.
pub fn carries_no_gradient(op_type: &str, input: usize) -> bool {
    matches!((op_type, input), ("CastLike", 1) | ("Dropout", 1))
}
