//! Tests of the float16 pass (see the module docs of `fp16`).

use super::*;
use crate::builder::GraphBuilder;
use crate::tensor::HostTensor;
use crate::testutil::{random_feeds, vjp_wrt_inputs, Rng, Runner};
use crate::Dim;

// ----- a small type checker ----------------------------------------------------------

/// Input and output type signature of an operator, as in its ONNX schema: a type variable
/// (`T`, `T1`, …: every slot bound to it must have one element type), or a fixed kind:
/// `f` float32, `i` int64, `I` int32/int64, `b` bool, `*` anything. A token ending in `...`
/// repeats for the remaining slots.
fn signature(op: &str) -> Option<(&'static str, &'static str)> {
    Some(match op {
        "Identity" | "Neg" | "Abs" | "Sqrt" | "Exp" | "Log" | "Reciprocal" | "Erf" | "Relu"
        | "LeakyRelu" | "Sigmoid" | "Tanh" | "Softplus" | "Softsign" | "Elu" | "Selu"
        | "HardSigmoid" | "HardSwish" | "Gelu" | "Mish" | "Sin" | "Cos" | "Tan" | "Atan"
        | "Sinh" | "Cosh" | "Floor" | "Ceil" | "Round" | "Sign" | "Softmax" | "LogSoftmax"
        | "Hardmax" | "Flatten" | "Transpose" | "GlobalAveragePool" | "GlobalMaxPool"
        | "AveragePool" | "DepthToSpace" | "SpaceToDepth" | "ThresholdedRelu" => ("T", "T"),
        "Add" | "Sub" | "Mul" | "Div" | "PRelu" | "Mod" => ("T,T", "T"),
        "Sum" | "Mean" | "Max" | "Min" | "Concat" | "Einsum" => ("T...", "T"),
        "Pow" => ("T,T1", "T"),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => ("T,T", "b"),
        "Not" => ("b", "b"),
        "And" | "Or" | "Xor" => ("b,b", "b"),
        "Where" => ("b,T,T", "T"),
        "Clip" | "MatMul" | "Gemm" | "Conv" | "ConvTranspose" | "InstanceNormalization" => {
            ("T,T,T", "T")
        }
        "MaxPool" => ("T", "T,i"),
        "BatchNormalization" => ("T,T1,T1,T2,T2", "T,T2,T2"),
        "LayerNormalization" => ("T,T,T", "T,U,U"),
        "Reshape" | "Expand" | "Tile" | "Squeeze" | "Unsqueeze" | "Trilu" => ("T,i", "T"),
        "Slice" => ("T,I,I,I,I", "T"),
        "Gather" | "GatherElements" | "CumSum" => ("T,I", "T"),
        "GatherND" => ("T,i", "T"),
        "ScatterElements" => ("T,I,T", "T"),
        "ScatterND" => ("T,i,T", "T"),
        "Pad" => ("T,i,T,I", "T"),
        "Split" => ("T,i", "T..."),
        "Shape" | "Size" => ("*", "i"),
        "Resize" => ("T,T2,f,i", "T"),
        "Upsample" => ("T,f", "T"),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "ReduceSumSquare" | "ReduceL1" | "ReduceL2" | "ReduceLogSumExp" => ("T,i", "T"),
        "ArgMax" | "ArgMin" => ("T", "i"),
        "TopK" => ("T,i", "T,i"),
        "Dropout" => ("T,T1,b", "T,b"),
        "Range" => ("T,T,T", "T"),
        "LRN" => ("T", "T"),
        "GroupNormalization" => ("T,T,T", "T"),
        "IsNaN" => ("T", "b"),
        "Attention" => ("T,T,T,*,T,T", "T,T,T,T"),
        "AffineGrid" => ("T,i", "T"),
        "GridSample" => ("T,T", "T"),
        "RotaryEmbedding" => ("T,T,T,i", "T"),
        _ => return None,
    })
}

fn kind_ok(kind: &str, d: DataType) -> bool {
    match kind {
        "f" => d == DataType::FLOAT,
        "i" => d == DataType::INT64,
        "I" => d == DataType::INT64 || d == DataType::INT32,
        "b" => d == DataType::BOOL,
        _ => true,
    }
}

fn slot_token(sig: &str, k: usize) -> Option<&str> {
    let toks: Vec<&str> = sig.split(',').collect();
    match toks.get(k) {
        Some(t) => Some(t.trim_end_matches("...")),
        None => toks
            .last()
            .filter(|t| t.ends_with("..."))
            .map(|t| t.trim_end_matches("...")),
    }
}

