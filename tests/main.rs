//! Integration tests, one target (`autotests = false`). One module per area:

/// The `zoom` binary end to end: inspect, run, doctor, and their error messages.
mod cli;
/// Shared helpers: paths to fixtures, a fresh temp dir, running the binary.
mod util;
