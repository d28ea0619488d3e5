//! What a gradient rule sees: static shapes and types of forward values, known constants, a
//! builder for the nodes it emits, and helpers shared by many rules (unbroadcast, scalars).

use std::collections::HashMap;

use super::Tuning;
use crate::builder::GraphBuilder;
use crate::error::Result;
use crate::proto::{GraphProto, NodeProto};
use crate::shapes::Inference;
use crate::tensor::HostTensor;
use crate::DataType;

/// Context passed to every rule.
pub struct VjpCtx<'a> {
    /// Emits the gradient nodes (fresh names avoid every name of the model).
    pub b: GraphBuilder,
    inf: &'a Inference,
    /// Forward outputs the rules asked for: (node index, output index, name).
    pub(crate) extra_outputs: Vec<(usize, usize, String)>,
    /// Index of the node being differentiated.
    pub(crate) node_index: usize,
    /// Forward nodes whose outputs a rule now computes itself (see [`VjpCtx::recompute_forward`]).
    pub(crate) replaced: Vec<usize>,
    /// The runtime the graph is shaped for.
    pub tuning: Tuning,
    /// The forward graph's nodes, and the index of the node producing each value.
    forward: &'a [NodeProto],
    producers: HashMap<&'a str, usize>,
    /// Inputs of the node being differentiated whose gradient the rule has already passed on
    /// through their producer (see [`VjpCtx::absorb_input`]).
    pub(crate) absorbed: Vec<usize>,
}

impl<'a> VjpCtx<'a> {
    pub(crate) fn new(
        b: GraphBuilder,
        inf: &'a Inference,
        tuning: Tuning,
        forward: &'a GraphProto,
    ) -> Self {
        VjpCtx {
            b,
            inf,
            extra_outputs: vec![],
            node_index: 0,
            replaced: vec![],
            tuning,
            forward: &forward.node,
            producers: forward.producers(),
            absorbed: vec![],
        }
    }

