//! `zoom grad`: the gradient-graph contract of DESIGN.md on a model whose gradient is known by
//! hand, and the error for an operator without a rule.

use crate::util::*;
use ndarray::{ArrayD, IxDyn};
use zoom::io::npy;
use zoom::runtime::Tensor;
use zoom_graph::{DataType, Dim, GraphBuilder};

#[test]
fn vjp_graph_has_the_contract_names_and_the_hand_computed_gradient() {
    let dir = tempdir();
    let model = dir.path().join("affine.onnx");
    write_affine_relu(&model);
    let vjp = dir.path().join("vjp.onnx");
    let o = zoom(
        &[
            "grad",
            model.to_str().unwrap(),
            "--wrt",
            "x",
            "--shape",
            "x=2x3",
            "-o",
            vjp.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = zoom(&["inspect", "--json", vjp.to_str().unwrap()], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("inputs"), vec!["x", "y_grad"]);
    assert_eq!(names("outputs"), vec!["y", "x_grad"]);
    assert!(
        v["op_histogram"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("::")),
        "standard ops only: {v}"
    );

    // x_grad = (1[x·W + b > 0] ⊙ y_grad) · Wᵀ
    let x = [[1.0f32, 2.0, 3.0], [-1.0, 0.5, -0.25]];
    let g = [[1.0f32, -2.0], [0.5, 3.0]];
    let xf = dir.path().join("x.npy");
    let gf = dir.path().join("g.npy");
    npy::write(
        &xf,
        &Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), x.iter().flatten().copied().collect()).unwrap(),
        ),
    )
    .unwrap();
    npy::write(
        &gf,
        &Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[2, 2]), g.iter().flatten().copied().collect()).unwrap(),
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = zoom(
        &[
            "run",
            vjp.to_str().unwrap(),
            "--input",
            &format!("x={}", xf.display()),
            "--input",
            &format!("y_grad={}", gf.display()),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let xg = npy::read(&out.join("x_grad.npy"))
        .unwrap()
        .into_f32("x_grad")
        .unwrap();
    for i in 0..2 {
        let active: Vec<bool> = (0..2)
            .map(|j| (0..3).map(|k| x[i][k] * W[k][j]).sum::<f32>() + B[j] > 0.0)
            .collect();
        for k in 0..3 {
            let expected: f32 = (0..2)
                .filter(|&j| active[j])
                .map(|j| g[i][j] * W[k][j])
                .sum();
            assert!(
                (xg[[i, k]] - expected).abs() < 1e-5,
                "x_grad[{i},{k}] = {} expected {expected}",
                xg[[i, k]]
            );
        }
    }
}

#[test]
fn an_operator_without_a_rule_is_named_with_its_node_and_the_fallback() {
    let dir = tempdir();
    let model = dir.path().join("det.onnx");
    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::FLOAT, &[2.into(), 2.into()]);
    let node = zoom_graph::proto::NodeProto {
        input: vec![x.clone()],
        output: vec!["d".into()],
        name: "determinant_1".into(),
        op_type: "Det".into(),
        ..Default::default()
    };
    b.node(node);
    b.output_typed("d", "y", DataType::FLOAT, Some(&[] as &[Dim]));
    zoom_graph::write_model(&b.build().unwrap(), &model).unwrap();
    let o = zoom(
        &[
            "grad",
            model.to_str().unwrap(),
            "--wrt",
            "x",
            "-o",
            dir.path().join("g.onnx").to_str().unwrap(),
        ],
        &[],
    );
    assert_clean_failure(&o, &["Det", "determinant_1", "finite-difference"]);
}

#[test]
fn a_dynamic_dimension_without_shape_defaults_to_one_with_a_warning() {
    let dir = tempdir();
    let model = dir.path().join("affine.onnx");
    write_affine_relu(&model);
    let vjp = dir.path().join("vjp.onnx");
    let o = zoom(
        &[
            "grad",
            model.to_str().unwrap(),
            "--wrt",
            "x",
            "-o",
            vjp.to_str().unwrap(),
        ],
        &[],
    );
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("N") && err.to_lowercase().contains("1"),
        "expected a warning about the dynamic dim: {err}"
    );
    let o = zoom(&["inspect", "--json", vjp.to_str().unwrap()], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["1", "3"]));
}
