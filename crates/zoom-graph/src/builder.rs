//! A builder for small graphs: preprocessing prefixes, loss heads, test graphs, and the nodes a
//! gradient rule emits.
//!
//! Values are plain `String` names. Every helper writes the operator form that is valid for the
//! builder's opset (e.g. `axes` as an attribute or as an input), so a graph built here can be
//! composed with a model of the same opset without surprises.
//!
//! ```
//! use zoom_graph::{attrs, DataType, Dim, GraphBuilder};
//! let mut b = GraphBuilder::new(17);
//! let x = b.input("image", DataType::FLOAT, &[Dim::from("N"), Dim::from(3), Dim::from(8), Dim::from(8)]);
//! let mean = b.constant_f32("mean", &[1, 3, 1, 1], &[0.485, 0.456, 0.406]);
//! let centred = b.op("Sub", &[&x, &mean], vec![]);
//! let pooled = b.reduce("ReduceMean", &centred, &[2, 3], false);
//! b.output(&pooled, "features");
//! let model = b.build().unwrap();
//! assert_eq!(model.graph.unwrap().output[0].name, "features");
//! ```

use crate::error::{Error, Result};
use crate::model::{is_default_domain, tensor_value_info, NameGen};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};
use crate::tensor::{float_tensor, i64_tensor, HostTensor};
use crate::{attrs, DataType, Dim};

/// Builder of a graph (see the module docs).
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    opset: i64,
    name: String,
    /// Nodes emitted so far, in order.
    pub nodes: Vec<NodeProto>,
    /// Graph inputs declared so far.
    pub inputs: Vec<ValueInfoProto>,
    /// Graph outputs declared so far.
    pub outputs: Vec<ValueInfoProto>,
    /// Initializers added so far.
    pub initializers: Vec<TensorProto>,
    names: NameGen,
}

impl GraphBuilder {
    /// A builder emitting default-domain operators of opset `opset`.
    pub fn new(opset: i64) -> Self {
        GraphBuilder {
            opset,
            name: "graph".into(),
            nodes: vec![],
            inputs: vec![],
            outputs: vec![],
            initializers: vec![],
            names: NameGen::default(),
        }
    }

    /// A builder with the same default-domain opset as `model` (what [`crate::compose()`] needs).
    pub fn for_model(model: &ModelProto) -> Result<Self> {
        Ok(Self::new(model.default_opset()?))
    }

    /// A builder that adds nodes to an existing graph: fresh names avoid every name in `graph`.
    /// Use [`GraphBuilder::finish_into`] to append the result.
    pub fn extending(graph: &GraphProto, opset: i64) -> Self {
        let mut b = Self::new(opset);
        b.names = NameGen::for_graph(graph);
        b
    }

