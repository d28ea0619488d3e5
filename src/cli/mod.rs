//! Command-line interface: one module per subcommand. `anyhow` lives here only, for context.

mod diagnose;
mod doctor;
mod generate;
mod grad;
mod inspect;
mod run;
mod tokenize;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// zoom: zero-shot model diagnosis for ONNX vision models.
#[derive(Debug, Parser)]
#[command(name = "zoom", version, about, long_about = None)]
pub struct Cli {
    /// Path to libonnxruntime.so (default: $ORT_DYLIB_PATH, then the one scripts/setup.sh fetched).
    #[arg(long, global = true, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// Execution providers in order of preference, e.g. `cuda,cpu` (default: cpu).
    #[arg(long, global = true, value_name = "LIST")]
    pub ep: Option<String>,
    /// Intra-op threads per session (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Numeric precision: fp32 (default), fp16 (GPU providers only) or auto (fp16 on a GPU).
    #[arg(long, global = true, value_name = "P")]
    pub precision: Option<String>,
    /// Print only errors (no progress bars, no summaries).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log output (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose a model: attribute directions, counterfactual search, sensitivity report.
    Diagnose(diagnose::Args),
    /// Show a model's inputs, outputs, opsets, producer, operator histogram and parameters.
    Inspect(inspect::Args),
    /// Render generated faces, optionally edited along channels or attribute directions.
    Generate(generate::Args),
    /// Build the gradient (VJP) graph of a model in standard ONNX operators.
    Grad(grad::Args),
    /// Run any ONNX model on .npy (or image) inputs and write each output as .npy.
    Run(run::Args),
    /// Show the ONNX Runtime library, providers and threads; with a config, what each model uses.
    Doctor(doctor::Args),
    /// Tokenize texts with a tokenizer.json as the CLIP text tower will see them (JSON lines).
    Tokenize(tokenize::Args),
}

/// Settings every subcommand shares.
#[derive(Debug, Clone)]
pub struct Global {
    /// Session options from --ep / --threads.
    pub session: zoom::runtime::SessionOptions,
    /// --quiet.
    pub quiet: bool,
    /// Whether --precision was given (it then wins over the config's `runtime.precision`).
    pub precision_from_cli: bool,
}

impl Cli {
    fn global(&self) -> anyhow::Result<Global> {
        let providers = match &self.ep {
            Some(list) => zoom::runtime::parse_provider_list(list, "command line")?,
            None => vec![zoom::runtime::Provider::Cpu],
        };
        Ok(Global {
            session: zoom::runtime::SessionOptions {
                providers,
                intra_threads: self.threads,
                precision: match &self.precision {
                    Some(p) => zoom::runtime::Precision::parse(p, "command line")?,
                    None => zoom::runtime::Precision::Fp32,
                },
                conv_search: zoom::runtime::ConvSearch::default(),
                profile_dir: None,
            },
            precision_from_cli: self.precision.is_some(),
            quiet: self.quiet,
        })
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    // ort logs every ONNX Runtime message through tracing; keep it at warn unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZOOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},ort=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<zoom::Error>())
        .map_or(1, |e| e.exit_code() as u8)
}

/// The error chain joined by ": ", skipping a cause whose text its parent already shows (many
/// errors, ours and the graph crate's, print their source inline as `{path}: {source}`).
fn error_message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut parent = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parent.is_empty() && parent.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        parent = text;
    }
    out
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`zoom inspect m.onnx | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", error_message(&err));
            ExitCode::from(exit_code_of(&err))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(lib) = &cli.ort_lib {
        zoom::runtime::init(Some(lib))?;
    }
    let global = cli.global()?;
    let ep_from_cli = cli.ep.is_some();
    match cli.command {
        Command::Diagnose(args) => diagnose::run(args, &global, ep_from_cli),
        Command::Generate(args) => generate::run(args, &global),
        Command::Grad(args) => grad::run(args, &global),
        Command::Inspect(args) => inspect::run(args, &global),
        Command::Run(args) => run::run(args, &global),
        Command::Doctor(args) => doctor::run(args, &global),
        Command::Tokenize(args) => tokenize::run(args, &global),
    }
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn a_cause_already_shown_by_its_parent_is_not_repeated() {
        let os = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err =
            anyhow::Error::from(zoom::Error::io("/out/g.onnx", os)).context("writing the graph");
        assert_eq!(
            error_message(&err),
            "writing the graph: /out/g.onnx: No such file or directory"
        );
        // Causes that add something are all kept.
        let err = anyhow::anyhow!("bad value")
            .context("--shape")
            .context("command line");
        assert_eq!(error_message(&err), "command line: --shape: bad value");
    }
}
