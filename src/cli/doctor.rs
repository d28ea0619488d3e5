//! `zoom doctor [CONFIG]`

use super::Global;
use std::path::PathBuf;

/// Arguments of `zoom doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A diagnosis config: also load each model it names and report the provider it gets.
    pub config: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    zoom::runtime::init(None)?;
    println!("zoom             {}", env!("CARGO_PKG_VERSION"));
    println!("onnxruntime      {}", zoom::runtime::version());
    println!(
        "library          {}",
        zoom::runtime::library_path().map_or("-".into(), |p| p.display().to_string())
    );
    println!(
        "available EPs    {}",
        zoom::runtime::available_providers().join(", ")
    );
    let compiled: Vec<&str> = [
        ("cpu", true),
        ("cuda", cfg!(feature = "cuda")),
        ("tensorrt", cfg!(feature = "tensorrt")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    println!("zoom built with  {}", compiled.join(", "));
    let prefs: Vec<&str> = global.session.providers.iter().map(|p| p.name()).collect();
    println!("preference       {}", prefs.join(","));
    println!("precision        {}", global.session.precision.name());
    println!(
        "threads          {} intra-op per session ({} cores available), graph optimisation: all",
        global.session.threads(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Some(config) = &args.config {
        for (role, path) in zoom::config::model_paths(config)? {
            match zoom::runtime::Model::load(&path, &global.session) {
                Ok(m) => {
                    println!("{role:<16} {} on {}", path.display(), m.placement());
                    for w in m.warnings() {
                        println!("                 warning: {w}");
                    }
                }
                Err(e) => println!("{role:<16} {}: cannot load: {e}", path.display()),
            }
        }
    }
    Ok(())
}