/// Element types of every value by the operator schemas (for the ops of the test models),
/// and every inconsistency: type variables bound to two types, fixed-type slots with
/// another type, declared types (value_info, outputs) that disagree, unknown values.
fn check_types(m: &ModelProto) -> (HashMap<String, DataType>, Vec<String>) {
    let g = m.graph.as_ref().unwrap();
    let mut ty: HashMap<String, DataType> = HashMap::new();
    let mut errors = vec![];
    for v in &g.input {
        ty.insert(v.name.clone(), v.dtype().unwrap());
    }
    for t in &g.initializer {
        ty.insert(t.name.clone(), DataType(t.data_type));
    }
    for n in &g.node {
        let label = format!("{} ({})", n.label(), n.op_type);
        let mut inputs = vec![];
        for i in &n.input {
            if i.is_empty() {
                inputs.push(None);
            } else if let Some(&d) = ty.get(i) {
                inputs.push(Some(d));
            } else {
                errors.push(format!("{label}: input \"{i}\" undefined or untyped"));
                inputs.push(None);
            }
        }
        let outs: Vec<DataType> = match n.op_type.as_str() {
            "Constant" => vec![constant_type(n).unwrap().unwrap()],
            "Cast" => vec![DataType(n.attr_req::<i64>("to").unwrap() as i32)],
            "CastLike" => vec![inputs[1].unwrap_or(DataType::UNDEFINED)],
            "ConstantOfShape" => vec![n
                .get_attr::<TensorProto>("value")
                .unwrap()
                .map_or(DataType::FLOAT, |t| DataType(t.data_type))],
            "If" => {
                let b = n
                    .attr_req::<crate::proto::GraphProto>("then_branch")
                    .unwrap();
                b.output.iter().map(|o| o.dtype().unwrap()).collect()
            }
            op => {
                let Some((sin, sout)) = signature(op) else {
                    errors.push(format!("{label}: no signature in the test checker"));
                    continue;
                };
                let mut bound: HashMap<&str, DataType> = HashMap::new();
                if op == "LayerNormalization" {
                    let stash = n.attr_or::<i64>("stash_type", 1).unwrap();
                    bound.insert("U", DataType(stash as i32));
                }
                for (k, d) in inputs.iter().enumerate() {
                    let (Some(d), Some(tok)) = (d, slot_token(sin, k)) else {
                        continue;
                    };
                    if tok.chars().next().unwrap().is_uppercase() && tok != "I" {
                        match bound.get(tok) {
                            Some(&b) if b != *d => errors.push(format!(
                                "{label}: type variable {tok} bound to {b} and {d} (input {k} \"{}\")",
                                n.input[k]
                            )),
                            Some(_) => {}
                            None => {
                                bound.insert(tok, *d);
                            }
                        }
                    } else if !kind_ok(tok, *d) {
                        errors.push(format!(
                            "{label}: input {k} \"{}\" is {d}, the schema wants {tok}",
                            n.input[k]
                        ));
                    }
                }
                (0..n.output.len())
                    .map(|k| {
                        let tok = slot_token(sout, k).unwrap();
                        match tok {
                            "i" => DataType::INT64,
                            "b" => DataType::BOOL,
                            t => bound.get(t).copied().unwrap_or(DataType::UNDEFINED),
                        }
                    })
                    .collect()
            }
        };
        for (o, d) in n.output.iter().zip(outs) {
            if !o.is_empty() {
                ty.insert(o.clone(), d);
            }
        }
    }
    for v in g.value_info.iter().chain(&g.output) {
        match (v.dtype(), ty.get(&v.name)) {
            (Some(decl), Some(&d)) if decl != d => errors.push(format!(
                "\"{}\" is declared {decl} but computed as {d}",
                v.name
            )),
            (_, None) => errors.push(format!("\"{}\" is declared but not defined", v.name)),
            _ => {}
        }
    }
    (ty, errors)
}

/// Names, element types and shapes of the graph inputs and outputs.
fn interface(m: &ModelProto) -> Vec<(String, Option<DataType>, Option<Vec<Dim>>)> {
    let g = m.graph.as_ref().unwrap();
    g.input
        .iter()
        .chain(&g.output)
        .map(|v| (v.name.clone(), v.dtype(), v.dims()))
        .collect()
}

