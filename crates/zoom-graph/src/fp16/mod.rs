//! Mixed precision: run a float32 model in float16 while its interface stays float32.
//!
//! [`convert_to_fp16`] rewrites a model so that the GPU does the arithmetic in half precision
//! (ONNX Runtime's CUDA provider) while zoom keeps feeding and reading float32 tensors:
//!
//! - every float32 graph input is cast to float16 where an fp16 node reads it, and every float32
//!   graph output is produced by a `Cast` back to float (the output keeps its name);
//! - each node runs in float16 unless its operator is in [`Fp16Options::keep_fp32_ops`] (or the
//!   ONNX spec leaves no float16 choice, see below); an fp32 node gets `Cast`s on its float16
//!   inputs and its float32 outputs are cast to float16 for fp16 consumers. Casts are shared: one
//!   per value and direction;
//! - float32 initializers and `Constant` tensors read by fp16 nodes become float16 (finite values
//!   beyond ±65504 clamped and counted); one read by both kinds of node is kept in both types;
//! - operators whose output type is an attribute follow: `Cast(to=FLOAT)`, `ConstantOfShape`,
//!   `EyeLike`, `Random*`, `Bernoulli` and the window operators produce float16 in the fp16
//!   region; `CastLike` follows its (converted) target;
//! - `value_info` is rewritten to the new types, so the model passes strict ONNX type inference.
//!
//! What stays float32 whatever the options say:
//!
//! - inputs the spec (or ONNX Runtime's kernels) require as float32: `Resize` `roi`/`scales`,
//!   `Upsample` `scales`; `Dropout` `ratio`, `OneHot` `depth` and `MelWeightMatrix` edge
//!   frequencies keep their type (separate type variables; nothing gains from rounding them);
//! - operators without float16 in their type constraints or with fixed float32 inputs (`Range`,
//!   `Celu`, `CumSum` before opset 14, `IsInf` before 20, quantisation, `NonMaxSuppression`,
//!   `TfIdfVectorizer`), `BitCast`, sequence/optional operators, operators of other domains
//!   (schemas unknown here), and nodes holding subgraphs (`If`/`Loop`/`Scan`: the bodies are
//!   not converted; outer values they read are handed to them as float32);
//! - `LayerNormalization`'s `Mean`/`InvStdDev` outputs (typed by `stash_type`);
//! - computations that only feed such float32-only inputs (e.g. a `scales` computed from a
//!   `Shape`).
//!
//! And where fp16 would only add casts, a node whose float outputs all go to fp32 consumers
//! (or graph outputs) stays fp32 if it does no arithmetic (`Cast`, `ConstantOfShape`,
//! `Random*`, `Identity`, `Reshape`, `Transpose`, …) or if its float inputs are float32 too and
//! it is not compute-bound (`Conv`, `MatMul`, `Gemm`, `Einsum` always take fp16 for the tensor
//! cores).
//!
//! Element types come from [`crate::shapes::infer`], then declared `value_info`, then the
//! operator's type rule; a value whose type cannot be found is an error naming the node (declare
//! it in `graph.value_info`). float64, float16 and bfloat16 values are never touched, so a model
//! that is already float16 goes through unchanged.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::model::{tensor_value_info, NameGen};
use crate::proto::{data_location, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::tensor::f32_to_f16;
use crate::{attrs, DataType};

/// Largest finite float16 value.
pub const FP16_MAX: f32 = 65504.0;

/// The operators [`Fp16Options::default`] keeps in float32.
///
/// Why (float16 has 11 significant bits and a range of ±65504, and this list mirrors the float32
/// list of PyTorch's autocast for the same reasons):
///
/// - `Softmax`, `LogSoftmax`, the losses: exponentials of logits and their sums leave the fp16
///   range, and log-probabilities of unlikely classes need more than 3 significant digits.
/// - `LayerNormalization`, `InstanceNormalization`, `GroupNormalization`, `RMSNormalization`,
///   `MeanVarianceNormalization`, `LpNormalization`: the mean of squares overflows once
///   activations pass ±256, and small variances lose the precision the normalisation then
///   amplifies.
/// - `ReduceSum`, `ReduceMean`, `ReduceSumSquare`, `ReduceL1`, `ReduceL2`, `ReduceLogSumExp`,
///   `ReduceProd`, `CumSum`: accumulations; in fp16 a running sum of ones stalls at 2048 and
///   large sums overflow (VJP graphs reduce every broadcast cotangent with `ReduceSum`).
/// - `Exp`, `Log`, `Pow`, `Sqrt`, `Reciprocal`, `Div`: unbounded results (`Exp` overflows above
///   11.1, `Log` of a flushed-to-zero value is −inf, quotients of small denominators pass
///   65504). `Div` is kept because the VJP rules divide a lot (g/x for `Log`, g/(2√x) for
///   `Sqrt`, −g·a/b² for `Div`, softmax and normalisation backward passes) and because keeping
///   the whole family in fp32 lets decomposed chains (`Exp → ReduceSum → Div`, `Pow →
///   ReduceMean → Sqrt → Div`) run in fp32 end to end, with casts only at their ends.
/// - Not kept: `Erf` (bounded output, fp16 error about 5e-4, and ONNX Runtime has CUDA fp16
///   kernels) and the elementwise activations (`Sigmoid`, `Tanh`, `Softplus`, `Gelu`, …), which
///   are bounded or linear where they are large.
/// - `ScatterElements`, `ScatterND`: VJP rules scatter-add cotangents with them (GatherElements,
///   GatherND, GridSample, MaxPool with Indices), an accumulation like `ReduceSum`; ONNX
///   Runtime's CPU provider also has no float16 kernel for their `add` reduction.
/// - `GridSample`: ONNX Runtime's CUDA provider registers it for float32 only (an fp16 node
///   would fall back to the CPU with copies on each side).
/// - `Range`: float16 is not in its type constraint (also enforced for every opset, see
///   [`convert_to_fp16`]); listed so the list names every fp32 operator a user may meet.
pub const DEFAULT_KEEP_FP32_OPS: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "RMSNormalization",
    "MeanVarianceNormalization",
    "LpNormalization",
    "ReduceSum",
    "ReduceMean",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceProd",
    "CumSum",
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Div",
    "ScatterElements",
    "ScatterND",
    "GridSample",
    "Range",
];

