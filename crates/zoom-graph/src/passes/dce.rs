//! Dead-node elimination: nodes none of whose outputs reach a graph output are removed, then
//! initializers and value_info entries nobody uses. Graph inputs are never removed (they are
//! part of the model's interface).

use std::collections::HashSet;

use crate::error::Result;
use crate::proto::ModelProto;

/// Remove dead nodes and unused initializers; returns true if the graph changed.
pub fn eliminate_dead_nodes(model: &mut ModelProto) -> Result<bool> {
    let graph = model.graph_mut()?;
    let order = graph.topological_order()?;
    let mut live: HashSet<String> = graph.output.iter().map(|v| v.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for &i in order.iter().rev() {
        let n = &graph.node[i];
        if n.output.iter().any(|o| live.contains(o)) {
            keep[i] = true;
            live.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            live.extend(n.implicit_inputs());
        }
    }
    let before = (graph.node.len(), graph.initializer.len());
    let mut k = keep.into_iter();
    graph.node.retain(|_| k.next().unwrap_or(true));
    let inputs: HashSet<String> = graph.input.iter().map(|v| v.name.clone()).collect();
    graph
        .initializer
        .retain(|t| live.contains(&t.name) || inputs.contains(&t.name));
    graph.value_info.retain(|v| live.contains(&v.name));
    Ok((graph.node.len(), graph.initializer.len()) != before)
}