/// Compile on ONNX Runtime: `Ok(Some(runner))`, `Ok(None)` when the only complaint is a
/// missing kernel (`NOT_IMPLEMENTED: Could not find an implementation for Op(version)`),
/// `Err` for anything else (a type error reads `Type Error: Type parameter (T) of Optype
/// (Add) bound to different types` or `Type Error: Type 'tensor(float16)' of input
/// parameter (s) of operator (Resize) … is invalid`).
fn ort_verdict(m: &ModelProto) -> Result<Option<Runner>, String> {
    match Runner::new(m) {
        Ok(r) => Ok(Some(r)),
        Err(e)
            if (e.contains("NOT_IMPLEMENTED")
                || e.contains("Could not find an implementation"))
                && !e.contains("Type Error") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn run(r: &mut Runner, feeds: &[(String, HostTensor)]) -> HashMap<String, HostTensor> {
    let f: Vec<(&str, &HostTensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    r.run(&f).unwrap()
}

/// Errors for outputs that changed shape or type, or differ from the reference by more
/// than `tol` × the largest |reference| anywhere, or, for gradient outputs (`*_grad`), by
/// more than `grad_tol` in relative L2 norm (see `architectures_and_their_vjps_convert`).
fn compare(
    reference: &HashMap<String, HostTensor>,
    got: &HashMap<String, HostTensor>,
    tol: f64,
    grad_tol: f64,
) -> Vec<String> {
    let mut errors = vec![];
    let mut names: Vec<&String> = reference.keys().collect();
    names.sort();
    for name in names {
        let a = &reference[name];
        let Some(b) = got.get(name) else {
            errors.push(format!("output \"{name}\" missing"));
            continue;
        };
        if a.shape != b.shape || a.dtype != b.dtype {
            errors.push(format!(
                "output \"{name}\": {:?} {:?} became {:?} {:?}",
                a.dtype, a.shape, b.dtype, b.shape
            ));
            continue;
        }
        let (av, bv) = (a.to_f64s(), b.to_f64s());
        let diff = |(x, y): (&f64, &f64)| if y.is_finite() { x - y } else { f64::INFINITY };
        if name.ends_with("_grad") {
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
            let err = norm(&mut av.iter().zip(&bv).map(diff));
            let rel = err / norm(&mut av.iter().copied()).max(1e-30);
            if rel.is_nan() || rel > grad_tol {
                errors.push(format!(
                    "output \"{name}\": relative L2 error {rel:.3e} > {grad_tol}"
                ));
            }
        } else {
            let scale = av.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
            let err = av
                .iter()
                .zip(&bv)
                .map(diff)
                .fold(0.0f64, |m, d| m.max(d.abs()));
            if err.is_nan() || err > tol * scale {
                errors.push(format!(
                    "output \"{name}\": max error {err:.3e} > {tol} × max |ref| {scale:.3e}"
                ));
            }
        }
    }
    errors
}

fn convert(m: &ModelProto) -> (ModelProto, Fp16Report) {
    convert_to_fp16(m, &Fp16Options::default()).unwrap()
}

fn nodes<'m>(m: &'m ModelProto, op: &str) -> Vec<&'m NodeProto> {
    let g = m.graph.as_ref().unwrap();
    g.node.iter().filter(|n| n.op_type == op).collect()
}

/// Dev hook: `ZOOM_FP16_DUMP=/dir` writes the models a test converts (for onnx.checker).
fn dump(name: &str, m: &ModelProto) {
    if let Ok(dir) = std::env::var("ZOOM_FP16_DUMP") {
        let file = name.replace([' ', '/', '(', ')', ','], "_");
        crate::write_model(m, std::path::Path::new(&dir).join(format!("{file}.onnx"))).unwrap();
    }
}

/// Structure, types, ONNX Runtime acceptance and (where ONNX Runtime runs the model)
/// outputs against float32 (see [`compare`]) for one model; the list of problems.
fn check_model(name: &str, m: &ModelProto, tol: f64, grad_tol: f64) -> Vec<String> {
    let mut errors = vec![];
    let (h, report) = match convert_to_fp16(m, &Fp16Options::default()) {
        Ok(x) => x,
        Err(e) => return vec![format!("{name}: conversion failed: {e}")],
    };
    dump(name, &h);
    dump(&format!("{name} fp32"), m);
    if interface(&h) != interface(m) {
        errors.push(format!("{name}: the graph interface changed"));
    }
    let (ty, type_errors) = check_types(&h);
    errors.extend(type_errors.into_iter().map(|e| format!("{name}: {e}")));
    if report.converted_nodes == 0 || report.casts_inserted == 0 {
        errors.push(format!("{name}: nothing converted: {report:?}"));
    }
    let keep = Fp16Options::default().keep_fp32_ops;
    for n in &h.graph.as_ref().unwrap().node {
        let dtypes: Vec<DataType> = n
            .input
            .iter()
            .filter_map(|i| ty.get(i).copied())
            .filter(|d| d.is_float())
            .collect();
        let want = if keep.contains(&n.op_type) {
            DataType::FLOAT
        } else if ["Conv", "ConvTranspose", "MatMul", "Gemm"].contains(&n.op_type.as_str()) {
            DataType::FLOAT16
        } else {
            continue;
        };
        if dtypes.iter().any(|&d| d != want) {
            errors.push(format!(
                "{name}: {} ({}) reads {dtypes:?}, expected {want}",
                n.label(),
                n.op_type
            ));
        }
    }
    match ort_verdict(&h) {
        Err(e) => errors.push(format!("{name}: {e}")),
        Ok(None) => {}
        Ok(Some(mut r)) => {
            let feeds = random_feeds(m, 5);
            let reference = run(&mut Runner::new(m).unwrap(), &feeds);
            let got = run(&mut r, &feeds);
            errors.extend(
                compare(&reference, &got, tol, grad_tol)
                    .into_iter()
                    .map(|e| format!("{name}: {e}")),
            );
        }
    }
    errors
}

fn build(opset: i64, f: impl FnOnce(&mut GraphBuilder)) -> ModelProto {
    let mut b = GraphBuilder::new(opset);
    f(&mut b);
    b.build().unwrap()
}

/// (name, opset, smooth, builder); `smooth`: no ReLU/MaxPool kinks (see below).
type Arch = (&'static str, i64, bool, Box<dyn Fn(&mut GraphBuilder)>);

fn architectures() -> Vec<Arch> {
    let f = DataType::FLOAT;
    vec![
        (
            "CNN",
            17,
            false,
            Box::new(move |b| crate::autodiff::arch_tests::cnn(b, f, 1, 12, 4)),
        ),
        (
            "CNN opset 14",
            14,
            false,
            Box::new(move |b| crate::autodiff::arch_tests::cnn(b, f, 1, 12, 4)),
        ),
        (
            "ResNet-18 layout",
            17,
            false,
            Box::new(move |b| crate::autodiff::arch_tests::resnet18(b, f, 1, 32, 8)),
        ),
        (
            "U-Net",
            17,
            false,
            Box::new(move |b| crate::autodiff::arch_tests::unet(b, f, 1, 8, 3)),
        ),
        (
            "ViT",
            17,
            true,
            Box::new(move |b| crate::autodiff::arch_tests::vit(b, f, 1, 8, 8, 2, 1)),
        ),
        (
            "ViT opset 13",
            13,
            true,
            Box::new(move |b| crate::autodiff::arch_tests::vit(b, f, 1, 8, 8, 2, 1)),
        ),
        (
            "StyleGAN2 block",
            17,
            true,
            Box::new(move |b| crate::autodiff::arch_tests::stylegan_block(b, f, 4, 4)),
        ),
    ]
}

// ----- tests -------------------------------------------------------------------------

/// The networks of the gradient tests and their VJP graphs: types, interface, fp32/fp16
/// placement, ONNX Runtime acceptance, outputs against float32.
///
/// Tolerances: forward outputs within 2e-2 of their largest value (measured on the CPU:
/// ≤ 1e-3). Gradients of the smooth networks within 1e-2 in relative L2 norm (measured:
/// 4e-4–3e-3 over 40 seeds). The gradients of ReLU/MaxPool networks are discontinuous in
/// the activations: fp16 rounding flips a ReLU mask or a max-pool routing now and then, and
/// that alone moves the gradient by up to 0.16 (measured over 40 seeds, most runs 4e-4–1e-3;
/// rounding only the inputs and weights gives the same jumps), so for them the check is
/// loose (0.3) and catches gross errors only.
#[test]
fn architectures_and_their_vjps_convert() {
    let mut errors = vec![];
    for (name, opset, smooth, f) in architectures() {
        let m = build(opset, f);
        errors.extend(check_model(name, &m, 2e-2, 1.0));
        let grad_tol = if smooth { 1e-2 } else { 0.3 };
        errors.extend(check_model(
            &format!("{name} VJP"),
            &vjp_wrt_inputs(&m),
            2e-2,
            grad_tol,
        ));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn small_graph_structure_and_values() {
    let m = build(17, |b| {
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[1.into(), 2.into(), 6.into(), 6.into()],
        );
        let mut rng = Rng::new(1);
        let w: Vec<f64> = (0..54).map(|_| rng.normal() * 0.3).collect();
        let w = b.constant_float("w", DataType::FLOAT, &[3, 2, 3, 3], &w);
        let bias = b.constant_float("bias", DataType::FLOAT, &[3], &[0.1, -0.2, 0.3]);
        let c = b.op(
            "Conv",
            &[&x, &w, &bias],
            vec![attrs::ints("pads", &[1, 1, 1, 1])],
        );
        let r = b.op("Relu", &[&c], vec![]);
        let p = b.op("Softmax", &[&r], vec![attrs::int("axis", 1)]);
        b.output(&p, "probs");
        b.output(&r, "features");
    });
    let (h, report) = convert(&m);
    dump("small_graph_structure_and_values", &h);
    // Conv and Relu in fp16; Softmax and the two output Identities in fp32; one cast in
    // (x), one out (the Relu output, shared by Softmax and the "features" Identity).
    assert_eq!(
        report,
        Fp16Report {
            converted_nodes: 2,
            fp32_nodes: 3,
            casts_inserted: 2,
            clamped_values: 0
        }
    );
    assert_eq!(interface(&h), interface(&m));
    let (ty, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let g = h.graph.as_ref().unwrap();
    for name in ["w", "bias"] {
        assert_eq!(g.initializer(name).unwrap().data_type, DataType::FLOAT16.0);
    }
    let conv = nodes(&h, "Conv")[0];
    assert_eq!(ty[&conv.input[0]], DataType::FLOAT16);
    let softmax = nodes(&h, "Softmax")[0];
    assert_eq!(ty[&softmax.input[0]], DataType::FLOAT);
    let identities = nodes(&h, "Identity");
    assert!(identities.iter().any(|n| n.input[0] == softmax.input[0]));
    let mut r = ort_verdict(&h)
        .unwrap()
        .expect("ONNX Runtime (CPU) runs this model");
    let feeds = random_feeds(&m, 3);
    let reference = run(&mut Runner::new(&m).unwrap(), &feeds);
    let errors = compare(&reference, &run(&mut r, &feeds), 1e-2, 0.0);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn clamps_out_of_range_constants() {
    let m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[4.into()]);
        let w = b.constant_float("w", DataType::FLOAT, &[4], &[1e6, -1e6, 3.0, 1e-9]);
        b.node(NodeProto {
            name: "c_node".into(),
            op_type: "Constant".into(),
            output: vec!["c".into()],
            attribute: vec![attrs::floats(
                "value_floats",
                &[-1e5, 1e5, 0.5, f32::INFINITY],
            )],
            ..Default::default()
        });
        let y = b.mul(&x, &w);
        let y = b.add(&y, "c");
        b.output(&y, "y");
    });
    let (h, report) = convert(&m);
    dump("clamps_out_of_range_constants", &h);
    assert_eq!(report.clamped_values, 4, "{report:?}"); // ±1e6 and ±1e5; inf is kept
    let g = h.graph.as_ref().unwrap();
    let w = HostTensor::from_proto(g.initializer("w").unwrap()).unwrap();
    assert_eq!(w.dtype, DataType::FLOAT16);
    assert_eq!(w.to_f64s(), [65504.0, -65504.0, 3.0, 0.0]); // 1e-9 flushes to 0
    let c = nodes(&h, "Constant")[0];
    let c = HostTensor::from_proto(&c.get_attr::<TensorProto>("value").unwrap().unwrap()).unwrap();
    assert_eq!(c.to_f64s(), [-65504.0, 65504.0, 0.5, f64::INFINITY]);
    let (_, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let mut r = ort_verdict(&h).unwrap().expect("runs on CPU");
    let x = HostTensor::float(DataType::FLOAT, vec![4], vec![0.5, 0.5, 2.0, 1.0]);
    let y = run(&mut r, &[("x".into(), x)])["y"].to_f64s();
    // Every intermediate is exact in float16 (on a GPU too).
    assert_eq!(y[..3], [-32752.0, 32752.0, 6.5]);
    assert_eq!(y[3], f64::INFINITY);
}

#[test]
fn shared_initializer_is_kept_in_both_types() {
    let m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[2.into(), 3.into()]);
        let w = b.constant_float("w", DataType::FLOAT, &[3], &[1.5, -2.0, 4.0]);
        let y = b.mul(&x, &w);
        let y = b.op("Relu", &[&y], vec![]);
        b.output(&y, "y");
        let q = b.div(&x, &w); // Div stays fp32
        b.output(&q, "q");
    });
    let (h, _) = convert(&m);
    dump("shared_initializer_is_kept_in_both_types", &h);
    let g = h.graph.as_ref().unwrap();
    let types: Vec<(&str, i32)> = g
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.data_type))
        .collect();
    assert_eq!(types, [("w", 1), ("w_fp16", 10)]);
    assert_eq!(nodes(&h, "Mul")[0].input[1], "w_fp16");
    assert_eq!(nodes(&h, "Div")[0].input[1], "w");
    assert_eq!(check_types(&h).1, Vec::<String>::new());
    let feeds = random_feeds(&m, 4);
    let reference = run(&mut Runner::new(&m).unwrap(), &feeds);
    let got = run(&mut ort_verdict(&h).unwrap().unwrap(), &feeds);
    // Div reads the exact float32 weight: its output is exact.
    assert_eq!(got["q"], reference["q"]);
    assert!(compare(&reference, &got, 1e-2, 0.0).is_empty());
}

