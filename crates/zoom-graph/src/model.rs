//! The IR: the protobuf messages themselves ([`ModelProto`], [`GraphProto`], [`Node`] =
//! [`NodeProto`], [`ValueInfoProto`]) plus the helpers a transformation needs: value types and
//! dimensions, opset look-up, topological order, producer/consumer maps, fresh names.
//!
//! Working on the messages directly (instead of converting to a separate IR and back) means a
//! read–transform–write round trip keeps every field the transformation did not touch.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::DataType;

/// A node of the graph (the protobuf message; helpers in [`crate::attrs`] and here).
pub type Node = NodeProto;

/// The default ONNX operator domain, as it may be spelled in a model.
pub fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named dynamic dimension (`dim_param`, e.g. `"batch"`).
    Param(String),
    /// A dynamic dimension without a name.
    Unknown,
}

impl Dim {
    /// The fixed size, if any.
    pub fn fixed(&self) -> Option<i64> {
        match self {
            Dim::Fixed(d) => Some(*d),
            _ => None,
        }
    }
}

impl From<i64> for Dim {
    fn from(d: i64) -> Self {
        Dim::Fixed(d)
    }
}

impl From<&str> for Dim {
    fn from(s: &str) -> Self {
        Dim::Param(s.to_string())
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Param(p) => f.write_str(p),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// Format a shape as `1x3x224x224` (`?` or the name for dynamic dimensions).
pub fn format_dims(dims: &[Dim]) -> String {
    if dims.is_empty() {
        return "scalar".into();
    }
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// Build a tensor-typed [`ValueInfoProto`]. `dims = None` leaves the shape (and rank) unknown.
pub fn tensor_value_info(name: &str, dtype: DataType, dims: Option<&[Dim]>) -> ValueInfoProto {
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Fixed(v) => Some(dimension::Value::DimValue(*v)),
                    Dim::Param(p) => Some(dimension::Value::DimParam(p.clone())),
                    Dim::Unknown => None,
                },
                denotation: String::new(),
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype.0,
                shape,
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
        metadata_props: vec![],
    }
}

impl ValueInfoProto {
    fn tensor_type(&self) -> Option<&type_proto::Tensor> {
        match self.r#type.as_ref()?.value.as_ref()? {
            type_proto::Value::TensorType(t) => Some(t),
            _ => None,
        }
    }

    /// The element type, if this is a tensor with a declared type.
    pub fn dtype(&self) -> Option<DataType> {
        self.tensor_type()
            .map(|t| DataType(t.elem_type))
            .filter(|d| *d != DataType::UNDEFINED)
    }

    /// The declared dimensions, `None` if the rank is unknown or this is not a tensor.
    pub fn dims(&self) -> Option<Vec<Dim>> {
        let shape = self.tensor_type()?.shape.as_ref()?;
        Some(
            shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v),
                    Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Param(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect(),
        )
    }

    /// True if this value is a tensor (the only kind zoom transforms).
    pub fn is_tensor(&self) -> bool {
        self.tensor_type().is_some()
    }
}

impl NodeProto {
    /// A name for messages: the node's name, or a description of an unnamed node.
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            self.name.clone()
        } else if let Some(out) = self.output.iter().find(|o| !o.is_empty()) {
            format!("<unnamed {} producing \"{out}\">", self.op_type)
        } else {
            format!("<unnamed {}>", self.op_type)
        }
    }

    /// Build an error about this node.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Node {
            node: self.label(),
            op_type: self.op_type.clone(),
            message: message.into(),
        }
    }

    /// Build an "unsupported variant" error about this node (gradient rules).
    pub fn unsupported(&self, message: impl Into<String>) -> Error {
        Error::UnsupportedVariant {
            node: self.label(),
            op_type: self.op_type.clone(),
            message: message.into(),
        }
    }

    /// Input `i` if present and not the empty "omitted optional input" name.
    pub fn input_opt(&self, i: usize) -> Option<&str> {
        self.input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Input `i`, or an error naming the node if it is absent.
    pub fn input_req(&self, i: usize) -> Result<&str> {
        self.input_opt(i)
            .ok_or_else(|| self.error(format!("missing input {i}")))
    }

    /// Names of outer-scope values read by this node's subgraphs (If/Loop/Scan bodies): the
    /// node depends on them although they are not in `input`.
    pub fn implicit_inputs(&self) -> Vec<String> {
        let mut out = vec![];
        for a in &self.attribute {
            for g in a.g.iter().chain(a.graphs.iter()) {
                collect_outer_refs(g, &mut out);
            }
        }
        out
    }

    /// True if the node has subgraph attributes.
    pub fn has_subgraphs(&self) -> bool {
        self.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    }

    /// True if the node is in the default ONNX domain.
    pub fn is_default_domain(&self) -> bool {
        is_default_domain(&self.domain)
    }
}

