//! The CLIP-like model: an image tower (with its preprocessing composed in front, taking the
//! generator's [−1, 1] RGB) and a text tower with a Hugging Face `tokenizer.json`.

use super::{find_tensor, load_with_prefix};
use crate::config::ClipConfig;
use crate::error::{Error, Result};
use crate::runtime::{DType, Model, SessionOptions, Tensor};
use ndarray::{Array2, Array4, ArrayD, Axis, Ix2, IxDyn};
use std::path::Path;

/// Largest tokenizer.json zoom reads.
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// The text tower and its tokenizer.
pub struct TextEncoder {
    model: Model,
    tokenizer: tokenizers::Tokenizer,
    max_tokens: usize,
    has_mask: bool,
    has_token_types: bool,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Loads the text tower and tokenizer.
    pub fn load(
        model: &Path,
        tokenizer: &Path,
        max_tokens: usize,
        options: &SessionOptions,
    ) -> Result<TextEncoder> {
        let tok = load_tokenizer(tokenizer)?;
        let m = Model::load(model, options)?;
        let ids = find_tensor(m.inputs(), "input_ids", model, "input")?;
        if ids.dtype != Some(DType::I64) {
            return Err(Error::Tensor {
                model: model.display().to_string(),
                tensor: "input_ids".into(),
                message: format!("expected int64, got {}", ids.dtype_name),
            });
        }
        let has_mask = m.inputs().iter().any(|i| i.name == "attention_mask");
        let has_token_types = m.inputs().iter().any(|i| i.name == "token_type_ids");
        Ok(TextEncoder {
            model: m,
            tokenizer: tok,
            max_tokens,
            has_mask,
            has_token_types,
        })
    }

    /// Embeds prompts; rows are L2-normalised. A prompt that tokenizes to nothing is an error.
    pub fn encode(&mut self, prompts: &[String]) -> Result<Array2<f32>> {
        let n = prompts.len();
        let l = self.max_tokens;
        let mut ids = ArrayD::<i64>::zeros(IxDyn(&[n, l]));
        let mut mask = ArrayD::<i64>::zeros(IxDyn(&[n, l]));
        for (i, p) in prompts.iter().enumerate() {
            let enc = self.tokenizer.encode(p.as_str(), true).map_err(|e| {
                Error::config(
                    "attributes",
                    "prompts",
                    format!("cannot tokenize {p:?}: {e}"),
                )
            })?;
            let special = enc.get_special_tokens_mask();
            if special.iter().all(|&s| s == 1) {
                return Err(Error::config(
                    "attributes",
                    "prompts",
                    format!("prompt {p:?} tokenizes to nothing"),
                ));
            }
            // The file may declare its own padding; the encoding's mask says which ids are real.
            let real = enc.get_attention_mask();
            for (j, (&id, &m)) in enc.get_ids().iter().zip(real).take(l).enumerate() {
                ids[[i, j]] = id as i64;
                mask[[i, j]] = i64::from(m);
            }
        }
        let ids = Tensor::I64(ids);
        let mask = Tensor::I64(mask);
        let types = Tensor::I64(ArrayD::zeros(IxDyn(&[n, l])));
        let mut feed: Vec<(&str, &Tensor)> = vec![("input_ids", &ids)];
        if self.has_mask {
            feed.push(("attention_mask", &mask));
        }
        if self.has_token_types {
            feed.push(("token_type_ids", &types));
        }
        let out = self.model.run(&feed)?;
        let emb = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::runtime("text tower", "no output"))?
            .1
            .into_f32("embedding")?
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::runtime("text tower output must be [N, D]", e))?;
        Ok(normalize_rows(emb))
    }
}

/// Reads a Hugging Face `tokenizer.json` (at most 64 MiB). zoom's `tokenizers` build uses the
/// pure-Rust regex engine, so a file whose patterns it cannot compile (e.g. variable-length
/// look-behind) is refused here, naming the file.
pub fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size > MAX_TOKENIZER_BYTES {
        return Err(Error::data(
            path,
            format!("{size} bytes is over the 64 MiB limit for a tokenizer"),
        ));
    }
    tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::data(path, format!("not a Hugging Face tokenizer.json: {e}")))
}

/// The image tower with its preprocessing.
#[derive(Debug)]
pub struct Clip {
    image: Model,
    /// The composed image-tower graph (preprocessing + tower), for gradient graphs.
    pub image_graph: zoom_graph::ModelProto,
    /// Text tower.
    pub text: TextEncoder,
    /// Logit scale of the consistency term.
    pub logit_scale: f32,
    /// `Some(why)` when the image tower runs one image per call only.
    pub one_image_per_call: Option<String>,
}

impl Clip {
    /// Loads both towers; `src_hw` is the generator's image size.
    pub fn load(config: &ClipConfig, src_hw: [usize; 2], options: &SessionOptions) -> Result<Clip> {
        let loaded = load_with_prefix(&config.image, None, &config.preprocess, src_hw, options)?;
        let text = TextEncoder::load(&config.text, &config.tokenizer, config.max_tokens, options)?;
        Ok(Clip {
            image: loaded.model,
            image_graph: loaded.graph,
            text,
            logit_scale: config.logit_scale,
            one_image_per_call: loaded.one_image_per_call,
        })
    }

    /// Name of the image tower's embedding output.
    pub fn image_output(&self) -> &str {
        &self.image.outputs()[0].name
    }

    /// The image tower's session.
    pub fn image_model(&self) -> &Model {
        &self.image
    }

    /// L2-normalised image embeddings of generator images.
    pub fn embed_images(&mut self, images: &Array4<f32>) -> Result<Array2<f32>> {
        if self.one_image_per_call.is_some() && images.shape()[0] > 1 {
            let parts = images
                .axis_chunks_iter(ndarray::Axis(0), 1)
                .map(|one| self.embed_images(&one.to_owned()))
                .collect::<Result<Vec<_>>>()?;
            return super::stack_rows(&parts, "image tower output");
        }
        let t = Tensor::F32(images.clone().into_dyn());
        let out = self.image.run(&[(crate::preprocess::PREP_INPUT, &t)])?;
        let emb = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::runtime("image tower", "no output"))?
            .1
            .into_f32("embedding")?
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::runtime("image tower output must be [N, D]", e))?;
        Ok(normalize_rows(emb))
    }
}

/// Scales each row to unit L2 norm (zero rows stay zero).
pub fn normalize_rows(mut a: Array2<f32>) -> Array2<f32> {
    for mut row in a.axis_iter_mut(Axis(0)) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.mapv_inplace(|v| v / n);
        }
    }
    a
}
