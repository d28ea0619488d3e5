//! One diagnosis run end to end: load models, extract directions, run the attacks chunk by chunk
//! (durably recorded, so a killed run resumes), aggregate and write the report.

pub mod aggregate;
pub mod batch;
pub mod checkpoint;

use crate::config::{BatchSize, Config, DirectionMethod, GradientSource, Mode};
use crate::directions::{self, ChannelRelevance, Direction, RelevanceSettings};
use crate::error::{Error, Result};
use crate::models::{Clip, Generator, Target};
use crate::report::schema::{Report, SampleRecord};
use crate::runtime::SessionOptions;
use crate::sampling::{latent, latents, rng, Stream};
use crate::search::{self, sweep, Attack, AttackResult, Pipeline, SearchSettings};
use ndarray::{Array1, Array2};
use std::path::{Path, PathBuf};

/// Samples per checkpoint unit: attacks of these samples are computed together and recorded
/// together. Fixed, so a resumed run batches exactly as an uninterrupted one.
pub const CHUNK_SAMPLES: usize = 4;

/// How to run (from the CLI).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder.
    pub out: PathBuf,
    /// No progress output.
    pub quiet: bool,
    /// Session options (providers, threads).
    pub session: SessionOptions,
}

/// What the run needs to know about one attribute.
#[derive(Debug, Clone)]
pub struct AttributeDirection {
    /// Name.
    pub name: String,
    /// Prompt.
    pub prompt: String,
    /// Edit-space direction.
    pub direction: Direction,
}

fn progress_bar(quiet: bool, len: u64, msg: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:<22} [{bar:30}] {pos}/{len} ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// A throughput with the digits that matter (large generators run below 1 image/s on a CPU).
fn rate(per_s: f64) -> String {
    if per_s >= 10.0 {
        format!("{per_s:.0}")
    } else {
        format!("{per_s:.2}")
    }
}

/// Loads generator, target and CLIP of a config (no directions, no consistency prompts yet).
pub fn load_pipeline(config: &Config, session: &SessionOptions) -> Result<Pipeline> {
    let generator = Generator::load(&config.generator.model, &config.generator.card, session)?;
    let hw = generator.image_hw;
    let target = Target::load(&config.target, hw, session)?;
    let clip = Clip::load(&config.clip, hw, session)?;
    let on_gpu = [generator.model(), target.model(), clip.image_model()]
        .iter()
        .any(|m| m.provider().is_gpu());
    let mut pipe = Pipeline {
        generator,
        target,
        clip,
        consistency: None,
        batch_size: 1,
        fixed_batch: on_gpu,
        images_rendered: 0,
        exact: None,
    };
    pipe.batch_size = match config.batch_size {
        BatchSize::Fixed(n) => n,
        BatchSize::Auto => {
            let (n, why) = batch::auto_batch_size(&pipe);
            tracing::info!("{why}");
            n
        }
    };
    if let Some(why) = one_image_per_call(&pipe) {
        if pipe.batch_size > 1 {
            tracing::warn!("{why}");
            pipe.batch_size = 1;
        }
    }
    Ok(pipe)
}

/// Why the pipeline must run one image per call (a model that only runs at batch 1), if so:
/// the diagnosis then runs at batch size 1 and says so in its report.
pub fn one_image_per_call(pipe: &Pipeline) -> Option<String> {
    let why = [
        ("generator", &pipe.generator.one_image_per_call),
        ("target", &pipe.target.one_image_per_call),
        ("CLIP image tower", &pipe.clip.one_image_per_call),
    ]
    .into_iter()
    .filter_map(|(role, w)| w.as_ref().map(|w| format!("{role}: {w}")))
    .collect::<Vec<_>>();
    (!why.is_empty()).then(|| {
        format!(
            "running one image per call (batch_size 1): {}; re-export with a dynamic batch axis \
             to batch images",
            why.join("; ")
        )
    })
}

