//! ONNX graph IR, graph transformations and reverse-mode autodiff for zoom. No ONNX Runtime.
//!
//! The pieces, in pipeline order:
//!
//! 1. [`io`]: read/write `.onnx` files ([`read_model`], [`write_model`]), with size limits,
//!    clear errors and external tensor data.
//! 2. [`proto`]: the protobuf messages; [`model`] adds the IR helpers on top of them (value
//!    types, opsets, topological order, fresh names); [`attrs`] has typed attribute getters.
//! 3. [`builder`]: [`GraphBuilder`] for small graphs (preprocessing prefixes, loss heads,
//!    tests); [`compose()`] joins two models into one.
//! 4. [`shapes`]: static shape/type inference, `--shape` fixing; [`eval`] folds constants.
//! 5. [`autodiff`]: [`build_vjp`] turns a forward model into a gradient (VJP) model in
//!    standard ONNX operators; [`passes`] cleans it up (fold, CSE, DCE).
#![warn(missing_docs)]

pub mod attrs;
pub mod autodiff;
pub mod builder;
pub mod compose;
pub mod dtype;
pub(crate) mod einsum;
pub mod error;
pub mod eval;
pub mod fp16;
pub mod io;
pub mod model;
pub mod passes;
pub mod proto;
pub mod shapes;
pub mod tensor;
pub mod upgrade;

#[cfg(test)]
mod testutil;

pub use autodiff::{build_vjp, VjpSpec};
pub use builder::GraphBuilder;
pub use compose::{compose, ComposeOptions};
pub use dtype::DataType;
pub use error::{Error, Result, Warning};
pub use fp16::{convert_to_fp16, Fp16Options, Fp16Report};
pub use io::{read_model, write_model};
pub use model::{Dim, Node};
pub use proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
pub use upgrade::upgrade_opset;
