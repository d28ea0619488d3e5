//! A small host evaluator for constant subgraphs: shape arithmetic (Shape → Gather → Concat →
//! Reshape chains), constant weights preprocessing (Transpose, Mul, Sqrt of BatchNorm
//! parameters, …) and the constants emitted by gradient rules.
//!
//! It is deliberately simple (widened f64/i64 values, naive loops): it only ever runs on
//! constants, once, at transformation time. [`eval_node`] returns `Ok(None)` for an operator or
//! variant it does not implement, so callers just leave such nodes in the graph.

use crate::error::Result;
use crate::proto::NodeProto;
use crate::tensor::{numel, round_to, HostTensor, TensorData};
use crate::DataType;

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Numpy-style broadcast of two shapes, `None` if incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return None;
        };
    }
    Some(out)
}

/// For each element of `out_shape`, the flat index into a tensor of `shape` broadcast to it.
fn broadcast_indices(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let r = out_shape.len();
    let st = strides(shape);
    // Stride per output axis (0 on broadcast axes).
    let mut bst = vec![0usize; r];
    for i in 0..shape.len() {
        let oi = i + r - shape.len();
        bst[oi] = if shape[i] == 1 { 0 } else { st[i] };
    }
    let n = numel(out_shape);
    let mut idx = vec![0usize; n];
    let mut counter = vec![0usize; r];
    let mut cur = 0usize;
    for slot in idx.iter_mut() {
        *slot = cur;
        // Increment the multi-index.
        for ax in (0..r).rev() {
            counter[ax] += 1;
            cur += bst[ax];
            if counter[ax] < out_shape[ax] {
                break;
            }
            cur -= bst[ax] * counter[ax];
            counter[ax] = 0;
        }
    }
    idx
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (a >= 0 && (a as usize) < rank.max(1)).then_some(a as usize)
}

fn map_f(t: &HostTensor, f: impl Fn(f64) -> f64) -> Option<HostTensor> {
    match &t.data {
        TensorData::Float(v) => Some(HostTensor::float(
            t.dtype,
            t.shape.clone(),
            v.iter().map(|&x| round_to(t.dtype, f(x))).collect(),
        )),
        TensorData::Int(_) => None,
    }
}

fn map_num(t: &HostTensor, fi: impl Fn(i64) -> i64, ff: impl Fn(f64) -> f64) -> HostTensor {
    match &t.data {
        TensorData::Float(v) => HostTensor::float(
            t.dtype,
            t.shape.clone(),
            v.iter().map(|&x| round_to(t.dtype, ff(x))).collect(),
        ),
        TensorData::Int(v) => {
            HostTensor::int(t.dtype, t.shape.clone(), v.iter().map(|&x| fi(x)).collect())
        }
    }
}

/// Broadcasting binary op. `out_dtype` None = the inputs' type.
fn binary(
    a: &HostTensor,
    b: &HostTensor,
    out_dtype: Option<DataType>,
    fi: impl Fn(i64, i64) -> Option<i64>,
    ff: impl Fn(f64, f64) -> f64,
) -> Option<HostTensor> {
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let ia = broadcast_indices(&a.shape, &shape);
    let ib = broadcast_indices(&b.shape, &shape);
    let out_dtype = out_dtype.unwrap_or(a.dtype);
    match (&a.data, &b.data) {
        (TensorData::Int(x), TensorData::Int(y)) => {
            let v: Option<Vec<i64>> = ia.iter().zip(&ib).map(|(&i, &j)| fi(x[i], y[j])).collect();
            Some(HostTensor::int(out_dtype, shape, v?))
        }
        _ => {
            let x = a.to_f64s();
            let y = b.to_f64s();
            let v: Vec<f64> = ia.iter().zip(&ib).map(|(&i, &j)| ff(x[i], y[j])).collect();
            if out_dtype.is_float() {
                Some(HostTensor::float(
                    out_dtype,
                    shape,
                    v.into_iter().map(|z| round_to(out_dtype, z)).collect(),
                ))
            } else {
                Some(HostTensor::int(
                    out_dtype,
                    shape,
                    v.into_iter().map(|z| z as i64).collect(),
                ))
            }
        }
    }
}

