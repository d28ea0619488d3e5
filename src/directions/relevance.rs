//! Channel relevance (StyleCLIP's `fs3`): per editable channel, the unit CLIP-space change
//! caused by moving that channel from −kσ to +kσ, averaged over probe samples.
//!
//! Cost: 2 × probe_samples × editable channels generator + image-tower runs, batched. The result
//! is cached in `directions.cache` under a key hashed from the model files and settings, so only
//! the first run on a generator + CLIP pair pays it.

use crate::error::{Error, Result};
use crate::io::npy;
use crate::models::{clip::normalize_rows, Clip, Generator};
use crate::runtime::Tensor;
use crate::sampling::{latents, Stream};
use ndarray::{Array2, Axis};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Probe seed: fixed, so the cache is shared by runs with different seeds.
pub const PROBE_SEED: u64 = 2324;

/// Settings that change the relevance (and so its cache key).
#[derive(Debug, Clone)]
pub struct RelevanceSettings {
    /// Probe samples.
    pub probe_samples: usize,
    /// ±k σ.
    pub probe_sigma: f32,
    /// Images per ONNX Runtime call.
    pub batch_size: usize,
    /// Cache folder.
    pub cache: PathBuf,
}

/// The relevance matrix `[S, D]` (rows of editable channels are unit vectors, others zero).
#[derive(Debug, Clone)]
pub struct ChannelRelevance {
    /// `[S, D]`.
    pub matrix: Array2<f32>,
    /// Editable channels.
    pub editable: Vec<bool>,
    /// Whether it came from the cache.
    pub from_cache: bool,
    /// The cache file.
    pub cache_file: PathBuf,
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(&bytes);
    Ok(())
}

/// The cache key: hashes of generator, card, image tower and its preprocessing, and settings.
pub fn cache_key(files: &[&Path], extra: &str, s: &RelevanceSettings) -> Result<String> {
    let mut h = Sha256::new();
    for f in files {
        hash_file(&mut h, f)?;
    }
    h.update(extra.as_bytes());
    h.update(format!("v1|{}|{}|{PROBE_SEED}", s.probe_samples, s.probe_sigma).as_bytes());
    Ok(h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl ChannelRelevance {
    /// Loads from the cache or computes (and caches) the relevance. `progress` is told how many
    /// images were processed out of how many.
    pub fn load_or_compute(
        generator: &mut Generator,
        clip: &mut Clip,
        key: &str,
        settings: &RelevanceSettings,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ChannelRelevance> {
        let editable = generator.card.editable.clone();
        let file = settings.cache.join(format!("relevance-{key}.npy"));
        if file.is_file() {
            if let Ok(Tensor::F32(a)) = npy::read(&file) {
                if let Ok(m) = a.into_dimensionality() {
                    let m: Array2<f32> = m;
                    if m.nrows() == editable.len() {
                        return Ok(ChannelRelevance {
                            matrix: m,
                            editable,
                            from_cache: true,
                            cache_file: file,
                        });
                    }
                }
            }
            tracing::warn!("ignoring unreadable relevance cache {}", file.display());
        }
        let matrix = compute(generator, clip, settings, progress)?;
        npy::write(&file, &Tensor::F32(matrix.clone().into_dyn()))?;
        Ok(ChannelRelevance {
            matrix,
            editable,
            from_cache: false,
            cache_file: file,
        })
    }
}

fn compute(
    generator: &mut Generator,
    clip: &mut Clip,
    s: &RelevanceSettings,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Array2<f32>> {
    let card = generator.card.clone();
    let channels: Vec<usize> = (0..card.style_dim).filter(|&c| card.editable[c]).collect();
    let indices: Vec<usize> = (0..s.probe_samples).collect();
    let z_all = latents(PROBE_SEED, Stream::Probes, &indices, card.z_dim);
    // One image pair (−kσ, +kσ) per (probe, channel); a batch holds `per_batch` pairs.
    let per_batch = (s.batch_size / 2).max(1);
    let jobs: Vec<(usize, usize)> = indices
        .iter()
        .flat_map(|&j| channels.iter().map(move |&c| (j, c)))
        .collect();
    let total = jobs.len() * 2;
    let mut sum: Option<Array2<f32>> = None;
    let mut done = 0;
    for chunk in jobs.chunks(per_batch) {
        let n = chunk.len();
        let mut z = Array2::<f32>::zeros((2 * n, card.z_dim));
        let mut edit = Array2::<f32>::zeros((2 * n, card.style_dim));
        for (i, &(j, c)) in chunk.iter().enumerate() {
            let offset = s.probe_sigma * card.channel_scale[c];
            z.row_mut(2 * i).assign(&z_all.row(j));
            z.row_mut(2 * i + 1).assign(&z_all.row(j));
            edit[[2 * i, c]] = -offset;
            edit[[2 * i + 1, c]] = offset;
        }
        let images = generator.render(&z, &edit)?;
        let emb = clip.embed_images(&images)?;
        let d = emb.slice(ndarray::s![1..;2, ..]).to_owned() - emb.slice(ndarray::s![0..;2, ..]);
        let d = normalize_rows(d);
        let acc = sum.get_or_insert_with(|| Array2::zeros((card.style_dim, emb.ncols())));
        for (i, &(_, c)) in chunk.iter().enumerate() {
            let mut row = acc.row_mut(c);
            row += &d.row(i);
        }
        done += 2 * n;
        progress(done, total);
    }
    let sum =
        sum.ok_or_else(|| Error::Report("no editable channels in the generator card".into()))?;
    // Average over probes, then normalise (rows of non-editable channels stay zero).
    let mut out = normalize_rows(sum);
    for (c, e) in card.editable.iter().enumerate() {
        if !e {
            out.index_axis_mut(Axis(0), c).fill(0.0);
        }
    }
    Ok(out)
}
