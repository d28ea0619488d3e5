//! Resuming: a run folder holds `run.json` (what config it belongs to) and `samples.jsonl` (one
//! durable line per finished attack). A rerun skips what is recorded and never appends a
//! record twice; a folder written by a different config is refused rather than mixed.

use crate::error::{Error, Result};
use crate::report::schema::SampleRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;

/// Marker file of a run folder.
pub const RUN_FILE: &str = "run.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct RunMarker {
    zoom_version: String,
    config_sha256: String,
}

/// Hash of the resolved config (after overrides), as canonical JSON.
pub fn config_hash(config_json: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(config_json).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Prepares `dir` for a run of `config_json`; returns the (attack, sample) pairs already done.
pub fn open(dir: &Path, config_json: &serde_json::Value) -> Result<HashSet<(String, usize)>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let marker = RunMarker {
        zoom_version: env!("CARGO_PKG_VERSION").into(),
        config_sha256: config_hash(config_json),
    };
    let path = dir.join(RUN_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let old: RunMarker = serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("unreadable run marker: {e}")))?;
        if old.config_sha256 != marker.config_sha256 {
            return Err(Error::config(
                "--out",
                dir.display().to_string(),
                "this folder holds a run of a different config (or different --set values); \
                 choose another --out, or delete the folder to start over",
            ));
        }
    } else {
        let bytes = serde_json::to_vec_pretty(&marker).unwrap_or_default();
        crate::io::atomic::write(&path, &bytes)?;
    }
    let done = crate::report::json::read_samples(dir)?
        .into_iter()
        .map(|r: SampleRecord| (r.attack, r.sample))
        .collect();
    Ok(done)
}