#[test]
fn resize_scales_and_their_computation_stay_float32() {
    let m = build(17, |b| {
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[1.into(), 1.into(), 4.into(), 4.into()],
        );
        let r = b.op("Relu", &[&x], vec![]);
        let base = b.constant_float("base", DataType::FLOAT, &[4], &[0.5, 0.5, 1.5, 1.5]);
        let half = b.constant_float("half", DataType::FLOAT, &[], &[0.5]);
        let scales = b.add(&base, &half);
        let y = b.op(
            "Resize",
            &[&r, "", &scales],
            vec![attrs::string("mode", "linear")],
        );
        let y = b.op("Sigmoid", &[&y], vec![]);
        b.output(&y, "y");
    });
    let (h, report) = convert(&m);
    dump("resize_scales_and_their_computation_stay_float32", &h);
    let (ty, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let resize = nodes(&h, "Resize")[0];
    assert_eq!(ty[&resize.input[0]], DataType::FLOAT16);
    assert_eq!(ty[&resize.input[2]], DataType::FLOAT);
    // The Add computing the scales stays fp32 (no cast between it and Resize), and reads
    // the float32 constants.
    let add = nodes(&h, "Add")[0];
    assert_eq!(add.output[0], resize.input[2]);
    assert!(add.input.iter().all(|i| ty[i] == DataType::FLOAT));
    assert_eq!(report.fp32_nodes, 1 + 1, "{report:?}"); // Add and the output Identity
    let feeds = random_feeds(&m, 6);
    let reference = run(&mut Runner::new(&m).unwrap(), &feeds);
    let got = run(&mut ort_verdict(&h).unwrap().unwrap(), &feeds);
    assert!(compare(&reference, &got, 1e-2, 0.0).is_empty());
}