fn compare(a: &HostTensor, b: &HostTensor, f: impl Fn(f64, f64) -> bool) -> Option<HostTensor> {
    binary(
        a,
        b,
        Some(DataType::BOOL),
        |x, y| Some(f(x as f64, y as f64) as i64),
        |x, y| f(x, y) as i64 as f64,
    )
    .map(|t| t.cast(DataType::BOOL))
}

/// Gather elements at flat `indices` (into `t`) into a new tensor of `shape`.
fn take(t: &HostTensor, indices: &[usize], shape: Vec<usize>) -> HostTensor {
    match &t.data {
        TensorData::Float(v) => {
            HostTensor::float(t.dtype, shape, indices.iter().map(|&i| v[i]).collect())
        }
        TensorData::Int(v) => {
            HostTensor::int(t.dtype, shape, indices.iter().map(|&i| v[i]).collect())
        }
    }
}

/// N-d transpose.
pub fn transpose(t: &HostTensor, perm: &[usize]) -> HostTensor {
    let out_shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let st = strides(&t.shape);
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n = numel(&out_shape);
    let mut idx = Vec::with_capacity(n);
    let r = out_shape.len();
    let mut counter = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..n {
        idx.push(cur);
        for ax in (0..r).rev() {
            counter[ax] += 1;
            cur += pst[ax];
            if counter[ax] < out_shape[ax] {
                break;
            }
            cur -= pst[ax] * counter[ax];
            counter[ax] = 0;
        }
    }
    take(t, &idx, out_shape)
}

/// Slice along axes with already-clamped (start, step, count) per axis.
fn slice_host(t: &HostTensor, spec: &[(usize, i64, usize)]) -> HostTensor {
    let st = strides(&t.shape);
    let out_shape: Vec<usize> = spec.iter().map(|s| s.2).collect();
    let n = numel(&out_shape);
    let mut idx = Vec::with_capacity(n);
    let r = out_shape.len();
    let mut counter = vec![0usize; r];
    for _ in 0..n {
        let mut flat = 0i64;
        for ax in 0..r {
            flat += (spec[ax].0 as i64 + counter[ax] as i64 * spec[ax].1) * st[ax] as i64;
        }
        idx.push(flat as usize);
        for ax in (0..r).rev() {
            counter[ax] += 1;
            if counter[ax] < out_shape[ax] {
                break;
            }
            counter[ax] = 0;
        }
    }
    take(t, &idx, out_shape)
}