impl ModelProto {
    /// The imported version of an operator set (`""` and `"ai.onnx"` are the same domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let default = is_default_domain(domain);
        self.opset_import
            .iter()
            .filter(|o| {
                if default {
                    is_default_domain(&o.domain)
                } else {
                    o.domain == domain
                }
            })
            .map(|o| o.version)
            .max()
    }

    /// The default-domain opset version, or an error if the model imports none.
    pub fn default_opset(&self) -> Result<i64> {
        self.opset("").ok_or_else(|| {
            Error::InvalidModel("the model imports no default-domain (ai.onnx) opset".into())
        })
    }

    /// The graph, or an error if the model has none.
    pub fn graph_ref(&self) -> Result<&GraphProto> {
        self.graph
            .as_ref()
            .ok_or_else(|| Error::InvalidModel("the model has no graph".into()))
    }

    /// The graph (mutable), or an error if the model has none.
    pub fn graph_mut(&mut self) -> Result<&mut GraphProto> {
        self.graph
            .as_mut()
            .ok_or_else(|| Error::InvalidModel("the model has no graph".into()))
    }

    /// A new model around `graph` with the given default-domain opset (IR version chosen to
    /// match the opset, as ONNX Runtime checks that pairing).
    pub fn with_graph(graph: GraphProto, opset: i64) -> ModelProto {
        ModelProto {
            ir_version: ir_version_for_opset(opset),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "zoom-graph".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            ..Default::default()
        }
    }
}

/// The IR version that goes with a default-domain opset (the oldest IR that allows it).
pub fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        23 => 11,
        24 => 12,
        25..=27 => 13,
        _ => 14,
    }
}

