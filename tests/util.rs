//! Shared test helpers: the binary, fresh folders, and small ONNX fixtures built in code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use zoom_graph::{DataType, Dim, GraphBuilder};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temporary folder, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Runs the `zoom` binary with `args`; `env` adds or overrides environment variables.
pub fn zoom(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zoom"));
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run zoom")
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a failed run: non-zero exit, no panic or backtrace, and every `needle` in stderr.
pub fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let (out, err) = text(o);
    assert!(
        !o.status.success(),
        "expected failure; stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
}

/// The weights of [`write_affine_relu`]: `y = relu(x · W + b)` with x `[2, 3]`.
pub const W: [[f32; 2]; 3] = [[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25]];
/// Bias of [`write_affine_relu`].
pub const B: [f32; 2] = [0.1, -0.2];

/// Writes a tiny real ONNX model `x [N, 3] float32 → y = Relu(MatMul(x, W) + b) [N, 2]` (weights
/// fixed above, so tests can compute the expected output by hand).
pub fn write_affine_relu(path: &Path) {
    write_affine_relu_with(path, &zoom_graph::io::WriteOptions::default());
}

/// The same model with its weights in a side file `<name>.data` (ONNX external data).
pub fn write_affine_relu_external(path: &Path) {
    let opts = zoom_graph::io::WriteOptions {
        external_data_threshold: Some(4),
    };
    write_affine_relu_with(path, &opts);
}

fn write_affine_relu_with(path: &Path, opts: &zoom_graph::io::WriteOptions) {
    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::FLOAT, &[Dim::from("N"), 3.into()]);
    let w: Vec<f32> = W.iter().flatten().copied().collect();
    let w = b.constant_f32("W", &[3, 2], &w);
    let bias = b.constant_f32("b", &[2], &B);
    let xw = b.matmul(&x, &w);
    let s = b.add(&xw, &bias);
    let y = b.op("Relu", &[&s], vec![]);
    b.output(&y, "y");
    let model = b.build().expect("build fixture");
    zoom_graph::io::write_model_with(&model, path, opts).expect("write fixture");
}

/// `relu(x · W + b)` computed by hand, row by row.
pub fn affine_relu_by_hand(x: &[[f32; 3]]) -> Vec<[f32; 2]> {
    x.iter()
        .map(|row| {
            let mut y = [0f32; 2];
            for (j, yj) in y.iter_mut().enumerate() {
                let s: f32 = (0..3).map(|i| row[i] * W[i][j]).sum::<f32>() + B[j];
                *yj = s.max(0.0);
            }
            y
        })
        .collect()
}