/// Operators that must stay float32 whatever the options: float16 is not in their type
/// constraints (at some opset), or their float inputs are fixed to float32, or their meaning
/// depends on the element type (`BitCast`).
const SPEC_FP32_OPS: &[&str] = &[
    "Range",
    "Celu",
    "CumSum",
    "IsInf",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "NonMaxSuppression",
    "TfIdfVectorizer",
    "BitCast",
];

/// Sequence and optional operators: their values are not tensors, kept as they are.
const NON_TENSOR_OPS: &[&str] = &[
    "SequenceAt",
    "SequenceConstruct",
    "SequenceEmpty",
    "SequenceErase",
    "SequenceInsert",
    "SequenceLength",
    "SequenceMap",
    "SplitToSequence",
    "ConcatFromSequence",
    "Optional",
    "OptionalGetElement",
    "OptionalHasElement",
];

/// Operators whose float output type is set by an attribute (or, for `CastLike`, by an input
/// that is not the data): the only ones that may produce a float without reading one.
const ATTR_TYPED_OPS: &[&str] = &[
    "Cast",
    "CastLike",
    "Constant",
    "ConstantOfShape",
    "EyeLike",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Bernoulli",
    "HannWindow",
    "HammingWindow",
    "BlackmanWindow",
    "MelWeightMatrix",
];

/// Operators that do no arithmetic (conversions, generators, layout): when their float outputs
/// only reach float32 needs they stay float32, which moves a cast at most and often saves two.
const CHEAP_OPS: &[&str] = &[
    "Cast",
    "ConstantOfShape",
    "EyeLike",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Identity",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
];

/// Operators that gain from float16 (tensor cores) even between float32 neighbours.
const COMPUTE_BOUND_OPS: &[&str] = &["Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"];

/// Options of [`convert_to_fp16`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fp16Options {
    /// Operator types (default domain) that run in float32: their inputs are cast to float32
    /// and their outputs stay float32. See [`DEFAULT_KEEP_FP32_OPS`] for the default and why.
    pub keep_fp32_ops: Vec<String>,
}