impl GraphProto {
    /// The initializer called `name`.
    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.initializer.iter().find(|t| t.name == name)
    }

    /// The graph input called `name`.
    pub fn input_info(&self, name: &str) -> Option<&ValueInfoProto> {
        self.input.iter().find(|v| v.name == name)
    }

    /// The graph output called `name`.
    pub fn output_info(&self, name: &str) -> Option<&ValueInfoProto> {
        self.output.iter().find(|v| v.name == name)
    }

    /// Graph inputs that are real inputs (not also initializers, which old exporters list).
    pub fn real_inputs(&self) -> Vec<&ValueInfoProto> {
        let inits: HashSet<&str> = self.initializer.iter().map(|t| t.name.as_str()).collect();
        self.input
            .iter()
            .filter(|v| !inits.contains(v.name.as_str()))
            .collect()
    }

    /// Every value, node, initializer and I/O name used in the graph (for fresh-name generation).
    pub fn all_names(&self) -> HashSet<String> {
        let mut names = HashSet::new();
        for n in &self.node {
            names.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            names.extend(n.output.iter().filter(|s| !s.is_empty()).cloned());
            if !n.name.is_empty() {
                names.insert(n.name.clone());
            }
        }
        names.extend(self.initializer.iter().map(|t| t.name.clone()));
        names.extend(self.input.iter().map(|v| v.name.clone()));
        names.extend(self.output.iter().map(|v| v.name.clone()));
        names.extend(self.value_info.iter().map(|v| v.name.clone()));
        names
    }

    /// Map from value name to the index of the node producing it.
    pub fn producers(&self) -> HashMap<&str, usize> {
        let mut m = HashMap::new();
        for (i, n) in self.node.iter().enumerate() {
            for o in n.output.iter().filter(|s| !s.is_empty()) {
                m.insert(o.as_str(), i);
            }
        }
        m
    }

    /// Map from value name to the indices of the nodes consuming it (in node order, with repeats
    /// when a node uses the value twice).
    pub fn consumers(&self) -> HashMap<&str, Vec<usize>> {
        let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in self.node.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                m.entry(inp.as_str()).or_default().push(i);
            }
        }
        m
    }

    /// Node indices in a topological order (stable: keeps the file order where it is valid).
    /// Errors name a value used but never defined, a value defined twice, or a cycle.
    pub fn topological_order(&self) -> Result<Vec<usize>> {
        let mut defined: HashSet<&str> = HashSet::new();
        defined.extend(self.input.iter().map(|v| v.name.as_str()));
        defined.extend(self.initializer.iter().map(|t| t.name.as_str()));
        defined.extend(
            self.sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref().map(|v| v.name.as_str())),
        );
        let producers = self.producers();
        let mut seen_out: HashSet<&str> = HashSet::new();
        for n in &self.node {
            for o in n.output.iter().filter(|s| !s.is_empty()) {
                if !seen_out.insert(o.as_str()) || defined.contains(o.as_str()) {
                    return Err(Error::InvalidModel(format!(
                        "value \"{o}\" is defined more than once (in node \"{}\")",
                        n.label()
                    )));
                }
            }
        }
        // Kahn's algorithm with a queue ordered by original index.
        let n_nodes = self.node.len();
        let mut indeg = vec![0usize; n_nodes];
        let mut users: Vec<Vec<usize>> = vec![vec![]; n_nodes];
        for (i, n) in self.node.iter().enumerate() {
            let mut deps = HashSet::new();
            let implicit = n.implicit_inputs();
            for inp in n
                .input
                .iter()
                .filter(|s| !s.is_empty())
                .chain(implicit.iter())
            {
                if let Some(&p) = producers.get(inp.as_str()) {
                    if deps.insert(p) {
                        users[p].push(i);
                        indeg[i] += 1;
                    }
                } else if !defined.contains(inp.as_str()) && !outer_scope_ok(self, inp) {
                    return Err(Error::InvalidModel(format!(
                        "in node \"{}\" ({}): input \"{inp}\" is not a graph input, an \
                         initializer or the output of any node",
                        n.label(),
                        n.op_type
                    )));
                }
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n_nodes)
            .filter(|&i| indeg[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(n_nodes);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != n_nodes {
            let stuck = (0..n_nodes)
                .find(|&i| indeg[i] > 0)
                .map(|i| self.node[i].label());
            return Err(Error::InvalidModel(format!(
                "the graph has a cycle (involving node \"{}\")",
                stuck.unwrap_or_default()
            )));
        }
        Ok(order)
    }

    /// Reorder `node` topologically (see [`GraphProto::topological_order`]).
    pub fn sort_topologically(&mut self) -> Result<()> {
        let order = self.topological_order()?;
        let mut old: Vec<Option<NodeProto>> = std::mem::take(&mut self.node)
            .into_iter()
            .map(Some)
            .collect();
        self.node = order.into_iter().filter_map(|i| old[i].take()).collect();
        Ok(())
    }
}

fn collect_outer_refs(g: &GraphProto, out: &mut Vec<String>) {
    let mut local: HashSet<&str> = HashSet::new();
    local.extend(g.input.iter().map(|v| v.name.as_str()));
    local.extend(g.initializer.iter().map(|t| t.name.as_str()));
    for n in &g.node {
        local.extend(n.output.iter().map(String::as_str));
    }
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            if !local.contains(i.as_str()) {
                out.push(i.clone());
            }
        }
        for i in n.implicit_inputs() {
            if !local.contains(i.as_str()) {
                out.push(i);
            }
        }
    }
    for o in &g.output {
        if !local.contains(o.name.as_str()) {
            out.push(o.name.clone());
        }
    }
}

/// Subgraphs (If/Loop bodies) may use outer values; the top-level graph never does, so an
/// undefined name there is an error. This hook exists so subgraph checks can relax it later.
fn outer_scope_ok(_g: &GraphProto, _name: &str) -> bool {
    false
}

/// Generator of fresh, unique names that avoid every name already taken.
#[derive(Debug, Clone, Default)]
pub struct NameGen {
    taken: HashSet<String>,
    counters: HashMap<String, usize>,
}

impl NameGen {
    /// A generator avoiding `taken`.
    pub fn new(taken: HashSet<String>) -> Self {
        NameGen {
            taken,
            counters: HashMap::new(),
        }
    }

    /// A generator avoiding every name in `graph`.
    pub fn for_graph(graph: &GraphProto) -> Self {
        Self::new(graph.all_names())
    }

    /// Mark a name as taken. Returns false if it already was.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_string())
    }

    /// True if `name` is taken.
    pub fn is_taken(&self, name: &str) -> bool {
        self.taken.contains(name)
    }

    /// A fresh name starting with `base` (`base`, else `base_1`, `base_2`, …).
    pub fn fresh(&mut self, base: &str) -> String {
        if self.taken.insert(base.to_string()) {
            return base.to_string();
        }
        let counter = self.counters.entry(base.to_string()).or_insert(0);
        loop {
            *counter += 1;
            let candidate = format!("{base}_{counter}");
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
        }
    }
}