/// Clamp ONNX Slice parameters for one axis of length `dim`: (first index, step, count).
pub fn slice_params(start: i64, end: i64, step: i64, dim: usize) -> (usize, i64, usize) {
    let d = dim as i64;
    let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
    let (s, e) = if step > 0 {
        let s = if start < 0 { start + d } else { start };
        let e = if end < 0 { end + d } else { end };
        (clamp(s, 0, d), clamp(e, 0, d))
    } else {
        let s = if start < 0 { start + d } else { start };
        let e = if end < 0 { end + d } else { end };
        (clamp(s, -1, d - 1), clamp(e, -1, d - 1))
    };
    let count = if step > 0 {
        if e > s {
            (e - s + step - 1) / step
        } else {
            0
        }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    (s.max(0) as usize, step, count as usize)
}

/// Generic reduction over `axes` (empty = all).
fn reduce(
    t: &HostTensor,
    axes: &[usize],
    keepdims: bool,
    init: f64,
    f: impl Fn(f64, f64) -> f64,
) -> HostTensor {
    let r = t.shape.len();
    let reduce_all = axes.is_empty();
    let is_red = |ax: usize| reduce_all || axes.contains(&ax);
    let kept_shape: Vec<usize> = (0..r)
        .map(|ax| if is_red(ax) { 1 } else { t.shape[ax] })
        .collect();
    let ost = strides(&kept_shape);
    let mut acc = vec![init; numel(&kept_shape)];
    let vals = t.to_f64s();
    let mut counter = vec![0usize; r];
    for v in vals {
        let mut o = 0;
        for ax in 0..r {
            if !is_red(ax) {
                o += counter[ax] * ost[ax];
            }
        }
        acc[o] = f(acc[o], v);
        for ax in (0..r).rev() {
            counter[ax] += 1;
            if counter[ax] < t.shape[ax] {
                break;
            }
            counter[ax] = 0;
        }
    }
    let shape = if keepdims {
        kept_shape
    } else {
        (0..r)
            .filter(|&ax| !is_red(ax))
            .map(|ax| t.shape[ax])
            .collect()
    };
    if t.dtype.is_float() {
        HostTensor::float(
            t.dtype,
            shape,
            acc.into_iter().map(|x| round_to(t.dtype, x)).collect(),
        )
    } else {
        HostTensor::int(t.dtype, shape, acc.into_iter().map(|x| x as i64).collect())
    }
}

fn concat(ts: &[&HostTensor], axis: usize) -> Option<HostTensor> {
    let first = ts.first()?;
    let r = first.shape.len();
    let mut shape = first.shape.clone();
    shape[axis] = ts.iter().map(|t| t.shape[axis]).sum();
    let outer: usize = shape[..axis].iter().product();
    let dtype = first.dtype;
    let float = dtype.is_float();
    let (mut fv, mut iv) = (Vec::new(), Vec::new());
    for o in 0..outer {
        for t in ts {
            if t.shape.len() != r {
                return None;
            }
            let inner: usize = t.shape[axis..].iter().product();
            let range = o * inner..(o + 1) * inner;
            match &t.data {
                TensorData::Float(v) if float => fv.extend_from_slice(&v[range]),
                TensorData::Int(v) if !float => iv.extend_from_slice(&v[range]),
                _ => return None,
            }
        }
    }
    Some(if float {
        HostTensor::float(dtype, shape, fv)
    } else {
        HostTensor::int(dtype, shape, iv)
    })
}

fn expand(t: &HostTensor, shape: &[usize]) -> Option<HostTensor> {
    let out = broadcast_shapes(&t.shape, shape)?;
    let idx = broadcast_indices(&t.shape, &out);
    Some(take(t, &idx, out))
}

/// Evaluate one node on constant inputs (`None` for an omitted optional input). Returns
/// `Ok(None)` if the operator or this variant is not implemented here.
pub fn eval_node(
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<&HostTensor>],
) -> Result<Option<Vec<HostTensor>>> {
    if !node.is_default_domain() {
        return Ok(None);
    }
    let inp = |i: usize| inputs.get(i).copied().flatten();
    let Some(x) = inp(0) else {
        return eval_no_input(node);
    };
    let one = |t: Option<HostTensor>| Ok(t.map(|t| vec![t]));
    let op = node.op_type.as_str();
    match op {
        "Identity" => one(Some(x.clone())),
        "Cast" => {
            let to = DataType(node.attr_req::<i64>("to")? as i32);
            one(Some(x.cast(to)))
        }
        "CastLike" => one(inp(1).map(|t| x.cast(t.dtype))),
        "Shape" => {
            let r = x.shape.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let s = clampi(node.attr_or::<i64>("start", 0)?);
            let e = clampi(node.attr_or::<i64>("end", r)?);
            let dims: Vec<i64> = x.shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
            one(Some(HostTensor::i64s(&dims)))
        }
        "Size" => one(Some(HostTensor::int(
            DataType::INT64,
            vec![],
            vec![x.len() as i64],
        ))),
        "Neg" => one(Some(map_num(x, |v| -v, |v| -v))),
        "Abs" => one(Some(map_num(x, i64::abs, f64::abs))),
        "Sign" => one(Some(map_num(x, i64::signum, |v| {
            if v == 0.0 {
                0.0
            } else {
                v.signum()
            }
        }))),
        "Floor" => one(map_f(x, f64::floor)),
        "Ceil" => one(map_f(x, f64::ceil)),
        "Round" => one(map_f(x, |v| {
            let r = v.round();
            if (v - v.trunc()).abs() == 0.5 {
                2.0 * (v / 2.0).round()
            } else {
                r
            }
        })),
        "Sqrt" => one(map_f(x, f64::sqrt)),
        "Exp" => one(map_f(x, f64::exp)),
        "Log" => one(map_f(x, f64::ln)),
        "Reciprocal" => one(map_f(x, |v| 1.0 / v)),
        "Relu" => one(Some(map_num(x, |v| v.max(0), |v| v.max(0.0)))),
        "Sigmoid" => one(map_f(x, |v| 1.0 / (1.0 + (-v).exp()))),
        "Tanh" => one(map_f(x, f64::tanh)),
        "Not" => one(Some(HostTensor::int(
            DataType::BOOL,
            x.shape.clone(),
            x.to_i64s().iter().map(|&v| (v == 0) as i64).collect(),
        ))),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Max" | "Min" | "Sum" | "Mean"
        | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
        | "Xor" => {
            let Some(y) = inp(1) else {
                return Ok(match op {
                    "Max" | "Min" | "Sum" | "Mean" if inputs.len() == 1 => Some(vec![x.clone()]),
                    _ => None,
                });
            };
            let r = match op {
                "Add" => binary(x, y, None, |a, b| a.checked_add(b), |a, b| a + b),
                "Sub" => binary(x, y, None, |a, b| a.checked_sub(b), |a, b| a - b),
                "Mul" => binary(x, y, None, |a, b| a.checked_mul(b), |a, b| a * b),
                "Div" => binary(x, y, None, |a, b| a.checked_div(b), |a, b| a / b),
                "Pow" => binary(
                    x,
                    y,
                    Some(x.dtype),
                    |a, b| u32::try_from(b).ok().and_then(|b| a.checked_pow(b)),
                    f64::powf,
                ),
                "Mod" => {
                    let fmod = node.attr_or::<i64>("fmod", 0)? == 1;
                    binary(
                        x,
                        y,
                        None,
                        |a, b| {
                            if b == 0 {
                                None
                            } else if fmod {
                                Some(a % b)
                            } else {
                                Some(((a % b) + b) % b)
                            }
                        },
                        |a, b| if fmod { a % b } else { a - b * (a / b).floor() },
                    )
                }
                "Max" | "Min" | "Sum" | "Mean" => {
                    let mut acc = x.clone();
                    for t in inputs.iter().skip(1) {
                        let Some(t) = t else { return Ok(None) };
                        let next = match op {
                            "Max" => binary(&acc, t, None, |a, b| Some(a.max(b)), f64::max),
                            "Min" => binary(&acc, t, None, |a, b| Some(a.min(b)), f64::min),
                            _ => binary(&acc, t, None, |a, b| a.checked_add(b), |a, b| a + b),
                        };
                        let Some(n) = next else { return Ok(None) };
                        acc = n;
                    }
                    if op == "Mean" {
                        let k = inputs.len() as f64;
                        map_f(&acc, |v| v / k)
                    } else {
                        Some(acc)
                    }
                }
                "Equal" => compare(x, y, |a, b| a == b),
                "Less" => compare(x, y, |a, b| a < b),
                "Greater" => compare(x, y, |a, b| a > b),
                "LessOrEqual" => compare(x, y, |a, b| a <= b),
                "GreaterOrEqual" => compare(x, y, |a, b| a >= b),
                "And" => compare(x, y, |a, b| a != 0.0 && b != 0.0),
                "Or" => compare(x, y, |a, b| a != 0.0 || b != 0.0),
                "Xor" => compare(x, y, |a, b| (a != 0.0) != (b != 0.0)),
                _ => None,
            };
            one(r)
        }
        "Where" => {
            let (Some(a), Some(b)) = (inp(1), inp(2)) else {
                return Ok(None);
            };
            let Some(ab) = broadcast_shapes(&a.shape, &b.shape) else {
                return Ok(None);
            };
            let Some(shape) = broadcast_shapes(&x.shape, &ab) else {
                return Ok(None);
            };
            let ic = broadcast_indices(&x.shape, &shape);
            let ia = broadcast_indices(&a.shape, &shape);
            let ib = broadcast_indices(&b.shape, &shape);
            let c = x.to_i64s();
            let r = match (&a.data, &b.data) {
                (TensorData::Float(va), TensorData::Float(vb)) => HostTensor::float(
                    a.dtype,
                    shape.clone(),
                    (0..ic.len())
                        .map(|k| if c[ic[k]] != 0 { va[ia[k]] } else { vb[ib[k]] })
                        .collect(),
                ),
                (TensorData::Int(va), TensorData::Int(vb)) => HostTensor::int(
                    a.dtype,
                    shape.clone(),
                    (0..ic.len())
                        .map(|k| if c[ic[k]] != 0 { va[ia[k]] } else { vb[ib[k]] })
                        .collect(),
                ),
                _ => return Ok(None),
            };
            one(Some(r))
        }
        "Reshape" => {
            let Some(s) = inp(1) else { return Ok(None) };
            let allowzero = node.attr_or::<i64>("allowzero", 0)? == 1;
            let Some(shape) = reshape_target(&x.shape, &s.to_i64s(), allowzero) else {
                return Err(node.error(format!(
                    "cannot reshape a tensor of shape {:?} to {:?}",
                    x.shape,
                    s.to_i64s()
                )));
            };
            let mut t = x.clone();
            t.shape = shape;
            one(Some(t))
        }
        "Flatten" => {
            let r = x.shape.len();
            let axis = node.attr_or::<i64>("axis", 1)?;
            let a = if axis < 0 { axis + r as i64 } else { axis } as usize;
            let mut t = x.clone();
            t.shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
            one(Some(t))
        }
        "Squeeze" | "Unsqueeze" => {
            let axes: Option<Vec<i64>> = if opset >= 13 {
                inp(1).map(|a| a.to_i64s())
            } else {
                node.get_attr::<Vec<i64>>("axes")?
            };
            let mut t = x.clone();
            if op == "Squeeze" {
                let r = x.shape.len();
                let axes: Vec<usize> = match axes {
                    Some(a) => a.iter().filter_map(|&v| norm_axis(v, r)).collect(),
                    None => (0..r).filter(|&i| x.shape[i] == 1).collect(),
                };
                t.shape = (0..r)
                    .filter(|i| !axes.contains(i))
                    .map(|i| x.shape[i])
                    .collect();
            } else {
                let Some(axes) = axes else { return Ok(None) };
                let r = x.shape.len() + axes.len();
                let axes: Vec<usize> = axes.iter().filter_map(|&v| norm_axis(v, r)).collect();
                let mut it = x.shape.iter();
                t.shape = (0..r)
                    .map(|i| {
                        if axes.contains(&i) {
                            1
                        } else {
                            *it.next().unwrap_or(&1)
                        }
                    })
                    .collect();
            }
            one(Some(t))
        }
        "Concat" => {
            let ts: Option<Vec<&HostTensor>> = inputs.iter().copied().collect();
            let Some(ts) = ts else { return Ok(None) };
            let axis = node.attr_req::<i64>("axis")?;
            let Some(a) = norm_axis(axis, x.shape.len()) else {
                return Ok(None);
            };
            one(concat(&ts, a))
        }
        "Gather" => {
            let Some(ind) = inp(1) else { return Ok(None) };
            let r = x.shape.len();
            let Some(axis) = norm_axis(node.attr_or::<i64>("axis", 0)?, r) else {
                return Ok(None);
            };
            let d = x.shape[axis] as i64;
            let outer: usize = x.shape[..axis].iter().product();
            let inner: usize = x.shape[axis + 1..].iter().product();
            let mut idx = Vec::new();
            let ids = ind.to_i64s();
            for o in 0..outer {
                for &i in &ids {
                    let i = if i < 0 { i + d } else { i };
                    if i < 0 || i >= d {
                        return Err(node.error(format!(
                            "Gather index {i} out of range for axis of size {d}"
                        )));
                    }
                    for k in 0..inner {
                        idx.push((o * d as usize + i as usize) * inner + k);
                    }
                }
            }
            let mut shape = x.shape[..axis].to_vec();
            shape.extend_from_slice(&ind.shape);
            shape.extend_from_slice(&x.shape[axis + 1..]);
            one(Some(take(x, &idx, shape)))
        }
        "Slice" => {
            let (Some(s), Some(e)) = (inp(1), inp(2)) else {
                return Ok(None);
            };
            let r = x.shape.len();
            let starts = s.to_i64s();
            let ends = e.to_i64s();
            let axes = inp(3)
                .map(|a| a.to_i64s())
                .unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = inp(4)
                .map(|a| a.to_i64s())
                .unwrap_or_else(|| vec![1; starts.len()]);
            let mut spec: Vec<(usize, i64, usize)> = x.shape.iter().map(|&d| (0, 1, d)).collect();
            for k in 0..starts.len() {
                let Some(ax) = norm_axis(axes[k], r) else {
                    return Ok(None);
                };
                if steps[k] == 0 {
                    return Err(node.error("Slice step 0"));
                }
                spec[ax] = slice_params(starts[k], ends[k], steps[k], x.shape[ax]);
            }
            one(Some(slice_host(x, &spec)))
        }
        "Transpose" => {
            let r = x.shape.len();
            let perm: Vec<usize> = match node.get_attr::<Vec<i64>>("perm")? {
                Some(p) => p.iter().map(|&v| v as usize).collect(),
                None => (0..r).rev().collect(),
            };
            one(Some(transpose(x, &perm)))
        }
        "Expand" => {
            let Some(s) = inp(1) else { return Ok(None) };
            let shape: Vec<usize> = s.to_i64s().iter().map(|&v| v.max(0) as usize).collect();
            one(expand(x, &shape))
        }
        "Tile" => {
            let Some(rep) = inp(1) else { return Ok(None) };
            let rep = rep.to_i64s();
            let shape: Vec<usize> = x
                .shape
                .iter()
                .zip(&rep)
                .map(|(&d, &r)| d * r as usize)
                .collect();
            let st = strides(&x.shape);
            let n = numel(&shape);
            let mut idx = Vec::with_capacity(n);
            let r = shape.len();
            let mut counter = vec![0usize; r];
            for _ in 0..n {
                idx.push((0..r).map(|a| (counter[a] % x.shape[a]) * st[a]).sum());
                for ax in (0..r).rev() {
                    counter[ax] += 1;
                    if counter[ax] < shape[ax] {
                        break;
                    }
                    counter[ax] = 0;
                }
            }
            one(Some(take(x, &idx, shape)))
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = x.to_i64s().iter().map(|&v| v.max(0) as usize).collect();
            let value = match node.get_attr::<crate::proto::TensorProto>("value")? {
                Some(t) => HostTensor::from_proto(&t)?,
                None => HostTensor::float(DataType::FLOAT, vec![1], vec![0.0]),
            };
            let n = numel(&shape);
            let t = match &value.data {
                TensorData::Float(v) => HostTensor::float(value.dtype, shape, vec![v[0]; n]),
                TensorData::Int(v) => HostTensor::int(value.dtype, shape, vec![v[0]; n]),
            };
            one(Some(t))
        }
        "Range" => {
            let (Some(l), Some(d)) = (inp(1), inp(2)) else {
                return Ok(None);
            };
            let (s, l, d) = (x.to_f64s()[0], l.to_f64s()[0], d.to_f64s()[0]);
            if d == 0.0 {
                return Err(node.error("Range delta is 0"));
            }
            let n = ((l - s) / d).ceil().max(0.0) as usize;
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            one(Some(if x.dtype.is_float() {
                HostTensor::float(x.dtype, vec![n], v)
            } else {
                HostTensor::int(x.dtype, vec![n], v.iter().map(|&z| z as i64).collect())
            }))
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" => {
            let r = x.shape.len();
            let axes_in: Option<Vec<i64>> = if (op == "ReduceSum" && opset >= 13) || opset >= 18 {
                inp(1).map(|a| a.to_i64s())
            } else {
                node.get_attr("axes")?
            };
            let keep = node.attr_or::<i64>("keepdims", 1)? == 1;
            let noop = node.attr_or::<i64>("noop_with_empty_axes", 0)? == 1;
            let axes: Vec<usize> = axes_in
                .unwrap_or_default()
                .iter()
                .filter_map(|&a| norm_axis(a, r))
                .collect();
            if axes.is_empty() && noop {
                return one(Some(x.clone()));
            }
            let t = match op {
                "ReduceSum" => reduce(x, &axes, keep, 0.0, |a, b| a + b),
                "ReduceProd" => reduce(x, &axes, keep, 1.0, |a, b| a * b),
                "ReduceMax" => reduce(x, &axes, keep, f64::NEG_INFINITY, f64::max),
                "ReduceMin" => reduce(x, &axes, keep, f64::INFINITY, f64::min),
                _ => {
                    let count: usize = if axes.is_empty() {
                        x.len()
                    } else {
                        axes.iter().map(|&a| x.shape[a]).product()
                    };
                    let s = reduce(x, &axes, keep, 0.0, |a, b| a + b);
                    match map_f(&s, |v| v / count as f64) {
                        Some(t) => t,
                        None => return Ok(None),
                    }
                }
            };
            one(Some(t))
        }
        "Split" => {
            let r = x.shape.len();
            let Some(axis) = norm_axis(node.attr_or::<i64>("axis", 0)?, r) else {
                return Ok(None);
            };
            let sizes: Vec<i64> = if opset >= 13 {
                match inp(1) {
                    Some(s) => s.to_i64s(),
                    None => even_split(x.shape[axis], node.output.len()),
                }
            } else {
                node.get_attr::<Vec<i64>>("split")?
                    .unwrap_or_else(|| even_split(x.shape[axis], node.output.len()))
            };
            let mut outs = Vec::new();
            let mut start = 0usize;
            for &s in &sizes {
                let mut spec: Vec<(usize, i64, usize)> =
                    x.shape.iter().map(|&d| (0, 1, d)).collect();
                spec[axis] = (start, 1, s as usize);
                outs.push(slice_host(x, &spec));
                start += s as usize;
            }
            Ok(Some(outs))
        }
        "MatMul" => {
            let Some(y) = inp(1) else { return Ok(None) };
            if x.shape.len() != 2 || y.shape.len() != 2 || x.shape[1] != y.shape[0] {
                return Ok(None);
            }
            let (m, k, n) = (x.shape[0], x.shape[1], y.shape[1]);
            let (a, b) = (x.to_f64s(), y.to_f64s());
            let mut out = vec![0.0; m * n];
            for i in 0..m {
                for p in 0..k {
                    let av = a[i * k + p];
                    for j in 0..n {
                        out[i * n + j] += av * b[p * n + j];
                    }
                }
            }
            if !x.dtype.is_float() {
                return Ok(None);
            }
            one(Some(HostTensor::float(
                x.dtype,
                vec![m, n],
                out.into_iter().map(|v| round_to(x.dtype, v)).collect(),
            )))
        }
        _ => Ok(None),
    }
}

