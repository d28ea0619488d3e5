//! Constant folding: every node whose outputs are known at transformation time (all inputs
//! constant, or `Shape`/`Size` of a static shape) is replaced by initializers.
//!
//! Folding never materialises big broadcasts: an output larger than [`FoldLimits::max_elems`],
//! or more than four times larger than its largest constant input (and above 4096 elements),
//! stays a node (an `Expand` of a scalar is cheaper to keep than to store).

use std::collections::HashSet;

use crate::error::Result;
use crate::proto::ModelProto;
use crate::shapes::infer;

/// Size limits of constant folding.
#[derive(Debug, Clone, Copy)]
pub struct FoldLimits {
    /// Largest tensor (elements) folding evaluates or creates.
    pub max_elems: usize,
}

impl Default for FoldLimits {
    fn default() -> Self {
        // Transposes of weight matrices (e.g. 768×3072) are worth folding once.
        FoldLimits { max_elems: 1 << 23 }
    }
}

/// Fold constants; returns true if the graph changed.
pub fn fold_constants(model: &mut ModelProto, limits: FoldLimits) -> Result<bool> {
    let inf = infer(model, limits.max_elems)?;
    let graph = model.graph_mut()?;
    let outputs: HashSet<String> = graph.output.iter().map(|v| v.name.clone()).collect();
    let sizes = |name: &str| inf.consts.get(name).map(|t| t.len());
    let mut new_inits = vec![];
    let mut keep = Vec::with_capacity(graph.node.len());
    let mut changed = false;
    for node in std::mem::take(&mut graph.node) {
        let foldable = node.is_default_domain()
            && !node.has_subgraphs()
            && !node.output.is_empty()
            && node
                .output
                .iter()
                .all(|o| !o.is_empty() && inf.consts.contains_key(o) && !outputs.contains(o))
            && {
                let biggest_in = node
                    .input
                    .iter()
                    .filter_map(|i| sizes(i))
                    .max()
                    .unwrap_or(1);
                node.output.iter().all(|o| {
                    let n = sizes(o).unwrap_or(usize::MAX);
                    n <= limits.max_elems && (n <= 4096 || n <= 4 * biggest_in)
                })
            };
        if foldable {
            for o in &node.output {
                new_inits.push(inf.consts[o].to_proto(o));
            }
            changed = true;
        } else {
            keep.push(node);
        }
    }
    graph.node = keep;
    graph.initializer.extend(new_inits);
    Ok(changed)
}
