//! Integration tests, one target (`autotests = false`). One module per area:

/// The `zoom` binary end to end: inspect, run, doctor, and their error messages.
mod cli;
/// `zoom diagnose` on the real demo models: contract, reproducibility, resume, config errors.
mod diagnose;
/// `zoom grad`: the gradient-graph contract and unsupported operators.
mod grad;
/// The demo models as Rust runs them, against recorded reference outputs.
mod models;
/// Shared helpers: paths to fixtures, a fresh temp dir, running the binary.
mod util;