impl Default for Fp16Options {
    fn default() -> Self {
        Fp16Options {
            keep_fp32_ops: DEFAULT_KEEP_FP32_OPS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// What [`convert_to_fp16`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fp16Report {
    /// Nodes of the input graph now computing in float16 (`Constant` nodes not counted).
    pub converted_nodes: usize,
    /// Nodes of the input graph reading or producing float32 that stay float32.
    pub fp32_nodes: usize,
    /// `Cast` nodes added (graph inputs and outputs, fp16/fp32 boundaries).
    pub casts_inserted: usize,
    /// Finite initializer / constant values beyond ±65504 clamped to ±65504.
    pub clamped_values: usize,
}

/// Convert `model` to mixed precision (see the module docs). The graph interface (names, types,
/// shapes of inputs and outputs) is unchanged.
///
/// Errors name the node or tensor: a value whose element type is unknown, a float32 tensor whose
/// external data is not loaded, an operator of the default domain that produces a float32
/// output without reading a float32 input through a rule this pass does not know.
pub fn convert_to_fp16(
    model: &ModelProto,
    options: &Fp16Options,
) -> Result<(ModelProto, Fp16Report)> {
    let graph = model.graph_ref()?;
    model.default_opset()?;
    let order = graph.topological_order()?;
    let types = value_types(model, graph, &order)?;
    let keep: HashSet<&str> = options.keep_fp32_ops.iter().map(String::as_str).collect();
    let mut plan = Plan::new(graph, types);
    plan.classify(&order, &keep)?;
    plan.refine(&order);
    plan.collect_demands();
    let (graph, report) = plan.rewrite()?;
    let out = ModelProto {
        ir_version: model.ir_version,
        opset_import: model.opset_import.clone(),
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        domain: model.domain.clone(),
        model_version: model.model_version,
        doc_string: model.doc_string.clone(),
        graph: Some(graph),
        metadata_props: model.metadata_props.clone(),
        training_info: model.training_info.clone(),
        functions: model.functions.clone(),
        configuration: model.configuration.clone(),
    };
    Ok((out, report))
}

// ----- element types of the input graph ----------------------------------------------------

/// Element type of every value: shape inference, declarations, and the type rules of the
/// operators inference does not cover (whose results are declared to inference, which then
/// continues downstream, until nothing new is learnt).
fn value_types(
    model: &ModelProto,
    graph: &GraphProto,
    order: &[usize],
) -> Result<HashMap<String, DataType>> {
    let mut declared: Option<ModelProto> = None;
    loop {
        let m = declared.as_ref().unwrap_or(model);
        let g = m.graph_ref()?;
        let mut types: HashMap<String, DataType> = crate::shapes::infer(m, 4096)?
            .types
            .into_iter()
            .map(|(k, v)| (k, v.dtype))
            .collect();
        for t in &g.initializer {
            types.entry(t.name.clone()).or_insert(DataType(t.data_type));
        }
        for s in &g.sparse_initializer {
            if let Some(v) = &s.values {
                types.entry(v.name.clone()).or_insert(DataType(v.data_type));
            }
        }
        for v in g.input.iter().chain(&g.value_info).chain(&g.output) {
            if let Some(d) = v.dtype() {
                types.entry(v.name.clone()).or_insert(d);
            }
        }
        let mut learnt = vec![];
        for &i in order {
            let node = &graph.node[i];
            for (k, o) in node.output.iter().enumerate() {
                if o.is_empty() || types.contains_key(o) {
                    continue;
                }
                if let Some(d) = output_type_rule(node, k, &types)? {
                    types.insert(o.clone(), d);
                    learnt.push(tensor_value_info(o, d, None));
                }
            }
        }
        if learnt.is_empty() {
            return Ok(types);
        }
        let mut next = declared
            .take()
            .unwrap_or_else(|| without_weights(model, graph));
        next.graph_mut()?.value_info.extend(learnt);
        declared = Some(next);
    }
}

/// A copy of `model` for type inference: initializers above the size inference decodes keep
/// their name, type and shape but not their data (no copy of the weights).
fn without_weights(model: &ModelProto, graph: &GraphProto) -> ModelProto {
    let initializer = graph
        .initializer
        .iter()
        .map(|t| {
            let n: i64 = t.dims.iter().product();
            if n <= 4096 {
                t.clone()
            } else {
                TensorProto {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    data_type: t.data_type,
                    ..Default::default()
                }
            }
        })
        .collect();
    let g = GraphProto {
        node: graph.node.clone(),
        initializer,
        sparse_initializer: graph.sparse_initializer.clone(),
        input: graph.input.clone(),
        output: graph.output.clone(),
        value_info: graph.value_info.clone(),
        ..Default::default()
    };
    ModelProto {
        ir_version: model.ir_version,
        opset_import: model.opset_import.clone(),
        graph: Some(g),
        ..Default::default()
    }
}

/// The element type of output `k` of `node` from the operator's type rule alone (used where
/// shape inference gave up).
fn output_type_rule(
    node: &NodeProto,
    k: usize,
    types: &HashMap<String, DataType>,
) -> Result<Option<DataType>> {
    let input = |i: usize| node.input_opt(i).and_then(|n| types.get(n).copied());
    let dtype_attr = |name: &str| -> Result<Option<DataType>> {
        Ok(node.get_attr::<i64>(name)?.map(|d| DataType(d as i32)))
    };
    let sub_output = |attr: &str, j: usize| -> Option<DataType> {
        node.attr(attr)?.g.as_ref()?.output.get(j)?.dtype()
    };
    if !node.is_default_domain() {
        return Ok(None);
    }
    Ok(match node.op_type.as_str() {
        "If" => sub_output("then_branch", k),
        "Loop" => sub_output("body", k + 1),
        "Scan" => sub_output("body", k),
        "Constant" => constant_type(node)?,
        "Cast" => dtype_attr("to")?,
        "CastLike" => input(1),
        "ConstantOfShape" => Some(
            node.get_attr::<TensorProto>("value")?
                .map_or(DataType::FLOAT, |t| DataType(t.data_type)),
        ),
        "EyeLike" | "RandomNormalLike" | "RandomUniformLike" | "Bernoulli" => {
            dtype_attr("dtype")?.or(input(0))
        }
        "RandomNormal" | "RandomUniform" => Some(dtype_attr("dtype")?.unwrap_or(DataType::FLOAT)),
        "Multinomial" => Some(dtype_attr("dtype")?.unwrap_or(DataType::INT32)),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" | "MelWeightMatrix" => {
            Some(dtype_attr("output_datatype")?.unwrap_or(DataType::FLOAT))
        }
        "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => Some(DataType::INT64),
        "TopK" | "MaxPool" | "Unique" if k >= 1 => Some(DataType::INT64),
        "Dropout" if k == 1 => Some(DataType::BOOL),
        "LayerNormalization" if k >= 1 => {
            Some(dtype_attr("stash_type")?.unwrap_or(DataType::FLOAT))
        }
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "Not" | "And" | "Or"
        | "Xor" | "IsNaN" | "IsInf" => Some(DataType::BOOL),
        "Where" => input(1),
        "Range" => input(0),
        "OneHot" => input(2),
        "TopK" | "Unique" | "LSTM" | "GRU" | "RNN" | "MaxPool" => input(0),
        op if SAME_TYPE_AS_INPUT0.contains(&op) => input(0),
        _ => None,
    })
}

/// Operators whose outputs have the element type of input 0 and which shape inference does not
/// cover (the operators it covers never reach [`output_type_rule`]).
const SAME_TYPE_AS_INPUT0: &[&str] = &[
    "Einsum",
    "GridSample",
    "RoiAlign",
    "Col2Im",
    "Compress",
    "ReverseSequence",
    "Det",
    "AffineGrid",
    "STFT",
    "DFT",
    "CenterCropPad",
    "LpPool",
    "MaxRoiPool",
    "MaxUnpool",
    "Shrink",
    "Range",
    "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss",
    "RMSNormalization",
    "Swish",
    "Attention",
    "RotaryEmbedding",
];

/// The element type of a `Constant` node's value.
fn constant_type(node: &NodeProto) -> Result<Option<DataType>> {
    for a in &node.attribute {
        let d = match a.name.as_str() {
            "value" => a.t.as_ref().map(|t| DataType(t.data_type)),
            "sparse_value" => a
                .sparse_tensor
                .as_ref()
                .and_then(|s| s.values.as_ref())
                .map(|t| DataType(t.data_type)),
            "value_float" | "value_floats" => Some(DataType::FLOAT),
            "value_int" | "value_ints" => Some(DataType::INT64),
            "value_string" | "value_strings" => Some(DataType::STRING),
            _ => None,
        };
        if d.is_some() {
            return Ok(d);
        }
    }
    Err(node.error("Constant without a value attribute"))
}

// ----- the plan ------------------------------------------------------------------------------

/// How a node of the input graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reads and writes no float32 value: copied as it is.
    Plain,
    /// Computes in float16.
    Half,
    /// Stays float32.
    Full,
}