/// Runs a diagnosis and writes everything into `opts.out`. Returns the report.
pub fn diagnose(config: &Config, opts: &RunOptions) -> Result<Report> {
    let config_json = serde_json::to_value(config).map_err(|e| Error::Report(e.to_string()))?;
    let done = checkpoint::open(&opts.out, &config_json)?;
    let mut warnings = Vec::new();

    let mut pipe = load_pipeline(config, &opts.session)?;
    for (role, m) in [
        ("generator", pipe.generator.model()),
        ("target", pipe.target.model()),
    ] {
        warnings.extend(m.warnings().iter().map(|w| format!("{role}: {w}")));
    }
    warnings.extend(one_image_per_call(&pipe));
    let mut providers = vec![
        ("generator".to_string(), pipe.generator.model().placement()),
        ("target".to_string(), pipe.target.model().placement()),
        ("clip".to_string(), pipe.clip.image_model().placement()),
    ];
    let bound = config
        .search
        .bound
        .unwrap_or(pipe.generator.card.default_bound);

    let attributes = extract_directions(config, &mut pipe, opts)?;
    if config.attributes.consistency.len() >= 2 && config.search.clip_weight > 0.0 {
        pipe.consistency = Some(pipe.clip.text.encode(&config.attributes.consistency)?);
    }
    let card = pipe.generator.card.clone();
    let nulls: Vec<Array1<f32>> = (0..config.search.null_directions)
        .map(|k| {
            directions::random_direction(
                &mut rng(config.seed, Stream::Null, k as u64),
                &card.channel_scale,
                &card.editable,
            )
        })
        .collect();

    let settings = SearchSettings {
        iterations: config.search.iterations,
        step: config.search.step,
        bound,
        cls_weight: config.search.cls_weight,
        clip_weight: config.search.clip_weight,
        fd_step: config.search.fd_step,
    };
    let gradient = choose_gradient(
        config,
        &mut pipe,
        &settings,
        &attributes,
        &nulls,
        opts,
        &mut warnings,
    )?;
    if let Some(chain) = &pipe.exact {
        providers.push(("gradient".to_string(), chain.placement()));
    }
    let labels = attack_labels(config, &attributes, nulls.len());
    let chunks: Vec<Vec<usize>> = (0..config.samples)
        .collect::<Vec<_>>()
        .chunks(CHUNK_SAMPLES)
        .map(<[usize]>::to_vec)
        .collect();
    let pending: Vec<&Vec<usize>> = chunks
        .iter()
        .filter(|c| {
            c.iter()
                .any(|&s| labels.iter().any(|l| !done.contains(&(l.clone(), s))))
        })
        .collect();
    let pb = progress_bar(opts.quiet, config.samples as u64, "counterfactuals");
    pb.inc((config.samples - pending.iter().map(|c| c.len()).sum::<usize>()) as u64);
    let mut writer = crate::report::json::SampleWriter::open(&opts.out)?;
    let started = std::time::Instant::now();
    for chunk in pending {
        let records = run_chunk(
            config,
            &mut pipe,
            &settings,
            &attributes,
            &nulls,
            chunk,
            &opts.out,
        )?;
        for r in records {
            if !done.contains(&(r.attack.clone(), r.sample)) {
                writer.append(&r)?;
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if !opts.quiet && pipe.images_rendered > 0 {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "rendered {} images through generator + target{} in {secs:.1} s ({} images/s)",
            pipe.images_rendered,
            if pipe.consistency.is_some() {
                " + CLIP"
            } else {
                ""
            },
            rate(pipe.images_rendered as f64 / secs.max(1e-9))
        );
    }
    let records = crate::report::json::read_samples(&opts.out)?;
    let report = aggregate::build_report(
        config,
        &config_json,
        &attributes,
        nulls.len(),
        &records,
        &pipe,
        aggregate::RunFacts {
            gradient,
            providers,
            warnings,
            bound,
            batch_size: pipe.batch_size,
        },
    )?;
    crate::report::write_all(&opts.out, &report)?;
    Ok(report)
}

/// Attribute directions of a config (global or gradient method).
pub fn extract_directions(
    config: &Config,
    pipe: &mut Pipeline,
    opts: &RunOptions,
) -> Result<Vec<AttributeDirection>> {
    let d = &config.directions;
    let relevance = match d.method {
        DirectionMethod::Global => Relevance::Global(global_relevance(config, pipe, opts)?),
        DirectionMethod::Gradient => {
            let indices: Vec<usize> = (0..d.probe_samples).collect();
            let z = latents(
                directions::relevance::PROBE_SEED,
                Stream::Probes,
                &indices,
                pipe.generator.card.z_dim,
            );
            Relevance::Gradient(directions::gradient::EmbeddingGradient::build(
                pipe,
                z,
                &opts.session,
            )?)
        }
    };
    let templates: Vec<String> = if config.attributes.templates.is_empty() {
        directions::DEFAULT_TEMPLATES
            .iter()
            .map(|t| t.to_string())
            .collect()
    } else {
        config.attributes.templates.clone()
    };
    let card = pipe.generator.card.clone();
    let mut relevance = relevance;
    let mut out = Vec::new();
    for a in &config.attributes.prompts {
        let dt = directions::text_direction(
            &mut pipe.clip.text,
            &templates,
            &config.attributes.neutral,
            &a.prompt,
        )?;
        let beta = a.beta.unwrap_or(d.beta);
        let direction = match &mut relevance {
            Relevance::Global(r) => {
                directions::attribute_direction(r, &dt, beta, &card.channel_scale, &a.name)?
            }
            Relevance::Gradient(g) => {
                let r = g.relevance(&dt, &card.channel_scale, &card.editable)?;
                directions::project(r, &card.editable, beta, &card.channel_scale, &a.name)?
            }
        };
        out.push(AttributeDirection {
            name: a.name.clone(),
            prompt: a.prompt.clone(),
            direction,
        });
    }
    Ok(out)
}

/// Channel relevances of either direction method.
enum Relevance {
    Global(ChannelRelevance),
    Gradient(directions::gradient::EmbeddingGradient),
}

fn global_relevance(
    config: &Config,
    pipe: &mut Pipeline,
    opts: &RunOptions,
) -> Result<ChannelRelevance> {
    let d = &config.directions;
    let s = RelevanceSettings {
        probe_samples: d.probe_samples,
        probe_sigma: d.probe_sigma,
        batch_size: pipe.batch_size,
        cache: d
            .cache
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CACHE)),
    };
    let clip_prep = serde_json::to_string(&config.clip.preprocess).unwrap_or_default();
    let key = directions::relevance::cache_key(
        &[
            &config.generator.model,
            &config.generator.card,
            &config.clip.image,
        ],
        &clip_prep,
        &s,
    )?;
    let editable = pipe.generator.card.editable.iter().filter(|e| **e).count();
    let pb = progress_bar(
        opts.quiet,
        (2 * editable * d.probe_samples) as u64,
        "channel relevance",
    );
    let relevance = ChannelRelevance::load_or_compute(
        &mut pipe.generator,
        &mut pipe.clip,
        &key,
        &s,
        &mut |done, _| pb.set_position(done as u64),
    )?;
    pb.finish_and_clear();
    if !opts.quiet {
        eprintln!(
            "channel relevance {} {}",
            if relevance.from_cache {
                "read from"
            } else {
                "computed and cached in"
            },
            relevance.cache_file.display()
        );
    }
    Ok(relevance)
}