#[test]
fn upsample_scales_stay_float32() {
    let m = build(9, |b| {
        let x = b.input(
            "x",
            DataType::FLOAT,
            &[1.into(), 1.into(), 3.into(), 3.into()],
        );
        let r = b.op("Relu", &[&x], vec![]);
        let scales = b.constant_float("scales", DataType::FLOAT, &[4], &[1.0, 1.0, 2.0, 2.0]);
        let y = b.op("Upsample", &[&r, &scales], vec![]);
        let y = b.op("Sigmoid", &[&y], vec![]);
        b.output(&y, "y");
    });
    let (h, _) = convert(&m);
    dump("upsample_scales_stay_float32", &h);
    let (ty, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let up = nodes(&h, "Upsample")[0];
    assert_eq!(
        (ty[&up.input[0]], ty[&up.input[1]]),
        (DataType::FLOAT16, DataType::FLOAT)
    );
    let feeds = random_feeds(&m, 7);
    let reference = run(&mut Runner::new(&m).unwrap(), &feeds);
    let got = run(&mut ort_verdict(&h).unwrap().unwrap(), &feeds);
    assert!(compare(&reference, &got, 1e-2, 0.0).is_empty());
}

#[test]
fn attribute_typed_outputs_follow_the_region() {
    let m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[4.into()]);
        let i = b.input("i", DataType::INT64, &[4.into()]);
        let r = b.op("Relu", &[&x], vec![]);
        let ci = b.cast(&i, DataType::FLOAT);
        let a = b.add(&r, &ci);
        let shape = b.const_i64s(&[4]);
        let zeros = b.op("ConstantOfShape", &[&shape], vec![]);
        let a = b.add(&a, &zeros);
        let like = b.op("CastLike", &[&i, &r], vec![]);
        let a = b.add(&a, &like);
        let y = b.op("Relu", &[&a], vec![]);
        b.output(&y, "y");
        let c2 = b.cast(&i, DataType::FLOAT);
        let p = b.op("Softmax", &[&c2], vec![attrs::int("axis", 0)]);
        b.output(&p, "p");
    });
    let (h, _) = convert(&m);
    dump("attribute_typed_outputs_follow_the_region", &h);
    let (ty, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let casts_of_i: Vec<i64> = nodes(&h, "Cast")
        .iter()
        .filter(|n| n.input[0] == "i")
        .map(|n| n.attr_req::<i64>("to").unwrap())
        .collect();
    // One Cast feeds the fp16 Add (now to FLOAT16), the other only Softmax (still FLOAT).
    assert_eq!(casts_of_i, [10, 1]);
    let cos = nodes(&h, "ConstantOfShape")[0];
    assert_eq!(ty[&cos.output[0]], DataType::FLOAT16);
    assert_eq!(ty[&nodes(&h, "CastLike")[0].output[0]], DataType::FLOAT16);
    let mut r = ort_verdict(&h).unwrap().unwrap();
    let feeds = vec![
        (
            "x".to_string(),
            HostTensor::float(DataType::FLOAT, vec![4], vec![0.5, -1.0, 2.0, 3.0]),
        ),
        ("i".to_string(), HostTensor::i64s(&[1, 2, -3, 4])),
    ];
    let reference = run(&mut Runner::new(&m).unwrap(), &feeds);
    let errors = compare(&reference, &run(&mut r, &feeds), 1e-3, 0.0);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn subgraph_nodes_stay_float32_and_read_float32() {
    let branch = |op: &str, out: &str| crate::testutil::one_node_branch(op, "r2", out, &[4]);
    let m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[4.into()]);
        let cond = b.input("cond", DataType::BOOL, &[]);
        let r1 = b.op("Relu", &[&x], vec![]);
        b.node(NodeProto {
            op_type: "Sigmoid".into(),
            input: vec![r1],
            output: vec!["r2".into()],
            ..Default::default()
        });
        let y = b.op(
            "If",
            &[&cond],
            vec![
                attrs::graph("then_branch", branch("Identity", "t")),
                attrs::graph("else_branch", branch("Neg", "e")),
            ],
        );
        let y = b.op("Tanh", &[&y], vec![]);
        b.output_typed(&y, "y", DataType::FLOAT, Some(&[4.into()]));
    });
    let (h, report) = convert(&m);
    dump("subgraph_nodes_stay_float32_and_read_float32", &h);
    assert_eq!(interface(&h), interface(&m));
    let (ty, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let iff = nodes(&h, "If")[0];
    let then = iff.get_attr::<GraphProto>("then_branch").unwrap().unwrap();
    let read = &then.node[0].input[0];
    assert_ne!(read, "r2", "the subgraph must read a float32 copy");
    assert_eq!(ty[read.as_str()], DataType::FLOAT);
    assert_eq!(ty["r2"], DataType::FLOAT16);
    assert!(report.fp32_nodes >= 1, "{report:?}");
    let mut r = ort_verdict(&h).unwrap().unwrap();
    for c in [0, 1] {
        let feeds = vec![
            (
                "x".to_string(),
                HostTensor::float(DataType::FLOAT, vec![4], vec![0.5, -1.0, 2.0, 3.0]),
            ),
            (
                "cond".to_string(),
                HostTensor::int(DataType::BOOL, vec![], vec![c]),
            ),
        ];
        let reference = run(&mut Runner::new(&m).unwrap(), &feeds);
        let errors = compare(&reference, &run(&mut r, &feeds), 1e-2, 0.0);
        assert!(errors.is_empty(), "{errors:?}");
    }
}