/// What an input slot needs from a float32 value of the input graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The value is not float32: the slot reads it as it is.
    Keep,
    /// float32.
    Float,
    /// float16.
    Half,
    /// Any element type (`Cast`, `Shape`, …): whichever version exists.
    Any,
}

/// A use of a value: input (node index, input index), or an outer-scope read of a subgraph.
#[derive(Debug, Clone, Copy)]
enum Use {
    Input(usize, usize),
    Subgraph,
}

struct Plan<'a> {
    graph: &'a GraphProto,
    types: HashMap<String, DataType>,
    modes: Vec<Mode>,
    /// Node made float32 because it only feeds float32-only inputs (a `scales` computation).
    param_chain: Vec<bool>,
    /// Index of each `Constant` node with a float32 tensor value (converted like an initializer).
    const_nodes: HashMap<String, usize>,
    /// Float32 initializers that are not graph inputs.
    const_inits: HashMap<String, usize>,
    graph_inputs: HashSet<String>,
    graph_outputs: HashSet<String>,
    uses: HashMap<String, Vec<Use>>,
    /// Producing node of every node output.
    producers: HashMap<String, usize>,
    /// Element types each float32 value is needed in (besides the one it is produced in).
    demands: HashMap<String, BTreeSet<i32>>,
}

