//! Parity of the demo models as Rust runs them: each model in `onnx/` (made by
//! `scripts/setup.sh`) on recorded real inputs, against the outputs recorded by the conversion
//! script (Python ONNX Runtime, itself checked against an independent numpy reference).

use crate::util::root;
use zoom::io::npy;
use zoom::runtime::{Model, SessionOptions, Tensor};

fn golden(model: &str, feeds: &[(&str, &str)], outputs: &[(&str, f32)]) {
    let dir = root().join("tests/golden").join(model);
    let path = root().join("onnx").join(model).join("model.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/setup.sh`",
        path.display()
    );
    let mut m = Model::load(&path, &SessionOptions::default()).expect("load");
    let inputs: Vec<(String, Tensor)> = feeds
        .iter()
        .map(|(name, file)| {
            let t = npy::read(&dir.join(file)).expect("golden input");
            // Stored as uint8 to stay small; the model takes float32 / 255.
            let t = match t {
                Tensor::U8(a) => Tensor::F32(a.mapv(|v| v as f32 / 255.0)),
                t => t,
            };
            (name.to_string(), t)
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let outs = m.run(&refs).expect("run");
    for (name, tol) in outputs {
        let got = outs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{model}: no output {name}"))
            .1
            .as_f32(name)
            .unwrap()
            .clone();
        let want = npy::read(&dir.join(format!("output_{name}.npy")))
            .unwrap()
            .into_f32(name)
            .unwrap();
        assert_eq!(got.shape(), want.shape(), "{model}/{name}");
        let diff = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= *tol, "{model}/{name}: max abs diff {diff} > {tol}");
    }
}

#[test]
fn generator_matches_its_recorded_outputs() {
    golden(
        "dcgan-face",
        &[("z", "input_z.npy"), ("edit", "input_edit.npy")],
        &[("image", 1e-4), ("style", 1e-4)],
    );
}

#[test]
fn gender_classifier_matches_and_keeps_its_decisions() {
    golden(
        "gender",
        &[("input", "input.npy")],
        &[("logits", 1e-4), ("probs", 1e-5)],
    );
}

#[test]
fn emotion_classifier_matches() {
    golden(
        "emotion",
        &[("input", "input.npy")],
        &[("logits", 1e-4), ("probs", 1e-5)],
    );
}

#[test]
fn mtcnn_onet_matches() {
    golden(
        "mtcnn-onet",
        &[("input_3", "input.npy")],
        &[("dense_5", 1e-4), ("dense_6", 1e-4), ("softmax_2", 1e-5)],
    );
}

#[test]
fn selfie_segmenter_matches() {
    golden("selfie", &[("input", "input_u8.npy")], &[("mask", 1e-3)]);
}
