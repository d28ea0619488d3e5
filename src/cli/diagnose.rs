//! `zoom diagnose CONFIG.yaml --out DIR [--set key=value]...`

use super::Global;
use std::path::PathBuf;
use zoom::config::Config;
use zoom::diagnose::{diagnose, RunOptions};

/// Arguments of `zoom diagnose`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The diagnosis config (YAML; see configs/).
    pub config: PathBuf,
    /// Output folder (default: the config's `output`). Rerunning into the same folder resumes.
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override a config key, e.g. `--set search.bound=3 --set samples=8` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global, ep_from_cli: bool) -> anyhow::Result<()> {
    let config = Config::load(&args.config, &args.overrides)?;
    let out = match (&args.out, &config.output) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => o.clone(),
        (None, None) => {
            return Err(zoom::Error::config(
                args.config.display().to_string(),
                "output",
                "no output folder: pass --out DIR or set `output` in the config",
            )
            .into())
        }
    };
    let mut session = global.session.clone();
    if !ep_from_cli {
        session.providers = config.runtime.ep.clone();
    }
    if session.intra_threads.is_none() {
        session.intra_threads = config.runtime.threads;
    }
    if !global.precision_from_cli {
        session.precision = config.runtime.precision;
    }
    session.conv_search = config.runtime.cudnn_conv_search;
    session.profile_dir = config.runtime.profile.clone();
    let report = diagnose(
        &config,
        &RunOptions {
            out: out.clone(),
            quiet: global.quiet,
            session,
        },
    )?;
    if !global.quiet {
        println!(
            "{} on {} samples ({:?} mode); score = {}",
            report.target.model, report.samples, report.mode, report.target.score
        );
        println!(
            "{:<18} {:>11} {:>12}  {:<17} {:>6}",
            "attribute",
            "sensitivity",
            "mean |Δ|",
            "95% CI",
            format!("{}s", report.target.change)
        );
        for a in &report.attributes {
            println!(
                "{:<18} {:>11.3} {:>12.4}  [{:.4}, {:.4}] {:>6}{}",
                a.name,
                a.sensitivity,
                a.mean_abs_change,
                a.ci95[0],
                a.ci95[1],
                a.flip_rate
                    .map_or("-".into(), |f| format!("{:.0}%", f * 100.0)),
                match a.above_null {
                    Some(false) => "  (not above the random-direction baseline)",
                    _ => "",
                }
            );
        }
        if let Some(nb) = &report.null_baseline {
            println!(
                "{:<18} {:>11} {:>12.4}  [{:.4}, {:.4}]",
                "random directions", "-", nb.mean_abs_change, nb.ci95[0], nb.ci95[1]
            );
        }
        if let Some(f) = report.flip_rate {
            println!("{} rate: {:.0}%", report.target.change, f * 100.0);
        }
        if !report.flagged_samples.is_empty() {
            println!(
                "{} attacks flagged (NaN/Inf outputs), left out of the statistics",
                report.flagged_samples.len()
            );
        }
        println!("report: {}", out.join("report.html").display());
    }
    Ok(())
}