impl<'a> Plan<'a> {
    fn new(graph: &'a GraphProto, types: HashMap<String, DataType>) -> Self {
        let graph_inputs: HashSet<String> = graph.input.iter().map(|v| v.name.clone()).collect();
        let graph_outputs = graph.output.iter().map(|v| v.name.clone()).collect();
        let mut uses: HashMap<String, Vec<Use>> = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for (k, inp) in n.input.iter().enumerate() {
                if !inp.is_empty() {
                    uses.entry(inp.clone()).or_default().push(Use::Input(i, k));
                }
            }
            for inp in n.implicit_inputs() {
                uses.entry(inp).or_default().push(Use::Subgraph);
            }
        }
        let const_inits = graph
            .initializer
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                DataType(t.data_type) == DataType::FLOAT && !graph_inputs.contains(&t.name)
            })
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let const_nodes = graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.is_default_domain()
                    && n.op_type == "Constant"
                    && n.output.len() == 1
                    && n.attr("sparse_value").is_none()
                    && types.get(&n.output[0]) == Some(&DataType::FLOAT)
            })
            .map(|(i, n)| (n.output[0].clone(), i))
            .collect();
        Plan {
            graph,
            types,
            modes: vec![Mode::Plain; graph.node.len()],
            param_chain: vec![false; graph.node.len()],
            const_nodes,
            const_inits,
            graph_inputs,
            graph_outputs,
            uses,
            producers: graph
                .producers()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            demands: HashMap::new(),
        }
    }

    fn is_float(&self, name: &str) -> bool {
        self.types.get(name) == Some(&DataType::FLOAT)
    }

    /// Decide each node's mode from its operator and the options.
    fn classify(&mut self, order: &[usize], keep: &HashSet<&str>) -> Result<()> {
        for &i in order {
            let node = &self.graph.node[i];
            let op = node.op_type.as_str();
            let opaque = !node.is_default_domain()
                || node.has_subgraphs()
                || SPEC_FP32_OPS.contains(&op)
                || NON_TENSOR_OPS.contains(&op);
            let fp32 = opaque || keep.contains(op);
            if !fp32 {
                // Every value of an fp16 candidate must have a known type: a wrong guess would
                // break the model. (fp32 nodes keep their types, known or not.)
                for v in node.input.iter().chain(&node.output) {
                    if !v.is_empty() && !self.types.contains_key(v) {
                        let advice = if node.output.contains(v) {
                            format!("declare it in graph.value_info, or add {op} to keep_fp32_ops")
                        } else {
                            "declare it in graph.value_info".to_string()
                        };
                        return Err(node.error(format!(
                            "cannot convert to float16: the element type of \"{v}\" is unknown \
                             ({advice})"
                        )));
                    }
                }
            }
            let reads_float = node.input.iter().any(|v| self.is_float(v))
                || node.implicit_inputs().iter().any(|v| self.is_float(v));
            let writes_float = node.output.iter().any(|v| self.is_float(v));
            self.modes[i] = if !reads_float && !writes_float {
                Mode::Plain
            } else if fp32 {
                Mode::Full
            } else {
                if writes_float && !reads_float && !ATTR_TYPED_OPS.contains(&op) {
                    return Err(node.error(
                        "cannot convert to float16: the operator produces float32 without \
                         reading a float32 input, and how its output type is set is not known \
                         to the float16 pass (add the operator to keep_fp32_ops)",
                    ));
                }
                Mode::Half
            };
        }
        Ok(())
    }

    /// What input `k` of node `i` needs, with the node in its current mode.
    fn want(&self, i: usize, k: usize) -> Want {
        let node = &self.graph.node[i];
        if !self.is_float(&node.input[k]) {
            return Want::Keep;
        }
        match self.modes[i] {
            Mode::Plain | Mode::Full => Want::Float,
            Mode::Half => half_slot_want(&node.op_type, k),
        }
    }

    fn use_want(&self, u: Use) -> Want {
        match u {
            Use::Input(i, k) => self.want(i, k),
            Use::Subgraph => Want::Float,
        }
    }

    /// Backward pass (consumers first): an fp16 node whose float outputs only reach float32
    /// needs becomes float32 when it is cheap, when it only computes float32-only parameters
    /// (e.g. `Resize` scales), or when its float inputs are float32 too (an fp16 island of one
    /// memory-bound node would only add casts and rounding).
    fn refine(&mut self, order: &[usize]) {
        for &i in order.iter().rev() {
            let node = &self.graph.node[i];
            let is_const = node
                .output
                .first()
                .is_some_and(|o| self.const_nodes.contains_key(o));
            if self.modes[i] != Mode::Half || is_const {
                continue;
            }
            let (mut half, mut float, mut all_param) = (0, 0, true);
            for o in node.output.iter().filter(|o| self.is_float(o)) {
                if self.graph_outputs.contains(o) {
                    float += 1;
                    all_param = false;
                }
                for &u in self.uses.get(o).map(Vec::as_slice).unwrap_or_default() {
                    match self.use_want(u) {
                        Want::Half => half += 1,
                        Want::Float => {
                            float += 1;
                            all_param &= match u {
                                Use::Input(c, _) => {
                                    self.param_chain[c] || self.modes[c] == Mode::Half
                                }
                                Use::Subgraph => false,
                            };
                        }
                        Want::Keep | Want::Any => {}
                    }
                }
            }
            if half > 0 || float == 0 {
                continue;
            }
            let op = node.op_type.as_str();
            // Producers come later in this pass and only ever turn fp16 -> fp32, so a float32
            // input now stays float32.
            let float_inputs = !COMPUTE_BOUND_OPS.contains(&op)
                && node
                    .input
                    .iter()
                    .filter(|v| self.is_float(v))
                    .all(|v| self.native(v) != Some(DataType::FLOAT16));
            if all_param || CHEAP_OPS.contains(&op) || float_inputs {
                self.modes[i] = Mode::Full;
                self.param_chain[i] = all_param;
            }
        }
    }

    /// The type a float32 value of the input graph is produced in, `None` for constants
    /// (initializers, `Constant` nodes), which are materialised in whatever types are needed.
    fn native(&self, name: &str) -> Option<DataType> {
        if self.graph_inputs.contains(name) {
            return Some(DataType::FLOAT);
        }
        if self.const_inits.contains_key(name) || self.const_nodes.contains_key(name) {
            return None;
        }
        let Some(&p) = self.producers.get(name) else {
            return Some(DataType::FLOAT); // sparse initializer
        };
        let node = &self.graph.node[p];
        let k = node.output.iter().position(|o| o == name).unwrap_or(0);
        Some(match self.modes[p] {
            Mode::Half if !(node.op_type == "LayerNormalization" && k >= 1) => DataType::FLOAT16,
            _ => DataType::FLOAT,
        })
    }

    fn collect_demands(&mut self) {
        let mut demands: HashMap<String, BTreeSet<i32>> = HashMap::new();
        for (i, node) in self.graph.node.iter().enumerate() {
            for (k, v) in node.input.iter().enumerate() {
                let d = match self.want(i, k) {
                    Want::Float => DataType::FLOAT,
                    Want::Half => DataType::FLOAT16,
                    Want::Keep | Want::Any => continue,
                };
                demands.entry(v.clone()).or_default().insert(d.0);
            }
            if self.modes[i] != Mode::Plain {
                for v in node.implicit_inputs() {
                    if self.is_float(&v) {
                        demands.entry(v).or_default().insert(DataType::FLOAT.0);
                    }
                }
            }
        }
        for o in &self.graph.output {
            if self.is_float(&o.name) {
                demands
                    .entry(o.name.clone())
                    .or_default()
                    .insert(DataType::FLOAT.0);
            }
        }
        self.demands = demands;
    }

    /// Build the converted graph.
    fn rewrite(self) -> Result<(GraphProto, Fp16Report)> {
        let g = self.graph;
        let mut names = NameGen::new(names_with_subgraphs(g));
        let mut report = Fp16Report::default();
        // Versions of every float32 value: element type -> name in the new graph.
        let mut versions: HashMap<String, HashMap<i32, String>> = HashMap::new();
        let mut new_nodes: Vec<NodeProto> = vec![];
        let mut converted_inits: HashMap<String, Vec<TensorProto>> = HashMap::new();

        let float_values: Vec<String> = {
            let mut v: Vec<String> = self
                .types
                .iter()
                .filter(|(_, d)| **d == DataType::FLOAT)
                .map(|(n, _)| n.clone())
                .collect();
            v.sort();
            v
        };
        let stored: HashSet<&str> = g
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .chain(
                g.sparse_initializer
                    .iter()
                    .filter_map(|s| s.values.as_ref().map(|t| t.name.as_str())),
            )
            .collect();
        for v in &float_values {
            let defined = self.graph_inputs.contains(v)
                || self.producers.contains_key(v)
                || stored.contains(v.as_str());
            if !defined {
                continue; // a name only declared in value_info, or a subgraph's
            }
            let wanted: BTreeSet<i32> = self.demands.get(v).cloned().unwrap_or_default();
            let mut vs: HashMap<i32, String> = HashMap::new();
            match self.native(v) {
                Some(native) => {
                    let is_output = self.graph_outputs.contains(v);
                    let native_name = if is_output && native != DataType::FLOAT {
                        names.fresh(&format!("{v}_fp16"))
                    } else {
                        v.clone()
                    };
                    vs.insert(native.0, native_name.clone());
                    for &d in wanted.iter().filter(|&&d| d != native.0) {
                        let to = DataType(d);
                        let out = if to == DataType::FLOAT && is_output {
                            v.clone()
                        } else {
                            names.fresh(&format!("{v}{}", suffix(to)))
                        };
                        new_nodes.push(cast_node(&mut names, &native_name, &out, to));
                        report.casts_inserted += 1;
                        vs.insert(d, out);
                    }
                }
                None => {
                    let keep_float = wanted.contains(&DataType::FLOAT.0) || wanted.is_empty();
                    let need_half = wanted.contains(&DataType::FLOAT16.0);
                    if keep_float {
                        vs.insert(DataType::FLOAT.0, v.clone());
                    }
                    if need_half {
                        let name = if keep_float {
                            names.fresh(&format!("{v}_fp16"))
                        } else {
                            v.clone()
                        };
                        vs.insert(DataType::FLOAT16.0, name);
                    }
                    if let Some(&t) = self.const_inits.get(v) {
                        let t = &g.initializer[t];
                        let mut out = vec![];
                        if keep_float {
                            out.push(t.clone());
                        }
                        if need_half {
                            let (mut h, clamped) = tensor_to_fp16(t)?;
                            h.name = vs[&DataType::FLOAT16.0].clone();
                            report.clamped_values += clamped;
                            out.push(h);
                        }
                        converted_inits.insert(v.clone(), out);
                    } else if let Some(&n) = self.const_nodes.get(v) {
                        let node = &g.node[n];
                        if keep_float {
                            new_nodes.push(node.clone());
                        }
                        if need_half {
                            let (t, clamped) = constant_to_fp16(node)?;
                            report.clamped_values += clamped;
                            let name = if keep_float || node.name.is_empty() {
                                names.fresh(&format!("Constant_{v}_fp16"))
                            } else {
                                node.name.clone()
                            };
                            new_nodes.push(NodeProto {
                                name,
                                op_type: "Constant".into(),
                                output: vec![vs[&DataType::FLOAT16.0].clone()],
                                attribute: vec![attrs::tensor("value", t)],
                                doc_string: node.doc_string.clone(),
                                ..Default::default()
                            });
                        }
                    }
                }
            }
            versions.insert(v.clone(), vs);
        }
        // Initializers in their original order, float32 ones in the types they are needed in.
        let new_inits: Vec<TensorProto> = g
            .initializer
            .iter()
            .flat_map(|t| match converted_inits.remove(&t.name) {
                Some(versions) => versions,
                None => vec![t.clone()],
            })
            .collect();

        for (i, node) in g.node.iter().enumerate() {
            if node.output.len() == 1 && self.const_nodes.contains_key(&node.output[0]) {
                continue; // emitted with its versions above
            }
            let mode = self.modes[i];
            match mode {
                Mode::Half => report.converted_nodes += 1,
                Mode::Full => report.fp32_nodes += 1,
                Mode::Plain => {}
            }
            let mut n = node.clone();
            for (k, inp) in n.input.iter_mut().enumerate() {
                let want = self.want(i, k);
                let d = match want {
                    Want::Keep => continue,
                    Want::Float => DataType::FLOAT,
                    Want::Half => DataType::FLOAT16,
                    Want::Any => {
                        let vs = &versions[inp.as_str()];
                        if vs.contains_key(&DataType::FLOAT16.0) {
                            DataType::FLOAT16
                        } else {
                            DataType::FLOAT
                        }
                    }
                };
                *inp = versions[inp.as_str()][&d.0].clone();
            }
            if mode != Mode::Plain && n.has_subgraphs() {
                let renames: HashMap<String, String> = node
                    .implicit_inputs()
                    .into_iter()
                    .filter(|v| self.is_float(v))
                    .filter_map(|v| {
                        let to = versions.get(&v)?.get(&DataType::FLOAT.0)?.clone();
                        (to != v).then_some((v, to))
                    })
                    .collect();
                if !renames.is_empty() {
                    for a in &mut n.attribute {
                        for sg in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                            rename_outer_refs(sg, &renames);
                        }
                    }
                }
            }
            for o in n.output.iter_mut() {
                if let Some(vs) = versions.get(o.as_str()) {
                    if let Some(native) = self.native(o) {
                        *o = vs[&native.0].clone();
                    }
                }
            }
            if mode == Mode::Half {
                retype_attributes(&mut n, node, &self.types, &mut report)?;
            }
            new_nodes.push(n);
        }

        let mut value_info = vec![];
        for vi in &g.value_info {
            match versions.get(&vi.name) {
                Some(vs) if self.is_float(&vi.name) => {
                    let mut vs: Vec<(&i32, &String)> = vs.iter().collect();
                    vs.sort();
                    // Graph inputs and outputs are declared there, with their float32 type.
                    let io =
                        |n: &str| self.graph_inputs.contains(n) || self.graph_outputs.contains(n);
                    for (&d, name) in vs.into_iter().filter(|(_, n)| !io(n)) {
                        let mut x = vi.clone();
                        x.name = name.clone();
                        set_elem_type(&mut x, DataType(d));
                        value_info.push(x);
                    }
                }
                _ => value_info.push(vi.clone()),
            }
        }

        let mut out = GraphProto {
            node: new_nodes,
            name: g.name.clone(),
            initializer: new_inits,
            sparse_initializer: g.sparse_initializer.clone(),
            doc_string: g.doc_string.clone(),
            input: g.input.clone(),
            output: g.output.clone(),
            value_info,
            quantization_annotation: g.quantization_annotation.clone(),
            metadata_props: g.metadata_props.clone(),
        };
        out.sort_topologically()?;
        Ok((out, report))
    }
}