    /// Set the graph's name.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The default-domain opset this builder emits.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// A fresh value name starting with `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        self.names.fresh(base)
    }

    /// Reserve an exact name (an error if it is already used).
    pub fn reserve(&mut self, name: &str) -> Result<()> {
        if self.names.reserve(name) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "name \"{name}\" is already used in the graph"
            )))
        }
    }

    /// Declare a graph input. Panics never; a duplicate name gets a suffix (the returned name).
    pub fn input(&mut self, name: &str, dtype: DataType, dims: &[Dim]) -> String {
        let name = self.names.fresh(name);
        self.inputs
            .push(tensor_value_info(&name, dtype, Some(dims)));
        name
    }

    /// Add an initializer; it keeps its name if that is free (the returned name).
    pub fn initializer(&mut self, mut t: TensorProto) -> String {
        let base = if t.name.is_empty() {
            "const".to_string()
        } else {
            t.name.clone()
        };
        t.name = self.names.fresh(&base);
        let name = t.name.clone();
        self.initializers.push(t);
        name
    }

    /// Add a host tensor as an initializer named after `hint`.
    pub fn constant(&mut self, hint: &str, t: &HostTensor) -> String {
        self.initializer(t.to_proto(hint))
    }

    /// Add a float32 initializer.
    pub fn constant_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        let v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        self.initializer(float_tensor(hint, DataType::FLOAT, dims, &v))
    }

    /// Add a float initializer of type `dtype` from f64 values.
    pub fn constant_float(
        &mut self,
        hint: &str,
        dtype: DataType,
        dims: &[usize],
        values: &[f64],
    ) -> String {
        self.initializer(float_tensor(hint, dtype, dims, values))
    }

    /// Add a 1-D int64 initializer.
    pub fn const_i64s(&mut self, values: &[i64]) -> String {
        self.initializer(i64_tensor("ints", values))
    }

    /// Add a scalar (rank-0) initializer of any numeric type.
    pub fn scalar(&mut self, dtype: DataType, v: f64) -> String {
        self.constant("scalar", &HostTensor::scalar(dtype, v))
    }

    /// Emit a default-domain node with one output; returns the output name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_multi(op_type, inputs, attrs, 1)
            .pop()
            .expect("one output")
    }

    /// Emit a default-domain node with `n_outputs` outputs.
    pub fn op_multi(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        n_outputs: usize,
    ) -> Vec<String> {
        self.op_in_domain("", op_type, inputs, attrs, n_outputs)
    }

    /// Emit a node of any domain with `n_outputs` outputs.
    pub fn op_in_domain(
        &mut self,
        domain: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        n_outputs: usize,
    ) -> Vec<String> {
        let base = op_type.to_ascii_lowercase();
        let outputs: Vec<String> = (0..n_outputs).map(|_| self.names.fresh(&base)).collect();
        let name = self.names.fresh(&format!("{op_type}_node"));
        self.nodes.push(NodeProto {
            name,
            op_type: op_type.to_string(),
            domain: if is_default_domain(domain) {
                String::new()
            } else {
                domain.to_string()
            },
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            attribute: attrs,
            ..Default::default()
        });
        outputs
    }

    /// Emit a node given in full (its names are reserved as they are).
    pub fn node(&mut self, node: NodeProto) {
        for o in &node.output {
            self.names.reserve(o);
        }
        if !node.name.is_empty() {
            self.names.reserve(&node.name);
        }
        self.nodes.push(node);
    }

    /// Declare `value` as a graph output called `name` (an Identity is added if the names
    /// differ). Its type is inferred at [`GraphBuilder::build`].
    pub fn output(&mut self, value: &str, name: &str) -> String {
        let name = self.output_name(value, name);
        self.outputs.push(ValueInfoProto {
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    /// Declare `value` as a graph output called `name` with an explicit type.
    pub fn output_typed(
        &mut self,
        value: &str,
        name: &str,
        dtype: DataType,
        dims: Option<&[Dim]>,
    ) -> String {
        let name = self.output_name(value, name);
        self.outputs.push(tensor_value_info(&name, dtype, dims));
        name
    }

    fn output_name(&mut self, value: &str, name: &str) -> String {
        if value == name {
            return name.to_string();
        }
        let out = self.names.fresh(name);
        self.nodes.push(NodeProto {
            name: self.names.fresh("Identity_output"),
            op_type: "Identity".into(),
            input: vec![value.to_string()],
            output: vec![out.clone()],
            ..Default::default()
        });
        out
    }

    /// The graph built so far (no validation, no type inference).
    pub fn into_graph(self) -> GraphProto {
        GraphProto {
            name: self.name,
            node: self.nodes,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }

    /// Append the emitted nodes and initializers to `graph` (see [`GraphBuilder::extending`]).
    pub fn finish_into(self, graph: &mut GraphProto) {
        graph.node.extend(self.nodes);
        graph.initializer.extend(self.initializers);
        graph.input.extend(self.inputs);
        graph.output.extend(self.outputs);
    }

    /// Validate the graph (topological order, every input defined) and infer the type of every
    /// output declared without one. An output whose element type cannot be inferred is an
    /// error (declare it with [`GraphBuilder::output_typed`]).
    pub fn build(self) -> Result<ModelProto> {
        let opset = self.opset;
        let mut graph = self.into_graph();
        graph.sort_topologically()?;
        let model = ModelProto::with_graph(graph, opset);
        let inferred = crate::shapes::infer_types(&model);
        let mut model = model;
        let graph = model.graph_mut()?;
        for out in graph.output.iter_mut() {
            if out.r#type.is_some() {
                continue;
            }
            let Some(t) = inferred.get(&out.name) else {
                return Err(Error::InvalidArgument(format!(
                    "cannot infer the type of output \"{}\"; declare it with output_typed",
                    out.name
                )));
            };
            *out = tensor_value_info(&out.name, t.dtype, t.dims.as_deref());
        }
        Ok(model)
    }

    // ----- opset-aware helpers -------------------------------------------------------------

    /// `Reduce*` over `axes` (attribute before the op's input form, an input after).
    pub fn reduce(&mut self, op_type: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        let axes_as_input = if op_type == "ReduceSum" {
            self.opset >= 13
        } else {
            self.opset >= 18
        };
        let keep = attrs::int("keepdims", keepdims as i64);
        if axes.is_empty() {
            return self.op(op_type, &[x], vec![keep]);
        }
        if axes_as_input {
            let a = self.const_i64s(axes);
            self.op(op_type, &[x, &a], vec![keep])
        } else {
            self.op(op_type, &[x], vec![attrs::ints("axes", axes), keep])
        }
    }

    /// `Squeeze` of `axes`.
    pub fn squeeze(&mut self, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let a = self.const_i64s(axes);
            self.op("Squeeze", &[x, &a], vec![])
        } else {
            self.op("Squeeze", &[x], vec![attrs::ints("axes", axes)])
        }
    }

    /// `Unsqueeze` at `axes`.
    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let a = self.const_i64s(axes);
            self.op("Unsqueeze", &[x, &a], vec![])
        } else {
            self.op("Unsqueeze", &[x], vec![attrs::ints("axes", axes)])
        }
    }

    /// `Reshape` to a constant shape.
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.const_i64s(shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    /// `Expand` (numpy broadcasting) to a constant shape.
    pub fn expand(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.const_i64s(shape);
        self.op("Expand", &[x, &s], vec![])
    }

    /// `Transpose` with `perm`.
    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![attrs::ints("perm", perm)])
    }

    /// `Slice` with constant starts/ends/axes/steps.
    pub fn slice(
        &mut self,
        x: &str,
        starts: &[i64],
        ends: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> String {
        let s = self.const_i64s(starts);
        let e = self.const_i64s(ends);
        let a = self.const_i64s(axes);
        if steps.iter().all(|&s| s == 1) {
            self.op("Slice", &[x, &s, &e, &a], vec![])
        } else {
            let st = self.const_i64s(steps);
            self.op("Slice", &[x, &s, &e, &a, &st], vec![])
        }
    }

    /// `Pad` with constant `pads` (ONNX layout: all begins, then all ends) in `mode`
    /// (`constant` pads with zero).
    pub fn pad(&mut self, x: &str, pads: &[i64], mode: &str) -> String {
        let p = self.const_i64s(pads);
        self.op("Pad", &[x, &p], vec![attrs::string("mode", mode)])
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.op("Concat", xs, vec![attrs::int("axis", axis)])
    }

    /// `Split` along `axis` into pieces of the given sizes.
    pub fn split(&mut self, x: &str, axis: i64, sizes: &[i64]) -> Vec<String> {
        if self.opset >= 13 {
            let s = self.const_i64s(sizes);
            self.op_multi(
                "Split",
                &[x, &s],
                vec![attrs::int("axis", axis)],
                sizes.len(),
            )
        } else {
            self.op_multi(
                "Split",
                &[x],
                vec![attrs::int("axis", axis), attrs::ints("split", sizes)],
                sizes.len(),
            )
        }
    }

    /// `Cast` to `to`.
    pub fn cast(&mut self, x: &str, to: DataType) -> String {
        self.op("Cast", &[x], vec![attrs::int("to", to.0 as i64)])
    }

    /// `Add`.
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    /// `Sub`.
    pub fn sub(&mut self, a: &str, b: &str) -> String {
        self.op("Sub", &[a, b], vec![])
    }

    /// `Mul`.
    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }

    /// `Div`.
    pub fn div(&mut self, a: &str, b: &str) -> String {
        self.op("Div", &[a, b], vec![])
    }

    /// `Neg`.
    pub fn neg(&mut self, a: &str) -> String {
        self.op("Neg", &[a], vec![])
    }

    /// `MatMul`.
    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.op("MatMul", &[a, b], vec![])
    }

    /// `Where(cond, a, b)`.
    pub fn where_(&mut self, cond: &str, a: &str, b: &str) -> String {
        self.op("Where", &[cond, a, b], vec![])
    }

    /// `ConstantOfShape` with a constant shape and value (a cheap way to make zeros/ones).
    pub fn fill(&mut self, dims: &[usize], dtype: DataType, value: f64) -> String {
        let shape: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let s = self.const_i64s(&shape);
        let v = HostTensor::float(dtype, vec![1], vec![value]);
        let v = if dtype.is_float() { v } else { v.cast(dtype) };
        self.op(
            "ConstantOfShape",
            &[&s],
            vec![attrs::tensor("value", v.to_proto("value"))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opset_forms() {
        let mut b = GraphBuilder::new(11);
        let x = b.input("x", DataType::FLOAT, &[Dim::Fixed(2), Dim::Fixed(3)]);
        let y = b.reduce("ReduceSum", &x, &[1], true);
        let z = b.unsqueeze(&y, &[0]);
        b.output(&z, "z");
        let m = b.build().unwrap();
        let g = m.graph.unwrap();
        assert_eq!(
            g.node[0].input.len(),
            1,
            "opset 11 ReduceSum takes axes as attribute"
        );
        assert_eq!(
            g.output[0].dims().unwrap(),
            vec![Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(1)]
        );

        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::FLOAT, &[Dim::Fixed(2), Dim::Fixed(3)]);
        let y = b.reduce("ReduceSum", &x, &[1], true);
        let y2 = b.reduce("ReduceMean", &x, &[1], true);
        b.output(&y, "y");
        b.output(&y2, "y2");
        let g = b.build().unwrap().graph.unwrap();
        assert_eq!(
            g.node[0].input.len(),
            2,
            "opset 13 ReduceSum takes axes as input"
        );
        assert_eq!(
            g.node[1].input.len(),
            1,
            "opset 13 ReduceMean still uses the attribute"
        );
    }

    #[test]
    fn unknown_output_type_is_an_error() {
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::Fixed(2)]);
        let y = b
            .op_in_domain("com.example", "Mystery", &[&x], vec![], 1)
            .pop()
            .unwrap();
        b.output(&y, "y");
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("output_typed"), "{e}");
    }
}