#[test]
fn float16_and_double_models_are_unchanged() {
    for dt in [DataType::FLOAT16, DataType::DOUBLE] {
        let m = build(17, |b| crate::autodiff::arch_tests::cnn(b, dt, 1, 8, 2));
        let (h, report) = convert(&m);
        assert_eq!(report, Fp16Report::default(), "{dt}");
        assert_eq!(h, m, "{dt}");
    }
}

#[test]
fn options_choose_the_fp32_ops() {
    let m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[2.into(), 3.into()]);
        let r = b.op("Relu", &[&x], vec![]);
        let s = b.op("Softmax", &[&r], vec![attrs::int("axis", 1)]);
        let t = b.op("Tanh", &[&s], vec![]);
        b.output(&t, "t");
    });
    let input_type = |h: &ModelProto, op: &str| check_types(h).0[&nodes(h, op)[0].input[0]];
    let (h, _) = convert(&m);
    assert_eq!(input_type(&h, "Softmax"), DataType::FLOAT);
    let none = Fp16Options {
        keep_fp32_ops: vec![],
    };
    let (h, report) = convert_to_fp16(&m, &none).unwrap();
    assert_eq!(input_type(&h, "Softmax"), DataType::FLOAT16);
    assert_eq!(report.fp32_nodes, 1, "{report:?}"); // the output Identity
    let relu = Fp16Options {
        keep_fp32_ops: vec!["Relu".into()],
    };
    let (h, _) = convert_to_fp16(&m, &relu).unwrap();
    assert_eq!(input_type(&h, "Relu"), DataType::FLOAT);
    assert_eq!(input_type(&h, "Softmax"), DataType::FLOAT16);
    assert_eq!(check_types(&h).1, Vec::<String>::new());
}

