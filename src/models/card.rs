//! The generator's model card (`card.yaml`): the fields zoom relies on. Other fields (provenance,
//! licence, measurements) are for people and are ignored here.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
struct RawCard {
    z_dim: usize,
    style_dim: usize,
    channel_scale: Vec<f32>,
    default_bound: f32,
    #[serde(default)]
    edit_space: Option<RawEditSpace>,
}

#[derive(Debug, Deserialize)]
struct RawEditSpace {
    #[serde(default)]
    editable_channels: Option<RawEditable>,
}

#[derive(Debug, Deserialize)]
struct RawEditable {
    ranges: Vec<[usize; 2]>,
}

/// What zoom needs to know about a generator.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorCard {
    /// Latent size Z.
    pub z_dim: usize,
    /// Edit-space size S.
    pub style_dim: usize,
    /// Per-channel scale σ_c of the edit space (the unit of ±kσ probes).
    pub channel_scale: Vec<f32>,
    /// Default attack bound B for unit-L2 directions.
    pub default_bound: f32,
    /// Which channels may be edited (e.g. StyleGAN's ToRGB channels may not).
    pub editable: Vec<bool>,
}

impl GeneratorCard {
    /// Reads and validates a card.
    pub fn load(path: &Path) -> Result<GeneratorCard> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if text.len() > 16 << 20 {
            return Err(Error::config(&file, "", "card is larger than 16 MiB"));
        }
        let de = serde_yaml::Deserializer::from_str(&text);
        let raw: RawCard = serde_path_to_error::deserialize(de)
            .map_err(|e| Error::config(&file, e.path().to_string(), e.into_inner().to_string()))?;
        if raw.channel_scale.len() != raw.style_dim {
            return Err(Error::config(
                &file,
                "channel_scale",
                format!(
                    "has {} values but style_dim is {}",
                    raw.channel_scale.len(),
                    raw.style_dim
                ),
            ));
        }
        if raw
            .channel_scale
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::config(
                &file,
                "channel_scale",
                "every scale must be a positive number",
            ));
        }
        if !(raw.default_bound > 0.0 && raw.default_bound.is_finite()) {
            return Err(Error::config(
                &file,
                "default_bound",
                "must be a positive number",
            ));
        }
        let mut editable = vec![true; raw.style_dim];
        if let Some(ranges) = raw
            .edit_space
            .and_then(|e| e.editable_channels)
            .map(|e| e.ranges)
        {
            editable = vec![false; raw.style_dim];
            for [a, b] in ranges {
                if a >= b || b > raw.style_dim {
                    return Err(Error::config(
                        &file,
                        "edit_space.editable_channels.ranges",
                        format!("[{a}, {b}] is not a range inside 0..{}", raw.style_dim),
                    ));
                }
                editable[a..b].iter_mut().for_each(|e| *e = true);
            }
        }
        Ok(GeneratorCard {
            z_dim: raw.z_dim,
            style_dim: raw.style_dim,
            channel_scale: raw.channel_scale,
            default_bound: raw.default_bound,
            editable,
        })
    }
}