    /// The forward node that computes `v` (None for graph inputs and initializers).
    pub fn producer(&self, v: &str) -> Option<&'a NodeProto> {
        self.producers.get(v).map(|&i| &self.forward[i])
    }

    /// Input `k` of the node being differentiated gets no gradient from this node: the rule
    /// has carried that path through input k's producer to the producer's own inputs itself
    /// (a Mul of x and Sigmoid(x) differentiated as one SiLU). The producer still receives
    /// any cotangent from its other consumers.
    pub fn absorb_input(&mut self, k: usize) {
        self.absorbed.push(k);
    }

    /// Default-domain opset of the model (and of the emitted nodes).
    pub fn opset(&self) -> i64 {
        self.b.opset()
    }

    /// Static shape of a forward value.
    pub fn shape(&self, v: &str) -> Result<Vec<usize>> {
        self.inf.shape(v)
    }

    /// Static shape as i64 (for Reshape targets).
    pub fn shape_i64(&self, v: &str) -> Result<Vec<i64>> {
        Ok(self.shape(v)?.iter().map(|&d| d as i64).collect())
    }

    /// Element type of a forward value.
    pub fn dtype(&self, v: &str) -> Result<DataType> {
        self.inf.dtype(v)
    }

    /// Value of a forward value known at transformation time.
    pub fn const_value(&self, v: &str) -> Option<&HostTensor> {
        self.inf.consts.get(v)
    }

    /// Value of a constant input (axes, pads, roi, …), with an error naming the node if it is
    /// not constant.
    pub fn const_input(&self, node: &NodeProto, input: usize, what: &str) -> Result<&HostTensor> {
        let name = node.input_req(input)?;
        self.const_value(name).ok_or_else(|| {
            node.unsupported(format!(
                "{what} (input {input}, \"{name}\") is not a constant"
            ))
        })
    }

    /// Integer value of a constant input, as [`VjpCtx::const_input`].
    pub fn const_ints(&self, node: &NodeProto, input: usize, what: &str) -> Result<Vec<i64>> {
        self.const_input(node, input, what).map(HostTensor::to_i64s)
    }

    /// Optional constant integer input: `Ok(None)` if the input is omitted.
    pub fn opt_const_ints(
        &self,
        node: &NodeProto,
        input: usize,
        what: &str,
    ) -> Result<Option<Vec<i64>>> {
        match node.input_opt(input) {
            None => Ok(None),
            Some(_) => self.const_ints(node, input, what).map(Some),
        }
    }

    /// A scalar constant of type `dtype`.
    pub fn scalar(&mut self, v: f64, dtype: DataType) -> String {
        self.b.scalar(dtype, v)
    }

    /// Request output `k` of the forward node being differentiated (e.g. MaxPool's Indices),
    /// adding it to the node if it does not produce it yet. Returns its name.
    pub fn forward_output(&mut self, node: &NodeProto, k: usize) -> String {
        if let Some(name) = node.output.get(k).filter(|s| !s.is_empty()) {
            return name.clone();
        }
        if let Some((_, _, name)) = self
            .extra_outputs
            .iter()
            .find(|(n, o, _)| *n == self.node_index && *o == k)
        {
            return name.clone();
        }
        let base = format!(
            "{}_out{k}",
            node.output.first().map(String::as_str).unwrap_or("fwd")
        );
        let name = self.b.fresh(&base);
        self.extra_outputs.push((self.node_index, k, name.clone()));
        name
    }

    /// Compute the forward node's output `k` as `value` instead of running the node itself: the
    /// gradient graph drops the node and `value` takes over its output name. Only for rules
    /// whose gradient already computes most of the forward result, and only with bit-identical
    /// values (the gradient model returns the forward outputs too). Call it for every output.
    pub fn recompute_forward(&mut self, node: &NodeProto, k: usize, value: &str) {
        let name = self.b.fresh(&format!("{}_recomputed", node.label()));
        self.b.node(NodeProto {
            name,
            op_type: "Identity".into(),
            input: vec![value.to_string()],
            output: vec![node.output[k].clone()],
            ..Default::default()
        });
        if !self.replaced.contains(&self.node_index) {
            self.replaced.push(self.node_index);
        }
    }

    /// Sum `g` (of shape `g_shape`) down to `target` (numpy broadcasting in reverse).
    pub fn unbroadcast(&mut self, g: &str, g_shape: &[usize], target: &[usize]) -> String {
        if g_shape == target {
            return g.to_string();
        }
        let r = g_shape.len();
        let t = target.len();
        let lead = r.saturating_sub(t);
        let mut axes: Vec<i64> = (0..lead as i64).collect();
        for i in lead..r {
            if target[i - lead] == 1 && g_shape[i] != 1 {
                axes.push(i as i64);
            }
        }
        let s = if axes.is_empty() {
            g.to_string()
        } else {
            self.b.reduce("ReduceSum", g, &axes, true)
        };
        if r != t {
            let shape: Vec<i64> = target.iter().map(|&d| d as i64).collect();
            self.b.reshape(&s, &shape)
        } else {
            s
        }
    }

    /// Unbroadcast `g` (same shape as forward value `out`) to the shape of forward value `inp`.
    pub fn unbroadcast_to(&mut self, g: &str, out: &str, inp: &str) -> Result<String> {
        let gs = self.shape(out)?;
        let ts = self.shape(inp)?;
        Ok(self.unbroadcast(g, &gs, &ts))
    }

    /// Sum several gradient contributions.
    pub fn sum(&mut self, parts: &[String]) -> String {
        match parts {
            [one] => one.clone(),
            [a, b] => self.b.add(a, b),
            _ => {
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                self.b.op("Sum", &refs, vec![])
            }
        }
    }

    /// Zeros of the shape and type of forward value `like`.
    pub fn zeros_like(&mut self, like: &str) -> Result<String> {
        let shape = self.shape(like)?;
        let dtype = self.dtype(like)?;
        Ok(self.b.fill(&shape, dtype, 0.0))
    }

    /// `g` where `cond` holds, 0 elsewhere.
    pub fn mask(&mut self, cond: &str, g: &str, dtype: DataType) -> String {
        // g·cast(cond) rather than Where(cond, g, 0): ONNX Runtime vectorises Mul but not a Where
        // broadcasting its scalar (Clip's masks cost 0.28 of the selfie segmenter's forward pass
        // as Where). Cotangents are finite, so the two agree.
        let m = self.b.cast(cond, dtype);
        self.b.mul(g, &m)
    }
}
