//! The three networks of a diagnosis, each an ONNX Runtime session with the contract of
//! DESIGN.md checked at load time: the generator, the CLIP towers, and the target (with its
//! preprocessing built as ONNX ops in front of it).

pub mod card;
pub mod clip;
pub mod generator;
pub mod target;

pub use card::GeneratorCard;
pub use clip::{Clip, TextEncoder};
pub use generator::Generator;
pub use target::Target;

use crate::error::{Error, Result};
use crate::runtime::{Model, SessionOptions, TensorInfo};
use std::path::Path;

/// Reads and decodes an ONNX file for composition; errors name the file.
pub fn read_proto(path: &Path) -> Result<zoom_graph::ModelProto> {
    crate::runtime::precheck_model_file(path)?;
    zoom_graph::read_model(path).map_err(|e| Error::model_graph(path, &e))
}

/// Loads `model` with the preprocessing `prep` composed in front of its input; also returns the
/// composed graph (the exact-gradient path differentiates through it).
pub(crate) fn load_with_prefix(
    path: &Path,
    input: Option<&str>,
    prep: &crate::preprocess::Preprocess,
    src_hw: [usize; 2],
    options: &SessionOptions,
) -> Result<(Model, zoom_graph::ModelProto)> {
    let composed = composed_with_prefix(path, input, prep, src_hw)?;
    let model = Model::from_bytes(&zoom_graph::io::encode_model(&composed), path, options)?;
    Ok((model, composed))
}

/// The model at `path` with `prep` composed in front of `input` (see [`load_with_prefix`]).
pub(crate) fn composed_with_prefix(
    path: &Path,
    input: Option<&str>,
    prep: &crate::preprocess::Preprocess,
    src_hw: [usize; 2],
) -> Result<zoom_graph::ModelProto> {
    let proto = read_proto(path)?;
    let graph = proto
        .graph_ref()
        .map_err(|e| Error::model_graph(path, &e))?;
    let inputs: Vec<String> = graph.real_inputs().iter().map(|v| v.name.clone()).collect();
    let input = match input {
        Some(i) if inputs.iter().any(|n| n == i) => i.to_string(),
        Some(i) => {
            return Err(Error::model(
                path,
                format!("has no input `{i}`; its inputs are: {}", inputs.join(", ")),
            ));
        }
        None if inputs.len() == 1 => inputs[0].clone(),
        None => {
            return Err(Error::model(
                path,
                format!(
                    "has {} inputs ({}); name the image input in the config",
                    inputs.len(),
                    inputs.join(", ")
                ),
            ));
        }
    };
    crate::preprocess::compose_with(prep, &proto, &input, src_hw).map_err(|e| {
        Error::model(
            path,
            format!("cannot put the preprocessing in front of input `{input}`: {e}"),
        )
    })
}

/// Finds a declared tensor by name, with an error that lists what exists.
pub(crate) fn find_tensor<'a>(
    list: &'a [TensorInfo],
    name: &str,
    model: &Path,
    what: &str,
) -> Result<&'a TensorInfo> {
    list.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
        Error::Tensor {
            model: model.display().to_string(),
            tensor: name.into(),
            message: format!(
                "the model has no {what} of this name (it has: {})",
                names.join(", ")
            ),
        }
    })
}

/// Prefixes every internal name of `model` (node outputs, initializers, value infos) with
/// `prefix`, leaving graph inputs and outputs alone. Chaining several composed graphs into one
/// gradient graph needs this: a tower's own input `image` would otherwise clash with the
/// generator's output `image`.
pub(crate) fn namespace(mut model: zoom_graph::ModelProto, prefix: &str) -> zoom_graph::ModelProto {
    let Some(g) = model.graph.as_mut() else {
        return model;
    };
    let keep: std::collections::HashSet<String> = g
        .input
        .iter()
        .chain(&g.output)
        .map(|v| v.name.clone())
        .chain(std::iter::once(String::new()))
        .collect();
    let rn = |n: &mut String| {
        if !keep.contains(n.as_str()) {
            *n = format!("{prefix}{n}");
        }
    };
    for node in &mut g.node {
        node.input.iter_mut().for_each(rn);
        node.output.iter_mut().for_each(rn);
        if !node.name.is_empty() {
            node.name = format!("{prefix}{}", node.name);
        }
    }
    for t in &mut g.initializer {
        rn(&mut t.name);
    }
    for v in &mut g.value_info {
        rn(&mut v.name);
    }
    // Inputs that are initializers (old-style models) are renamed with them.
    let inits: std::collections::HashSet<String> =
        g.initializer.iter().map(|t| t.name.clone()).collect();
    for v in &mut g.input {
        let renamed = format!("{prefix}{}", v.name);
        if inits.contains(&renamed) {
            v.name = renamed;
        }
    }
    model
}
