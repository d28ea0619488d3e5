//! Joining two models into one: a preprocessing prefix in front of a model ([`prepend`]), a loss
//! head after it ([`append`]), or any pair ([`compose`]).
//!
//! Each pair `(out, in)` of the io map feeds output `out` of the first model into input `in` of
//! the second (through an `Identity` named `in`, so the second graph is untouched). Names of the
//! first model that clash with names of the second are renamed; names that are part of the
//! result's interface (inputs, kept outputs) are never renamed silently: a clash is an error.
//! Inputs of both models with the same name and type become one shared input.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::model::{is_default_domain, NameGen};
use crate::proto::{attribute_type, GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
use crate::upgrade::upgrade_opset;

/// Options of [`compose`].
#[derive(Debug, Clone, Default)]
pub struct ComposeOptions {
    /// `(output of first, input of second)` connections.
    pub io_map: Vec<(String, String)>,
    /// Keep every output of the first model as an output of the result (true), or only those not
    /// connected to the second (false).
    pub keep_first_outputs: bool,
    /// Prefix for renamed names of the first model (default `"pre_"`).
    pub rename_prefix: Option<String>,
}

impl ComposeOptions {
    /// Options with the given connections.
    pub fn connect(pairs: &[(&str, &str)]) -> Self {
        ComposeOptions {
            io_map: pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

/// Put `prefix` in front of `model`: `io_map` pairs (prefix output, model input). The result's
/// inputs are the prefix's inputs plus the model's unconnected inputs; its outputs are the
/// model's outputs (and unconnected prefix outputs).
pub fn prepend(
    prefix: &ModelProto,
    model: &ModelProto,
    io_map: &[(&str, &str)],
) -> Result<ModelProto> {
    compose(prefix, model, &ComposeOptions::connect(io_map))
}

/// Put `suffix` after `model`: `io_map` pairs (model output, suffix input). The result keeps all
/// of the model's outputs and adds the suffix's outputs.
pub fn append(
    model: &ModelProto,
    suffix: &ModelProto,
    io_map: &[(&str, &str)],
) -> Result<ModelProto> {
    let mut opts = ComposeOptions::connect(io_map);
    opts.keep_first_outputs = true;
    compose(model, suffix, &opts)
}

/// Compose two models (see the module docs).
pub fn compose(
    first: &ModelProto,
    second: &ModelProto,
    opts: &ComposeOptions,
) -> Result<ModelProto> {
    // Models exported at different opsets are brought to the newer one first.
    let (first, second) = at_common_opset(first, second)?;
    let (first, second) = (first.as_ref(), second.as_ref());
    let g1 = first.graph_ref()?;
    let g2 = second.graph_ref()?;
    let opset_import = merge_opsets(first, second)?;

    // Validate the io map.
    let init2: HashSet<&str> = g2.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut connected_in: HashSet<&str> = HashSet::new();
    let mut connected_out: HashSet<&str> = HashSet::new();
    for (o, i) in &opts.io_map {
        let out = g1.output_info(o).ok_or_else(|| {
            Error::Compose(format!(
                "\"{o}\" is not an output of the first model (outputs: {})",
                list(g1.output.iter().map(|v| v.name.as_str()))
            ))
        })?;
        let inp = g2
            .input_info(i)
            .filter(|_| !init2.contains(i.as_str()))
            .ok_or_else(|| {
                Error::Compose(format!(
                    "\"{i}\" is not an input of the second model (inputs: {})",
                    list(g2.real_inputs().into_iter().map(|v| v.name.as_str()))
                ))
            })?;
        if let (Some(a), Some(b)) = (out.dtype(), inp.dtype()) {
            if a != b {
                return Err(Error::Compose(format!(
                    "output \"{o}\" is {a} but input \"{i}\" expects {b}"
                )));
            }
        }
        if !connected_in.insert(i) {
            return Err(Error::Compose(format!("input \"{i}\" is connected twice")));
        }
        connected_out.insert(o);
    }

    // Interface of the result.
    let inputs2: Vec<_> = g2
        .input
        .iter()
        .filter(|v| !connected_in.contains(v.name.as_str()))
        .cloned()
        .collect();
    let inputs2_by_name: HashMap<&str, &crate::proto::ValueInfoProto> =
        inputs2.iter().map(|v| (v.name.as_str(), v)).collect();
    let names2 = g2.all_names();

    let mut gen = NameGen::new(names2.iter().cloned().chain(g1.all_names()).collect());
    let prefix = opts.rename_prefix.clone().unwrap_or_else(|| "pre_".into());
    let mut rename: HashMap<String, String> = HashMap::new();
    let first_inputs: HashSet<&str> = g1
        .real_inputs()
        .into_iter()
        .map(|v| v.name.as_str())
        .collect();
    let mut shared_inputs: HashSet<String> = HashSet::new();
    let kept_first_outputs: Vec<&str> = g1
        .output
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| opts.keep_first_outputs || !connected_out.contains(n))
        .collect();

    for name in g1.all_names() {
        if !names2.contains(&name) {
            continue;
        }
        if first_inputs.contains(name.as_str()) {
            let a = g1.input_info(&name).and_then(|v| v.dtype());
            match inputs2_by_name.get(name.as_str()) {
                Some(v2) if v2.dtype() == a => {
                    shared_inputs.insert(name.clone());
                    continue;
                }
                _ => {
                    return Err(Error::Compose(format!(
                        "input \"{name}\" of the first model clashes with a name in the second \
                         model; rename one of them"
                    )))
                }
            }
        }
        if kept_first_outputs.contains(&name.as_str()) {
            return Err(Error::Compose(format!(
                "output \"{name}\" of the first model clashes with a name in the second model; \
                 rename one of them"
            )));
        }
        rename.insert(name.clone(), gen.fresh(&format!("{prefix}{name}")));
    }
    let rn = |n: &str| -> String { rename.get(n).cloned().unwrap_or_else(|| n.to_string()) };

    let mut g = GraphProto {
        name: format!("{}+{}", g1.name, g2.name),
        doc_string: g2.doc_string.clone(),
        ..Default::default()
    };
    // Inputs: the first's, then the second's unconnected ones not shared.
    for v in &g1.input {
        let mut v = v.clone();
        v.name = rn(&v.name);
        g.input.push(v);
    }
    for v in inputs2.iter().filter(|v| !shared_inputs.contains(&v.name)) {
        g.input.push(v.clone());
    }
    for t in &g1.initializer {
        let mut t = t.clone();
        t.name = rn(&t.name);
        g.initializer.push(t);
    }
    g.initializer.extend(g2.initializer.iter().cloned());
    g.sparse_initializer
        .extend(g2.sparse_initializer.iter().cloned());
    if !g1.sparse_initializer.is_empty() {
        return Err(Error::Compose(
            "the first model has sparse initializers; not supported".into(),
        ));
    }
    for n in &g1.node {
        g.node.push(rename_node(n, &rn));
    }
    for (o, i) in &opts.io_map {
        g.node.push(NodeProto {
            name: gen.fresh(&format!("connect_{i}")),
            op_type: "Identity".into(),
            input: vec![rn(o)],
            output: vec![i.clone()],
            ..Default::default()
        });
    }
    g.node.extend(g2.node.iter().cloned());
    for v in &g1.value_info {
        let mut v = v.clone();
        v.name = rn(&v.name);
        g.value_info.push(v);
    }
    // The connected second-model inputs keep their declared types as value_info.
    for v in g2
        .input
        .iter()
        .filter(|v| connected_in.contains(v.name.as_str()))
    {
        g.value_info.push(v.clone());
    }
    g.value_info.extend(g2.value_info.iter().cloned());
    for v in g1
        .output
        .iter()
        .filter(|v| kept_first_outputs.contains(&v.name.as_str()))
    {
        g.output.push(v.clone());
    }
    g.output.extend(g2.output.iter().cloned());

    let mut functions = first.functions.clone();
    for f in &second.functions {
        match functions
            .iter()
            .find(|x| x.name == f.name && x.domain == f.domain && x.overload == f.overload)
        {
            Some(x) if x == f => {}
            Some(_) => {
                return Err(Error::Compose(format!(
                    "both models define a different local function {}::{}",
                    f.domain, f.name
                )))
            }
            None => functions.push(f.clone()),
        }
    }
    let mut model = ModelProto {
        ir_version: first.ir_version.max(second.ir_version),
        opset_import,
        producer_name: second.producer_name.clone(),
        producer_version: second.producer_version.clone(),
        domain: second.domain.clone(),
        model_version: second.model_version,
        doc_string: second.doc_string.clone(),
        graph: Some(g),
        metadata_props: second.metadata_props.clone(),
        functions,
        ..Default::default()
    };
    model.graph_mut()?.sort_topologically()?;
    Ok(model)
}

fn list<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn rename_node(n: &NodeProto, rn: &dyn Fn(&str) -> String) -> NodeProto {
    let mut n = n.clone();
    for s in n.input.iter_mut().chain(n.output.iter_mut()) {
        if !s.is_empty() {
            *s = rn(s);
        }
    }
    if !n.name.is_empty() {
        n.name = rn(&n.name);
    }
    // Subgraphs may read outer-scope values by name.
    for a in n.attribute.iter_mut() {
        if a.r#type == attribute_type::GRAPH {
            if let Some(sub) = a.g.as_mut() {
                rename_outer_refs(sub, rn);
            }
        } else if a.r#type == attribute_type::GRAPHS {
            for sub in a.graphs.iter_mut() {
                rename_outer_refs(sub, rn);
            }
        }
    }
    n
}

fn rename_outer_refs(g: &mut GraphProto, rn: &dyn Fn(&str) -> String) {
    let local: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .chain(g.input.iter().map(|v| v.name.clone()))
        .chain(g.initializer.iter().map(|t| t.name.clone()))
        .collect();
    for n in g.node.iter_mut() {
        for s in n.input.iter_mut() {
            if !s.is_empty() && !local.contains(s) {
                *s = rn(s);
            }
        }
        for a in n.attribute.iter_mut() {
            if let Some(sub) = a.g.as_mut() {
                rename_outer_refs(sub, rn);
            }
            for sub in a.graphs.iter_mut() {
                rename_outer_refs(sub, rn);
            }
        }
    }
    for o in g.output.iter_mut() {
        if !local.contains(&o.name) {
            o.name = rn(&o.name);
        }
    }
}

/// Both models at the newer of their two default-domain opsets (see [`crate::upgrade`]).
fn at_common_opset<'a>(
    a: &'a ModelProto,
    b: &'a ModelProto,
) -> Result<(Cow<'a, ModelProto>, Cow<'a, ModelProto>)> {
    let (Some(va), Some(vb)) = (a.opset(""), b.opset("")) else {
        return Ok((Cow::Borrowed(a), Cow::Borrowed(b)));
    };
    let upgrade = |m: &ModelProto, to: i64, which: &str| {
        upgrade_opset(m, to).map_err(|e| {
            Error::Compose(format!(
                "the models use different ai.onnx opsets ({va} and {vb}) and the {which} one \
                 cannot be upgraded to {to}: {e}"
            ))
        })
    };
    Ok(match va.cmp(&vb) {
        std::cmp::Ordering::Equal => (Cow::Borrowed(a), Cow::Borrowed(b)),
        std::cmp::Ordering::Less => (Cow::Owned(upgrade(a, vb, "first")?), Cow::Borrowed(b)),
        std::cmp::Ordering::Greater => (Cow::Borrowed(a), Cow::Owned(upgrade(b, va, "second")?)),
    })
}

