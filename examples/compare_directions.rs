//! Compares the two direction-extraction methods on a config: for each attribute, the cosine
//! between the global (±kσ probe) direction and the gradient (Jᵀ·Δt) direction, and how many
//! channels each keeps. Run after `scripts/setup.sh`:
//!
//! `cargo run --release --example compare_directions -- configs/demo-gender.yaml`

use std::path::PathBuf;
use zoom::config::{Config, DirectionMethod};
use zoom::diagnose::{extract_directions, load_pipeline, RunOptions};
use zoom::runtime::SessionOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "configs/demo-gender.yaml".into()),
    );
    let mut config = Config::load(&path, &[])?;
    let mut pipe = load_pipeline(&config, &SessionOptions::default())?;
    let opts = RunOptions {
        out: PathBuf::from("/dev/null"),
        quiet: false,
        session: SessionOptions::default(),
    };
    config.directions.method = DirectionMethod::Global;
    let global = extract_directions(&config, &mut pipe, &opts)?;
    config.directions.method = DirectionMethod::Gradient;
    let gradient = extract_directions(&config, &mut pipe, &opts)?;
    println!(
        "{:<20} {:>8} {:>16} {:>18}",
        "attribute", "cosine", "channels global", "channels gradient"
    );
    for (g, d) in global.iter().zip(&gradient) {
        let cos = g.direction.vector.dot(&d.direction.vector);
        println!(
            "{:<20} {:>8.3} {:>16} {:>18}",
            g.name, cos, g.direction.channels, d.direction.channels
        );
    }
    Ok(())
}
