//! Typed attribute getters (errors name the attribute, the op type and the node) and
//! attribute constructors for building nodes.
//!
//! ```
//! use zoom_graph::{attrs, Node};
//! let mut node = Node { op_type: "Transpose".into(), name: "t0".into(), ..Default::default() };
//! node.attribute.push(attrs::ints("perm", &[0, 2, 1]));
//! assert_eq!(node.attr_req::<Vec<i64>>("perm").unwrap(), vec![0, 2, 1]);
//! assert_eq!(node.attr_or::<i64>("axis", -1).unwrap(), -1);
//! let err = node.attr_req::<f32>("perm").unwrap_err().to_string();
//! assert!(err.contains("in node \"t0\" (Transpose): attribute \"perm\""));
//! ```

use crate::error::{Error, Result};
use crate::proto::{attribute_type as at, AttributeProto, GraphProto, NodeProto, TensorProto};

/// A Rust type an attribute can be read as.
pub trait AttrValue: Sized {
    /// The `AttributeProto.type` this Rust type reads.
    const TYPE: i32;
    /// Extract the value (the type has been checked).
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String>;
}

impl AttrValue for i64 {
    const TYPE: i32 = at::INT;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        Ok(a.i)
    }
}

impl AttrValue for f32 {
    const TYPE: i32 = at::FLOAT;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        Ok(a.f)
    }
}

impl AttrValue for String {
    const TYPE: i32 = at::STRING;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        String::from_utf8(a.s.clone()).map_err(|_| "string is not valid UTF-8".to_string())
    }
}

impl AttrValue for Vec<i64> {
    const TYPE: i32 = at::INTS;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        Ok(a.ints.clone())
    }
}

impl AttrValue for Vec<f32> {
    const TYPE: i32 = at::FLOATS;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        Ok(a.floats.clone())
    }
}

impl AttrValue for Vec<String> {
    const TYPE: i32 = at::STRINGS;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        a.strings
            .iter()
            .map(|s| String::from_utf8(s.clone()).map_err(|_| "string is not valid UTF-8".into()))
            .collect()
    }
}

impl AttrValue for TensorProto {
    const TYPE: i32 = at::TENSOR;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        a.t.clone()
            .ok_or_else(|| "tensor attribute has no tensor".to_string())
    }
}

impl AttrValue for GraphProto {
    const TYPE: i32 = at::GRAPH;
    fn extract(a: &AttributeProto) -> std::result::Result<Self, String> {
        a.g.clone()
            .ok_or_else(|| "graph attribute has no graph".to_string())
    }
}

/// The effective type of an attribute: the `type` field, or for files written before IR
/// version 2 (no `type`), the field that is set.
fn effective_type(a: &AttributeProto) -> i32 {
    if a.r#type != at::UNDEFINED {
        return a.r#type;
    }
    if !a.ints.is_empty() {
        at::INTS
    } else if !a.floats.is_empty() {
        at::FLOATS
    } else if !a.strings.is_empty() {
        at::STRINGS
    } else if a.t.is_some() {
        at::TENSOR
    } else if a.g.is_some() {
        at::GRAPH
    } else if !a.s.is_empty() {
        at::STRING
    } else if a.f != 0.0 {
        at::FLOAT
    } else {
        at::INT
    }
}

impl NodeProto {
    /// The raw attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }

    /// An error about attribute `name` of this node.
    pub fn attr_error(&self, name: &str, message: impl Into<String>) -> Error {
        Error::Attribute {
            node: self.label(),
            op_type: self.op_type.clone(),
            attribute: name.to_string(),
            message: message.into(),
        }
    }

    /// Attribute `name` as `T`, `None` if absent, an error if it has another type.
    pub fn get_attr<T: AttrValue>(&self, name: &str) -> Result<Option<T>> {
        let Some(a) = self.attr(name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(self.attr_error(name, "refers to a function attribute; not supported here"));
        }
        let t = effective_type(a);
        if t != T::TYPE {
            return Err(self.attr_error(
                name,
                format!("expected {}, found {}", at::name(T::TYPE), at::name(t)),
            ));
        }
        T::extract(a)
            .map(Some)
            .map_err(|m| self.attr_error(name, m))
    }

    /// Attribute `name` as `T`, or `default` if absent.
    pub fn attr_or<T: AttrValue>(&self, name: &str, default: T) -> Result<T> {
        Ok(self.get_attr(name)?.unwrap_or(default))
    }

    /// Attribute `name` as `T`; an error if absent.
    pub fn attr_req<T: AttrValue>(&self, name: &str) -> Result<T> {
        self.get_attr(name)?
            .ok_or_else(|| self.attr_error(name, "required but missing"))
    }

    /// Set (replace or add) an attribute.
    pub fn set_attr(&mut self, a: AttributeProto) {
        if let Some(old) = self.attribute.iter_mut().find(|x| x.name == a.name) {
            *old = a;
        } else {
            self.attribute.push(a);
        }
    }
}

fn named(name: &str, t: i32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: t,
        ..Default::default()
    }
}

/// An `INT` attribute.
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..named(name, at::INT)
    }
}

/// An `INTS` attribute.
pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..named(name, at::INTS)
    }
}

/// A `FLOAT` attribute.
pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: v,
        ..named(name, at::FLOAT)
    }
}

/// A `FLOATS` attribute.
pub fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        floats: v.to_vec(),
        ..named(name, at::FLOATS)
    }
}

/// A `STRING` attribute.
pub fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: v.as_bytes().to_vec(),
        ..named(name, at::STRING)
    }
}

/// A `STRINGS` attribute.
pub fn strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..named(name, at::STRINGS)
    }
}

/// A `TENSOR` attribute.
pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..named(name, at::TENSOR)
    }
}

/// A `GRAPH` attribute.
pub fn graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(g),
        ..named(name, at::GRAPH)
    }
}
