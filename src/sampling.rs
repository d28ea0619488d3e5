//! Seeded randomness. Every random draw is a pure function of (seed, stream, index), so a sample's
//! latent does not depend on batch sizes, resumption or which other samples ran.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Independent random streams derived from one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Latents of the diagnosed samples.
    Samples = 1,
    /// Latents of the channel-relevance probes.
    Probes = 2,
    /// Random directions of the null baseline.
    Null = 3,
    /// Bootstrap resampling.
    Bootstrap = 4,
}

/// An RNG for item `index` of `stream` under `seed`.
pub fn rng(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ ((stream as u64) << 56));
    r.set_stream(index);
    r
}

/// The latent z ~ N(0, I) of sample `index`.
pub fn latent(seed: u64, stream: Stream, index: u64, z_dim: usize) -> Array1<f32> {
    let mut r = rng(seed, stream, index);
    (0..z_dim)
        .map(|_| r.sample::<f32, _>(StandardNormal))
        .collect()
}

/// Latents of samples `indices`, stacked as rows.
pub fn latents(seed: u64, stream: Stream, indices: &[usize], z_dim: usize) -> Array2<f32> {
    let mut z = Array2::zeros((indices.len(), z_dim));
    for (row, &i) in indices.iter().enumerate() {
        z.row_mut(row)
            .assign(&latent(seed, stream, i as u64, z_dim));
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latent_depends_only_on_seed_stream_and_index() {
        let a = latents(7, Stream::Samples, &[0, 1, 2], 5);
        let b = latents(7, Stream::Samples, &[2], 5);
        assert_eq!(a.row(2), b.row(0));
        assert_ne!(
            latent(7, Stream::Samples, 0, 5),
            latent(7, Stream::Probes, 0, 5)
        );
        assert_ne!(
            latent(7, Stream::Samples, 0, 5),
            latent(8, Stream::Samples, 0, 5)
        );
    }
}