fn merge_opsets(a: &ModelProto, b: &ModelProto) -> Result<Vec<OperatorSetIdProto>> {
    let (va, vb) = (a.opset(""), b.opset(""));
    if let (Some(x), Some(y)) = (va, vb) {
        if x != y {
            return Err(Error::Compose(format!(
                "the models use different ai.onnx opsets ({x} and {y}); build the graph with \
                 GraphBuilder::for_model so both use the same one"
            )));
        }
    }
    let mut out: Vec<OperatorSetIdProto> = vec![];
    for o in a.opset_import.iter().chain(&b.opset_import) {
        let default = is_default_domain(&o.domain);
        match out.iter_mut().find(|x| {
            if default {
                is_default_domain(&x.domain)
            } else {
                x.domain == o.domain
            }
        }) {
            Some(x) if x.version == o.version => {}
            Some(x) => {
                return Err(Error::Compose(format!(
                    "the models import domain \"{}\" at different versions ({} and {})",
                    o.domain, x.version, o.version
                )))
            }
            None => out.push(o.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::{DataType, Dim};

    fn model(opset: i64, input: &str, output: &str, op: &str, const_name: &str) -> ModelProto {
        let mut b = GraphBuilder::new(opset);
        let x = b.input(input, DataType::FLOAT, &[Dim::Fixed(1), Dim::Fixed(3)]);
        let c = b.constant_f32(const_name, &[3], &[1.0, 2.0, 3.0]);
        let y = b.op(op, &[&x, &c], vec![]);
        b.output(&y, output);
        b.build().unwrap()
    }

    #[test]
    fn prepend_renames_clashes() {
        let pre = model(17, "image", "pixels", "Sub", "w");
        let m = model(17, "x", "logits", "Mul", "w");
        let c = prepend(&pre, &m, &[("pixels", "x")]).unwrap();
        let g = c.graph.as_ref().unwrap();
        assert_eq!(
            g.input.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            vec!["image"]
        );
        assert_eq!(
            g.output.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            vec!["logits"]
        );
        let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            inits.len(),
            2,
            "clashing initializer \"w\" was renamed: {inits:?}"
        );
        g.topological_order().unwrap();
    }

    #[test]
    fn errors_name_the_problem() {
        let pre = model(17, "image", "pixels", "Sub", "w");
        let m6 = model(6, "x", "logits", "Mul", "w");
        let e = prepend(&pre, &m6, &[("pixels", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("opsets (17 and 6)") && e.contains("cannot be upgraded"),
            "{e}"
        );
        let m = model(17, "x", "logits", "Mul", "w");
        let e = prepend(&pre, &m, &[("nope", "x")]).unwrap_err().to_string();
        assert!(
            e.contains("\"nope\" is not an output") && e.contains("pixels"),
            "{e}"
        );
        let e = prepend(&pre, &m, &[("pixels", "y")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"y\" is not an input"), "{e}");
    }

    #[test]
    fn models_at_different_opsets_meet_at_the_newer_one() {
        let pre = model(17, "image", "pixels", "Sub", "w");
        let m12 = model(12, "x", "logits", "Mul", "w");
        let c = prepend(&pre, &m12, &[("pixels", "x")]).unwrap();
        assert_eq!(c.default_opset().unwrap(), 17);
        let c = prepend(&m12, &pre, &[("logits", "image")]).unwrap();
        assert_eq!(c.default_opset().unwrap(), 17);
    }

    #[test]
    fn append_keeps_outputs_and_shares_inputs() {
        let m = model(17, "x", "logits", "Mul", "w");
        let head = model(17, "logits_in", "loss", "Add", "w");
        let c = append(&m, &head, &[("logits", "logits_in")]).unwrap();
        let g = c.graph.as_ref().unwrap();
        assert_eq!(
            g.output.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            vec!["logits", "loss"]
        );
        // Shared input: both take "x".
        let a = model(17, "x", "a", "Mul", "w1");
        let b = model(17, "x", "b", "Add", "w2");
        let c = compose(
            &a,
            &b,
            &ComposeOptions {
                keep_first_outputs: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.graph.as_ref().unwrap().input.len(), 1);
    }

    #[test]
    fn composed_model_runs_on_onnx_runtime() {
        use crate::tensor::HostTensor;
        use crate::testutil::Runner;
        // prefix: pixels = image - w ; model: logits = x * w ; head: loss = logits_in + w
        let pre = model(17, "image", "pixels", "Sub", "w");
        let m = model(17, "x", "logits", "Mul", "w");
        let head = model(17, "logits_in", "loss", "Add", "w");
        let c = append(
            &prepend(&pre, &m, &[("pixels", "x")]).unwrap(),
            &head,
            &[("logits", "logits_in")],
        )
        .unwrap();
        let mut r = Runner::new(&c).unwrap();
        let x = HostTensor::float(DataType::FLOAT, vec![1, 3], vec![1.0, 1.0, 1.0]);
        let out = r.run(&[("image", &x)]).unwrap();
        // (1 - w) * w + w with w = [1, 2, 3]
        assert_eq!(out["logits"].to_f64s(), vec![0.0, -2.0, -6.0]);
        assert_eq!(out["loss"].to_f64s(), vec![1.0, 0.0, -3.0]);
    }
}
