//! `zoom inspect MODEL.onnx`

use super::Global;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use zoom::onnx::{ModelSummary, ValueSummary};

/// Arguments of `zoom inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn value_line(v: &ValueSummary) -> String {
    format!("  {:<24} {:<8} [{}]", v.name, v.dtype, v.shape.join(", "))
}

/// Runs the subcommand.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<()> {
    zoom::runtime::precheck_model_file(&args.model)?;
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let summary = ModelSummary::parse(&bytes).map_err(|m| zoom::Error::model(&args.model, m))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
        return Ok(());
    }
    let opsets: Vec<String> = summary
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    writeln!(out, "model     {}", args.model.display())?;
    writeln!(
        out,
        "producer  {}",
        if summary.producer.is_empty() {
            "-"
        } else {
            &summary.producer
        }
    )?;
    writeln!(
        out,
        "ir        {}   opsets {}",
        summary.ir_version,
        opsets.join(", ")
    )?;
    writeln!(out, "inputs")?;
    for v in &summary.inputs {
        writeln!(out, "{}", value_line(v))?;
    }
    writeln!(out, "outputs")?;
    for v in &summary.outputs {
        writeln!(out, "{}", value_line(v))?;
    }
    writeln!(
        out,
        "params    {} ({}{})",
        summary.parameter_count,
        human_bytes(summary.parameter_bytes),
        if summary.has_external_data {
            ", external data"
        } else {
            ""
        }
    )?;
    writeln!(out, "nodes     {}", summary.node_count)?;
    let mut ops: Vec<(&String, &usize)> = summary.op_histogram.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (op, n) in ops {
        let note = if summary.without_gradient_rule.contains(op) {
            "  (no gradient rule)"
        } else {
            ""
        };
        writeln!(out, "  {op:<24} {n}{note}")?;
    }
    if summary.without_gradient_rule.is_empty() {
        writeln!(
            out,
            "gradient  every operator type has a rule or carries no gradient"
        )?;
    } else {
        writeln!(
            out,
            "gradient  no rule for {}: if on the path from the image to the output, \
             zoom diagnose uses finite differences",
            summary.without_gradient_rule.join(", ")
        )?;
    }
    Ok(())
}
