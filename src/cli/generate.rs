//! `zoom generate --config CONFIG --seed S --count N --out DIR [--edit SPEC]...`
//!
//! Renders the generator's faces, and the same faces edited, so a user can see the generator and
//! its edit space at work before diagnosing anything.

use super::Global;
use anyhow::{bail, Context};
use ndarray::{Array1, Array2, Axis};
use std::path::PathBuf;
use zoom::config::Config;
use zoom::diagnose::{extract_directions, load_pipeline, RunOptions};
use zoom::io::image::to_rgb8;
use zoom::sampling::{latents, rng, Stream};

/// Arguments of `zoom generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A diagnosis config: its generator (and, for prompt edits, its CLIP and direction settings).
    #[arg(long)]
    pub config: PathBuf,
    /// Seed of the latents (the same seed and index give the same face as in `zoom diagnose`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of faces.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Output folder: samples.png, and with --edit also edited.png and pairs.png.
    #[arg(long, short)]
    pub out: PathBuf,
    /// An edit (repeatable, summed): `channel:C:K` moves edit channel C by K of its σ;
    /// `prompt:NAME:ALPHA` moves along the config attribute NAME's direction by α (unit-norm
    /// direction, as in the search); `random:K:ALPHA` along null-baseline direction K.
    #[arg(long, value_name = "SPEC")]
    pub edit: Vec<String>,
    /// Faces per row.
    #[arg(long, default_value_t = 8)]
    pub columns: usize,
}

fn parse_edit(spec: &str) -> anyhow::Result<(String, String, f32)> {
    let mut parts = spec.splitn(3, ':');
    let (Some(kind), Some(what), Some(amount)) = (parts.next(), parts.next(), parts.next()) else {
        bail!(
            "--edit `{spec}`: expected KIND:WHAT:AMOUNT, e.g. channel:12:3 or prompt:smiling:2.5"
        );
    };
    let amount: f32 = amount
        .parse()
        .with_context(|| format!("--edit `{spec}`: `{amount}` is not a number"))?;
    Ok((kind.to_string(), what.to_string(), amount))
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    if args.count == 0 || args.count > 4096 {
        bail!("--count must be between 1 and 4096");
    }
    let config = Config::load(&args.config, &[])?;
    let mut pipe = load_pipeline(&config, &global.session)?;
    let card = pipe.generator.card.clone();
    let edits: Vec<(String, String, f32)> = args
        .edit
        .iter()
        .map(|e| parse_edit(e))
        .collect::<anyhow::Result<_>>()?;
    let mut offset = Array1::<f32>::zeros(card.style_dim);
    let needs_directions = edits.iter().any(|(k, _, _)| k == "prompt");
    let directions = if needs_directions {
        let opts = RunOptions {
            out: args.out.clone(),
            quiet: global.quiet,
            session: global.session.clone(),
        };
        extract_directions(&config, &mut pipe, &opts)?
    } else {
        Vec::new()
    };
    for (kind, what, amount) in &edits {
        match kind.as_str() {
            "channel" => {
                let c: usize = what
                    .parse()
                    .with_context(|| format!("--edit channel `{what}` is not a channel index"))?;
                if c >= card.style_dim {
                    bail!(
                        "--edit channel {c}: the edit space has {} channels",
                        card.style_dim
                    );
                }
                if !card.editable[c] {
                    bail!("--edit channel {c} is not editable (see the generator card)");
                }
                offset[c] += amount * card.channel_scale[c];
            }
            "prompt" => {
                let d = directions
                    .iter()
                    .find(|d| d.name == *what)
                    .with_context(|| {
                        let names: Vec<&str> = directions.iter().map(|d| d.name.as_str()).collect();
                        format!(
                            "--edit prompt `{what}`: the config's attributes are {}",
                            names.join(", ")
                        )
                    })?;
                offset.scaled_add(*amount, &d.direction.vector);
            }
            "random" => {
                let k: u64 = what
                    .parse()
                    .with_context(|| format!("--edit random `{what}` is not an index"))?;
                let d = zoom::directions::random_direction(
                    &mut rng(config.seed, Stream::Null, k),
                    &card.channel_scale,
                    &card.editable,
                );
                offset.scaled_add(*amount, &d);
            }
            other => bail!("--edit kind `{other}`: expected channel, prompt or random"),
        }
    }
    let indices: Vec<usize> = (0..args.count).collect();
    let z = latents(args.seed, Stream::Samples, &indices, card.z_dim);
    let zero = Array2::<f32>::zeros((args.count, card.style_dim));
    let faces = pipe.generator.render(&z, &zero)?;
    let tiles = |imgs: &ndarray::Array4<f32>| -> Vec<image::RgbImage> {
        imgs.axis_iter(Axis(0))
            .map(|im| {
                image::imageops::resize(
                    &to_rgb8(im, -1.0, 1.0),
                    128,
                    128,
                    image::imageops::FilterType::Nearest,
                )
            })
            .collect()
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let originals = tiles(&faces);
    zoom::report::grid::write_grid(&args.out.join("samples.png"), &originals, args.columns)?;
    if !edits.is_empty() {
        let edit = Array2::from_shape_fn((args.count, card.style_dim), |(_, c)| offset[c]);
        let edited = tiles(&pipe.generator.render(&z, &edit)?);
        zoom::report::grid::write_grid(&args.out.join("edited.png"), &edited, args.columns)?;
        let pairs: Vec<image::RgbImage> = originals
            .iter()
            .zip(&edited)
            .map(|(a, b)| zoom::report::grid::pairs_grid(&[a.clone(), b.clone()], 2))
            .collect();
        zoom::report::grid::write_grid(
            &args.out.join("pairs.png"),
            &pairs,
            (args.columns / 2).max(1),
        )?;
    }
    if !global.quiet {
        println!(
            "{} faces (seed {}) written to {}",
            args.count,
            args.seed,
            args.out.display()
        );
    }
    Ok(())
}
