//! Host-side tensors for constants: decoding [`TensorProto`]s (raw or typed fields), building
//! them, and a simple value type ([`HostTensor`]) used by constant folding and shape arithmetic.
//!
//! Values are stored widened (`f64` for every float type, `i64` for integers and bool), which is
//! exact for every type zoom folds; results are rounded back to the element type when written.

use crate::error::{Error, Result};
use crate::proto::{data_location, TensorProto};
use crate::DataType;

/// Widened element storage of a [`HostTensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Float types (float, double, float16, bfloat16).
    Float(Vec<f64>),
    /// Integer types and bool (0/1).
    Int(Vec<i64>),
}

/// A small tensor held on the host: element type, shape and widened values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Element type (what it is written back as).
    pub dtype: DataType,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub data: TensorData,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl HostTensor {
    /// A float-typed tensor (`dtype` must be a float type).
    pub fn float(dtype: DataType, shape: Vec<usize>, values: Vec<f64>) -> Self {
        debug_assert_eq!(numel(&shape), values.len());
        HostTensor {
            dtype,
            shape,
            data: TensorData::Float(values),
        }
    }

    /// An integer- or bool-typed tensor.
    pub fn int(dtype: DataType, shape: Vec<usize>, values: Vec<i64>) -> Self {
        debug_assert_eq!(numel(&shape), values.len());
        HostTensor {
            dtype,
            shape,
            data: TensorData::Int(values),
        }
    }

    /// A 1-D int64 tensor.
    pub fn i64s(values: &[i64]) -> Self {
        Self::int(DataType::INT64, vec![values.len()], values.to_vec())
    }

    /// A scalar of any numeric type.
    pub fn scalar(dtype: DataType, v: f64) -> Self {
        if dtype.is_float() {
            Self::float(dtype, vec![], vec![v])
        } else {
            Self::int(dtype, vec![], vec![v as i64])
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::Float(v) => v.len(),
            TensorData::Int(v) => v.len(),
        }
    }

    /// True if the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values as i64 (floats truncated toward zero).
    pub fn to_i64s(&self) -> Vec<i64> {
        match &self.data {
            TensorData::Float(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Int(v) => v.clone(),
        }
    }

    /// Values as f64.
    pub fn to_f64s(&self) -> Vec<f64> {
        match &self.data {
            TensorData::Float(v) => v.clone(),
            TensorData::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Decode a [`TensorProto`] (raw_data or the typed fields). External data must have been
    /// loaded first ([`crate::io::read_model`] does this).
    pub fn from_proto(t: &TensorProto) -> Result<Self> {
        let dtype = DataType(t.data_type);
        let bad = |m: String| Error::InvalidModel(format!("tensor \"{}\": {m}", t.name));
        if t.data_location == data_location::EXTERNAL {
            return Err(bad("external data is not loaded".into()));
        }
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in &t.dims {
            shape.push(usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}")))?);
        }
        let n = numel(&shape);
        let data = if !t.raw_data.is_empty() {
            let size = dtype
                .size_bytes()
                .ok_or_else(|| bad(format!("cannot decode element type {dtype}")))?;
            if t.raw_data.len() != n * size {
                return Err(bad(format!(
                    "raw_data has {} bytes, expected {} ({} elements of {dtype})",
                    t.raw_data.len(),
                    n * size,
                    n
                )));
            }
            decode_raw(dtype, &t.raw_data).ok_or_else(|| bad(format!("cannot decode {dtype}")))?
        } else {
            let d = match dtype {
                DataType::FLOAT => {
                    TensorData::Float(t.float_data.iter().map(|&x| x as f64).collect())
                }
                DataType::DOUBLE => TensorData::Float(t.double_data.clone()),
                DataType::FLOAT16 => TensorData::Float(
                    t.int32_data
                        .iter()
                        .map(|&x| f16_to_f32(x as u16) as f64)
                        .collect(),
                ),
                DataType::BFLOAT16 => TensorData::Float(
                    t.int32_data
                        .iter()
                        .map(|&x| bf16_to_f32(x as u16) as f64)
                        .collect(),
                ),
                DataType::INT64 => TensorData::Int(t.int64_data.clone()),
                DataType::UINT32 | DataType::UINT64 => {
                    TensorData::Int(t.uint64_data.iter().map(|&x| x as i64).collect())
                }
                DataType::INT32
                | DataType::INT16
                | DataType::INT8
                | DataType::UINT16
                | DataType::UINT8
                | DataType::BOOL => {
                    TensorData::Int(t.int32_data.iter().map(|&x| x as i64).collect())
                }
                _ => return Err(bad(format!("cannot decode element type {dtype}"))),
            };
            let len = match &d {
                TensorData::Float(v) => v.len(),
                TensorData::Int(v) => v.len(),
            };
            if len != n {
                return Err(bad(format!(
                    "has {len} values, its shape {shape:?} needs {n}"
                )));
            }
            d
        };
        Ok(HostTensor { dtype, shape, data })
    }

    /// Encode as a [`TensorProto`] called `name` (raw_data, little-endian).
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let mut raw = Vec::with_capacity(self.len() * self.dtype.size_bytes().unwrap_or(8));
        match &self.data {
            TensorData::Float(v) => {
                for &x in v {
                    match self.dtype {
                        DataType::DOUBLE => raw.extend_from_slice(&x.to_le_bytes()),
                        DataType::FLOAT16 => {
                            raw.extend_from_slice(&f32_to_f16(x as f32).to_le_bytes())
                        }
                        DataType::BFLOAT16 => {
                            raw.extend_from_slice(&f32_to_bf16(x as f32).to_le_bytes())
                        }
                        _ => raw.extend_from_slice(&(x as f32).to_le_bytes()),
                    }
                }
            }
            TensorData::Int(v) => {
                for &x in v {
                    match self.dtype {
                        DataType::INT32 => raw.extend_from_slice(&(x as i32).to_le_bytes()),
                        DataType::UINT32 => raw.extend_from_slice(&(x as u32).to_le_bytes()),
                        DataType::INT16 => raw.extend_from_slice(&(x as i16).to_le_bytes()),
                        DataType::UINT16 => raw.extend_from_slice(&(x as u16).to_le_bytes()),
                        DataType::INT8 => raw.extend_from_slice(&(x as i8).to_le_bytes()),
                        DataType::UINT8 | DataType::BOOL => raw.push(x as u8),
                        DataType::UINT64 => raw.extend_from_slice(&(x as u64).to_le_bytes()),
                        _ => raw.extend_from_slice(&x.to_le_bytes()),
                    }
                }
            }
        }
        TensorProto {
            name: name.to_string(),
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: self.dtype.0,
            raw_data: raw,
            ..Default::default()
        }
    }

    /// Convert to another element type (rounding floats to the target precision, truncating
    /// floats to integers toward zero, bool = non-zero).
    pub fn cast(&self, to: DataType) -> HostTensor {
        let data = if to.is_float() {
            let v = self.to_f64s();
            TensorData::Float(v.into_iter().map(|x| round_to(to, x)).collect())
        } else if to == DataType::BOOL {
            TensorData::Int(
                self.to_f64s()
                    .into_iter()
                    .map(|x| (x != 0.0) as i64)
                    .collect(),
            )
        } else {
            TensorData::Int(self.to_i64s())
        };
        HostTensor {
            dtype: to,
            shape: self.shape.clone(),
            data,
        }
    }
}

/// Round a widened value to the precision of a float type.
pub fn round_to(dtype: DataType, x: f64) -> f64 {
    match dtype {
        DataType::FLOAT => x as f32 as f64,
        DataType::FLOAT16 => f16_to_f32(f32_to_f16(x as f32)) as f64,
        DataType::BFLOAT16 => bf16_to_f32(f32_to_bf16(x as f32)) as f64,
        _ => x,
    }
}

fn decode_raw(dtype: DataType, raw: &[u8]) -> Option<TensorData> {
    macro_rules! chunks {
        ($n:expr, $f:expr) => {
            raw.chunks_exact($n)
                .map(|c| $f(c.try_into().expect("chunk size")))
                .collect()
        };
    }
    Some(match dtype {
        DataType::FLOAT => TensorData::Float(chunks!(4, |b| f32::from_le_bytes(b) as f64)),
        DataType::DOUBLE => TensorData::Float(chunks!(8, f64::from_le_bytes)),
        DataType::FLOAT16 => {
            TensorData::Float(chunks!(2, |b| f16_to_f32(u16::from_le_bytes(b)) as f64))
        }
        DataType::BFLOAT16 => {
            TensorData::Float(chunks!(2, |b| bf16_to_f32(u16::from_le_bytes(b)) as f64))
        }
        DataType::INT64 => TensorData::Int(chunks!(8, i64::from_le_bytes)),
        DataType::UINT64 => TensorData::Int(chunks!(8, |b| u64::from_le_bytes(b) as i64)),
        DataType::INT32 => TensorData::Int(chunks!(4, |b| i32::from_le_bytes(b) as i64)),
        DataType::UINT32 => TensorData::Int(chunks!(4, |b| u32::from_le_bytes(b) as i64)),
        DataType::INT16 => TensorData::Int(chunks!(2, |b| i16::from_le_bytes(b) as i64)),
        DataType::UINT16 => TensorData::Int(chunks!(2, |b| u16::from_le_bytes(b) as i64)),
        DataType::INT8 => TensorData::Int(raw.iter().map(|&b| b as i8 as i64).collect()),
        DataType::UINT8 | DataType::BOOL => {
            TensorData::Int(raw.iter().map(|&b| b as i64).collect())
        }
        _ => return None,
    })
}

/// A float tensor proto from f64 values, stored in `dtype` (float, double, float16, bfloat16).
pub fn float_tensor(name: &str, dtype: DataType, dims: &[usize], values: &[f64]) -> TensorProto {
    HostTensor::float(dtype, dims.to_vec(), values.to_vec()).to_proto(name)
}

/// A 1-D int64 tensor proto.
pub fn i64_tensor(name: &str, values: &[i64]) -> TensorProto {
    HostTensor::i64s(values).to_proto(name)
}

/// IEEE half → single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// Single → IEEE half precision, round to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// bfloat16 → single precision.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Single → bfloat16, round to nearest even.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    ((bits + round) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip() {
        for &x in &[0.0f32, 1.0, -2.5, 65504.0, 6.1e-5, 1e-7, 0.1] {
            let y = f16_to_f32(f32_to_f16(x));
            assert!((y - x).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {y}");
        }
    }

    #[test]
    fn proto_round_trip() {
        for dtype in [DataType::FLOAT, DataType::DOUBLE, DataType::FLOAT16] {
            let t = HostTensor::float(dtype, vec![2, 2], vec![1.0, -2.0, 0.5, 3.0]);
            assert_eq!(HostTensor::from_proto(&t.to_proto("x")).unwrap(), t);
        }
        for dtype in [
            DataType::INT64,
            DataType::INT32,
            DataType::INT8,
            DataType::BOOL,
        ] {
            let t = HostTensor::int(dtype, vec![3], vec![1, 0, 1]);
            assert_eq!(HostTensor::from_proto(&t.to_proto("x")).unwrap(), t);
        }
    }

    #[test]
    fn typed_fields_decode() {
        let t = TensorProto {
            dims: vec![2],
            data_type: 7,
            int64_data: vec![4, -1],
            ..Default::default()
        };
        assert_eq!(HostTensor::from_proto(&t).unwrap().to_i64s(), vec![4, -1]);
        let bad = TensorProto {
            dims: vec![3],
            data_type: 7,
            int64_data: vec![4],
            ..Default::default()
        };
        assert!(HostTensor::from_proto(&bad)
            .unwrap_err()
            .to_string()
            .contains("needs 3"));
    }
}
