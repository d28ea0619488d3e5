//! Shape and type inference.
//!
//! [`infer`] propagates element types and dimensions (fixed, named or unknown) through the graph
//! in topological order and evaluates small constant subgraphs on the way (so `Shape → Gather →
//! Concat → Reshape` chains resolve to constants once the input shapes are fixed).
//! [`fix_input_shapes`] turns dynamic input dimensions into fixed ones (from the caller's
//! `--shape NAME=d1xd2…`, else 1 with a warning): after it, every shape in a supported graph is
//! static, which is what the gradient rules need.
//!
//! Inference is lenient: an operator it does not know, or a node it cannot handle, leaves its
//! outputs unknown with the reason recorded, unless the model declares their types in
//! `value_info` (a caller can record every intermediate shape with one ONNX Runtime probe run
//! and write them there); an error is only raised by [`Inference::shape`] /
//! [`Inference::dtype`] when someone needs that value's shape.

use std::collections::HashMap;

use crate::error::{Error, Result, Warning};
use crate::eval::{broadcast_shapes, constant_value, eval_node, reshape_target, slice_params};
use crate::model::{format_dims, tensor_value_info};
use crate::proto::{ModelProto, NodeProto, TensorProto};
use crate::tensor::{numel, HostTensor};
use crate::{DataType, Dim};

/// Inferred type of one value: element type and (if the rank is known) dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueType {
    /// Element type.
    pub dtype: DataType,
    /// Dimensions, `None` if even the rank is unknown.
    pub dims: Option<Vec<Dim>>,
}

impl ValueType {
    /// A value type with fixed dimensions.
    pub fn fixed(dtype: DataType, dims: &[usize]) -> Self {
        ValueType {
            dtype,
            dims: Some(dims.iter().map(|&d| Dim::Fixed(d as i64)).collect()),
        }
    }

    /// The dimensions if all are fixed.
    pub fn static_dims(&self) -> Option<Vec<usize>> {
        self.dims
            .as_ref()?
            .iter()
            .map(|d| d.fixed().map(|v| v as usize))
            .collect()
    }
}

/// Result of [`infer`]: types, constant values and, for unknown values, why.
#[derive(Debug, Clone, Default)]
pub struct Inference {
    /// Type of every value whose type could be inferred.
    pub types: HashMap<String, ValueType>,
    /// Values known at transformation time (small initializers, Constant nodes, folded shape
    /// arithmetic), up to the size limit given to [`infer`].
    pub consts: HashMap<String, HostTensor>,
    /// For values without a known type or shape: the reason.
    pub failures: HashMap<String, String>,
}

impl Inference {
    /// The static shape of `name`, or an error saying why it is unknown.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match self.types.get(name).and_then(|t| t.static_dims()) {
            Some(s) => Ok(s),
            None => Err(Error::Shape(match (self.types.get(name), self.failures.get(name)) {
                (_, Some(why)) => format!("the shape of \"{name}\" is unknown: {why}"),
                (Some(t), None) => format!(
                    "the shape of \"{name}\" is not static ({}); fix dynamic dimensions with --shape",
                    t.dims.as_deref().map(format_dims).unwrap_or_else(|| "unknown rank".into())
                ),
                (None, None) => format!("no type is known for \"{name}\""),
            })),
        }
    }

    /// The element type of `name`.
    pub fn dtype(&self, name: &str) -> Result<DataType> {
        self.types.get(name).map(|t| t.dtype).ok_or_else(|| {
            Error::Shape(match self.failures.get(name) {
                Some(why) => format!("the type of \"{name}\" is unknown: {why}"),
                None => format!("no type is known for \"{name}\""),
            })
        })
    }
}

/// Initializers up to this many elements are decoded eagerly (shape constants, axes, scalars).
const EAGER_DECODE: usize = 4096;

/// Best-effort types of every value of `model` (dynamic dimensions kept symbolic).
pub fn infer_types(model: &ModelProto) -> HashMap<String, ValueType> {
    infer(model, 1 << 16).map(|i| i.types).unwrap_or_default()
}

/// Infer types and shapes of every value. Constants with at most `const_limit` elements are
/// evaluated (and recorded in [`Inference::consts`]). Fails only on a structurally invalid
/// graph (no graph, cycle, undefined input).
pub fn infer(model: &ModelProto, const_limit: usize) -> Result<Inference> {
    let graph = model.graph_ref()?;
    let opset = model.opset("").unwrap_or(21);
    let order = graph.topological_order()?;
    let mut inf = Inference::default();
    let mut initializers: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        initializers.insert(&t.name, t);
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        inf.types.insert(
            t.name.clone(),
            ValueType::fixed(DataType(t.data_type), &dims),
        );
        // Small initializers (axes, shapes, scalars) are decoded now; big ones (weights) only
        // when a node with all-constant inputs needs them.
        if numel(&dims) <= EAGER_DECODE.min(const_limit) {
            if let Ok(h) = HostTensor::from_proto(t) {
                inf.consts.insert(t.name.clone(), h);
            }
        }
    }
    for v in &graph.input {
        if initializers.contains_key(v.name.as_str()) {
            continue; // an initializer listed as input: its value is the default
        }
        match v.dtype() {
            Some(dtype) => {
                inf.types.insert(
                    v.name.clone(),
                    ValueType {
                        dtype,
                        dims: v.dims(),
                    },
                );
            }
            None => {
                inf.failures.insert(
                    v.name.clone(),
                    "the graph input declares no tensor type".into(),
                );
            }
        }
    }
    let declared: HashMap<&str, &crate::proto::ValueInfoProto> = graph
        .value_info
        .iter()
        .chain(graph.output.iter())
        .map(|v| (v.name.as_str(), v))
        .collect();
    for &i in &order {
        let node = &graph.node[i];
        // Decode big constant inputs only if every input of the node is constant.
        let all_const = node.input.iter().all(|n| {
            n.is_empty()
                || inf.consts.contains_key(n)
                || initializers.get(n.as_str()).is_some_and(|t| {
                    t.dims.iter().map(|&d| d.max(0) as usize).product::<usize>() <= const_limit
                })
        });
        if all_const && node.is_default_domain() && !node.input.is_empty() {
            for n in &node.input {
                if !n.is_empty() && !inf.consts.contains_key(n) {
                    if let Some(h) = initializers
                        .get(n.as_str())
                        .and_then(|t| HostTensor::from_proto(t).ok())
                    {
                        inf.consts.insert(n.clone(), h);
                    }
                }
            }
        }
        infer_one(node, opset, &mut inf, const_limit);
        // An output inference could not type (an operator it does not cover) takes its declared
        // type, if the model (or a caller that recorded shapes with a probe run) declares one,
        // so that inference continues downstream.
        for o in &node.output {
            if !o.is_empty() && !inf.types.contains_key(o) {
                if let Some(v) = declared.get(o.as_str()) {
                    if let Some(dtype) = v.dtype() {
                        inf.types.insert(
                            o.clone(),
                            ValueType {
                                dtype,
                                dims: v.dims(),
                            },
                        );
                        inf.failures.remove(o);
                    }
                }
            }
        }
    }
    // Declared value_info / outputs fill gaps (never override inferred facts).
    for v in graph.value_info.iter().chain(graph.output.iter()) {
        if !inf.types.contains_key(&v.name) {
            if let Some(dtype) = v.dtype() {
                inf.types.insert(
                    v.name.clone(),
                    ValueType {
                        dtype,
                        dims: v.dims(),
                    },
                );
            }
        }
    }
    Ok(inf)
}

