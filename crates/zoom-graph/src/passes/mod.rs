//! Clean-up passes run to a fixpoint after differentiation: constant folding ([`fold`]),
//! common-subexpression elimination ([`cse`], also merging identical constants and dropping
//! Identity nodes) and dead-node elimination ([`dce`]). Together they keep the gradient graph
//! from doing work that a forward pass would not (runtime transposes of weights, repeated
//! shape arithmetic, duplicate masks). [`conv_scale`] then folds constant channel scales of the
//! gradient into the weights of the convolutions that read them, and [`broadcast`] lets
//! broadcasting operators read small tensors that were expanded only for them.

pub mod broadcast;
pub mod conv_scale;
pub mod cse;
pub mod dce;
pub mod fold;

use crate::error::Result;
use crate::proto::ModelProto;

pub use fold::FoldLimits;

/// Run fold, CSE and DCE until nothing changes (at most 10 rounds), then sort topologically.
pub fn optimize(model: &mut ModelProto) -> Result<()> {
    optimize_with(model, FoldLimits::default())
}

/// [`optimize`] with explicit folding limits.
pub fn optimize_with(model: &mut ModelProto, limits: FoldLimits) -> Result<()> {
    for _ in 0..10 {
        let mut changed = fold::fold_constants(model, limits)?;
        changed |= cse::eliminate_common_subexpressions(model)?;
        changed |= dce::eliminate_dead_nodes(model)?;
        if !changed {
            break;
        }
    }
    model.graph_mut()?.sort_topologically()
}
