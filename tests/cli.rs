//! `zoom inspect`, `zoom run`, `zoom doctor` on a real (tiny) ONNX model, and every error path.

use crate::util::*;
use ndarray::{ArrayD, IxDyn};
use zoom::io::npy;
use zoom::runtime::Tensor;

fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("affine.onnx");
    write_affine_relu(&p);
    p
}

fn write_x(dir: &std::path::Path, rows: &[[f32; 3]]) -> std::path::PathBuf {
    let p = dir.join("x.npy");
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    npy::write(
        &p,
        &Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[rows.len(), 3]), flat).unwrap()),
    )
    .unwrap();
    p
}

/// `zoom run MODEL --input x=X --out OUT [EXTRA...]`.
fn run_x(
    model: &std::path::Path,
    x: &std::path::Path,
    out: &std::path::Path,
) -> std::process::Output {
    run_x_with(model, x, out, &[])
}

fn run_x_with(
    model: &std::path::Path,
    x: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let x = format!("x={}", x.display());
    let mut args = vec![
        "run",
        model.to_str().unwrap(),
        "--input",
        &x,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    zoom(&args, &[])
}

#[test]
fn run_matches_values_computed_by_hand() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let rows = [[1.0, 2.0, 3.0], [-1.0, 0.5, -0.25]];
    let x = write_x(dir.path(), &rows);
    let out = dir.path().join("out");
    let o = run_x(&model, &x, &out);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("y") && stdout.contains("[2, 2]") && stdout.contains("cpu"),
        "{stdout}"
    );
    let y = npy::read(&out.join("y.npy"))
        .unwrap()
        .into_f32("y")
        .unwrap();
    let expected = affine_relu_by_hand(&rows);
    for (i, row) in expected.iter().enumerate() {
        for (j, &e) in row.iter().enumerate() {
            assert!(
                (y[[i, j]] - e).abs() < 1e-6,
                "y[{i},{j}] = {} expected {e}",
                y[[i, j]]
            );
        }
    }
}

#[test]
fn a_model_with_external_weights_runs_from_any_working_directory() {
    let dir = tempdir();
    let sub = dir.path().join("models");
    std::fs::create_dir(&sub).unwrap();
    let model = sub.join("affine.onnx");
    write_affine_relu_external(&model);
    assert!(
        sub.join("affine.onnx.data").is_file(),
        "weights went to a side file"
    );
    let rows = [[1.0, 2.0, 3.0]];
    let x = write_x(dir.path(), &rows);
    let out = dir.path().join("out");
    // zoom runs from the repository root, not the model's folder.
    let o = run_x(&model, &x, &out);
    assert!(o.status.success(), "{:?}", text(&o));
    let y = npy::read(&out.join("y.npy"))
        .unwrap()
        .into_f32("y")
        .unwrap();
    let expected = affine_relu_by_hand(&rows);
    assert!((y[[0, 0]] - expected[0][0]).abs() < 1e-6 && (y[[0, 1]] - expected[0][1]).abs() < 1e-6);
}

#[test]
fn inspect_reports_io_opset_ops_and_parameters() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let o = zoom(&["inspect", model.to_str().unwrap()], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for needle in [
        "x ",
        "[N, 3]",
        "y ",
        "ai.onnx=17",
        "MatMul",
        "Relu",
        "params    8 (32 B)",
        "nodes     ",
    ] {
        assert!(
            out.contains(needle),
            "inspect output lacks `{needle}`:\n{out}"
        );
    }
    assert!(
        out.contains("gradient  every operator type has a rule"),
        "{out}"
    );
    let o = zoom(&["inspect", "--json", model.to_str().unwrap()], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect --json is JSON");
    assert_eq!(v["parameter_count"], 8);
    assert_eq!(v["op_histogram"]["Add"], 1);
    assert_eq!(v["without_gradient_rule"], serde_json::json!([]));
}

/// Before a diagnosis, `zoom inspect` says which operators would force finite differences.
#[test]
fn inspect_names_operators_without_a_gradient_rule() {
    use zoom_graph::{DataType, Dim, GraphBuilder};
    let dir = tempdir();
    let model = dir.path().join("det.onnx");
    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::FLOAT, &[2.into(), 3.into(), 3.into()]);
    let r = b.op("Relu", &[&x], vec![]);
    let d = b.op("Det", &[&r], vec![]);
    b.output_typed(&d, "det", DataType::FLOAT, Some(&[Dim::from(2)]));
    zoom_graph::write_model(&b.build().unwrap(), &model).unwrap();
    let o = zoom(&["inspect", model.to_str().unwrap()], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("(no gradient rule)"), "{out}");
    assert!(
        out.contains("gradient  no rule for Det") && out.contains("finite differences"),
        "{out}"
    );
    let o = zoom(&["inspect", "--json", model.to_str().unwrap()], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["without_gradient_rule"], serde_json::json!(["Det"]));
}