fn infer_one(node: &NodeProto, opset: i64, inf: &mut Inference, const_limit: usize) {
    let types: Vec<Option<ValueType>> = node
        .input
        .iter()
        .map(|n| {
            if n.is_empty() {
                None
            } else {
                inf.types.get(n).cloned()
            }
        })
        .collect();
    let consts: Vec<Option<HostTensor>> = node
        .input
        .iter()
        .map(|n| {
            if n.is_empty() {
                None
            } else {
                inf.consts.get(n).cloned()
            }
        })
        .collect();
    // Unknown upstream: say so, naming the first unknown input.
    let missing = node
        .input
        .iter()
        .enumerate()
        .find(|(k, n)| !n.is_empty() && types[*k].is_none())
        .map(|(_, n)| n.clone());

    // Constant evaluation first: exact types and values when all inputs are known constants
    // (or, for Shape/Size, when the input's shape is static).
    let all_const = node
        .input
        .iter()
        .enumerate()
        .all(|(k, n)| n.is_empty() || consts[k].is_some());
    let shape_of_static = matches!(node.op_type.as_str(), "Shape" | "Size")
        && types
            .first()
            .and_then(|t| t.as_ref())
            .and_then(|t| t.static_dims())
            .is_some();
    if node.is_default_domain() && (all_const || shape_of_static) && node.op_type != "If" {
        let mut cin: Vec<Option<&HostTensor>> = consts.iter().map(|c| c.as_ref()).collect();
        if shape_of_static && cin.first().copied().flatten().is_none() {
            let t = types[0].as_ref().expect("checked");
            let dims = t.static_dims().expect("checked");
            // Only the shape matters to Shape/Size: no need to know the values.
            let out = if node.op_type == "Shape" {
                let r = dims.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let s = clampi(node.attr_or::<i64>("start", 0).unwrap_or(0));
                let e = clampi(node.attr_or::<i64>("end", r).unwrap_or(r));
                HostTensor::i64s(
                    &dims[s..e.max(s)]
                        .iter()
                        .map(|&d| d as i64)
                        .collect::<Vec<_>>(),
                )
            } else {
                HostTensor::int(DataType::INT64, vec![], vec![numel(&dims) as i64])
            };
            set_const(inf, node, 0, out);
            return;
        }
        let total: usize = cin.iter().flatten().map(|t| t.len()).sum();
        if total <= const_limit.max(16) {
            cin.truncate(node.input.len());
            match eval_node(node, opset, &cin) {
                Ok(Some(outs)) if outs.iter().all(|t| t.len() <= const_limit) => {
                    for (k, t) in outs.into_iter().enumerate() {
                        set_const(inf, node, k, t);
                    }
                    return;
                }
                Err(e) => {
                    for o in &node.output {
                        inf.failures.insert(o.clone(), e.to_string());
                    }
                    return;
                }
                _ => {}
            }
        }
    }
    let input = NodeIn {
        types: &types,
        consts: &consts,
    };
    match infer_node(node, opset, &input) {
        Ok(outs) => {
            for (k, o) in node.output.iter().enumerate() {
                if o.is_empty() {
                    continue;
                }
                match outs.get(k).cloned().flatten() {
                    Some(t) => {
                        inf.types.insert(o.clone(), t);
                    }
                    None => {
                        let why = match &missing {
                            Some(m) => format!(
                                "input \"{m}\" of node \"{}\" ({}) has an unknown type",
                                node.label(),
                                node.op_type
                            ),
                            None => format!(
                                "shape inference does not cover node \"{}\" ({})",
                                node.label(),
                                node.op_type
                            ),
                        };
                        inf.failures.insert(o.clone(), why);
                    }
                }
            }
        }
        Err(e) => {
            for o in &node.output {
                inf.failures.insert(o.clone(), e.to_string());
            }
        }
    }
}

fn set_const(inf: &mut Inference, node: &NodeProto, k: usize, t: HostTensor) {
    if let Some(o) = node.output.get(k).filter(|o| !o.is_empty()) {
        inf.types
            .insert(o.clone(), ValueType::fixed(t.dtype, &t.shape));
        inf.consts.insert(o.clone(), t);
    }
}

/// Fix every dynamic dimension of the graph inputs: from `spec` (input name → full shape),
/// else 1 with a warning. Fixed dimensions in the model must agree with `spec`. Unknown names in
/// `spec` are an error.
pub fn fix_input_shapes(
    model: &mut ModelProto,
    spec: &HashMap<String, Vec<i64>>,
) -> Result<Vec<Warning>> {
    let graph = model.graph_mut()?;
    let init: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    for name in spec.keys() {
        if !graph
            .input
            .iter()
            .any(|v| &v.name == name && !init.contains(name))
        {
            let names: Vec<&str> = graph
                .input
                .iter()
                .filter(|v| !init.contains(&v.name))
                .map(|v| v.name.as_str())
                .collect();
            return Err(Error::InvalidArgument(format!(
                "--shape names \"{name}\", which is not an input of the model (inputs: {})",
                names.join(", ")
            )));
        }
    }
    let mut warnings = vec![];
    for v in graph.input.iter_mut() {
        if init.contains(&v.name) {
            continue;
        }
        let Some(dtype) = v.dtype() else { continue };
        let declared = v.dims();
        let fixed: Vec<i64> = if let Some(s) = spec.get(&v.name) {
            if let Some(d) = &declared {
                if d.len() != s.len() {
                    return Err(Error::InvalidArgument(format!(
                        "--shape {}={} has rank {}, but the model declares rank {} ({})",
                        v.name,
                        s.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join("x"),
                        s.len(),
                        d.len(),
                        format_dims(d)
                    )));
                }
                for (k, (dd, &ss)) in d.iter().zip(s).enumerate() {
                    if let Some(f) = dd.fixed() {
                        if f != ss {
                            return Err(Error::InvalidArgument(format!(
                                "--shape {}: dimension {k} is {ss}, but the model fixes it to {f}",
                                v.name
                            )));
                        }
                    }
                }
            }
            if s.iter().any(|&x| x <= 0) {
                return Err(Error::InvalidArgument(format!(
                    "--shape {}: dimensions must be positive",
                    v.name
                )));
            }
            s.clone()
        } else {
            let Some(d) = declared else {
                return Err(Error::InvalidArgument(format!(
                    "input \"{}\" has no declared shape; give it with --shape {}=d1xd2x...",
                    v.name, v.name
                )));
            };
            let mut out = vec![];
            for (k, dd) in d.iter().enumerate() {
                match dd.fixed() {
                    Some(f) => out.push(f),
                    None => {
                        warnings.push(Warning::new(format!(
                            "input \"{}\": dynamic dimension {k} ({dd}) set to 1; use --shape {}=... to choose it",
                            v.name, v.name
                        )));
                        out.push(1);
                    }
                }
            }
            out
        };
        let dims: Vec<Dim> = fixed.iter().map(|&d| Dim::Fixed(d)).collect();
        *v = tensor_value_info(&v.name, dtype, Some(&dims));
    }
    Ok(warnings)
}

