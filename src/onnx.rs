//! A read-only summary of an ONNX file: what `zoom inspect` prints and what zoom checks before it
//! hands a file to ONNX Runtime (so that "not ONNX" and "truncated" get messages that say so).

use prost::Message;
use std::collections::{BTreeMap, HashSet};
use zoom_graph::proto::{self, ModelProto};

/// One graph input or output as declared in the file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValueSummary {
    /// Tensor name.
    pub name: String,
    /// Element type name (`float32`, ...).
    pub dtype: String,
    /// Dimensions as written: numbers, symbolic names, or `?`.
    pub shape: Vec<String>,
}

/// What `zoom inspect` reports about a model file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    /// ONNX IR version.
    pub ir_version: i64,
    /// `(domain, version)` of every imported opset (`""` = the default ONNX domain).
    pub opsets: Vec<(String, i64)>,
    /// Producer name and version.
    pub producer: String,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueSummary>,
    /// Graph outputs.
    pub outputs: Vec<ValueSummary>,
    /// Operator type → count (`domain::Op` for non-default domains).
    pub op_histogram: BTreeMap<String, usize>,
    /// Number of nodes.
    pub node_count: usize,
    /// Number of parameters (elements of all initializers).
    pub parameter_count: u64,
    /// Bytes of parameter data (inline and external).
    pub parameter_bytes: u64,
    /// Whether some initializers live in external data files.
    pub has_external_data: bool,
    /// Operator types (as in `op_histogram`) that zoom has no gradient rule for and that can
    /// carry a gradient. If one lies between the image input and the output that `zoom
    /// diagnose` reads, the diagnosis falls back to finite differences.
    pub without_gradient_rule: Vec<String>,
}

fn without_gradient_rule(ops: &BTreeMap<String, usize>) -> Vec<String> {
    use zoom_graph::autodiff::registry::{is_non_differentiable, registry};
    ops.keys()
        .filter(|op| {
            // Non-default domains ("domain::Op") have no rules at all.
            op.contains("::") || (registry().get(op).is_none() && !is_non_differentiable(op))
        })
        .cloned()
        .collect()
}

fn value_summary(v: &proto::ValueInfoProto) -> ValueSummary {
    use proto::tensor_shape_proto::dimension::Value as Dim;
    let (dtype, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(t)) => (
            zoom_graph::DataType(t.elem_type).name().to_string(),
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(Dim::DimValue(v)) => v.to_string(),
                            Some(Dim::DimParam(p)) if !p.is_empty() => p.clone(),
                            _ => "?".into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ("non-tensor".into(), vec![]),
    };
    ValueSummary {
        name: v.name.clone(),
        dtype,
        shape,
    }
}

impl ModelSummary {
    /// Decodes and summarises a model. The error text says what is wrong with the file.
    pub fn parse(bytes: &[u8]) -> Result<ModelSummary, String> {
        let model = ModelProto::decode(bytes).map_err(|e| {
            format!("not a valid ONNX model (protobuf decoding failed: {e}); is the file truncated or of another format?")
        })?;
        Self::from_proto(&model)
    }

    /// Summarises a decoded model, checking that its graph is complete.
    pub fn from_proto(model: &ModelProto) -> Result<ModelSummary, String> {
        let graph = model
            .graph
            .as_ref()
            .ok_or("not an ONNX model: no graph (is it another protobuf format, or truncated?)")?;
        if model.ir_version <= 0 || graph.output.is_empty() {
            return Err(
                "not a complete ONNX model: missing IR version or graph outputs (truncated file?)"
                    .into(),
            );
        }
        // A file cut at a field boundary still decodes; a dangling edge is how it shows.
        let mut known: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        known.extend(graph.initializer.iter().map(|t| t.name.as_str()));
        known.insert("");
        for n in &graph.node {
            if let Some(missing) = n.input.iter().find(|i| !known.contains(i.as_str())) {
                return Err(format!(
                    "incomplete graph: node \"{}\" ({}) reads `{missing}`, which nothing defines (truncated file?)",
                    n.name, n.op_type
                ));
            }
            known.extend(n.output.iter().map(String::as_str));
        }
        if let Some(o) = graph
            .output
            .iter()
            .find(|o| !known.contains(o.name.as_str()))
        {
            return Err(format!(
                "incomplete graph: output `{}` is never computed (truncated file?)",
                o.name
            ));
        }
        let init_names: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut op_histogram = BTreeMap::new();
        for n in &graph.node {
            let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}::{}", n.domain, n.op_type)
            };
            *op_histogram.entry(key).or_insert(0) += 1;
        }
        let mut parameter_count = 0u64;
        let mut parameter_bytes = 0u64;
        let mut has_external_data = false;
        for t in &graph.initializer {
            let count: u64 = t.dims.iter().map(|&d| d.max(0) as u64).product();
            parameter_count += count;
            let width = zoom_graph::DataType(t.data_type).size_bytes().unwrap_or(0) as u64;
            parameter_bytes += count * width;
            has_external_data |= t.data_location == proto::data_location::EXTERNAL;
        }
        Ok(ModelSummary {
            ir_version: model.ir_version,
            opsets: model
                .opset_import
                .iter()
                .map(|o| (o.domain.clone(), o.version))
                .collect(),
            producer: format!("{} {}", model.producer_name, model.producer_version)
                .trim()
                .to_string(),
            inputs: graph
                .input
                .iter()
                .filter(|v| !init_names.contains(v.name.as_str()))
                .map(value_summary)
                .collect(),
            outputs: graph.output.iter().map(value_summary).collect(),
            node_count: graph.node.len(),
            without_gradient_rule: without_gradient_rule(&op_histogram),
            op_histogram,
            parameter_count,
            parameter_bytes,
            has_external_data,
        })
    }
}