#[test]
fn unconvertible_models_are_errors_naming_the_culprit() {
    // A value of unknown type (made by an operator of another domain) read by an fp16 node.
    let m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[4.into()]);
        let y = b
            .op_in_domain("com.example", "Mystery", &[&x], vec![], 1)
            .remove(0);
        let y = b.op("Relu", &[&y], vec![]);
        b.output_typed(&y, "y", DataType::FLOAT, None);
    });
    let e = convert_to_fp16(&m, &Fp16Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(Relu)") && e.contains("\"mystery\"") && e.contains("unknown"),
        "{e}"
    );
    // An operator the pass does not know, of unknown output type.
    let future = |declare: bool| {
        let mut m = build(17, |b| {
            let i = b.input("i", DataType::INT64, &[4.into()]);
            let y = b.op("FutureOp", &[&i], vec![]);
            let y = b.op("Relu", &[&y], vec![]);
            b.output_typed(&y, "y", DataType::FLOAT, None);
        });
        if declare {
            let g = m.graph.as_mut().unwrap();
            let v = crate::model::tensor_value_info("futureop", DataType::FLOAT, None);
            g.value_info.push(v);
        }
        convert_to_fp16(&m, &Fp16Options::default())
    };
    let e = future(false).unwrap_err().to_string();
    assert!(
        e.contains("(FutureOp)") && e.contains("\"futureop\" is unknown"),
        "{e}"
    );
    // Declared float32: it makes a float from integers, by a rule the pass does not know.
    let e = future(true).unwrap_err().to_string();
    assert!(
        e.contains("(FutureOp)") && e.contains("without reading a float32"),
        "{e}"
    );
    // Fine with the type declared and the operator kept in float32.
    let keep = Fp16Options {
        keep_fp32_ops: vec!["FutureOp".into()],
    };
    let m = build(17, |b| {
        let i = b.input("i", DataType::INT64, &[4.into()]);
        let y = b.op("FutureOp", &[&i], vec![]);
        let y = b.op("Sin", &[&y], vec![]);
        let y = b.op("Relu", &[&y], vec![]);
        b.output_typed(&y, "y", DataType::FLOAT, None);
    });
    let mut m = m;
    let g = m.graph.as_mut().unwrap();
    let v = crate::model::tensor_value_info("futureop", DataType::FLOAT, None);
    g.value_info.push(v);
    let (h, report) = convert_to_fp16(&m, &keep).unwrap();
    assert_eq!(report.fp32_nodes, 2, "{report:?}"); // FutureOp, the output Identity
    assert_eq!(report.converted_nodes, 2, "{report:?}"); // Sin, Relu
    let casts: Vec<i64> = nodes(&h, "Cast")
        .iter()
        .filter(|n| n.input[0] == "futureop")
        .map(|n| n.attr_req::<i64>("to").unwrap())
        .collect();
    assert_eq!(casts, [10]);
    assert_eq!(report.casts_inserted, 2, "{report:?}"); // and Relu's output back to float
                                                        // Unloaded external data.
    let mut m = build(17, |b| {
        let x = b.input("x", DataType::FLOAT, &[4.into()]);
        let w = b.constant_float("weights", DataType::FLOAT, &[4], &[1.0; 4]);
        let y = b.mul(&x, &w);
        let y = b.op("Relu", &[&y], vec![]);
        b.output(&y, "y");
    });
    m.graph.as_mut().unwrap().initializer[0].data_location = data_location::EXTERNAL;
    let e = convert_to_fp16(&m, &Fp16Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"weights\"") && e.contains("external data"),
        "{e}"
    );
}

/// Text towers build position ids with Range over the runtime sequence length; the types
/// downstream (embedding Gather, Add, LayerNorm) must still be known to convert them.
#[test]
fn text_tower_position_ids_from_range_convert() {
    let m = build(17, |b| {
        let ids = b.input(
            "input_ids",
            DataType::INT64,
            &[Dim::from("N"), Dim::from("T")],
        );
        let shape = b.op("Shape", &[&ids], vec![]);
        let one = b.const_i64s(&[1]);
        let one_s = b.scalar(DataType::INT64, 1.0);
        let zero_s = b.scalar(DataType::INT64, 0.0);
        let len = b.op("Gather", &[&shape, &one], vec![]);
        let len = b.squeeze(&len, &[0]);
        let pos = b.op("Range", &[&zero_s, &len, &one_s], vec![]);
        let mut rng = Rng::new(2);
        let we: Vec<f64> = (0..40).map(|_| rng.normal()).collect();
        let pe: Vec<f64> = (0..32).map(|_| rng.normal()).collect();
        let we = b.constant_float("word", DataType::FLOAT, &[10, 4], &we);
        let pe = b.constant_float("pos", DataType::FLOAT, &[8, 4], &pe);
        let w = b.op("Gather", &[&we, &ids], vec![]);
        let p = b.op("Gather", &[&pe, &pos], vec![]);
        let x = b.op("Add", &[&w, &p], vec![]);
        let y = b.op("Relu", &[&x], vec![]);
        b.output(&y, "hidden");
    });
    let (h, report) = convert(&m);
    assert!(report.converted_nodes >= 3, "{report:?}");
    assert_eq!(interface(&h), interface(&m));
    let (ty, errors) = check_types(&h);
    assert!(errors.is_empty(), "{errors:?}");
    let add = nodes(&h, "Add")[0];
    assert_eq!(ty[&add.input[1]], DataType::FLOAT16);
}