/// Parse a shape spec `NAME=d1xd2x...` (the `--shape` syntax).
pub fn parse_shape_spec(s: &str) -> Result<(String, Vec<i64>)> {
    let (name, dims) = s
        .rsplit_once('=')
        .ok_or_else(|| Error::InvalidArgument(format!("--shape {s:?}: expected NAME=d1xd2x...")))?;
    let dims: std::result::Result<Vec<i64>, _> = dims
        .split(['x', 'X', ','])
        .map(|d| d.trim().parse::<i64>())
        .collect();
    match dims {
        Ok(d) if !name.is_empty() && d.iter().all(|&x| x > 0) => Ok((name.to_string(), d)),
        _ => Err(Error::InvalidArgument(format!(
            "--shape {s:?}: expected NAME=d1xd2x... with positive integer dimensions"
        ))),
    }
}

// ----- per-operator inference ---------------------------------------------------------------

struct NodeIn<'a> {
    types: &'a [Option<ValueType>],
    consts: &'a [Option<HostTensor>],
}

impl NodeIn<'_> {
    fn ty(&self, i: usize) -> Option<&ValueType> {
        self.types.get(i).and_then(|t| t.as_ref())
    }
    fn dims(&self, i: usize) -> Option<&Vec<Dim>> {
        self.ty(i)?.dims.as_ref()
    }
    fn c(&self, i: usize) -> Option<&HostTensor> {
        self.consts.get(i).and_then(|t| t.as_ref())
    }
    fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.c(i).map(|t| t.to_i64s())
    }
}

fn vt(dtype: DataType, dims: Vec<Dim>) -> Option<ValueType> {
    Some(ValueType {
        dtype,
        dims: Some(dims),
    })
}

fn fx(v: i64) -> Dim {
    Dim::Fixed(v)
}

