//! `zoom diagnose` end to end on the real demo models (fetched by `scripts/setup.sh`): the
//! report's contract, reproducibility, resuming, and config errors.

use crate::util::*;
use std::path::Path;

const DEMO: &str = "configs/demo-gender.yaml";

/// Small settings so a run takes seconds; the relevance cache lives in the test's folder.
fn quick(cache: &Path) -> Vec<String> {
    vec![
        "samples=4".into(),
        "search.iterations=2".into(),
        "directions.probe_samples=1".into(),
        "search.null_directions=1".into(),
        format!("directions.cache={}", cache.display()),
    ]
}

fn diagnose(config: &str, out: &Path, sets: &[String]) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "--quiet".into(),
        "diagnose".into(),
        config.into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    zoom(&refs, &[])
}

fn require_demo_models() {
    for f in [
        "onnx/dcgan-face/model.onnx",
        "onnx/gender/model.onnx",
        "onnx/face-clip/text.onnx",
        "onnx/face-clip/image.onnx",
    ] {
        assert!(
            root().join(f).is_file(),
            "{f} is missing: run `bash scripts/setup.sh` first"
        );
    }
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("JSON")
}

#[test]
fn demo_report_follows_the_contract_and_reruns_identically() {
    require_demo_models();
    let tmp = tempdir();
    let sets = quick(&tmp.path().join("cache"));
    let a_dir = tmp.path().join("a");
    let a = &a_dir;
    let o = diagnose(DEMO, a, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    let r = report(a);
    assert_eq!(r["mode"], "single");
    // Every operator of the demo chain has a gradient rule: `auto` must pick the exact path and
    // its start-up check against finite differences must have passed.
    let gradient = r["settings"]["gradient"].as_str().unwrap();
    assert!(gradient.starts_with("exact ("), "{gradient}");
    assert_eq!(r["samples"], 4);
    assert_eq!(r["seed"], 0);
    let attrs = r["attributes"].as_array().unwrap();
    assert_eq!(attrs.len(), 7);
    let total: f64 = attrs
        .iter()
        .map(|a| a["sensitivity"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-4, "sensitivities sum to {total}");
    let sens: Vec<f64> = attrs
        .iter()
        .map(|a| a["sensitivity"].as_f64().unwrap())
        .collect();
    assert!(
        sens.windows(2).all(|w| w[0] >= w[1]),
        "not sorted: {sens:?}"
    );
    for a in attrs {
        let (lo, hi, m) = (
            a["ci95"][0].as_f64().unwrap(),
            a["ci95"][1].as_f64().unwrap(),
            a["mean_abs_change"].as_f64().unwrap(),
        );
        assert!(lo <= m + 1e-9 && m <= hi + 1e-9, "{a}");
        for ex in a["examples"].as_array().unwrap() {
            let img = ex["image"].as_str().unwrap();
            assert!(a_dir.join(img).is_file(), "example image {img} missing");
        }
    }
    // samples.jsonl: one record per sample and attack (7 attributes + 1 null direction).
    let lines = std::fs::read_to_string(a.join("samples.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4 * 8);
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(html.contains("a smiling face"));
    // Same config and seed, new folder (relevance now from the cache): the same report.
    let b = tmp.path().join("b");
    let o = diagnose(DEMO, &b, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        std::fs::read(a.join("report.json")).unwrap(),
        std::fs::read(b.join("report.json")).unwrap()
    );
}

#[test]
fn an_interrupted_run_resumes_to_the_same_report() {
    require_demo_models();
    let tmp = tempdir();
    let sets = quick(&tmp.path().join("cache"));
    let full = tmp.path().join("full");
    let o = diagnose(DEMO, &full, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    // Simulate a kill: keep the first 7 records, leave half a line, drop the report.
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(full.join("run.json"), cut.join("run.json")).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(full.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut partial = lines[..7].join("\n");
    partial.push('\n');
    partial.push_str(&lines[7][..lines[7].len() / 2]);
    std::fs::write(cut.join("samples.jsonl"), partial).unwrap();
    let o = diagnose(DEMO, &cut, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    let resumed = std::fs::read_to_string(cut.join("samples.jsonl")).unwrap();
    assert_eq!(
        resumed.lines().count(),
        lines.len(),
        "no record lost or repeated"
    );
    assert_eq!(
        std::fs::read(full.join("report.json")).unwrap(),
        std::fs::read(cut.join("report.json")).unwrap()
    );
}

#[test]
fn a_folder_of_another_config_is_refused() {
    require_demo_models();
    let tmp = tempdir();
    let mut sets = quick(&tmp.path().join("cache"));
    let out = tmp.path().join("run");
    assert!(diagnose(DEMO, &out, &sets).status.success());
    sets.push("seed=1".into());
    let o = diagnose(DEMO, &out, &sets);
    assert_clean_failure(&o, &["different config"]);
}

#[test]
fn config_errors_name_the_file_and_key() {
    let tmp = tempdir();
    let out = tmp.path().join("x");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["search.bogus=1".into()],
            vec!["demo-gender.yaml", "search", "unknown field `bogus`"],
        ),
        (
            vec!["samples=many".into()],
            vec!["demo-gender.yaml", "samples", "invalid type"],
        ),
        (
            vec!["search.bound=-1".into()],
            vec!["search.bound", "positive"],
        ),
        (
            vec!["target.model=../nope/model.onnx".into()],
            vec!["target.model", "file not found", "nope/model.onnx"],
        ),
        (
            vec!["attributes.consistency=[a man]".into()],
            vec!["attributes.consistency", "at least 2"],
        ),
        (
            vec!["search.mode=sideways".into()],
            vec!["search.mode", "unknown variant `sideways`"],
        ),
        (vec!["noequals".into()], vec!["--set", "KEY=VALUE"]),
        (
            vec!["batch_size=lots".into()],
            vec!["batch_size", "a positive number of images or \"auto\""],
        ),
        (vec!["batch_size=0".into()], vec!["batch_size", "or auto"]),
    ];
    for (sets, needles) in cases {
        let o = diagnose(DEMO, &out, &sets);
        assert_clean_failure(&o, &needles);
        assert_eq!(
            o.status.code(),
            Some(2),
            "config errors exit with 2: {sets:?}"
        );
    }
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, "seed: [1, 2\nsamples: 3").unwrap();
    let o = diagnose(broken.to_str().unwrap(), &out, &[]);
    assert_clean_failure(&o, &["broken.yaml: invalid YAML"]);
}

#[test]
fn a_task_that_does_not_fit_the_output_is_named() {
    require_demo_models();
    let tmp = tempdir();
    let mut sets = quick(&tmp.path().join("cache"));
    sets.push(
        "target.task={kind: multiclass, output: logits, labels: [a, b, c, d, e, f, g]}".into(),
    );
    let o = diagnose(DEMO, &tmp.path().join("x"), &sets);
    assert_clean_failure(&o, &["7 labels", "`logits`", "2 classes"]);
}

#[test]
fn a_prompt_that_tokenizes_to_nothing_is_rejected() {
    require_demo_models();
    let tmp = tempdir();
    let mut sets = quick(&tmp.path().join("cache"));
    sets.push("attributes.prompts=[{name: empty, prompt: \"\u{200b}\"}]".into());
    let o = diagnose(DEMO, &tmp.path().join("x"), &sets);
    assert_clean_failure(&o, &["tokenizes to nothing"]);
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_losing_or_repeating_samples() {
    require_demo_models();
    let tmp = tempdir();
    let mut sets = quick(&tmp.path().join("cache"));
    sets.retain(|s| !s.starts_with("samples="));
    sets.push("samples=12".into());
    let reference = tmp.path().join("reference");
    assert!(diagnose(DEMO, &reference, &sets).status.success());

    let killed = tmp.path().join("killed");
    let mut args: Vec<String> = vec![
        "--quiet".into(),
        "diagnose".into(),
        DEMO.into(),
        "--out".into(),
        killed.display().to_string(),
    ];
    for s in &sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zoom"))
        .args(&args)
        .current_dir(root())
        .spawn()
        .unwrap();
    // Kill as soon as the first chunk is recorded (or when the run ends first, on a fast machine).
    let samples = killed.join("samples.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        let lines = std::fs::read_to_string(&samples)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines > 0 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    let o = diagnose(DEMO, &killed, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    let count = |d: &Path| {
        std::fs::read_to_string(d.join("samples.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count(&killed), count(&reference));
    assert_eq!(
        std::fs::read(reference.join("report.json")).unwrap(),
        std::fs::read(killed.join("report.json")).unwrap()
    );
}

/// The proof that the diagnosis tells the truth: two small smiling classifiers trained on
/// generated faces, one with green backgrounds planted as a shortcut (every smiling training
/// face had one), one without (scripts/planted_bias/train.py). Smiling itself is not among the
/// prompts; zoom must rank the planted attribute first for the biased model only.
#[test]
fn the_planted_attribute_ranks_first_for_the_biased_model_only() {
    require_demo_models();
    let tmp = tempdir();
    let sets = vec![
        "samples=8".to_string(),
        "search.null_directions=1".into(),
        format!("directions.cache={}", tmp.path().join("cache").display()),
    ];
    let share = |r: &serde_json::Value, name: &str| {
        r["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["sensitivity"]
            .as_f64()
            .unwrap()
    };
    let mut reports = Vec::new();
    for kind in ["biased", "control"] {
        let out = tmp.path().join(kind);
        let o = diagnose(&format!("configs/planted-{kind}.yaml"), &out, &sets);
        assert!(o.status.success(), "{kind}: {:?}", text(&o));
        reports.push(report(&out));
    }
    let (biased, control) = (&reports[0], &reports[1]);
    assert_eq!(
        biased["attributes"][0]["name"], "green-background",
        "biased ranking: {}",
        biased["attributes"]
    );
    assert_ne!(
        control["attributes"][0]["name"], "green-background",
        "control ranking: {}",
        control["attributes"]
    );
    let (b, c) = (
        share(biased, "green-background"),
        share(control, "green-background"),
    );
    assert!(
        b > 3.0 * c,
        "green-background share: biased {b:.3}, control {c:.3}"
    );
}

#[test]
fn landmark_demo_composes_an_opset_12_target_and_sizes_its_batch() {
    require_demo_models();
    let tmp = tempdir();
    let mut sets = quick(&tmp.path().join("cache"));
    sets.push("batch_size=auto".into());
    let out = tmp.path().join("x");
    let o = diagnose("configs/demo-landmarks.yaml", &out, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    let r = report(&out);
    // MTCNN's ONet is opset 12 and the generator opset 17: the chain is upgraded and composed,
    // so the exact path is used and agrees with finite differences.
    let gradient = r["settings"]["gradient"].as_str().unwrap();
    assert!(gradient.starts_with("exact ("), "{gradient}");
    let batch = r["settings"]["config"]["batch_size_used"].as_u64().unwrap();
    assert!((1..=64).contains(&batch), "auto batch {batch}");
    assert_eq!(r["settings"]["config"]["batch_size"], "auto");
}

#[test]
fn keypoints_on_an_output_that_holds_no_landmarks_is_named() {
    require_demo_models();
    let tmp = tempdir();
    let mut sets = quick(&tmp.path().join("cache"));
    sets.push("target.task={kind: keypoints, output: softmax_2, count: 5}".into());
    let o = diagnose("configs/demo-landmarks.yaml", &tmp.path().join("x"), &sets);
    assert_clean_failure(&o, &["softmax_2", "[N, 2]"]);
}

/// GPU runs pad every call to the batch size (one input shape per session); the padding rows
/// must not leak into the results. Checked on the CPU by turning the padding on.
#[test]
fn padded_fixed_shape_batches_give_the_same_evaluation() {
    require_demo_models();
    let config = zoom::config::Config::load(&root().join(DEMO), &[]).expect("demo config");
    let session = zoom::runtime::SessionOptions {
        intra_threads: Some(1),
        ..Default::default()
    };
    let mut pipe = zoom::diagnose::load_pipeline(&config, &session).expect("pipeline");
    pipe.consistency = Some(pipe.clip.text.encode(&["a smiling face".into()]).unwrap());
    pipe.batch_size = 3;
    let (n, zd, ed) = (7, pipe.generator.card.z_dim, pipe.generator.card.style_dim);
    let z = ndarray::Array2::from_shape_fn((n, zd), |(i, j)| {
        ((i * 31 + j * 7) % 13) as f32 / 6.0 - 1.0
    });
    let e = ndarray::Array2::from_shape_fn((n, ed), |(i, j)| ((i + j) % 5) as f32 * 0.1);
    pipe.fixed_batch = false;
    let plain = pipe.evaluate(&z, &e, true).unwrap();
    pipe.fixed_batch = true;
    let padded = pipe.evaluate(&z, &e, true).unwrap();
    assert_eq!(padded.rows.dim(), plain.rows.dim());
    assert_eq!(padded.bad, plain.bad);
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
    assert!(close(
        padded.rows.as_slice().unwrap(),
        plain.rows.as_slice().unwrap()
    ));
    let (pl, ql) = (plain.clip_logits.unwrap(), padded.clip_logits.unwrap());
    assert_eq!(pl.dim(), (n, 1));
    assert!(close(ql.as_slice().unwrap(), pl.as_slice().unwrap()));
    let (pi, qi) = (plain.images.unwrap(), padded.images.unwrap());
    assert_eq!(qi.dim(), pi.dim());
    assert!(close(qi.as_slice().unwrap(), pi.as_slice().unwrap()));
}

/// A target exported at batch 1 with that batch baked into a Reshape (common for fixed-batch
/// exports) fails on any larger batch inside ONNX Runtime. zoom finds this at load time and
/// runs one image per call, says so in the report, and still differentiates exactly.
#[test]
fn a_target_whose_graph_fixes_batch_1_runs_one_image_per_call() {
    use zoom_graph::{DataType, Dim, GraphBuilder};
    require_demo_models();
    let tmp = tempdir();
    let target = tmp.path().join("fixed_batch.onnx");
    // Test fixture with fixed made-up weights, not a trained model.
    let mut b = GraphBuilder::new(17);
    let x = b.input(
        "x",
        DataType::FLOAT,
        &[Dim::from(1), 3.into(), 64.into(), 64.into()],
    );
    let m = b.reduce("ReduceMean", &x, &[2, 3], true);
    let flat = b.reshape(&m, &[1, 3]);
    let w = b.constant_f32("w", &[3, 2], &[2.0, -1.0, -3.0, 1.5, 0.5, 2.5]);
    let y = b.matmul(&flat, &w);
    b.output(&y, "logits");
    zoom_graph::write_model(&b.build().unwrap(), &target).unwrap();

    let mut sets = quick(&tmp.path().join("cache"));
    sets.push(format!("target.model={}", target.display()));
    sets.push("target.preprocess={size: [64, 64]}".into());
    let out = tmp.path().join("x");
    let o = diagnose(DEMO, &out, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    let r = report(&out);
    assert_eq!(r["settings"]["config"]["batch_size_used"], 1);
    let warnings = r["settings"]["warnings"].to_string();
    assert!(
        warnings.contains("one image per call") && warnings.contains("Reshape node"),
        "{warnings}"
    );
    let gradient = r["settings"]["gradient"].as_str().unwrap();
    assert!(gradient.starts_with("exact ("), "{gradient}");
}

/// The same for a generator whose inputs declare batch 1: ONNX Runtime refuses any other batch
/// at its inputs, so every part of the run (directions, search, report) renders one image per
/// call.
#[test]
fn a_generator_that_declares_batch_1_renders_one_image_per_call() {
    use zoom_graph::{DataType, Dim};
    require_demo_models();
    let tmp = tempdir();
    let generator = tmp.path().join("dcgan_batch1.onnx");
    let mut m = zoom_graph::read_model(root().join("onnx/dcgan-face/model.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    for v in &mut g.input {
        let dims = v.dims().unwrap();
        let fixed: Vec<Dim> = std::iter::once(Dim::from(1))
            .chain(dims[1..].iter().cloned())
            .collect();
        *v = zoom_graph::model::tensor_value_info(&v.name, DataType::FLOAT, Some(&fixed));
    }
    zoom_graph::write_model(&m, &generator).unwrap();

    let mut sets = quick(&tmp.path().join("cache"));
    sets.push(format!("generator.model={}", generator.display()));
    let out = tmp.path().join("x");
    let o = diagnose(DEMO, &out, &sets);
    assert!(o.status.success(), "{:?}", text(&o));
    let r = report(&out);
    assert_eq!(r["settings"]["config"]["batch_size_used"], 1);
    let warnings = r["settings"]["warnings"].to_string();
    assert!(
        warnings.contains("generator") && warnings.contains("fails on two latents"),
        "{warnings}"
    );
}
