//! Common-subexpression elimination: identical initializers are merged, Identity nodes are
//! bypassed, and nodes with the same operator, attributes and (merged) inputs are computed once.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::error::Result;
use crate::proto::{ModelProto, NodeProto};

/// Initializers up to this size are merged when identical.
const SMALL_CONST_BYTES: usize = 1 << 16;

fn is_random(op: &str) -> bool {
    op.starts_with("Random") || op == "Bernoulli" || op == "Multinomial" || op == "Dropout"
}

/// Run CSE; returns true if the graph changed.
pub fn eliminate_common_subexpressions(model: &mut ModelProto) -> Result<bool> {
    let graph = model.graph_mut()?;
    graph.sort_topologically()?;
    let outputs: HashSet<String> = graph.output.iter().map(|v| v.name.clone()).collect();
    let inputs: HashSet<String> = graph.input.iter().map(|v| v.name.clone()).collect();
    let mut rename: HashMap<String, String> = HashMap::new();
    let mut changed = false;

    // 1. Identical initializers (not overridable graph inputs).
    let mut seen_init: HashMap<(i32, Vec<i64>, Vec<u8>), String> = HashMap::new();
    let mut keep_init = vec![];
    for t in std::mem::take(&mut graph.initializer) {
        // Only small constants (the ones gradient rules emit) are compared: hashing every
        // weight of a big model on each round would cost more than it saves.
        if inputs.contains(&t.name)
            || outputs.contains(&t.name)
            || t.raw_data.len() > SMALL_CONST_BYTES
        {
            keep_init.push(t);
            continue;
        }
        let mut body = t.clone();
        body.name.clear();
        body.doc_string.clear();
        let key = (t.data_type, t.dims.clone(), body.encode_to_vec());
        match seen_init.get(&key) {
            Some(first) => {
                rename.insert(t.name.clone(), first.clone());
                changed = true;
            }
            None => {
                seen_init.insert(key, t.name.clone());
                keep_init.push(t);
            }
        }
    }
    graph.initializer = keep_init;

    // 2. Identity bypass and 3. node merging, in topological order.
    let producers: HashMap<String, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
        .collect();
    let mut seen_node: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    let mut keep = Vec::with_capacity(graph.node.len());
    // Identity(x) -> y where y is a graph output: rename x to y at its producer instead.
    let mut rename_out: HashMap<String, String> = HashMap::new();
    for n in &graph.node {
        if n.op_type == "Identity" && n.is_default_domain() && n.input.len() == 1 {
            let (x, y) = (&n.input[0], &n.output[0]);
            if outputs.contains(y)
                && producers.contains_key(x)
                && !outputs.contains(x)
                && !inputs.contains(x)
                && !rename_out.contains_key(x)
            {
                rename_out.insert(x.clone(), y.clone());
            }
        }
    }
    let resolve = |rename: &HashMap<String, String>, s: &str| -> String {
        let mut cur = s.to_string();
        let mut hops = 0;
        while let Some(next) = rename.get(&cur) {
            cur = next.clone();
            hops += 1;
            if hops > 1000 {
                break;
            }
        }
        cur
    };
    for mut n in std::mem::take(&mut graph.node) {
        for i in n.input.iter_mut() {
            if !i.is_empty() {
                let r = resolve(&rename, i);
                let r = rename_out.get(&r).cloned().unwrap_or(r);
                if *i != r {
                    *i = r;
                }
            }
        }
        for o in n.output.iter_mut() {
            if let Some(y) = rename_out.get(o) {
                *o = y.clone();
                changed = true;
            }
        }
        if n.op_type == "Identity" && n.is_default_domain() && n.input.len() == 1 {
            let (x, y) = (n.input[0].clone(), n.output[0].clone());
            if x == y {
                changed = true;
                continue; // bypassed by the output rename above
            }
            if !outputs.contains(&y) {
                rename.insert(y, x);
                changed = true;
                continue;
            }
        }
        if !is_random(&n.op_type)
            && !n.has_subgraphs()
            && !n.output.iter().any(|o| outputs.contains(o))
        {
            let key = node_key(&n);
            if let Some(prev) = seen_node.get(&key) {
                if prev.len() == n.output.len() {
                    for (o, p) in n.output.iter().zip(prev) {
                        if !o.is_empty() {
                            rename.insert(o.clone(), p.clone());
                        }
                    }
                    changed = true;
                    continue;
                }
            }
            seen_node.insert(key, n.output.clone());
        }
        keep.push(n);
    }
    // Producers merged away may have left empty (unused) output slots pointing at old names;
    // inputs are resolved above, graph outputs are never renamed.
    graph.node = keep;
    Ok(changed)
}

fn node_key(n: &NodeProto) -> Vec<u8> {
    let mut k = NodeProto {
        op_type: n.op_type.clone(),
        domain: if n.is_default_domain() {
            String::new()
        } else {
            n.domain.clone()
        },
        input: n.input.clone(),
        attribute: n.attribute.clone(),
        ..Default::default()
    };
    k.attribute.sort_by(|a, b| a.name.cmp(&b.name));
    let mut bytes = k.encode_to_vec();
    bytes.extend_from_slice(&(n.output.len() as u64).to_le_bytes());
    bytes
}