fn even_split(dim: usize, n: usize) -> Vec<i64> {
    let n = n.max(1);
    let chunk = dim.div_ceil(n);
    let mut v = vec![];
    let mut left = dim;
    for _ in 0..n {
        let c = chunk.min(left);
        v.push(c as i64);
        left -= c;
    }
    v
}

fn eval_no_input(node: &NodeProto) -> Result<Option<Vec<HostTensor>>> {
    if node.op_type != "Constant" {
        return Ok(None);
    }
    constant_value(node).map(|t| t.map(|t| vec![t]))
}

/// The value of a `Constant` node (`value`, `value_float(s)`, `value_int(s)`).
pub fn constant_value(node: &NodeProto) -> Result<Option<HostTensor>> {
    if let Some(t) = node.get_attr::<crate::proto::TensorProto>("value")? {
        return HostTensor::from_proto(&t).map(Some);
    }
    if let Some(v) = node.get_attr::<f32>("value_float")? {
        return Ok(Some(HostTensor::float(
            DataType::FLOAT,
            vec![],
            vec![v as f64],
        )));
    }
    if let Some(v) = node.get_attr::<Vec<f32>>("value_floats")? {
        return Ok(Some(HostTensor::float(
            DataType::FLOAT,
            vec![v.len()],
            v.iter().map(|&x| x as f64).collect(),
        )));
    }
    if let Some(v) = node.get_attr::<i64>("value_int")? {
        return Ok(Some(HostTensor::int(DataType::INT64, vec![], vec![v])));
    }
    if let Some(v) = node.get_attr::<Vec<i64>>("value_ints")? {
        return Ok(Some(HostTensor::i64s(&v)));
    }
    Ok(None)
}

