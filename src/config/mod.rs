//! Diagnosis configuration: YAML → validated [`Config`], with `--set key=value` overrides. Every
//! problem is reported before any model runs, with the file and the dotted key path.

pub mod schema;

pub use schema::*;

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Largest config file zoom reads (a config is a few KB; this bounds a hostile file).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn read_yaml(path: &Path) -> Result<serde_yaml::Value> {
    let file = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(Error::config(
            file,
            "",
            format!("file is {} bytes; configs are limited to 1 MiB", meta.len()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_yaml::from_str(&text).map_err(|e| Error::config(file, "", format!("invalid YAML: {e}")))
}

/// Applies one `key.path=value` override; the value is parsed as YAML (`3`, `true`, `[a, b]`).
pub fn apply_override(doc: &mut serde_yaml::Value, spec: &str) -> Result<()> {
    let (key, value) = spec
        .split_once('=')
        .ok_or_else(|| Error::config("--set", spec, "expected KEY=VALUE, e.g. search.bound=3"))?;
    let value: serde_yaml::Value = serde_yaml::from_str(value)
        .map_err(|e| Error::config("--set", key, format!("value is not valid YAML: {e}")))?;
    let mut node = doc;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(Error::config("--set", key, "empty key segment"));
        }
        let map = match node {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => {
                *node = serde_yaml::Value::Mapping(Default::default());
                match node {
                    serde_yaml::Value::Mapping(m) => m,
                    _ => unreachable!("just set"),
                }
            }
            _ => {
                return Err(Error::config(
                    "--set",
                    key,
                    format!("`{}` is not a section", parts[..i].join(".")),
                ));
            }
        };
        let k = serde_yaml::Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(serde_yaml::Value::Null);
    }
    Ok(())
}

impl Config {
    /// Loads, overrides, parses and validates a config; relative paths are resolved against the
    /// config file's folder.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
        let file = path.display().to_string();
        let mut doc = read_yaml(path)?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let mut config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let key = e.path().to_string();
            Error::config(
                &file,
                if key == "." { String::new() } else { key },
                e.into_inner().to_string(),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        config.validate(&file)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.generator.model);
        fix(&mut self.generator.card);
        fix(&mut self.clip.image);
        fix(&mut self.clip.text);
        fix(&mut self.clip.tokenizer);
        fix(&mut self.target.model);
        if let Some(o) = &mut self.output {
            fix(o);
        }
        if let Some(c) = &mut self.directions.cache {
            fix(c);
        }
        if let Some(p) = &mut self.runtime.profile {
            fix(p);
        }
    }

    /// Model and data files with the key that names them.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        vec![
            ("generator.model", &self.generator.model),
            ("generator.card", &self.generator.card),
            ("clip.image", &self.clip.image),
            ("clip.text", &self.clip.text),
            ("clip.tokenizer", &self.clip.tokenizer),
            ("target.model", &self.target.model),
        ]
    }

    /// Checks values and files; the first problem is returned with its key.
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |key: &str, m: String| Err(Error::config(file, key, m));
        for (key, p) in self.files() {
            if !p.is_file() {
                let shown = p.to_string_lossy();
                let hint = if shown.contains("onnx/byo/") {
                    " (export your own models first: README, \"Diagnose your own model\")"
                } else if p.starts_with("onnx") || shown.contains("onnx/") {
                    " (run `bash scripts/setup.sh` to fetch and convert the demo models)"
                } else {
                    ""
                };
                return err(key, format!("file not found: {}{hint}", p.display()));
            }
        }
        if self.samples == 0 || self.samples > 1_000_000 {
            return err(
                "samples",
                format!("{} must be between 1 and 1000000", self.samples),
            );
        }
        if let BatchSize::Fixed(n) = self.batch_size {
            if n == 0 || n > 4096 {
                return err(
                    "batch_size",
                    format!("{n} must be between 1 and 4096 (or auto)"),
                );
            }
        }
        self.target.preprocess.validate(file, "target.preprocess")?;
        self.clip.preprocess.validate(file, "clip.preprocess")?;
        if self.clip.max_tokens < 4 || self.clip.max_tokens > 512 {
            return err("clip.max_tokens", "must be between 4 and 512".into());
        }
        let a = &self.attributes;
        if a.neutral.trim().is_empty() {
            return err("attributes.neutral", "must not be empty".into());
        }
        if a.prompts.is_empty() {
            return err(
                "attributes.prompts",
                "at least one attribute prompt is needed".into(),
            );
        }
        if a.consistency.len() == 1 {
            // A cross-entropy over one logit is identically zero: the original code's silent no-op.
            return err(
                "attributes.consistency",
                "needs 0 prompts (off) or at least 2 (one per reading of the target's decision)"
                    .into(),
            );
        }
        if a.templates.iter().any(|t| !t.contains("{}")) {
            return err(
                "attributes.templates",
                "every template must contain `{}`".into(),
            );
        }
        let mut names = HashSet::new();
        for (i, p) in a.prompts.iter().enumerate() {
            let key = format!("attributes.prompts[{i}]");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return err(
                    &format!("{key}.name"),
                    format!(
                        "`{}` must be non-empty [A-Za-z0-9_-] (it names files)",
                        p.name
                    ),
                );
            }
            if !names.insert(p.name.as_str()) {
                return err(
                    &format!("{key}.name"),
                    format!("duplicate attribute name `{}`", p.name),
                );
            }
            if p.prompt.trim().is_empty() {
                return err(&format!("{key}.prompt"), "must not be empty".into());
            }
            if let Some(b) = p.beta {
                if !(0.0..1.0).contains(&b) {
                    return err(&format!("{key}.beta"), format!("{b} must be in [0, 1)"));
                }
            }
        }
        let d = &self.directions;
        if d.probe_samples == 0 || d.probe_samples > 4096 {
            return err(
                "directions.probe_samples",
                "must be between 1 and 4096".into(),
            );
        }
        if !(d.probe_sigma > 0.0 && d.probe_sigma.is_finite()) {
            return err("directions.probe_sigma", "must be > 0".into());
        }
        if !(0.0..1.0).contains(&d.beta) {
            return err("directions.beta", format!("{} must be in [0, 1)", d.beta));
        }
        let s = &self.search;
        if s.mode != Mode::Sweep && (s.iterations == 0 || s.iterations > 10_000) {
            return err("search.iterations", "must be between 1 and 10000".into());
        }
        for (key, v) in [("search.step", s.step), ("search.fd_step", s.fd_step)] {
            if !(v > 0.0 && v.is_finite()) {
                return err(key, format!("{v} must be a positive number"));
            }
        }
        if let Some(b) = s.bound {
            if !(b > 0.0 && b.is_finite()) {
                return err("search.bound", format!("{b} must be a positive number"));
            }
        }
        for (key, v) in [
            ("search.cls_weight", s.cls_weight),
            ("search.clip_weight", s.clip_weight),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return err(key, format!("{v} must be ≥ 0"));
            }
        }
        if s.mode == Mode::Sweep && s.sweep_points < 2 {
            return err(
                "search.sweep_points",
                "a sweep needs at least 2 points".into(),
            );
        }
        if self.runtime.threads == Some(0) {
            return err(
                "runtime.threads",
                "must be ≥ 1 (omit it for all cores)".into(),
            );
        }
        Ok(())
    }
}

/// Every model file a config names, with its key (for `zoom doctor CONFIG`).
pub fn model_paths(config: &Path) -> Result<Vec<(String, PathBuf)>> {
    let c = Config::load(config, &[])?;
    Ok(c.files()
        .into_iter()
        .filter(|(k, _)| !k.ends_with("card") && !k.ends_with("tokenizer"))
        .map(|(k, p)| (k.to_string(), p.to_path_buf()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped config, the bring-your-own presets included (whose model files exist only
    /// after the user exports them), matches the schema: no unknown key, no wrong type.
    #[test]
    fn shipped_configs_match_the_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for dir in [root.clone(), root.join("byo")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    let doc = read_yaml(&path).unwrap();
                    let parsed: std::result::Result<Config, _> =
                        serde_path_to_error::deserialize(doc);
                    if let Err(e) = parsed {
                        panic!("{}: {}: {}", path.display(), e.path(), e.inner());
                    }
                    seen += 1;
                }
            }
        }
        assert!(seen >= 8, "found {seen} configs");
    }
}