/// Every attack label of a run, in report order.
fn attack_labels(config: &Config, attributes: &[AttributeDirection], nulls: usize) -> Vec<String> {
    let mut labels: Vec<String> = match config.search.mode {
        Mode::Single => attributes
            .iter()
            .map(|a| format!("single:{}", a.name))
            .collect(),
        Mode::Multiple => vec!["multiple".into()],
        Mode::Sweep => attributes
            .iter()
            .map(|a| format!("sweep:{}", a.name))
            .collect(),
    };
    labels.extend((0..nulls).map(|k| format!("null:{k}")));
    labels
}

fn image_path(label: &str, sample: usize) -> String {
    format!("images/{}/{sample:05}.png", label.replace(':', "-"))
}

/// The sample record of one attack; with `write_image`, also its pair image, on which the task
/// draws its own picture (landmarks, masks) of the unedited and the counterfactual output.
fn record_of(
    r: &AttackResult,
    out: &Path,
    write_image: bool,
    task: &dyn crate::tasks::Task,
) -> Result<SampleRecord> {
    let mut images = Vec::new();
    if write_image {
        let rel = image_path(&r.label, r.sample);
        let style = crate::report::PairStyle::new(r.score_before, r.score_after, r.flipped);
        // A flagged attack's rows may hold NaN/Inf: no task picture then, only the scores.
        let usable =
            r.flagged.is_none() && !r.origin.is_empty() && r.row_after.len() == r.origin.len();
        crate::report::grid::write_pair_annotated(
            &out.join(&rel),
            r.original.view(),
            r.counterfactual.view(),
            &style,
            &mut |panel, counterfactual| {
                if !usable {
                    return None;
                }
                let row = if counterfactual {
                    &r.row_after
                } else {
                    &r.origin
                };
                task.annotate(panel, row, &r.origin, counterfactual)
            },
        )?;
        images.push(rel);
    }
    Ok(SampleRecord {
        sample: r.sample,
        attack: r.label.clone(),
        attributes: r.attributes.clone(),
        alpha: r.alpha.iter().map(|&a| a as f64).collect(),
        score_before: r.score_before,
        score_after: vec![r.score_after],
        flipped: r.flipped,
        flagged: r.flagged.clone(),
        images,
        contributions: None,
    })
}