/// Resolve an ONNX Reshape target (`0` copies the input dim unless `allowzero`, `-1` infers).
pub fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> Option<Vec<usize>> {
    let total = numel(input);
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer.is_some() {
                    return None;
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i)?),
            t if t >= 0 => out.push(t as usize),
            _ => return None,
        }
    }
    let known: usize = out
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != infer)
        .map(|(_, &d)| d)
        .product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return None;
        }
        out[i] = total / known;
    } else if known != total {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs;

    fn node(op: &str, a: Vec<crate::proto::AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            attribute: a,
            ..Default::default()
        }
    }

    #[test]
    fn transpose_and_slice() {
        let t = HostTensor::int(DataType::INT64, vec![2, 3], vec![0, 1, 2, 3, 4, 5]);
        let tt = transpose(&t, &[1, 0]);
        assert_eq!(tt.to_i64s(), vec![0, 3, 1, 4, 2, 5]);
        let n = node("Slice", vec![]);
        let s = HostTensor::i64s(&[-1]);
        let e = HostTensor::i64s(&[i64::MIN]);
        let a = HostTensor::i64s(&[1]);
        let st = HostTensor::i64s(&[-2]);
        let r = eval_node(&n, 17, &[Some(&t), Some(&s), Some(&e), Some(&a), Some(&st)])
            .unwrap()
            .unwrap();
        assert_eq!(r[0].shape, vec![2, 2]);
        assert_eq!(r[0].to_i64s(), vec![2, 0, 5, 3]);
    }

    #[test]
    fn shape_chain() {
        let x = HostTensor::float(DataType::FLOAT, vec![2, 3, 4], vec![0.0; 24]);
        let shape = eval_node(&node("Shape", vec![]), 17, &[Some(&x)])
            .unwrap()
            .unwrap()
            .remove(0);
        let g = eval_node(
            &node("Gather", vec![attrs::int("axis", 0)]),
            17,
            &[
                Some(&shape),
                Some(&HostTensor::int(DataType::INT64, vec![], vec![0])),
            ],
        )
        .unwrap()
        .unwrap()
        .remove(0);
        assert_eq!(g.shape, Vec::<usize>::new());
        assert_eq!(g.to_i64s(), vec![2]);
        let red = eval_node(
            &node("ReduceSum", vec![attrs::int("keepdims", 0)]),
            17,
            &[
                Some(&HostTensor::int(
                    DataType::INT64,
                    vec![2, 2],
                    vec![1, 2, 3, 4],
                )),
                Some(&HostTensor::i64s(&[1])),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(red[0].to_i64s(), vec![3, 7]);
        assert_eq!(
            reshape_target(&[2, 3, 4], &[0, -1], false),
            Some(vec![2, 12])
        );
    }
}