/// Broadcast symbolic shapes.
pub fn broadcast_dims(shapes: &[&[Dim]]) -> std::result::Result<Vec<Dim>, String> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![Dim::Fixed(1); r];
    for s in shapes {
        for (i, d) in s.iter().enumerate() {
            let oi = i + r - s.len();
            let cur = out[oi].clone();
            out[oi] = match (&cur, d) {
                (a, b) if a == b => a.clone(),
                (Dim::Fixed(1), b) => b.clone(),
                (a, Dim::Fixed(1)) => a.clone(),
                (Dim::Fixed(a), Dim::Fixed(b)) => {
                    return Err(format!(
                        "shapes {} cannot be broadcast (dimension {a} vs {b})",
                        shapes
                            .iter()
                            .map(|s| format_dims(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
                (Dim::Fixed(a), _) => Dim::Fixed(*a),
                (_, Dim::Fixed(b)) => Dim::Fixed(*b),
                _ => Dim::Unknown,
            };
        }
    }
    Ok(out)
}

fn norm(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    } else {
        Ok(a as usize)
    }
}

/// Padding of one spatial axis of a Conv/pool: (begin, end) from `auto_pad` or `pads`.
pub fn conv_pads(
    auto_pad: &str,
    input: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pads: (i64, i64),
) -> (i64, i64) {
    match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => {
            let out = (input + stride - 1) / stride;
            let total = ((out - 1) * stride + (kernel - 1) * dilation + 1 - input).max(0);
            if auto_pad == "SAME_UPPER" {
                (total / 2, total - total / 2)
            } else {
                (total - total / 2, total / 2)
            }
        }
        "VALID" => (0, 0),
        _ => pads,
    }
}

/// Output length of one spatial axis of a Conv/pool with explicit pads.
pub fn conv_out_len(
    input: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pads: (i64, i64),
    ceil_mode: bool,
) -> i64 {
    let eff = (kernel - 1) * dilation + 1;
    let num = input + pads.0 + pads.1 - eff;
    if ceil_mode {
        let mut out = (num + stride - 1).div_euclid(stride) + 1;
        // A last window that would start inside the end padding is dropped (as ORT/PyTorch do).
        if (out - 1) * stride >= input + pads.0 {
            out -= 1;
        }
        out
    } else {
        num.div_euclid(stride) + 1
    }
}

/// Padding of one spatial axis of a ConvTranspose (begin, end) given its output length.
/// When the padding is derived (from `output_shape` or `SAME_*`), the total is split as the
/// ONNX specification says (and ONNX Runtime 1.31 does, checked by the gradient tests): the
/// odd element goes to the end for SAME_UPPER and to the beginning otherwise. (Older ONNX
/// Runtime releases did the opposite.)
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose_pads(
    auto_pad: &str,
    input: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    output_padding: i64,
    pads: (i64, i64),
    output_len: Option<i64>,
) -> (i64, i64) {
    let full = stride * (input - 1) + output_padding + (kernel - 1) * dilation + 1;
    let same = matches!(auto_pad, "SAME_UPPER" | "SAME_LOWER");
    let distribute = |total: i64| {
        if auto_pad == "SAME_UPPER" {
            (total / 2, total - total / 2)
        } else {
            (total - total / 2, total / 2)
        }
    };
    match output_len {
        Some(out) => distribute((full - out).max(0)),
        None if same => distribute((full - input * stride).max(0)),
        None if auto_pad == "VALID" => (0, 0),
        None => pads,
    }
}

/// Attributes shared by Conv/ConvTranspose/pools, resolved for `n` spatial axes.
#[derive(Debug, Clone)]
pub struct ConvGeometry {
    /// Kernel size per spatial axis.
    pub kernel: Vec<i64>,
    /// Strides.
    pub strides: Vec<i64>,
    /// Dilations.
    pub dilations: Vec<i64>,
    /// `pads` attribute as (begin, end) per axis (before auto_pad resolution).
    pub pads: Vec<(i64, i64)>,
    /// `auto_pad` (NOTSET, SAME_UPPER, SAME_LOWER, VALID).
    pub auto_pad: String,
}

impl ConvGeometry {
    /// Read the geometry attributes of `node`; `kernel` comes from `kernel_shape` or the weight.
    pub fn read(node: &NodeProto, n: usize, weight_kernel: Option<Vec<i64>>) -> Result<Self> {
        let kernel = match node.get_attr::<Vec<i64>>("kernel_shape")? {
            Some(k) => k,
            None => weight_kernel
                .ok_or_else(|| node.attr_error("kernel_shape", "required but missing"))?,
        };
        if kernel.len() != n {
            return Err(node.attr_error(
                "kernel_shape",
                format!("has {} values for {n} spatial axes", kernel.len()),
            ));
        }
        let strides = node.attr_or::<Vec<i64>>("strides", vec![1; n])?;
        let dilations = node.attr_or::<Vec<i64>>("dilations", vec![1; n])?;
        let pads_v = node.attr_or::<Vec<i64>>("pads", vec![0; 2 * n])?;
        if strides.len() != n || dilations.len() != n || pads_v.len() != 2 * n {
            return Err(node.error(format!(
                "strides/dilations/pads do not match {n} spatial axes"
            )));
        }
        let auto_pad = node.attr_or::<String>("auto_pad", "NOTSET".into())?;
        Ok(ConvGeometry {
            kernel,
            strides,
            dilations,
            pads: (0..n).map(|i| (pads_v[i], pads_v[i + n])).collect(),
            auto_pad,
        })
    }

    /// Resolved (begin, end) pads of a Conv/pool for the given spatial input sizes.
    pub fn resolved_pads(&self, input: &[i64]) -> Vec<(i64, i64)> {
        (0..self.kernel.len())
            .map(|i| {
                conv_pads(
                    &self.auto_pad,
                    input[i],
                    self.kernel[i],
                    self.strides[i],
                    self.dilations[i],
                    self.pads[i],
                )
            })
            .collect()
    }
}

fn spatial(dims: &[Dim]) -> Option<Vec<i64>> {
    dims.get(2..)?.iter().map(|d| d.fixed()).collect()
}

fn infer_node(node: &NodeProto, opset: i64, inp: &NodeIn) -> Result<Vec<Option<ValueType>>> {
    if !node.is_default_domain() {
        return Ok(vec![]);
    }
    let err = |m: String| node.error(m);
    let op = node.op_type.as_str();
    let Some(t0) = inp.ty(0).cloned() else {
        return match op {
            "Constant" => Ok(vec![
                constant_value(node)?.map(|t| ValueType::fixed(t.dtype, &t.shape))
            ]),
            _ => Ok(vec![]),
        };
    };
    let dt = t0.dtype;
    let same = || Ok(vec![Some(t0.clone())]);
    let Some(d0) = t0.dims.clone() else {
        // Rank unknown: only the element type can be said for most operators.
        let dtype = match op {
            "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" => DataType::INT64,
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And"
            | "Or" | "Xor" | "IsNaN" | "IsInf" => DataType::BOOL,
            "Cast" => DataType(node.attr_req::<i64>("to")? as i32),
            "Where" => inp.ty(1).map(|t| t.dtype).unwrap_or(dt),
            _ => dt,
        };
        return Ok(vec![Some(ValueType { dtype, dims: None })]);
    };
    let r = d0.len();
    match op {
        "Identity"
        | "Neg"
        | "Abs"
        | "Sqrt"
        | "Exp"
        | "Log"
        | "Reciprocal"
        | "Erf"
        | "Relu"
        | "LeakyRelu"
        | "Sigmoid"
        | "Tanh"
        | "Softplus"
        | "Softsign"
        | "Elu"
        | "Selu"
        | "Celu"
        | "HardSigmoid"
        | "HardSwish"
        | "Gelu"
        | "Mish"
        | "ThresholdedRelu"
        | "Sin"
        | "Cos"
        | "Tan"
        | "Asin"
        | "Acos"
        | "Atan"
        | "Sinh"
        | "Cosh"
        | "Asinh"
        | "Acosh"
        | "Atanh"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
        | "Clip"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "LRN"
        | "CumSum"
        | "LpNormalization"
        | "MeanVarianceNormalization"
        | "InstanceNormalization"
        | "Shrink"
        | "Trilu"
        | "ScatterElements"
        | "ScatterND"
        | "Scatter"
        | "PRelu"
        | "GroupNormalization"
        | "RMSNormalization"
        | "Swish"
        | "RotaryEmbedding"
        | "BitwiseNot" => same(),
        "BatchNormalization" => Ok(vec![Some(t0.clone())]),
        "Dropout" => Ok(vec![Some(t0.clone()), vt(DataType::BOOL, d0)]),
        "IsNaN" | "IsInf" | "Not" => Ok(vec![vt(DataType::BOOL, d0)]),
        "LayerNormalization" => {
            let axis = norm(node.attr_or::<i64>("axis", -1)?, r).map_err(err)?;
            let stat: Vec<Dim> = (0..r)
                .map(|i| if i >= axis { fx(1) } else { d0[i].clone() })
                .collect();
            let stash = DataType(node.attr_or::<i64>("stash_type", 1)? as i32);
            Ok(vec![
                Some(t0.clone()),
                vt(stash, stat.clone()),
                vt(stash, stat),
            ])
        }
        "Cast" => Ok(vec![vt(DataType(node.attr_req::<i64>("to")? as i32), d0)]),
        "CastLike" => Ok(vec![vt(inp.ty(1).map(|t| t.dtype).unwrap_or(dt), d0)]),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Max" | "Min" | "Sum" | "Mean"
        | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => {
            let mut shapes: Vec<&[Dim]> = vec![];
            for i in 0..node.input.len() {
                match inp.dims(i) {
                    Some(d) => shapes.push(d),
                    None => return Ok(vec![]),
                }
            }
            let out = broadcast_dims(&shapes).map_err(err)?;
            let dtype = match op {
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
                | "Xor" => DataType::BOOL,
                _ => dt,
            };
            Ok(vec![vt(dtype, out)])
        }
        "Where" => {
            let (Some(a), Some(b)) = (inp.dims(1), inp.dims(2)) else {
                return Ok(vec![]);
            };
            let out = broadcast_dims(&[&d0, a, b]).map_err(err)?;
            Ok(vec![vt(inp.ty(1).map(|t| t.dtype).unwrap_or(dt), out)])
        }
        "Shape" => {
            let ri = r as i64;
            let clampi = |v: i64| (if v < 0 { v + ri } else { v }).clamp(0, ri);
            let s = clampi(node.attr_or::<i64>("start", 0)?);
            let e = clampi(node.attr_or::<i64>("end", ri)?);
            Ok(vec![vt(DataType::INT64, vec![fx((e - s).max(0))])])
        }
        "Size" => Ok(vec![vt(DataType::INT64, vec![])]),
        // Position ids in text towers: Range(0, sequence length, 1). The length is known only
        // when all three inputs are constants (then folding usually removed the node already).
        "Range" => {
            let len = match (inp.c(0), inp.c(1), inp.c(2)) {
                (Some(a), Some(b), Some(d)) => {
                    let (a, b, d) = (a.to_f64s()[0], b.to_f64s()[0], d.to_f64s()[0]);
                    if d == 0.0 {
                        return Err(err("Range delta is 0".into()));
                    }
                    fx(((b - a) / d).ceil().max(0.0) as i64)
                }
                _ => Dim::Unknown,
            };
            Ok(vec![vt(dt, vec![len])])
        }
        "ConstantOfShape" => {
            let dtype = match node.get_attr::<TensorProto>("value")? {
                Some(t) => DataType(t.data_type),
                None => DataType::FLOAT,
            };
            match inp.ints(0) {
                Some(s) => Ok(vec![vt(dtype, s.iter().map(|&d| fx(d)).collect())]),
                None => Ok(vec![Some(ValueType {
                    dtype,
                    dims: d0
                        .first()
                        .and_then(|d| d.fixed())
                        .map(|n| vec![Dim::Unknown; n as usize]),
                })]),
            }
        }
        "Reshape" => {
            let Some(target) = inp.ints(1) else {
                let rank = inp.dims(1).and_then(|d| d.first()).and_then(|d| d.fixed());
                return Ok(vec![Some(ValueType {
                    dtype: dt,
                    dims: rank.map(|n| vec![Dim::Unknown; n as usize]),
                })]);
            };
            let allowzero = node.attr_or::<i64>("allowzero", 0)? == 1;
            if let Some(s) = t0.static_dims() {
                let out = reshape_target(&s, &target, allowzero).ok_or_else(|| {
                    err(format!("cannot reshape {} to {target:?}", format_dims(&d0)))
                })?;
                return Ok(vec![Some(ValueType::fixed(dt, &out))]);
            }
            let dims = target
                .iter()
                .enumerate()
                .map(|(i, &t)| match t {
                    0 if !allowzero => d0.get(i).cloned().unwrap_or(Dim::Unknown),
                    t if t > 0 => fx(t),
                    _ => Dim::Unknown,
                })
                .collect();
            Ok(vec![vt(dt, dims)])
        }
        "Flatten" => {
            let axis = node.attr_or::<i64>("axis", 1)?;
            let a = if axis < 0 { axis + r as i64 } else { axis } as usize;
            let prod = |ds: &[Dim]| -> Dim {
                ds.iter()
                    .try_fold(1i64, |acc, d| d.fixed().map(|v| acc * v))
                    .map(fx)
                    .unwrap_or(Dim::Unknown)
            };
            Ok(vec![vt(
                dt,
                vec![prod(&d0[..a.min(r)]), prod(&d0[a.min(r)..])],
            )])
        }
        "Squeeze" => {
            let axes = if opset >= 13 {
                inp.ints(1)
            } else {
                node.get_attr::<Vec<i64>>("axes")?
            };
            let axes: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&v| norm(v, r))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(err)?,
                None => {
                    if node.input.len() > 1 && opset >= 13 {
                        return Ok(vec![Some(ValueType {
                            dtype: dt,
                            dims: None,
                        })]);
                    }
                    (0..r).filter(|&i| d0[i] == fx(1)).collect()
                }
            };
            Ok(vec![vt(
                dt,
                (0..r)
                    .filter(|i| !axes.contains(i))
                    .map(|i| d0[i].clone())
                    .collect(),
            )])
        }
        "Unsqueeze" => {
            let axes = if opset >= 13 {
                inp.ints(1)
            } else {
                node.get_attr::<Vec<i64>>("axes")?
            };
            let Some(axes) = axes else { return Ok(vec![]) };
            let ro = r + axes.len();
            let axes: Vec<usize> = axes
                .iter()
                .map(|&v| norm(v, ro))
                .collect::<std::result::Result<_, _>>()
                .map_err(err)?;
            let mut it = d0.iter();
            Ok(vec![vt(
                dt,
                (0..ro)
                    .map(|i| {
                        if axes.contains(&i) {
                            fx(1)
                        } else {
                            it.next().cloned().unwrap_or(fx(1))
                        }
                    })
                    .collect(),
            )])
        }
        "Transpose" => {
            let perm: Vec<usize> = match node.get_attr::<Vec<i64>>("perm")? {
                Some(p) => p
                    .iter()
                    .map(|&v| norm(v, r))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(err)?,
                None => (0..r).rev().collect(),
            };
            if perm.len() != r {
                return Err(
                    node.attr_error("perm", format!("has {} entries for rank {r}", perm.len()))
                );
            }
            Ok(vec![vt(dt, perm.iter().map(|&p| d0[p].clone()).collect())])
        }
        "Expand" => {
            let Some(s) = inp.ints(1) else {
                return Ok(vec![Some(ValueType {
                    dtype: dt,
                    dims: None,
                })]);
            };
            let target: Vec<Dim> = s.iter().map(|&d| fx(d)).collect();
            Ok(vec![vt(dt, broadcast_dims(&[&d0, &target]).map_err(err)?)])
        }
        "Tile" => {
            let Some(rep) = inp.ints(1) else {
                return Ok(vec![Some(ValueType {
                    dtype: dt,
                    dims: Some(vec![Dim::Unknown; r]),
                })]);
            };
            Ok(vec![vt(
                dt,
                d0.iter()
                    .zip(&rep)
                    .map(|(d, &k)| d.fixed().map(|v| fx(v * k)).unwrap_or(Dim::Unknown))
                    .collect(),
            )])
        }
        "Concat" => {
            let axis = norm(node.attr_req::<i64>("axis")?, r).map_err(err)?;
            let mut out = d0.clone();
            let mut total = Some(0i64);
            for i in 0..node.input.len() {
                let Some(d) = inp.dims(i) else {
                    return Ok(vec![]);
                };
                if d.len() != r {
                    return Err(err(format!(
                        "input {i} has rank {}, input 0 has rank {r}",
                        d.len()
                    )));
                }
                total = total.and_then(|t| d[axis].fixed().map(|v| t + v));
                for (k, dd) in d.iter().enumerate() {
                    if k != axis && out[k].fixed().is_none() && dd.fixed().is_some() {
                        out[k] = dd.clone();
                    }
                }
            }
            out[axis] = total.map(fx).unwrap_or(Dim::Unknown);
            Ok(vec![vt(dt, out)])
        }
        "Split" => {
            let axis = norm(node.attr_or::<i64>("axis", 0)?, r).map_err(err)?;
            let n = node.output.len();
            let sizes: Option<Vec<i64>> = if opset >= 13 {
                if node.input_opt(1).is_some() {
                    inp.ints(1)
                } else {
                    d0[axis].fixed().map(|d| split_even(d, n))
                }
            } else {
                match node.get_attr::<Vec<i64>>("split")? {
                    Some(s) => Some(s),
                    None => d0[axis].fixed().map(|d| split_even(d, n)),
                }
            };
            Ok((0..n)
                .map(|k| {
                    let mut d = d0.clone();
                    d[axis] = sizes
                        .as_ref()
                        .and_then(|s| s.get(k))
                        .map(|&v| fx(v))
                        .unwrap_or(Dim::Unknown);
                    vt(dt, d)
                })
                .collect())
        }
        "Slice" => {
            let (Some(starts), Some(ends)) = (inp.ints(1), inp.ints(2)) else {
                return Ok(vec![vt(dt, vec![Dim::Unknown; r])]);
            };
            let axes = match node.input_opt(3) {
                Some(_) => match inp.ints(3) {
                    Some(a) => a,
                    None => return Ok(vec![vt(dt, vec![Dim::Unknown; r])]),
                },
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match node.input_opt(4) {
                Some(_) => match inp.ints(4) {
                    Some(s) => s,
                    None => return Ok(vec![vt(dt, vec![Dim::Unknown; r])]),
                },
                None => vec![1; starts.len()],
            };
            let mut out = d0.clone();
            for k in 0..starts.len() {
                let ax = norm(axes[k], r).map_err(err)?;
                if steps[k] == 0 {
                    return Err(err("Slice step is 0".into()));
                }
                out[ax] = match d0[ax].fixed() {
                    Some(d) => fx(slice_params(starts[k], ends[k], steps[k], d as usize).2 as i64),
                    None => Dim::Unknown,
                };
            }
            Ok(vec![vt(dt, out)])
        }
        "Gather" => {
            let axis = norm(node.attr_or::<i64>("axis", 0)?, r).map_err(err)?;
            let Some(ind) = inp.dims(1) else {
                return Ok(vec![]);
            };
            let mut out = d0[..axis].to_vec();
            out.extend(ind.iter().cloned());
            out.extend(d0[axis + 1..].iter().cloned());
            Ok(vec![vt(dt, out)])
        }
        "GatherElements" => Ok(vec![vt(dt, inp.dims(1).cloned().unwrap_or_default())]),
        "GatherND" => {
            let Some(ind) = inp.dims(1) else {
                return Ok(vec![]);
            };
            let b = node.attr_or::<i64>("batch_dims", 0)? as usize;
            let Some(last) = ind.last().and_then(|d| d.fixed()) else {
                return Ok(vec![]);
            };
            let mut out = ind[..ind.len() - 1].to_vec();
            out.extend(d0[(b + last as usize).min(r)..].iter().cloned());
            Ok(vec![vt(dt, out)])
        }
        "Pad" => {
            let pads = if opset >= 11 {
                inp.ints(1)
            } else {
                node.get_attr::<Vec<i64>>("pads")?
            };
            let Some(pads) = pads else {
                return Ok(vec![vt(dt, vec![Dim::Unknown; r])]);
            };
            let axes: Vec<usize> = match node.input_opt(3) {
                Some(_) => match inp.ints(3) {
                    Some(a) => a
                        .iter()
                        .map(|&v| norm(v, r))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(err)?,
                    None => return Ok(vec![vt(dt, vec![Dim::Unknown; r])]),
                },
                None => (0..r).collect(),
            };
            let n = axes.len();
            if pads.len() != 2 * n {
                return Err(err(format!("pads has {} values for {n} axes", pads.len())));
            }
            let mut out = d0.clone();
            for (k, &ax) in axes.iter().enumerate() {
                out[ax] = d0[ax]
                    .fixed()
                    .map(|v| fx(v + pads[k] + pads[k + n]))
                    .unwrap_or(Dim::Unknown);
            }
            Ok(vec![vt(dt, out)])
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let b = node.attr_req::<i64>("blocksize")?;
            let f = |d: &Dim, g: &dyn Fn(i64) -> i64| {
                d.fixed().map(|v| fx(g(v))).unwrap_or(Dim::Unknown)
            };
            if r != 4 {
                return Err(err(format!("expects rank 4, got {r}")));
            }
            Ok(vec![vt(
                dt,
                if op == "DepthToSpace" {
                    vec![
                        d0[0].clone(),
                        f(&d0[1], &|v| v / (b * b)),
                        f(&d0[2], &|v| v * b),
                        f(&d0[3], &|v| v * b),
                    ]
                } else {
                    vec![
                        d0[0].clone(),
                        f(&d0[1], &|v| v * b * b),
                        f(&d0[2], &|v| v / b),
                        f(&d0[3], &|v| v / b),
                    ]
                },
            )])
        }
        "MatMul" => {
            let Some(d1) = inp.dims(1) else {
                return Ok(vec![]);
            };
            let (mut a, mut b) = (d0.clone(), d1.clone());
            let (va, vb) = (a.len() == 1, b.len() == 1);
            if va {
                a.insert(0, fx(1));
            }
            if vb {
                b.push(fx(1));
            }
            if a.len() < 2 || b.len() < 2 {
                return Err(err("MatMul of a scalar".into()));
            }
            let (ka, kb) = (&a[a.len() - 1], &b[b.len() - 2]);
            if let (Some(x), Some(y)) = (ka.fixed(), kb.fixed()) {
                if x != y {
                    return Err(err(format!(
                        "inner dimensions differ: {} @ {}",
                        format_dims(&d0),
                        format_dims(d1)
                    )));
                }
            }
            let batch = broadcast_dims(&[&a[..a.len() - 2], &b[..b.len() - 2]]).map_err(err)?;
            let mut out = batch;
            if !va {
                out.push(a[a.len() - 2].clone());
            }
            if !vb {
                out.push(b[b.len() - 1].clone());
            }
            Ok(vec![vt(dt, out)])
        }
        "Gemm" => {
            let Some(d1) = inp.dims(1) else {
                return Ok(vec![]);
            };
            let ta = node.attr_or::<i64>("transA", 0)? == 1;
            let tb = node.attr_or::<i64>("transB", 0)? == 1;
            if r != 2 || d1.len() != 2 {
                return Err(err("Gemm needs 2-D inputs".into()));
            }
            let m = if ta { d0[1].clone() } else { d0[0].clone() };
            let n = if tb { d1[0].clone() } else { d1[1].clone() };
            Ok(vec![vt(dt, vec![m, n])])
        }
        "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "LpPool" => {
            let n = r.saturating_sub(2);
            let wdims = if op.starts_with("Conv") {
                inp.dims(1).cloned()
            } else {
                None
            };
            let wk = wdims.as_ref().and_then(|w| spatial(w));
            let geo = ConvGeometry::read(node, n, wk)?;
            let Some(sp) = spatial(&d0) else {
                let mut out = vec![Dim::Unknown; r];
                out[0] = d0[0].clone();
                return Ok(vec![vt(dt, out)]);
            };
            let mut out = vec![d0[0].clone()];
            match op {
                "Conv" => {
                    out.push(wdims.as_ref().map(|w| w[0].clone()).unwrap_or(Dim::Unknown));
                    let pads = geo.resolved_pads(&sp);
                    for i in 0..n {
                        out.push(fx(conv_out_len(
                            sp[i],
                            geo.kernel[i],
                            geo.strides[i],
                            geo.dilations[i],
                            pads[i],
                            false,
                        )));
                    }
                }
                "ConvTranspose" => {
                    let g = node.attr_or::<i64>("group", 1)?;
                    out.push(
                        wdims
                            .as_ref()
                            .and_then(|w| w[1].fixed())
                            .map(|c| fx(c * g))
                            .unwrap_or(Dim::Unknown),
                    );
                    let op_pad = node.attr_or::<Vec<i64>>("output_padding", vec![0; n])?;
                    if let Some(os) = node.get_attr::<Vec<i64>>("output_shape")? {
                        let os = &os[os.len().saturating_sub(n)..];
                        out.extend(os.iter().map(|&v| fx(v)));
                    } else {
                        for i in 0..n {
                            let (pb, pe) = conv_transpose_pads(
                                &geo.auto_pad,
                                sp[i],
                                geo.kernel[i],
                                geo.strides[i],
                                geo.dilations[i],
                                op_pad[i],
                                geo.pads[i],
                                None,
                            );
                            out.push(fx(geo.strides[i] * (sp[i] - 1)
                                + op_pad[i]
                                + (geo.kernel[i] - 1) * geo.dilations[i]
                                + 1
                                - pb
                                - pe));
                        }
                    }
                }
                _ => {
                    out.push(d0[1].clone());
                    let ceil = node.attr_or::<i64>("ceil_mode", 0)? == 1;
                    let pads = geo.resolved_pads(&sp);
                    for i in 0..n {
                        let same = geo.auto_pad.starts_with("SAME");
                        out.push(fx(if same {
                            (sp[i] + geo.strides[i] - 1) / geo.strides[i]
                        } else {
                            conv_out_len(
                                sp[i],
                                geo.kernel[i],
                                geo.strides[i],
                                geo.dilations[i],
                                pads[i],
                                ceil,
                            )
                        }));
                    }
                }
            }
            let mut outs = vec![vt(dt, out.clone())];
            if op == "MaxPool" {
                outs.push(vt(DataType::INT64, out));
            }
            Ok(outs)
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let mut out = d0[..2.min(r)].to_vec();
            out.extend(std::iter::repeat_n(fx(1), r.saturating_sub(2)));
            Ok(vec![vt(dt, out)])
        }
        "Resize" | "Upsample" => {
            let out = resize_output_dims(node, opset, inp, &d0)?;
            Ok(vec![vt(dt, out)])
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => {
            let axes_as_input = (op == "ReduceSum" && opset >= 13) || opset >= 18;
            let axes = if axes_as_input {
                match node.input_opt(1) {
                    Some(_) => match inp.ints(1) {
                        Some(a) => Some(a),
                        None => {
                            return Ok(vec![Some(ValueType {
                                dtype: dt,
                                dims: None,
                            })])
                        }
                    },
                    None => None,
                }
            } else {
                node.get_attr::<Vec<i64>>("axes")?
            };
            let keep = node.attr_or::<i64>("keepdims", 1)? == 1;
            let noop = node.attr_or::<i64>("noop_with_empty_axes", 0)? == 1;
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .map(|&v| norm(v, r))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(err)?,
                _ if noop => return same(),
                _ => (0..r).collect(),
            };
            let out: Vec<Dim> = (0..r)
                .filter_map(|i| {
                    if axes.contains(&i) {
                        keep.then_some(fx(1))
                    } else {
                        Some(d0[i].clone())
                    }
                })
                .collect();
            Ok(vec![vt(dt, out)])
        }
        "ArgMax" | "ArgMin" => {
            let axis = norm(node.attr_or::<i64>("axis", 0)?, r).map_err(err)?;
            let keep = node.attr_or::<i64>("keepdims", 1)? == 1;
            let out: Vec<Dim> = (0..r)
                .filter_map(|i| {
                    if i == axis {
                        keep.then_some(fx(1))
                    } else {
                        Some(d0[i].clone())
                    }
                })
                .collect();
            Ok(vec![vt(DataType::INT64, out)])
        }
        "TopK" => {
            let axis = norm(node.attr_or::<i64>("axis", -1)?, r).map_err(err)?;
            let mut out = d0.clone();
            out[axis] = inp
                .ints(1)
                .and_then(|k| k.first().copied())
                .map(fx)
                .unwrap_or(Dim::Unknown);
            Ok(vec![vt(dt, out.clone()), vt(DataType::INT64, out)])
        }
        "OneHot" => {
            let axis = node.attr_or::<i64>("axis", -1)?;
            let ro = r + 1;
            let a = if axis < 0 { axis + ro as i64 } else { axis } as usize;
            let depth = inp
                .c(1)
                .map(|t| t.to_f64s()[0] as i64)
                .map(fx)
                .unwrap_or(Dim::Unknown);
            let mut out = d0.clone();
            out.insert(a.min(r), depth);
            Ok(vec![vt(
                inp.ty(2).map(|t| t.dtype).unwrap_or(DataType::FLOAT),
                out,
            )])
        }
        "Attention" => {
            // Y, present_key, present_value, qk_matmul_output (opset 23), without a KV cache.
            let (Some(dk), Some(dv)) = (inp.dims(1), inp.dims(2)) else {
                return Ok(vec![]);
            };
            if node.input.get(4).is_some_and(|s| !s.is_empty()) {
                return Ok(vec![]);
            }
            let heads = |d: &[Dim], attr: &str| -> Result<Option<(Dim, Dim, Dim)>> {
                // (heads, sequence, head size) of a 3-D or 4-D input.
                Ok(match d.len() {
                    4 => Some((d[1].clone(), d[2].clone(), d[3].clone())),
                    3 => {
                        let h = node.attr_req::<i64>(attr)?;
                        let size = match &d[2] {
                            Dim::Fixed(v) if h > 0 => fx(v / h),
                            _ => Dim::Unknown,
                        };
                        Some((fx(h), d[1].clone(), size))
                    }
                    _ => None,
                })
            };
            let (Some((hq, sq, _)), Some((hk, sk, dkh)), Some((_, _, dvh))) = (
                heads(&d0, "q_num_heads")?,
                heads(dk, "kv_num_heads")?,
                heads(dv, "kv_num_heads")?,
            ) else {
                return Ok(vec![]);
            };
            let b = d0[0].clone();
            let y = if d0.len() == 4 {
                vec![b.clone(), hq.clone(), sq.clone(), dvh.clone()]
            } else {
                let hidden = match (&hq, &dvh) {
                    (Dim::Fixed(h), Dim::Fixed(v)) => fx(h * v),
                    _ => Dim::Unknown,
                };
                vec![b.clone(), sq.clone(), hidden]
            };
            Ok(vec![
                vt(dt, y),
                vt(dt, vec![b.clone(), hk.clone(), sk.clone(), dkh]),
                vt(dt, vec![b.clone(), hk, sk.clone(), dvh]),
                vt(dt, vec![b, hq, sq, sk]),
            ])
        }
        "AffineGrid" => {
            // theta [N, k, k+1] and a constant size [N, C, (D,) H, W]: [N, (D,) H, W, k].
            let Some(size) = inp.ints(1) else {
                return Ok(vec![]);
            };
            let mut out = vec![d0[0].clone()];
            out.extend(size.iter().skip(2).map(|&v| fx(v)));
            out.push(fx(size.len().saturating_sub(2) as i64));
            Ok(vec![vt(dt, out)])
        }
        "GridSample" => {
            // [N, C, D1…] sampled at a grid [N, O1…, rank−2]: [N, C, O1…].
            let Some(dg) = inp.dims(1) else {
                return Ok(vec![]);
            };
            let mut out = d0[..2.min(d0.len())].to_vec();
            out.extend(dg[1..dg.len().saturating_sub(1)].iter().cloned());
            Ok(vec![vt(dt, out)])
        }
        "CenterCropPad" => {
            let Some(target) = inp.ints(1) else {
                return Ok(vec![]);
            };
            let r = d0.len();
            let axes: Vec<i64> = node
                .get_attr::<Vec<i64>>("axes")?
                .unwrap_or_else(|| (0..r as i64).collect());
            if axes.len() != target.len() {
                return Err(err(format!(
                    "{} axes but a target shape of {} dimensions",
                    axes.len(),
                    target.len()
                )));
            }
            let mut out = d0.clone();
            for (&a, &t) in axes.iter().zip(&target) {
                out[norm(a, r).map_err(err)?] = fx(t);
            }
            Ok(vec![vt(dt, out)])
        }
        "Einsum" => {
            let dims: Option<Vec<&Vec<Dim>>> = (0..node.input.len()).map(|k| inp.dims(k)).collect();
            let Some(dims) = dims else {
                return Ok(vec![]);
            };
            let ranks: Vec<usize> = dims.iter().map(|d| d.len()).collect();
            let eq = crate::einsum::parse(&node.attr_req::<String>("equation")?, &ranks)
                .map_err(|e| node.attr_error("equation", e))?;
            // Each output letter's size, from any operand where it is not a broadcast 1.
            let size_of = |c: char| {
                let mut found = None;
                for (term, d) in eq.terms.iter().zip(&dims) {
                    for (&l, dim) in term.iter().zip(d.iter()) {
                        if l == c && (found.is_none() || *dim != Dim::Fixed(1)) {
                            found = Some(dim.clone());
                        }
                    }
                }
                found.unwrap_or(Dim::Unknown)
            };
            Ok(vec![vt(dt, eq.out.iter().map(|&c| size_of(c)).collect())])
        }
        _ => Ok(vec![]),
    }
}

