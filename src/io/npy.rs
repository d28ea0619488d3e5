//! NumPy `.npy` files (format versions 1–3), little-endian, C order. Parsed with limits: the header
//! must be small and well formed, and the data length must match the shape exactly.

use crate::error::{Error, Result};
use crate::runtime::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
const MAX_HEADER: usize = 64 * 1024;
/// Largest array zoom reads from a `.npy` file (elements); protects against absurd headers.
pub const MAX_ELEMENTS: usize = 1 << 31;

fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    }
}

fn dtype_of(descr: &str) -> Option<DType> {
    Some(match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i8" => DType::I64,
        "<i4" => DType::I32,
        "|u1" | "<u1" => DType::U8,
        "|b1" => DType::Bool,
        _ => return None,
    })
}

/// Extracts the value text of `'key':` from the header dict.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        let end = rest.find(')')?;
        Some(&rest[..=end])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

/// Parses `.npy` bytes; `path` is only used in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Tensor> {
    let bad = |m: String| Error::data(path, m);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (missing \\x93NUMPY magic)".into()));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    if hlen > MAX_HEADER || hstart + hlen > bytes.len() {
        return Err(bad(format!("truncated or oversized header ({hlen} bytes)")));
    }
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen])
        .map_err(|_| bad("header is not text".into()))?;
    let descr_s = header_value(header, "descr")
        .map(|s| s.trim_matches(|c| c == '\'' || c == '"'))
        .ok_or_else(|| bad("header has no 'descr'".into()))?;
    let dtype = dtype_of(descr_s).ok_or_else(|| {
        bad(format!(
            "unsupported dtype '{descr_s}'; expected little-endian float32/float64/int64/int32/uint8/bool"
        ))
    })?;
    if header_value(header, "fortran_order") != Some("False") {
        return Err(bad(
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into(),
        ));
    }
    let shape_s =
        header_value(header, "shape").ok_or_else(|| bad("header has no 'shape'".into()))?;
    let shape: Vec<usize> = shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(format!("bad shape {shape_s}")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let data = &bytes[hstart + hlen..];
    let width = match dtype {
        DType::F64 | DType::I64 => 8,
        DType::F32 | DType::I32 => 4,
        DType::U8 | DType::Bool => 1,
    };
    if data.len() != count * width {
        return Err(bad(format!(
            "data is {} bytes but shape {shape:?} of {} needs {} (truncated file?)",
            data.len(),
            dtype.name(),
            count * width
        )));
    }
    fn arr<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
        // The length was checked against the shape above, so this cannot fail.
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| unreachable!("length checked"))
    }
    fn le<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        b
    }
    Ok(match dtype {
        DType::F32 => Tensor::F32(arr(
            &shape,
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes(le(c)))
                .collect(),
        )),
        DType::F64 => Tensor::F64(arr(
            &shape,
            data.chunks_exact(8)
                .map(|c| f64::from_le_bytes(le(c)))
                .collect(),
        )),
        DType::I64 => Tensor::I64(arr(
            &shape,
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes(le(c)))
                .collect(),
        )),
        DType::I32 => Tensor::I32(arr(
            &shape,
            data.chunks_exact(4)
                .map(|c| i32::from_le_bytes(le(c)))
                .collect(),
        )),
        DType::U8 => Tensor::U8(arr(&shape, data.to_vec())),
        DType::Bool => Tensor::Bool(arr(&shape, data.iter().map(|&b| b != 0).collect())),
    })
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// Serialises a tensor as `.npy` (version 1.0).
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let shape = t.shape();
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_s}, }}",
        descr(t.dtype())
    );
    // Pad so that the data starts at a multiple of 64 bytes, ending the header with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.shape().iter().product::<usize>() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match t {
        Tensor::F32(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::F64(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::I64(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::I32(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::U8(a) => out.extend(a.iter()),
        Tensor::Bool(a) => out.extend(a.iter().map(|&b| b as u8)),
    }
    out
}

/// Writes a tensor to `path` atomically.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    super::atomic::write(path, &to_bytes(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype() {
        let p = Path::new("t.npy");
        let cases = vec![
            Tensor::F32(
                ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -2.5, 3.0, 0.0, 5.5, 6.0])
                    .unwrap(),
            ),
            Tensor::F64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 3.0]).unwrap()),
            Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![-7, 9]).unwrap()),
            Tensor::U8(ArrayD::from_shape_vec(IxDyn(&[0]), vec![]).unwrap()),
            Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![true, false]).unwrap()),
        ];
        for t in cases {
            let bytes = to_bytes(&t);
            assert_eq!(
                (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
                0
            );
            assert_eq!(parse(&bytes, p).unwrap(), t);
        }
    }

    #[test]
    fn rejects_truncated_and_foreign_files() {
        let p = Path::new("x.npy");
        let t = Tensor::F32(ArrayD::zeros(IxDyn(&[4, 4])));
        let bytes = to_bytes(&t);
        let err = parse(&bytes[..bytes.len() - 3], p).unwrap_err().to_string();
        assert!(err.contains("x.npy") && err.contains("truncated"), "{err}");
        let err = parse(b"PK\x03\x04 not numpy", p).unwrap_err().to_string();
        assert!(err.contains("not a .npy"), "{err}");
    }
}