/// The attacks of some samples: per sample, one per attribute (`single`) or one over all of
/// them (`multiple`), then one per null direction.
pub fn build_attacks(
    mode: Mode,
    attributes: &[AttributeDirection],
    nulls: &[Array1<f32>],
    samples: &[(usize, Array1<f32>)],
) -> Vec<Attack> {
    let mut attacks = Vec::new();
    for (s, z) in samples {
        let attack =
            |label: String, attributes: Vec<String>, directions: Vec<Array1<f32>>| Attack {
                sample: *s,
                z: z.clone(),
                label,
                attributes,
                directions,
            };
        if mode == Mode::Multiple {
            attacks.push(attack(
                "multiple".into(),
                attributes.iter().map(|a| a.name.clone()).collect(),
                attributes
                    .iter()
                    .map(|a| a.direction.vector.clone())
                    .collect(),
            ));
        } else {
            for a in attributes {
                attacks.push(attack(
                    format!("single:{}", a.name),
                    vec![a.name.clone()],
                    vec![a.direction.vector.clone()],
                ));
            }
        }
        for (k, d) in nulls.iter().enumerate() {
            attacks.push(attack(
                format!("null:{k}"),
                vec![format!("random-{k}")],
                vec![d.clone()],
            ));
        }
    }
    attacks
}

/// Decides the gradient source: the exact VJP chain when it builds and agrees with finite
/// differences on the first samples, else finite differences (an error if `exact` was asked).
fn choose_gradient(
    config: &Config,
    pipe: &mut Pipeline,
    settings: &SearchSettings,
    attributes: &[AttributeDirection],
    nulls: &[Array1<f32>],
    opts: &RunOptions,
    warnings: &mut Vec<String>,
) -> Result<String> {
    let wanted = config.search.gradient;
    if wanted == GradientSource::FiniteDifference {
        return Ok("finite-difference".into());
    }
    if config.search.mode == Mode::Sweep {
        return Ok("none (sweep mode evaluates, it does not optimise)".into());
    }
    let fallback = |why: String, warnings: &mut Vec<String>| -> Result<String> {
        if wanted == GradientSource::Exact {
            return Err(Error::GradientCheck(format!(
                "{why} (search.gradient is `exact`; use `auto` to fall back)"
            )));
        }
        let w = format!("exact gradients unavailable, using finite differences: {why}");
        tracing::warn!("{w}");
        warnings.push(w);
        Ok("finite-difference (auto fallback)".into())
    };
    // The gradient graph has a static batch; size it to split a chunk's attacks evenly so
    // little is padded (a chunk of 40 attacks with batch_size 32 runs as 2 × 20).
    let per_sample = if config.search.mode == Mode::Multiple {
        1
    } else {
        attributes.len()
    } + nulls.len();
    let attacks_per_chunk = CHUNK_SAMPLES.min(config.samples) * per_sample;
    let calls = attacks_per_chunk.div_ceil(pipe.batch_size);
    let vjp_batch = attacks_per_chunk.div_ceil(calls.max(1)).max(1);
    let chain = match search::exact::ExactChain::build(pipe, vjp_batch, &opts.session) {
        Ok(c) => c,
        Err(e) => return fallback(e.to_string(), warnings),
    };
    pipe.exact = Some(chain);
    // Start-up self-check on the first samples against central finite differences.
    let z_dim = pipe.generator.card.z_dim;
    let samples: Vec<(usize, Array1<f32>)> = (0..config.samples.min(2))
        .map(|s| (s, latent(config.seed, Stream::Samples, s as u64, z_dim)))
        .collect();
    let attacks = build_attacks(config.search.mode, attributes, nulls, &samples);
    let (cosine, rel) = search::check_exact(pipe, &attacks, settings)?;
    if cosine < 0.95 {
        pipe.exact = None;
        return fallback(
            format!("the gradient graph disagrees with finite differences on the first samples (cosine {cosine:.3})"),
            warnings,
        );
    }
    Ok(format!(
        "exact (one VJP graph over generator, target and CLIP; start-up check against finite differences: cosine {cosine:.4}, relative difference {rel:.3})"
    ))
}