fn split_even(d: i64, n: usize) -> Vec<i64> {
    let n = n.max(1) as i64;
    let chunk = (d + n - 1) / n;
    (0..n).map(|k| (d - k * chunk).clamp(0, chunk)).collect()
}

/// Output dims of Resize (opset 11+: roi, scales, sizes inputs; opset 18 `axes`).
fn resize_output_dims(node: &NodeProto, opset: i64, inp: &NodeIn, d0: &[Dim]) -> Result<Vec<Dim>> {
    let r = d0.len();
    if node.op_type == "Upsample" || opset < 11 {
        let scales = if node.op_type == "Upsample" && opset >= 9 || node.op_type == "Resize" {
            inp.c(1).map(|t| t.to_f64s())
        } else {
            node.get_attr::<Vec<f32>>("scales")?
                .map(|v| v.iter().map(|&x| x as f64).collect())
        };
        let Some(s) = scales else {
            return Ok(vec![Dim::Unknown; r]);
        };
        return Ok(d0
            .iter()
            .zip(&s)
            .map(|(d, &k)| {
                d.fixed()
                    .map(|v| fx((v as f64 * k).floor() as i64))
                    .unwrap_or(Dim::Unknown)
            })
            .collect());
    }
    let axes: Vec<usize> = match node.get_attr::<Vec<i64>>("axes")? {
        Some(a) => a
            .iter()
            .map(|&v| norm(v, r))
            .collect::<std::result::Result<_, _>>()
            .map_err(|m| node.error(m))?,
        None => (0..r).collect(),
    };
    let sizes = node
        .input_opt(3)
        .and_then(|_| inp.ints(3))
        .filter(|s| !s.is_empty());
    let scales = node
        .input_opt(2)
        .and_then(|_| inp.c(2))
        .map(|t| t.to_f64s())
        .filter(|s| !s.is_empty());
    let mut out = d0.to_vec();
    if let Some(sizes) = sizes {
        if sizes.len() != axes.len() {
            return Err(node.error(format!(
                "sizes has {} values for {} axes",
                sizes.len(),
                axes.len()
            )));
        }
        let policy = node.attr_or::<String>("keep_aspect_ratio_policy", "stretch".into())?;
        if policy == "stretch" {
            for (k, &a) in axes.iter().enumerate() {
                out[a] = fx(sizes[k]);
            }
        } else {
            let ins: Option<Vec<i64>> = axes.iter().map(|&a| d0[a].fixed()).collect();
            let Some(ins) = ins else {
                return Ok(vec![Dim::Unknown; r]);
            };
            let ratios = sizes.iter().zip(&ins).map(|(&s, &i)| s as f64 / i as f64);
            let scale = if policy == "not_larger" {
                ratios.fold(f64::INFINITY, f64::min)
            } else {
                ratios.fold(0.0, f64::max)
            };
            for (k, &a) in axes.iter().enumerate() {
                out[a] = fx((scale * ins[k] as f64).round() as i64);
            }
        }
        return Ok(out);
    }
    if let Some(scales) = scales {
        if scales.len() != axes.len() {
            return Err(node.error(format!(
                "scales has {} values for {} axes",
                scales.len(),
                axes.len()
            )));
        }
        for (k, &a) in axes.iter().enumerate() {
            out[a] = d0[a]
                .fixed()
                .map(|v| fx((v as f64 * scales[k]).floor() as i64))
                .unwrap_or(Dim::Unknown);
        }
        return Ok(out);
    }
    Ok(vec![Dim::Unknown; r])
}