/// What input `k` of an fp16 node of type `op` needs when it is float32 in the input graph.
fn half_slot_want(op: &str, k: usize) -> Want {
    match (op, k) {
        // Any element type; the output type comes from an attribute or another input.
        ("Cast" | "CastLike" | "Shape" | "Size" | "EyeLike", 0) => Want::Any,
        ("RandomNormalLike" | "RandomUniformLike", 0) => Want::Any,
        // Resize-10 `scales`, Resize-11+ `roi` and `scales`, Upsample `scales`: float32 in the
        // spec (roi: ONNX Runtime reads it as float32).
        ("Resize", 1 | 2) | ("Upsample", 1) => Want::Float,
        // Separate type variables: nothing gains from rounding these.
        ("Dropout", 1) | ("OneHot", 1) | ("MelWeightMatrix", 3 | 4) => Want::Float,
        _ => Want::Half,
    }
}

fn suffix(d: DataType) -> &'static str {
    if d == DataType::FLOAT16 {
        "_fp16"
    } else {
        "_fp32"
    }
}

fn cast_node(names: &mut NameGen, input: &str, output: &str, to: DataType) -> NodeProto {
    NodeProto {
        name: names.fresh(&format!("Cast{}_{input}", suffix(to))),
        op_type: "Cast".into(),
        input: vec![input.to_string()],
        output: vec![output.to_string()],
        attribute: vec![attrs::int("to", to.0 as i64)],
        ..Default::default()
    }
}

