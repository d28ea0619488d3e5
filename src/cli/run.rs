//! `zoom run MODEL.onnx --input NAME=FILE ... [--out DIR]`

use super::Global;
use anyhow::{bail, Context};
use std::path::PathBuf;
use zoom::io::{image, npy};
use zoom::preprocess::Preprocess;
use zoom::runtime::{Model, Tensor};

/// Arguments of `zoom run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// An input as NAME=FILE: a .npy tensor, or an image (.png/.jpg) preprocessed by --prep.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE", required = true)]
    pub inputs: Vec<String>,
    /// Preprocessing for image inputs, e.g. `size=64x64,gray,range=0:1` (see README).
    #[arg(long, value_name = "SPEC")]
    pub prep: Option<String>,
    /// Folder for the outputs (one OUTPUT.npy each); nothing is written without it.
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn load_input(file: &std::path::Path, prep: Option<&Preprocess>) -> anyhow::Result<Tensor> {
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "npy" {
        return Ok(npy::read(file)?);
    }
    if matches!(ext.as_str(), "png" | "jpg" | "jpeg") {
        let Some(prep) = prep else {
            bail!(
                "{}: image inputs need --prep (e.g. --prep size=64x64,gray,range=0:1)",
                file.display()
            );
        };
        let rgb = image::read_rgb(file)?;
        return Ok(Tensor::F32(prep.apply(&rgb)));
    }
    bail!(
        "{}: unsupported input file type; expected .npy, .png or .jpg",
        file.display()
    )
}

fn summary_line(name: &str, t: &Tensor) -> String {
    let stats = match t {
        Tensor::F32(a) if !a.is_empty() => {
            let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
            for &v in a.iter() {
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v as f64;
            }
            format!("min {lo:.6}  max {hi:.6}  mean {:.6}", sum / a.len() as f64)
        }
        _ => String::new(),
    };
    format!(
        "{name:<20} {:<8} {:?}  {stats}",
        t.dtype().name(),
        t.shape()
    )
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let prep = args
        .prep
        .as_deref()
        .map(Preprocess::parse_inline)
        .transpose()?;
    let mut feeds = Vec::new();
    for spec in &args.inputs {
        let Some((name, file)) = spec.split_once('=') else {
            return Err(zoom::Error::config(
                "command line",
                "--input",
                format!("`{spec}` must be NAME=FILE"),
            )
            .into());
        };
        let file = PathBuf::from(file);
        let t =
            load_input(&file, prep.as_ref()).with_context(|| format!("reading input `{name}`"))?;
        feeds.push((name.to_string(), t));
    }
    let mut model = Model::load(&args.model, &global.session)?;
    let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let start = std::time::Instant::now();
    let outputs = model.run_raw(&refs)?;
    let elapsed = start.elapsed();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, t) in &outputs {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            npy::write(&dir.join(format!("{safe}.npy")), t)?;
        }
    }
    if !global.quiet {
        println!(
            "{} on {} in {:.1} ms",
            args.model.display(),
            model.provider().name(),
            elapsed.as_secs_f64() * 1e3
        );
        for (name, t) in &outputs {
            println!("  {}", summary_line(name, t));
            if t.non_finite_count() > 0 {
                println!("    warning: {} NaN/Inf values", t.non_finite_count());
            }
        }
        if let Some(dir) = &args.out {
            println!("outputs written to {}", dir.display());
        }
    }
    Ok(())
}