#[test]
fn the_checks_catch_type_errors() {
    // Add(float16, float32): what a wrong conversion would produce.
    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::FLOAT16, &[4.into()]);
    let w = b.constant_float("w", DataType::FLOAT, &[4], &[1.0; 4]);
    let y = b.add(&x, &w);
    b.output_typed(&y, "y", DataType::FLOAT16, Some(&[4.into()]));
    let bad = ModelProto::with_graph(b.into_graph(), 17);
    let errors = check_types(&bad).1;
    assert!(
        errors.len() == 1 && errors[0].contains("bound to float16 and float"),
        "{errors:?}"
    );
    let e = ort_verdict(&bad).err().expect("a type error");
    assert!(e.contains("Type Error"), "{e}");
    // A missing kernel (bfloat16 Relu on the CPU) is not a type error.
    let m = build(17, |b| {
        let x = b.input("x", DataType::BFLOAT16, &[4.into()]);
        let y = b.op("Relu", &[&x], vec![]);
        b.output(&y, "y");
    });
    if std::env::var("ZOOM_GRAPH_TEST_EP").is_err() {
        assert!(matches!(ort_verdict(&m), Ok(None)));
    }
}

/// The operators added for exported transformers and spatial transformers (LRN,
/// GroupNormalization, Einsum, RotaryEmbedding, Attention, AffineGrid, GridSample) and their
/// VJP: the float16 conversion must keep the graphs well typed and, where ONNX Runtime's CPU
/// provider has the kernels, close to float32 (random weights; smooth, so the tight gradient
/// tolerance).
#[test]
fn newer_operators_and_their_vjps_convert() {
    let m = build(23, |b| {
        let f = DataType::FLOAT;
        let mut rng = Rng::new(7);
        let mut w = |b: &mut GraphBuilder, name: &str, dims: &[usize], s: f64| {
            let n = dims.iter().product();
            let v: Vec<f64> = (0..n).map(|_| rng.normal() * s).collect();
            b.constant_float(name, f, dims, &v)
        };
        let x = b.input("x", f, &[1.into(), 4.into(), 6.into(), 6.into()]);
        let cw = w(b, "cw", &[4, 4, 3, 3], 0.3);
        let c = b.op("Conv", &[&x, &cw], vec![attrs::ints("pads", &[1, 1, 1, 1])]);
        let l = b.op("LRN", &[&c], vec![attrs::int("size", 3)]);
        let (gs, gb) = (w(b, "gs", &[4], 1.0), w(b, "gb", &[4], 0.1));
        let gn = b.op(
            "GroupNormalization",
            &[&l, &gs, &gb],
            vec![attrs::int("num_groups", 2)],
        );
        let tokens = b.reshape(&gn, &[1, 4, 36]);
        let tokens = b.transpose(&tokens, &[0, 2, 1]);
        let proj = |b: &mut GraphBuilder, wt: &str| {
            b.op(
                "Einsum",
                &[&tokens, wt],
                vec![attrs::string("equation", "bsc,cd->bsd")],
            )
        };
        let (wq, wk, wv) = (
            w(b, "wq", &[4, 4], 0.5),
            w(b, "wk", &[4, 4], 0.5),
            w(b, "wv", &[4, 4], 0.5),
        );
        let (q, k, v) = (proj(b, &wq), proj(b, &wk), proj(b, &wv));
        // Rotary position embeddings on queries and keys (2 heads of 2 channels: one pair).
        let angles: Vec<f64> = (0..36).map(|p| 0.3 * p as f64).collect();
        let cos: Vec<f64> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f64> = angles.iter().map(|a| a.sin()).collect();
        let cos = b.constant_float("cos_cache", f, &[36, 1], &cos);
        let sin = b.constant_float("sin_cache", f, &[36, 1], &sin);
        let pos: Vec<i64> = (0..36).collect();
        let pos = b.constant(
            "position_ids",
            &HostTensor::int(DataType::INT64, vec![1, 36], pos),
        );
        let rope = |b: &mut GraphBuilder, t: &str| {
            b.op(
                "RotaryEmbedding",
                &[t, &cos, &sin, &pos],
                vec![attrs::int("num_heads", 2)],
            )
        };
        let (q, k) = (rope(b, &q), rope(b, &k));
        let a = b.op(
            "Attention",
            &[&q, &k, &v],
            vec![attrs::int("q_num_heads", 2), attrs::int("kv_num_heads", 2)],
        );
        b.output(&a, "attended");
        let theta = b.constant_float("theta", f, &[1, 2, 3], &[0.9, 0.1, 0.05, -0.1, 0.8, 0.0]);
        let size = b.const_i64s(&[1, 4, 5, 5]);
        let grid = b.op("AffineGrid", &[&theta, &size], vec![]);
        let warped = b.op("GridSample", &[&gn, &grid], vec![]);
        b.output(&warped, "warped");
    });
    let mut errors = check_model("newer operators", &m, 2e-2, 1.0);
    errors.extend(check_model(
        "newer operators VJP",
        &vjp_wrt_inputs(&m),
        2e-2,
        1e-2,
    ));
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