fn run_chunk(
    config: &Config,
    pipe: &mut Pipeline,
    settings: &SearchSettings,
    attributes: &[AttributeDirection],
    nulls: &[Array1<f32>],
    chunk: &[usize],
    out: &Path,
) -> Result<Vec<SampleRecord>> {
    let z_dim = pipe.generator.card.z_dim;
    let samples: Vec<(usize, Array1<f32>)> = chunk
        .iter()
        .map(|&s| (s, latent(config.seed, Stream::Samples, s as u64, z_dim)))
        .collect();
    let mut records = Vec::new();
    match config.search.mode {
        Mode::Single | Mode::Multiple => {
            let attacks = build_attacks(config.search.mode, attributes, nulls, &samples);
            let results = search::run_attacks(pipe, &attacks, settings)?;
            let contributions = if config.search.mode == Mode::Multiple {
                Some(ablate(pipe, &attacks, &results)?)
            } else {
                None
            };
            for (i, r) in results.iter().enumerate() {
                let mut rec = record_of(r, out, true, pipe.target.task.as_ref())?;
                if let Some(c) = &contributions {
                    rec.contributions = c[i].clone();
                }
                records.push(rec);
            }
        }
        Mode::Sweep => {
            let alphas = sweep::grid(settings.bound, config.search.sweep_points);
            let mut dirs: Vec<Array1<f32>> = attributes
                .iter()
                .map(|a| a.direction.vector.clone())
                .collect();
            dirs.extend(nulls.iter().cloned());
            let results = sweep::run_sweep(pipe, &samples, &dirs, &alphas)?;
            for r in results {
                let (label, names) = if r.direction < attributes.len() {
                    let a = &attributes[r.direction];
                    (format!("sweep:{}", a.name), vec![a.name.clone()])
                } else {
                    let k = r.direction - attributes.len();
                    (format!("null:{k}"), vec![format!("random-{k}")])
                };
                records.push(SampleRecord {
                    sample: r.sample,
                    attack: label,
                    attributes: names,
                    alpha: alphas.iter().map(|&a| a as f64).collect(),
                    score_before: r.score_before,
                    score_after: r.scores,
                    flipped: r.flipped,
                    flagged: r.flagged,
                    images: vec![],
                    contributions: None,
                });
            }
        }
    }
    Ok(records)
}

/// `multiple` mode: for each attack with several directions, the score change when one
/// attribute's final weight is set back to 0.
fn ablate(
    pipe: &mut Pipeline,
    attacks: &[Attack],
    results: &[AttackResult],
) -> Result<Vec<Option<Vec<f64>>>> {
    let (dim, z_dim) = (pipe.generator.card.style_dim, pipe.generator.card.z_dim);
    let mut rows = Vec::new();
    for (i, a) in attacks.iter().enumerate() {
        if a.directions.len() < 2 || results[i].flagged.is_some() {
            continue;
        }
        for k in 0..a.directions.len() {
            let mut e = Array1::<f32>::zeros(dim);
            for (j, d) in a.directions.iter().enumerate() {
                if j != k {
                    e.scaled_add(results[i].alpha[j], d);
                }
            }
            rows.push((i, k, e));
        }
    }
    let mut z = Array2::zeros((rows.len(), z_dim));
    let mut edit = Array2::zeros((rows.len(), dim));
    for (r, (i, _, e)) in rows.iter().enumerate() {
        z.row_mut(r).assign(&attacks[*i].z);
        edit.row_mut(r).assign(e);
    }
    let ev = pipe.evaluate(&z, &edit, false)?;
    let mut out: Vec<Option<Vec<f64>>> = attacks
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (a.directions.len() >= 2 && results[i].flagged.is_none())
                .then(|| vec![0.0; a.directions.len()])
        })
        .collect();
    for (r, (i, k, _)) in rows.iter().enumerate() {
        let row = ev.rows.row(r);
        let row = row.as_slice().unwrap_or(&[]);
        let without = pipe.target.task.score(row, &results[*i].origin);
        if let Some(c) = out[*i].as_mut() {
            c[*k] = (results[*i].score_after - without).abs();
        }
    }
    Ok(out)
}
