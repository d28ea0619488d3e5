//! ONNX element types (`TensorProto.DataType`).

use std::fmt;

/// An ONNX element type, the `TensorProto.DataType` number. A newtype rather than an enum so an
/// unknown future type is carried through, not rejected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataType(pub i32);

impl DataType {
    /// Not set.
    pub const UNDEFINED: DataType = DataType(0);
    /// float32.
    pub const FLOAT: DataType = DataType(1);
    /// uint8.
    pub const UINT8: DataType = DataType(2);
    /// int8.
    pub const INT8: DataType = DataType(3);
    /// uint16.
    pub const UINT16: DataType = DataType(4);
    /// int16.
    pub const INT16: DataType = DataType(5);
    /// int32.
    pub const INT32: DataType = DataType(6);
    /// int64.
    pub const INT64: DataType = DataType(7);
    /// UTF-8 string.
    pub const STRING: DataType = DataType(8);
    /// bool (one byte).
    pub const BOOL: DataType = DataType(9);
    /// IEEE half precision.
    pub const FLOAT16: DataType = DataType(10);
    /// float64.
    pub const DOUBLE: DataType = DataType(11);
    /// uint32.
    pub const UINT32: DataType = DataType(12);
    /// uint64.
    pub const UINT64: DataType = DataType(13);
    /// complex64.
    pub const COMPLEX64: DataType = DataType(14);
    /// complex128.
    pub const COMPLEX128: DataType = DataType(15);
    /// bfloat16.
    pub const BFLOAT16: DataType = DataType(16);

    /// True for the real floating-point types, the only ones gradients flow through.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::FLOAT | Self::DOUBLE | Self::FLOAT16 | Self::BFLOAT16
        )
    }

    /// True for the signed and unsigned integer types.
    pub fn is_int(self) -> bool {
        matches!(
            self,
            Self::UINT8
                | Self::INT8
                | Self::UINT16
                | Self::INT16
                | Self::INT32
                | Self::INT64
                | Self::UINT32
                | Self::UINT64
        )
    }

    /// Size of one element in bytes (raw_data layout), `None` for strings and unknown types.
    pub fn size_bytes(self) -> Option<usize> {
        Some(match self {
            Self::UINT8 | Self::INT8 | Self::BOOL => 1,
            Self::UINT16 | Self::INT16 | Self::FLOAT16 | Self::BFLOAT16 => 2,
            Self::FLOAT | Self::INT32 | Self::UINT32 => 4,
            Self::DOUBLE | Self::INT64 | Self::UINT64 | Self::COMPLEX64 => 8,
            Self::COMPLEX128 => 16,
            _ => return None,
        })
    }

    /// The ONNX name of the type (`float`, `int64`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::UNDEFINED => "undefined",
            Self::FLOAT => "float",
            Self::UINT8 => "uint8",
            Self::INT8 => "int8",
            Self::UINT16 => "uint16",
            Self::INT16 => "int16",
            Self::INT32 => "int32",
            Self::INT64 => "int64",
            Self::STRING => "string",
            Self::BOOL => "bool",
            Self::FLOAT16 => "float16",
            Self::DOUBLE => "double",
            Self::UINT32 => "uint32",
            Self::UINT64 => "uint64",
            Self::COMPLEX64 => "complex64",
            Self::COMPLEX128 => "complex128",
            Self::BFLOAT16 => "bfloat16",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name() == "unknown" {
            write!(f, "data type {}", self.0)
        } else {
            f.write_str(self.name())
        }
    }
}