/// Attributes that set a float32 output type, rewritten for a node now computing in fp16.
fn retype_attributes(
    n: &mut NodeProto,
    original: &NodeProto,
    types: &HashMap<String, DataType>,
    report: &mut Fp16Report,
) -> Result<()> {
    let out_float = original
        .output
        .first()
        .is_some_and(|o| types.get(o) == Some(&DataType::FLOAT));
    if !out_float {
        return Ok(());
    }
    let half = DataType::FLOAT16.0 as i64;
    match n.op_type.as_str() {
        "Cast" => n.set_attr(attrs::int("to", half)),
        "EyeLike" | "RandomNormal" | "RandomUniform" | "RandomNormalLike" | "RandomUniformLike"
        | "Bernoulli" => n.set_attr(attrs::int("dtype", half)),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" | "MelWeightMatrix" => {
            n.set_attr(attrs::int("output_datatype", half))
        }
        "ConstantOfShape" => {
            let t = match original.get_attr::<TensorProto>("value")? {
                Some(t) => {
                    let (h, clamped) = tensor_to_fp16(&t)?;
                    report.clamped_values += clamped;
                    h
                }
                None => TensorProto {
                    name: "value".into(),
                    dims: vec![1],
                    data_type: DataType::FLOAT16.0,
                    raw_data: vec![0, 0],
                    ..Default::default()
                },
            };
            n.set_attr(attrs::tensor("value", t));
        }
        _ => {}
    }
    Ok(())
}

