//! Statistics over samples: bootstrap confidence intervals and normalised sensitivities.

use crate::sampling::{rng, Stream};
use rand::Rng;

/// Resamples used for every bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Mean of `v` (0 for an empty slice).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (0 for fewer than 2 values).
pub fn std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// 95 % percentile-bootstrap interval of the mean of `v`; `stream_index` keeps intervals of
/// different attributes independent yet reproducible.
pub fn bootstrap_ci95(v: &[f64], seed: u64, stream_index: u64) -> [f64; 2] {
    if v.is_empty() {
        return [0.0, 0.0];
    }
    let mut r = rng(seed, Stream::Bootstrap, stream_index);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            (0..v.len())
                .map(|_| v[r.random_range(0..v.len())])
                .sum::<f64>()
                / v.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    [at(0.025), at(0.975)]
}

/// Normalises non-negative values to sum to 1 (all zeros → uniform).
pub fn normalise(v: &[f64]) -> Vec<f64> {
    let s: f64 = v.iter().map(|x| x.abs()).sum();
    if s > 0.0 {
        v.iter().map(|x| x.abs() / s).collect()
    } else {
        vec![1.0 / v.len().max(1) as f64; v.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_contains_the_mean_and_shrinks_with_more_data() {
        let small: Vec<f64> = (0..10).map(|i| (i % 4) as f64 * 0.1).collect();
        let big: Vec<f64> = (0..400).map(|i| (i % 4) as f64 * 0.1).collect();
        let [a, b] = bootstrap_ci95(&small, 1, 0);
        assert!(a <= mean(&small) && mean(&small) <= b, "{a} {b}");
        let [c, d] = bootstrap_ci95(&big, 1, 0);
        assert!(c <= mean(&big) && mean(&big) <= d);
        assert!(d - c < b - a);
        assert_eq!(bootstrap_ci95(&small, 1, 0), bootstrap_ci95(&small, 1, 0));
    }

    #[test]
    fn sensitivities_sum_to_one() {
        let s = normalise(&[0.2, 0.1, 0.0, 0.7]);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(normalise(&[0.0, 0.0]), vec![0.5, 0.5]);
    }
}
