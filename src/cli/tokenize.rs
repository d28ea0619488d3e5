//! `zoom tokenize TOKENIZER.json [TEXT ...]`: what a CLIP text tower will be fed for a prompt.
//! Exporters use it to check a tokenizer.json against zoom's own (pure-Rust regex) build.

use super::Global;
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// Arguments of `zoom tokenize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Hugging Face tokenizer.json (as a CLIP config's `clip.tokenizer`).
    pub tokenizer: PathBuf,
    /// Texts to tokenize; without any, one text per line of standard input.
    pub texts: Vec<String>,
    /// Standard input lines are JSON strings (so texts may hold newlines); for scripts.
    #[arg(long)]
    pub json_input: bool,
}

/// Runs the subcommand: one JSON object per text with its ids, tokens and special-token mask.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<()> {
    let tok = zoom::models::clip::load_tokenizer(&args.tokenizer)?;
    let texts: Vec<String> = if !args.texts.is_empty() {
        args.texts
    } else {
        let lines: Vec<String> = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
        if args.json_input {
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str::<String>(l).map_err(|e| {
                        anyhow::anyhow!("standard input line {}: not a JSON string: {e}", i + 1)
                    })
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            lines
        }
    };
    let mut out = std::io::stdout().lock();
    for text in texts {
        let enc = tok.encode(text.as_str(), true).map_err(|e| {
            zoom::Error::data(&args.tokenizer, format!("cannot tokenize {text:?}: {e}"))
        })?;
        let line = serde_json::json!({
            "text": text,
            "ids": enc.get_ids(),
            "tokens": enc.get_tokens(),
            "special": enc.get_special_tokens_mask(),
            "mask": enc.get_attention_mask(),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
