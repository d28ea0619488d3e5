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

/// A model with its preprocessing composed in front (see [`load_with_prefix`]).
pub(crate) struct Prefixed {
    /// The session of the composed graph.
    pub model: Model,
    /// The composed graph (the exact-gradient path differentiates through it).
    pub graph: zoom_graph::ModelProto,
    /// `Some(why)` when the model runs one image per call only.
    pub one_image_per_call: Option<String>,
}

/// Loads `model` with the preprocessing `prep` composed in front of its input.
///
/// Models exported at batch 1 often bake that batch into their graph (a `Reshape` to a constant
/// `[1, …]` shape), and fail on any other batch inside ONNX Runtime, with a message about the
/// node that does not name the cause. When the image input declares a fixed batch of 1, the
/// composed model is tried on two images; if that fails, it is marked as running one image per
/// call, so the diagnosis can lower its batch size instead of failing.
pub(crate) fn load_with_prefix(
    path: &Path,
    input: Option<&str>,
    prep: &crate::preprocess::Preprocess,
    src_hw: [usize; 2],
    options: &SessionOptions,
) -> Result<Prefixed> {
    let (composed, declared_batch) = composed_with_prefix(path, input, prep, src_hw)?;
    let mut model = Model::from_bytes(&zoom_graph::io::encode_model(&composed), path, options)?;
    let one_image_per_call = if declared_batch == Some(1) {
        let two =
            crate::runtime::Tensor::F32(ndarray::ArrayD::zeros(vec![2, 3, src_hw[0], src_hw[1]]));
        model
            .probe(&[(crate::preprocess::PREP_INPUT, &two)])
            .err()
            .map(|e| {
                format!(
                    "{} declares a batch of 1 and fails on two images ({e})",
                    path.display()
                )
            })
    } else {
        None
    };
    Ok(Prefixed {
        model,
        graph: composed,
        one_image_per_call,
    })
}

/// The model at `path` with `prep` composed in front of `input` (see [`load_with_prefix`]), and
/// the batch size that input declares, if fixed.
pub(crate) fn composed_with_prefix(
    path: &Path,
    input: Option<&str>,
    prep: &crate::preprocess::Preprocess,
    src_hw: [usize; 2],
) -> Result<(zoom_graph::ModelProto, Option<i64>)> {
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
    let declared_batch = graph
        .real_inputs()
        .iter()
        .find(|v| v.name == input)
        .and_then(|v| v.dims())
        .and_then(|d| d.first().and_then(|d| d.fixed()));
    let composed = crate::preprocess::compose_with(prep, &proto, &input, src_hw).map_err(|e| {
        Error::model(
            path,
            format!("cannot put the preprocessing in front of input `{input}`: {e}"),
        )
    })?;
    Ok((composed, declared_batch))
}

/// Concatenates per-image results along the batch axis (models that run one image per call).
pub(crate) fn stack_rows<D: ndarray::Dimension + ndarray::RemoveAxis>(
    parts: &[ndarray::Array<f32, D>],
    what: &str,
) -> Result<ndarray::Array<f32, D>> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views)
        .map_err(|e| Error::runtime(format!("joining the per-image {what}"), e))
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
