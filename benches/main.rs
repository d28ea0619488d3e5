//! Throughput of the diagnosis on the real demo models (run `bash scripts/setup.sh` first):
//!
//! - `images`: images per second through generator → target (+ CLIP image tower) at several
//!   batch sizes (one `Pipeline::evaluate` call of 64 images);
//! - `gradient-step`: a one-iteration attack (unedited pass, one gradient step, final pass) on a
//!   chunk of attacks, exact VJP chain vs central finite differences, for `single` (1 direction
//!   per attack) and `multiple` (7 directions);
//! - `attacks`: complete counterfactual attacks (4 iterations) per second.
//!
//! `cargo bench --bench main`; throughput is reported per image or per attack.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array1, Array2};
use std::path::Path;
use zoom::config::{Config, Mode};
use zoom::diagnose::{build_attacks, load_pipeline, AttributeDirection};
use zoom::directions::{random_direction, Direction};
use zoom::runtime::SessionOptions;
use zoom::sampling::{latent, rng, Stream};
use zoom::search::{self, exact::ExactChain, Pipeline, SearchSettings};

fn setup(batch: usize) -> (Config, Pipeline) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo-gender.yaml");
    let config = Config::load(&path, &[format!("batch_size={batch}")])
        .expect("demo config (run scripts/setup.sh)");
    let pipe = load_pipeline(&config, &SessionOptions::default()).expect("load models");
    (config, pipe)
}

fn directions(pipe: &Pipeline, n: usize) -> Vec<AttributeDirection> {
    let card = &pipe.generator.card;
    (0..n)
        .map(|k| AttributeDirection {
            name: format!("d{k}"),
            prompt: String::new(),
            direction: Direction {
                vector: random_direction(
                    &mut rng(1, Stream::Null, k as u64),
                    &card.channel_scale,
                    &card.editable,
                ),
                channels: card.style_dim,
                max_relevance: 1.0,
            },
        })
        .collect()
}

fn settings(iterations: usize) -> SearchSettings {
    SearchSettings {
        iterations,
        step: 2.0,
        bound: 3.0,
        cls_weight: 1.0,
        clip_weight: 0.005,
        fd_step: 0.05,
    }
}

fn images(c: &mut Criterion) {
    let mut g = c.benchmark_group("images");
    g.sample_size(10);
    for batch in [8usize, 32, 64] {
        let (_, mut pipe) = setup(batch);
        let n = 64;
        let z = Array2::from_shape_fn((n, pipe.generator.card.z_dim), |(i, j)| {
            ((i * 31 + j) % 17) as f32 / 17.0 - 0.5
        });
        let edit = Array2::zeros((n, pipe.generator.card.style_dim));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("generator+target/cpu", batch),
            &batch,
            |b, _| b.iter(|| pipe.evaluate(&z, &edit, false).expect("evaluate")),
        );
    }
    g.finish();
}

fn gradient_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("gradient-step");
    g.sample_size(10);
    for (mode, k) in [(Mode::Single, 1usize), (Mode::Multiple, 7)] {
        let (_config, mut pipe) = setup(32);
        let attrs = directions(&pipe, k);
        let samples: Vec<(usize, Array1<f32>)> = (0..4)
            .map(|s| {
                (
                    s,
                    latent(0, Stream::Samples, s as u64, pipe.generator.card.z_dim),
                )
            })
            .collect();
        let attacks = build_attacks(mode, &attrs, &[], &samples);
        let s = settings(1);
        g.throughput(Throughput::Elements(attacks.len() as u64));
        g.bench_function(
            BenchmarkId::new("finite-difference/cpu", format!("{mode:?}-k{k}")),
            |b| b.iter(|| search::run_attacks(&mut pipe, &attacks, &s).expect("fd")),
        );
        pipe.exact = Some(
            ExactChain::build(&pipe, pipe.batch_size, &SessionOptions::default()).expect("vjp"),
        );
        g.bench_function(
            BenchmarkId::new("exact/cpu", format!("{mode:?}-k{k}")),
            |b| b.iter(|| search::run_attacks(&mut pipe, &attacks, &s).expect("exact")),
        );
    }
    g.finish();
}

fn attacks(c: &mut Criterion) {
    let mut g = c.benchmark_group("attacks");
    g.sample_size(10);
    for batch in [16usize, 64] {
        let (_, mut pipe) = setup(batch);
        let attrs = directions(&pipe, 7);
        let samples: Vec<(usize, Array1<f32>)> = (0..4)
            .map(|s| {
                (
                    s,
                    latent(0, Stream::Samples, s as u64, pipe.generator.card.z_dim),
                )
            })
            .collect();
        let attacks = build_attacks(Mode::Single, &attrs, &[], &samples);
        let s = settings(4);
        g.throughput(Throughput::Elements(attacks.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("single-fd-4it/cpu", batch),
            &batch,
            |b, _| b.iter(|| search::run_attacks(&mut pipe, &attacks, &s).expect("attacks")),
        );
    }
    g.finish();
}

criterion_group!(benches, images, gradient_step, attacks);
criterion_main!(benches);
