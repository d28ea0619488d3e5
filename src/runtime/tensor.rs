//! Owned tensors crossing the zoom ↔ ONNX Runtime boundary, and conversions to and from ORT values.

use crate::error::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

/// Element types zoom reads and writes. Others are reported by name but not converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// float32
    F32,
    /// float64
    F64,
    /// int64
    I64,
    /// int32
    I32,
    /// uint8
    U8,
    /// bool
    Bool,
}

impl DType {
    /// ONNX-style name (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    pub(crate) fn from_ort(t: TensorElementType) -> Option<DType> {
        Some(match t {
            TensorElementType::Float32 => DType::F32,
            TensorElementType::Float64 => DType::F64,
            TensorElementType::Int64 => DType::I64,
            TensorElementType::Int32 => DType::I32,
            TensorElementType::Uint8 => DType::U8,
            TensorElementType::Bool => DType::Bool,
            _ => return None,
        })
    }
}

/// An owned n-dimensional tensor of one of the supported element types.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// float32 data
    F32(ArrayD<f32>),
    /// float64 data
    F64(ArrayD<f64>),
    /// int64 data
    I64(ArrayD<i64>),
    /// int32 data
    I32(ArrayD<i32>),
    /// uint8 data
    U8(ArrayD<u8>),
    /// bool data
    Bool(ArrayD<bool>),
}

macro_rules! each {
    ($t:expr, $a:ident => $e:expr) => {
        match $t {
            Tensor::F32($a) => $e,
            Tensor::F64($a) => $e,
            Tensor::I64($a) => $e,
            Tensor::I32($a) => $e,
            Tensor::U8($a) => $e,
            Tensor::Bool($a) => $e,
        }
    };
}

impl Tensor {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I64(_) => DType::I64,
            Tensor::I32(_) => DType::I32,
            Tensor::U8(_) => DType::U8,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        each!(self, a => a.shape())
    }

    /// The float32 array, or an error naming `what` when the tensor has another type.
    pub fn as_f32(&self, what: &str) -> Result<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Ok(a),
            other => Err(Error::Tensor {
                model: String::new(),
                tensor: what.into(),
                message: format!("expected float32, got {}", other.dtype().name()),
            }),
        }
    }

    /// Consumes the tensor into its float32 array (see [`Tensor::as_f32`]).
    pub fn into_f32(self, what: &str) -> Result<ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Ok(a),
            other => Err(Error::Tensor {
                model: String::new(),
                tensor: what.into(),
                message: format!("expected float32, got {}", other.dtype().name()),
            }),
        }
    }

    /// Number of elements that are NaN or infinite (0 for integer types).
    pub fn non_finite_count(&self) -> usize {
        match self {
            Tensor::F32(a) => a.iter().filter(|v| !v.is_finite()).count(),
            Tensor::F64(a) => a.iter().filter(|v| !v.is_finite()).count(),
            _ => 0,
        }
    }

    /// A borrowed ORT value over this tensor's memory (no copy for contiguous arrays).
    pub(crate) fn to_ort(&self) -> ort::Result<ort::session::SessionInputValue<'_>> {
        Ok(each!(self, a => TensorRef::from_array_view(a.view())?.into_dyn().into()))
    }

    /// Copies an ORT output into an owned tensor; `None` for unsupported element types.
    pub(crate) fn from_ort(v: &DynValue) -> ort::Result<Option<Tensor>> {
        let ValueType::Tensor { ty, .. } = v.dtype() else {
            return Ok(None);
        };
        Ok(Some(match ty {
            TensorElementType::Float32 => Tensor::F32(v.try_extract_array::<f32>()?.to_owned()),
            TensorElementType::Float64 => Tensor::F64(v.try_extract_array::<f64>()?.to_owned()),
            TensorElementType::Int64 => Tensor::I64(v.try_extract_array::<i64>()?.to_owned()),
            TensorElementType::Int32 => Tensor::I32(v.try_extract_array::<i32>()?.to_owned()),
            TensorElementType::Uint8 => Tensor::U8(v.try_extract_array::<u8>()?.to_owned()),
            TensorElementType::Bool => Tensor::Bool(v.try_extract_array::<bool>()?.to_owned()),
            _ => return Ok(None),
        }))
    }

    /// A float32 tensor of zeros.
    pub fn zeros_f32(shape: &[usize]) -> Tensor {
        Tensor::F32(ArrayD::zeros(IxDyn(shape)))
    }
}