/// The float32 tensor of a `Constant` node as float16 (and how many values were clamped).
fn constant_to_fp16(node: &NodeProto) -> Result<(TensorProto, usize)> {
    if let Some(t) = node.get_attr::<TensorProto>("value")? {
        return tensor_to_fp16(&t);
    }
    let (dims, values) = if let Some(v) = node.get_attr::<f32>("value_float")? {
        (vec![], vec![v])
    } else if let Some(v) = node.get_attr::<Vec<f32>>("value_floats")? {
        (vec![v.len() as i64], v)
    } else {
        return Err(node.error("cannot convert to float16: no float32 value attribute"));
    };
    let t = TensorProto {
        dims,
        data_type: DataType::FLOAT.0,
        float_data: values,
        ..Default::default()
    };
    tensor_to_fp16(&t)
}

/// A float32 tensor as float16 (raw data), finite values beyond ±65504 clamped; returns the
/// number clamped.
fn tensor_to_fp16(t: &TensorProto) -> Result<(TensorProto, usize)> {
    let bad = |m: &str| Error::InvalidModel(format!("tensor \"{}\": {m}", t.name));
    if t.data_location == data_location::EXTERNAL {
        return Err(bad(
            "cannot convert to float16: external data is not loaded (read the model with \
             read_model)",
        ));
    }
    let n: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if values.len() != n || (!t.raw_data.is_empty() && t.raw_data.len() != 4 * n) {
        return Err(bad(&format!(
            "cannot convert to float16: {} values stored, shape {:?} needs {n}",
            values.len(),
            t.dims
        )));
    }
    let mut clamped = 0;
    let mut raw = Vec::with_capacity(2 * n);
    for x in values {
        let x = if x.is_finite() && x.abs() > FP16_MAX {
            clamped += 1;
            FP16_MAX.copysign(x)
        } else {
            x
        };
        raw.extend_from_slice(&f32_to_f16(x).to_le_bytes());
    }
    Ok((
        TensorProto {
            name: t.name.clone(),
            dims: t.dims.clone(),
            data_type: DataType::FLOAT16.0,
            raw_data: raw,
            doc_string: t.doc_string.clone(),
            metadata_props: t.metadata_props.clone(),
            ..Default::default()
        },
        clamped,
    ))
}

fn set_elem_type(v: &mut crate::proto::ValueInfoProto, d: DataType) {
    use crate::proto::type_proto;
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = d.0;
    }
}

/// Every name of `g` and of its subgraphs (fresh names must not shadow a subgraph's).
fn names_with_subgraphs(g: &GraphProto) -> HashSet<String> {
    let mut names = g.all_names();
    for n in &g.node {
        for a in &n.attribute {
            for sg in a.g.iter().chain(&a.graphs) {
                names.extend(names_with_subgraphs(sg));
            }
        }
    }
    names
}

/// Rename the outer-scope values a subgraph reads (names it defines itself are left alone).
fn rename_outer_refs(g: &mut GraphProto, renames: &HashMap<String, String>) {
    let mut local: HashSet<String> = HashSet::new();
    local.extend(g.input.iter().map(|v| v.name.clone()));
    local.extend(g.initializer.iter().map(|t| t.name.clone()));
    for n in &g.node {
        local.extend(n.output.iter().cloned());
    }
    let outer: HashMap<String, String> = renames
        .iter()
        .filter(|(k, _)| !local.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if outer.is_empty() {
        return;
    }
    for n in &mut g.node {
        for i in n.input.iter_mut() {
            if let Some(to) = outer.get(i) {
                *i = to.clone();
            }
        }
        for a in &mut n.attribute {
            for sg in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                rename_outer_refs(sg, &outer);
            }
        }
    }
    // A subgraph output that is an outer value: insert nothing, just rename it.
    for o in &mut g.output {
        if let Some(to) = outer.get(&o.name) {
            o.name = to.clone();
        }
    }
}

#[cfg(test)]
mod tests;