/// Static broadcast of two fixed shapes with an error naming them.
pub fn broadcast_static(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes(a, b)
        .ok_or_else(|| Error::Shape(format!("shapes {a:?} and {b:?} cannot be broadcast")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;

    #[test]
    fn shape_chain_folds_after_fixing_dims() {
        // x: [N, 3, 4] -> Reshape(x, Concat(Shape(x)[0], -1)) : legacy exporter style.
        let mut b = GraphBuilder::new(17);
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[Dim::from("N"), Dim::from(3), Dim::from(4)],
        );
        let s = b.op("Shape", &[&x], vec![]);
        let zero = b.constant("zero", &HostTensor::int(DataType::INT64, vec![], vec![0]));
        let n = b.op("Gather", &[&s, &zero], vec![crate::attrs::int("axis", 0)]);
        let n1 = b.unsqueeze(&n, &[0]);
        let m1 = b.const_i64s(&[-1]);
        let shape = b.concat(&[&n1, &m1], 0);
        let y = b.op("Reshape", &[&x, &shape], vec![]);
        b.output(&y, "y");
        let mut m = b.build().unwrap();
        let inf = infer(&m, 1 << 16).unwrap();
        assert_eq!(inf.types["y"].dims, Some(vec![Dim::Unknown, Dim::Unknown]));
        let w = fix_input_shapes(&mut m, &HashMap::new()).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("set to 1"));
        let inf = infer(&m, 1 << 16).unwrap();
        assert_eq!(inf.shape("y").unwrap(), vec![1, 12]);
        let spec = HashMap::from([("x".to_string(), vec![5, 3, 4])]);
        let mut m2 = b_model_again();
        fix_input_shapes(&mut m2, &spec).unwrap();
        assert_eq!(
            infer(&m2, 1 << 16).unwrap().shape("y2").unwrap(),
            vec![5, 3, 4]
        );
        let bad = HashMap::from([("nope".to_string(), vec![1])]);
        assert!(fix_input_shapes(&mut m2, &bad)
            .unwrap_err()
            .to_string()
            .contains("not an input"));
    }

    fn b_model_again() -> ModelProto {
        let mut b = GraphBuilder::new(17);
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[Dim::from("N"), Dim::from(3), Dim::from(4)],
        );
        let y = b.op("Relu", &[&x], vec![]);
        b.output(&y, "y2");
        b.build().unwrap()
    }

    #[test]
    fn conv_and_pool_shapes() {
        assert_eq!(conv_out_len(224, 7, 2, 1, (3, 3), false), 112);
        assert_eq!(conv_out_len(112, 3, 2, 1, (1, 1), false), 56);
        assert_eq!(conv_out_len(5, 2, 2, 1, (0, 0), true), 3);
        assert_eq!(conv_pads("SAME_UPPER", 5, 3, 2, 1, (0, 0)), (1, 1));
        assert_eq!(conv_pads("SAME_UPPER", 6, 3, 2, 1, (0, 0)), (0, 1));
        assert_eq!(conv_pads("SAME_LOWER", 6, 3, 2, 1, (0, 0)), (1, 0));
        assert_eq!(
            parse_shape_spec("x=1x3x224x224").unwrap(),
            ("x".into(), vec![1, 3, 224, 224])
        );
        assert!(parse_shape_spec("x=1x0").is_err());
    }
}
