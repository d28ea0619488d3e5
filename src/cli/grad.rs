//! `zoom grad MODEL.onnx --wrt INPUT [--of OUTPUT]... [--shape NAME=d1xd2...]... [--tune cpu] -o OUT.onnx`

use super::Global;
use anyhow::Context;
use std::collections::HashMap;
use std::path::PathBuf;

/// Arguments of `zoom grad`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The forward ONNX model.
    pub model: PathBuf,
    /// Input to differentiate with respect to (repeatable).
    #[arg(long, required = true, value_name = "INPUT")]
    pub wrt: Vec<String>,
    /// Output to differentiate (repeatable; default: every float output).
    #[arg(long, value_name = "OUTPUT")]
    pub of: Vec<String>,
    /// Fix a dynamic input shape, e.g. `--shape image=1x3x64x64` (others default to 1, with a warning).
    #[arg(long, value_name = "NAME=D1xD2...")]
    pub shape: Vec<String>,
    /// Where to write the gradient (VJP) model.
    #[arg(long, short, value_name = "OUT.onnx")]
    pub output: PathBuf,
    /// The runtime to shape the graph for; both give the same values. `cpu` is faster on ONNX
    /// Runtime's CPU provider in float32 and must never be converted to float16.
    #[arg(long, value_enum, default_value_t = TuneFor::Portable, value_name = "RUNTIME")]
    pub tune: TuneFor,
}

/// Values of `--tune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TuneFor {
    /// Any execution provider, float16 conversion included.
    Portable,
    /// ONNX Runtime's CPU provider, float32.
    Cpu,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let model = zoom::models::read_proto(&args.model)?;
    let mut shapes = HashMap::new();
    for spec in &args.shape {
        let (name, dims) = zoom_graph::shapes::parse_shape_spec(spec)
            .map_err(|e| zoom::Error::config("command line", "--shape", e.to_string()))?;
        shapes.insert(name, dims);
    }
    let spec = zoom_graph::autodiff::VjpSpec {
        wrt: args.wrt.clone(),
        of: args.of.clone(),
        shapes,
        tuning: match args.tune {
            TuneFor::Portable => zoom_graph::autodiff::Tuning::Portable,
            TuneFor::Cpu => zoom_graph::autodiff::Tuning::CpuFloat32,
        },
    };
    let (vjp, warnings) = zoom_graph::autodiff::build_vjp(&model, &spec).map_err(|e| {
        let hint = if e.is_unsupported() {
            " (zoom diagnose falls back to finite differences for such models: `search.gradient: finite-difference`)"
        } else {
            ""
        };
        zoom::Error::model(&args.model, format!("cannot build the gradient graph: {e}{hint}"))
    })?;
    for w in &warnings {
        tracing::warn!("{}: {}", args.model.display(), w.message);
    }
    zoom_graph::write_model(&vjp, &args.output).context("writing the gradient graph")?;
    if !global.quiet {
        let g = vjp.graph.as_ref().map_or(0, |g| g.node.len());
        let f = model.graph.as_ref().map_or(0, |g| g.node.len());
        println!(
            "{} -> {} ({} forward nodes, {} in the gradient graph); inputs: {}; outputs: {}",
            args.model.display(),
            args.output.display(),
            f,
            g,
            vjp.graph.as_ref().map_or(String::new(), |g| g
                .input
                .iter()
                .filter(|i| !g.initializer.iter().any(|t| t.name == i.name))
                .map(|i| i.name.clone())
                .collect::<Vec<_>>()
                .join(", ")),
            vjp.graph.as_ref().map_or(String::new(), |g| g
                .output
                .iter()
                .map(|o| o.name.clone())
                .collect::<Vec<_>>()
                .join(", ")),
        );
    }
    Ok(())
}