#[test]
fn doctor_names_the_runtime_and_providers() {
    let o = zoom(&["doctor"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("onnxruntime      1.") && out.contains("CPUExecutionProvider"),
        "{out}"
    );
}

/// float16 exists for GPU providers only: asking for it on the CPU must fail loudly (not run fp32
/// behind the user's back), while `auto` runs the CPU in fp32 with unchanged results.
#[test]
fn precision_fp16_is_refused_on_the_cpu_and_auto_keeps_fp32() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let rows = [[1.0, 2.0, 3.0], [-1.0, 0.5, -0.25]];
    let x = write_x(dir.path(), &rows);
    let out = dir.path().join("out");
    let o = run_x_with(&model, &x, &out, &["--precision", "fp16"]);
    assert_clean_failure(&o, &["affine.onnx", "fp16", "cpu", "auto"]);
    assert!(!out.join("y.npy").exists());

    let o = run_x_with(&model, &x, &out, &["--precision", "auto"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let y = npy::read(&out.join("y.npy"))
        .unwrap()
        .into_f32("y")
        .unwrap();
    let want = affine_relu_by_hand(&rows);
    for (got, want) in y.iter().zip(want.iter().flatten()) {
        // fp16 would be off by ~1e-3 here; fp32 matches the hand computation to rounding.
        assert!(
            (got - want).abs() < 1e-6,
            "auto on the CPU must be plain fp32: {got} vs {want}"
        );
    }

    let o = run_x_with(&model, &x, &out, &["--precision", "int8"]);
    assert_clean_failure(&o, &["int8", "fp32, fp16 or auto"]);
}

#[test]
fn missing_model_file_is_named() {
    let o = zoom(&["inspect", "no/such/model.onnx"], &[]);
    assert_clean_failure(&o, &["no/such/model.onnx", "not found"]);
    let o = zoom(&["run", "no/such/model.onnx", "--input", "x=x.npy"], &[]);
    assert_clean_failure(&o, &["x.npy"]);
}

#[test]
fn a_file_that_is_not_onnx_is_rejected() {
    let o = zoom(&["inspect", "Cargo.toml"], &[]);
    assert_clean_failure(&o, &["Cargo.toml", "not a valid ONNX model"]);
    let dir = tempdir();
    let x = write_x(dir.path(), &[[0.0; 3]]);
    let o = zoom(
        &[
            "run",
            "Cargo.toml",
            "--input",
            &format!("x={}", x.display()),
        ],
        &[],
    );
    assert_clean_failure(&o, &["Cargo.toml", "not a valid ONNX model"]);
    let o = zoom(&["grad", "Cargo.toml", "--wrt", "x", "-o", "g.onnx"], &[]);
    assert_clean_failure(&o, &["Cargo.toml", "not a valid ONNX model"]);
    let (_, err) = text(&o);
    assert_eq!(
        err.matches("Cargo.toml").count(),
        1,
        "the file is named once: {err}"
    );
}

#[test]
fn a_truncated_onnx_file_is_rejected() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let o = zoom(&["inspect", cut.to_str().unwrap()], &[]);
    assert_clean_failure(&o, &["cut.onnx", "truncated"]);
}

#[test]
fn wrong_input_name_lists_the_real_ones() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let x = write_x(dir.path(), &[[0.0; 3]]);
    let o = zoom(
        &[
            "run",
            model.to_str().unwrap(),
            "--input",
            &format!("image={}", x.display()),
        ],
        &[],
    );
    assert_clean_failure(&o, &["`image`", "no input of this name", "x"]);
}

#[test]
fn wrong_input_shape_and_dtype_say_what_was_expected() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let bad_shape = dir.path().join("bad_shape.npy");
    npy::write(&bad_shape, &Tensor::F32(ArrayD::zeros(IxDyn(&[2, 4])))).unwrap();
    let o = zoom(
        &[
            "run",
            model.to_str().unwrap(),
            "--input",
            &format!("x={}", bad_shape.display()),
        ],
        &[],
    );
    assert_clean_failure(&o, &["`x`", "expected shape [?, 3]", "[2, 4]"]);
    let bad_dtype = dir.path().join("bad_dtype.npy");
    npy::write(&bad_dtype, &Tensor::F64(ArrayD::zeros(IxDyn(&[2, 3])))).unwrap();
    let o = zoom(
        &[
            "run",
            model.to_str().unwrap(),
            "--input",
            &format!("x={}", bad_dtype.display()),
        ],
        &[],
    );
    assert_clean_failure(&o, &["`x`", "expected dtype float32", "float64"]);
}

#[test]
fn missing_runtime_library_says_what_to_run() {
    let dir = tempdir();
    let model = fixture(dir.path());
    let x = write_x(dir.path(), &[[0.0; 3]]);
    let gone = dir.path().join("libonnxruntime.so");
    let o = zoom(
        &[
            "run",
            model.to_str().unwrap(),
            "--input",
            &format!("x={}", x.display()),
        ],
        &[("ORT_DYLIB_PATH", gone.to_str().unwrap())],
    );
    assert_clean_failure(
        &o,
        &[
            "ONNX Runtime library not found",
            "scripts/fetch-onnxruntime.sh",
        ],
    );
    let o = zoom(&["--ort-lib", gone.to_str().unwrap(), "doctor"], &[]);
    assert_clean_failure(&o, &["--ort-lib", "scripts/fetch-onnxruntime.sh"]);
}

#[test]
fn tokenize_shows_ids_tokens_and_specials_and_refuses_bad_files() {
    let tok = root().join("onnx/face-clip/tokenizer.json");
    assert!(tok.is_file(), "run scripts/setup.sh first");
    let o = zoom(&["tokenize", tok.to_str().unwrap(), "A smiling face"], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let line: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let tokens: Vec<&str> = line["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .take(5)
        .collect();
    assert_eq!(tokens, ["[CLS]", "a", "smiling", "face", "[SEP]"]);
    assert_eq!(line["special"][0], 1);
    assert_eq!(line["special"][1], 0);

    let tmp = tempdir();
    // A pattern the pure-Rust regex engine cannot compile (variable-length look-behind).
    let bad = tmp.path().join("tokenizer.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    json["normalizer"] = serde_json::json!(
        {"type": "Replace", "pattern": {"Regex": "(?<=a*)b"}, "content": "c"}
    );
    std::fs::write(&bad, json.to_string()).unwrap();
    let o = zoom(&["tokenize", bad.to_str().unwrap(), "x"], &[]);
    assert_clean_failure(&o, &["tokenizer.json", "Look-behind"]);
}
