//! A vision model's declared input preprocessing: size, resize mode, value range, mean/std,
//! channel order, layout. The same declaration drives `zoom run` on image files (computed here in
//! Rust) and the diagnosis engine (built as ONNX ops in front of the model, so it is
//! differentiable and runs on the model's execution provider).

use crate::error::{Error, Result};
use ndarray::{s, Array3, Array4, ArrayD, Axis};
use serde::{Deserialize, Serialize};

/// How the image is resized to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Bilinear, half-pixel centres, no antialiasing (torchvision's tensor default).
    #[default]
    Bilinear,
    /// Nearest neighbour.
    Nearest,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
    /// One luminance channel (ITU-R BT.601 weights).
    Gray,
}

/// Memory layout of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[N, C, H, W]`
    #[default]
    Nchw,
    /// `[N, H, W, C]`
    Nhwc,
}

/// The preprocessing a model expects, from an RGB image with values in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Model input size `[height, width]`.
    pub size: [usize; 2],
    /// Resize interpolation.
    #[serde(default)]
    pub resize: ResizeMode,
    /// Channel order.
    #[serde(default)]
    pub channels: Channels,
    /// Pixel value range before mean/std, e.g. `[0, 1]`, `[0, 255]` or `[-1, 1]`.
    #[serde(default = "default_range")]
    pub range: [f32; 2],
    /// Per-channel mean subtracted after scaling to `range` (one value = all channels).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel std divided by after the mean (one value = all channels).
    #[serde(default)]
    pub std: Vec<f32>,
    /// Memory layout.
    #[serde(default)]
    pub layout: Layout,
    /// Swap H and W after preprocessing (models trained on transposed images, e.g. MTCNN's ONet).
    #[serde(default)]
    pub transpose_hw: bool,
}

fn default_range() -> [f32; 2] {
    [0.0, 1.0]
}

impl Preprocess {
    /// Number of channels the model sees.
    pub fn channel_count(&self) -> usize {
        if self.channels == Channels::Gray {
            1
        } else {
            3
        }
    }

    /// Validates the declaration; `file`/`key` locate it for the error message.
    pub fn validate(&self, file: &str, key: &str) -> Result<()> {
        let err = |k: &str, m: String| Error::config(file, format!("{key}.{k}"), m);
        if self.size[0] == 0 || self.size[1] == 0 || self.size[0] > 4096 || self.size[1] > 4096 {
            return Err(err(
                "size",
                format!("{:?} must be between 1 and 4096 on each side", self.size),
            ));
        }
        if self.range[1].partial_cmp(&self.range[0]) != Some(std::cmp::Ordering::Greater)
            || !self.range.iter().all(|v| v.is_finite())
        {
            return Err(err(
                "range",
                format!("{:?} must be [low, high] with low < high", self.range),
            ));
        }
        let c = self.channel_count();
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if !(v.is_empty() || v.len() == 1 || v.len() == c) {
                return Err(err(
                    name,
                    format!("has {} values; expected 1 or {c}", v.len()),
                ));
            }
            if !v.iter().all(|x| x.is_finite()) {
                return Err(err(name, "must be finite".into()));
            }
        }
        if self.std.contains(&0.0) {
            return Err(err("std", "must not contain 0".into()));
        }
        Ok(())
    }

    /// Parses the inline CLI form `size=64x64,gray,range=0:255,mean=0.5,std=0.5,layout=nhwc,bgr,nearest,transpose_hw`.
    pub fn parse_inline(s: &str) -> Result<Preprocess> {
        let err = |m: String| Error::config("command line", "--prep", m);
        let mut p = Preprocess {
            size: [0, 0],
            resize: ResizeMode::Bilinear,
            channels: Channels::Rgb,
            range: default_range(),
            mean: vec![],
            std: vec![],
            layout: Layout::Nchw,
            transpose_hw: false,
        };
        let floats = |v: &str, sep: char| -> Result<Vec<f32>> {
            v.split(sep)
                .map(|x| {
                    x.trim()
                        .parse::<f32>()
                        .map_err(|_| err(format!("`{v}` is not a number list")))
                })
                .collect()
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "size" => {
                    let (h, w) = v
                        .split_once('x')
                        .ok_or_else(|| err(format!("size `{v}` must be HxW")))?;
                    let parse = |x: &str| {
                        x.parse::<usize>()
                            .map_err(|_| err(format!("size `{v}` must be HxW")))
                    };
                    p.size = [parse(h)?, parse(w)?];
                }
                "rgb" => p.channels = Channels::Rgb,
                "bgr" => p.channels = Channels::Bgr,
                "gray" | "grey" | "grayscale" => p.channels = Channels::Gray,
                "bilinear" => p.resize = ResizeMode::Bilinear,
                "nearest" => p.resize = ResizeMode::Nearest,
                "nchw" => p.layout = Layout::Nchw,
                "nhwc" => p.layout = Layout::Nhwc,
                "layout" => {
                    p.layout = if v == "nhwc" {
                        Layout::Nhwc
                    } else {
                        Layout::Nchw
                    }
                }
                "transpose_hw" => p.transpose_hw = true,
                "range" => {
                    let r = floats(v, ':')?;
                    p.range = r
                        .try_into()
                        .map_err(|_| err(format!("range `{v}` must be low:high")))?;
                }
                "mean" => p.mean = floats(v, ':')?,
                "std" => p.std = floats(v, ':')?,
                other => return Err(err(format!("unknown preprocessing option `{other}`"))),
            }
        }
        if p.size == [0, 0] {
            return Err(err("`size=HxW` is required".into()));
        }
        p.validate("command line", "--prep")?;
        Ok(p)
    }

    fn per_channel(v: &[f32], c: usize, default: f32) -> Vec<f32> {
        match v.len() {
            0 => vec![default; c],
            1 => vec![v[0]; c],
            _ => v.to_vec(),
        }
    }

    /// Applies the declaration to an RGB `[3, H, W]` image in [0, 1]; returns the model tensor
    /// with a batch dimension of 1.
    pub fn apply(&self, rgb: &Array3<f32>) -> ArrayD<f32> {
        let [oh, ow] = self.size;
        let resized = resize(rgb, oh, ow, self.resize);
        let img: Array3<f32> = match self.channels {
            Channels::Rgb => resized,
            Channels::Bgr => resized.slice(s![..;-1, .., ..]).to_owned(),
            Channels::Gray => {
                let g = &resized.index_axis(Axis(0), 0) * 0.299
                    + &resized.index_axis(Axis(0), 1) * 0.587
                    + &resized.index_axis(Axis(0), 2) * 0.114;
                g.insert_axis(Axis(0))
            }
        };
        let c = img.shape()[0];
        let mean = Self::per_channel(&self.mean, c, 0.0);
        let std = Self::per_channel(&self.std, c, 1.0);
        let [lo, hi] = self.range;
        let mut img = img;
        for (ci, mut plane) in img.axis_iter_mut(Axis(0)).enumerate() {
            plane.mapv_inplace(|v| ((lo + v * (hi - lo)) - mean[ci]) / std[ci]);
        }
        let mut x: Array4<f32> = img.insert_axis(Axis(0));
        if self.transpose_hw {
            x = x
                .permuted_axes([0, 1, 3, 2])
                .as_standard_layout()
                .to_owned();
        }
        if self.layout == Layout::Nhwc {
            x = x
                .permuted_axes([0, 2, 3, 1])
                .as_standard_layout()
                .to_owned();
        }
        x.into_dyn()
    }

    /// The model input shape for a batch of `n`.
    pub fn input_shape(&self, n: usize) -> Vec<usize> {
        let c = self.channel_count();
        let [h, w] = if self.transpose_hw {
            [self.size[1], self.size[0]]
        } else {
            self.size
        };
        match self.layout {
            Layout::Nchw => vec![n, c, h, w],
            Layout::Nhwc => vec![n, h, w, c],
        }
    }
}

/// Resizes a `[C, H, W]` image (half-pixel centres, no antialiasing, like ONNX Resize).
pub fn resize(img: &Array3<f32>, oh: usize, ow: usize, mode: ResizeMode) -> Array3<f32> {
    let (c, h, w) = img.dim();
    if (h, w) == (oh, ow) {
        return img.clone();
    }
    let mut out = Array3::<f32>::zeros((c, oh, ow));
    let sy = h as f32 / oh as f32;
    let sx = w as f32 / ow as f32;
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        for x in 0..ow {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            for ch in 0..c {
                out[[ch, y, x]] = match mode {
                    ResizeMode::Nearest => {
                        let ny = (((y as f32 + 0.5) * sy).floor() as usize).min(h - 1);
                        let nx = (((x as f32 + 0.5) * sx).floor() as usize).min(w - 1);
                        img[[ch, ny, nx]]
                    }
                    ResizeMode::Bilinear => {
                        let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
                        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                        let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
                        let top = img[[ch, y0, x0]] * (1.0 - tx) + img[[ch, y0, x1]] * tx;
                        let bot = img[[ch, y1, x0]] * (1.0 - tx) + img[[ch, y1, x1]] * tx;
                        top * (1.0 - ty) + bot * ty
                    }
                };
            }
        }
    }
    out
}

/// Shape of a `[N, C, H, W]` dynamic array as a tuple, for callers that need it.
pub fn nchw(x: &ArrayD<f32>) -> Option<(usize, usize, usize, usize)> {
    match x.shape() {
        &[n, c, h, w] => Some((n, c, h, w)),
        _ => None,
    }
}

/// Input name of a model composed with [`compose_with`]: generator RGB in [−1, 1]. Prefixed so
/// it cannot clash with the wrapped model's own names.
pub const PREP_INPUT: &str = "zoom_rgb";

/// Builds the declared preprocessing as ONNX ops, in front of `model`'s input `model_input`.
///
/// The composed model takes [`PREP_INPUT`] `[N, 3, src_h, src_w]` RGB in [−1, 1] (the generator's
/// output), so the whole chain from generated pixels to the model's output is one graph: one
/// ONNX Runtime call, on the model's provider, and differentiable for the exact-gradient path.
pub fn compose_with(
    prep: &Preprocess,
    model: &zoom_graph::ModelProto,
    model_input: &str,
    src_hw: [usize; 2],
) -> std::result::Result<zoom_graph::ModelProto, zoom_graph::Error> {
    use zoom_graph::{DataType, Dim, GraphBuilder};
    let mut b = GraphBuilder::for_model(model)?;
    let image = b.input(
        PREP_INPUT,
        DataType::FLOAT,
        &[
            Dim::from("N"),
            3.into(),
            (src_hw[0] as i64).into(),
            (src_hw[1] as i64).into(),
        ],
    );
    let half = b.scalar(DataType::FLOAT, 0.5);
    // [-1, 1] → [0, 1]
    let x = b.mul(&image, &half);
    let mut x = b.add(&x, &half);
    if prep.size != src_hw {
        // Resize takes full output sizes: N from the input's shape, then C, H, W.
        let shape = b.op("Shape", &[&x], vec![]);
        let n = b.slice(&shape, &[0], &[1], &[0], &[1]);
        let rest = b.const_i64s(&[3, prep.size[0] as i64, prep.size[1] as i64]);
        let full = b.concat(&[&n, &rest], 0);
        let mode = match prep.resize {
            ResizeMode::Bilinear => "linear",
            ResizeMode::Nearest => "nearest",
        };
        // roi and scales may only be omitted ("") from opset 13; empty tensors work from 11 on.
        let empty = b.constant_f32("resize_empty", &[0], &[]);
        x = b.op(
            "Resize",
            &[&x, &empty, &empty, &full],
            vec![
                zoom_graph::attrs::string("mode", mode),
                zoom_graph::attrs::string("coordinate_transformation_mode", "half_pixel"),
            ],
        );
    }
    match prep.channels {
        Channels::Rgb => {}
        Channels::Bgr => {
            let idx = b.const_i64s(&[2, 1, 0]);
            x = b.op(
                "Gather",
                &[&x, &idx],
                vec![zoom_graph::attrs::int("axis", 1)],
            );
        }
        Channels::Gray => {
            let w = b.constant_f32("gray_weights", &[1, 3, 1, 1], &[0.299, 0.587, 0.114]);
            let xw = b.mul(&x, &w);
            x = b.reduce("ReduceSum", &xw, &[1], true);
        }
    }
    let c = prep.channel_count();
    let [lo, hi] = prep.range;
    if [lo, hi] != [0.0, 1.0] {
        let scale = b.scalar(DataType::FLOAT, (hi - lo) as f64);
        let offset = b.scalar(DataType::FLOAT, lo as f64);
        let xs = b.mul(&x, &scale);
        x = b.add(&xs, &offset);
    }
    let mean = Preprocess::per_channel(&prep.mean, c, 0.0);
    let std = Preprocess::per_channel(&prep.std, c, 1.0);
    if mean.iter().any(|&m| m != 0.0) {
        let m = b.constant_f32("mean", &[1, c, 1, 1], &mean);
        x = b.sub(&x, &m);
    }
    if std.iter().any(|&s| s != 1.0) {
        let s = b.constant_f32("std", &[1, c, 1, 1], &std);
        x = b.div(&x, &s);
    }
    if prep.transpose_hw {
        x = b.transpose(&x, &[0, 1, 3, 2]);
    }
    if prep.layout == Layout::Nhwc {
        x = b.transpose(&x, &[0, 2, 3, 1]);
    }
    b.output(&x, "zoom_pixels");
    let prefix = b.build()?;
    zoom_graph::compose::prepend(&prefix, model, &[("zoom_pixels", model_input)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_form_parses_and_validates() {
        let p =
            Preprocess::parse_inline("size=48x48,range=0:255,mean=127.5,std=128,nhwc,transpose_hw")
                .unwrap();
        assert_eq!(p.size, [48, 48]);
        assert_eq!(p.layout, Layout::Nhwc);
        assert!(p.transpose_hw);
        assert_eq!(p.input_shape(2), vec![2, 48, 48, 3]);
        assert!(Preprocess::parse_inline("gray").is_err());
        let e = Preprocess::parse_inline("size=8x8,std=0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("std"), "{e}");
        let e = Preprocess::parse_inline("size=8x8,mean=1:2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 1 or 3"), "{e}");
    }

    #[test]
    fn gray_range_and_mean_are_applied_in_order() {
        // A uniform mid-grey image: every pixel 0.5 in every channel.
        let img = Array3::<f32>::from_elem((3, 4, 6), 0.5);
        let p = Preprocess::parse_inline("size=2x3,gray,range=0:255,mean=127.5,std=2").unwrap();
        let x = p.apply(&img);
        assert_eq!(x.shape(), &[1, 1, 2, 3]);
        assert!(x.iter().all(|v| v.abs() < 1e-4), "{x:?}");
    }

    #[test]
    fn bilinear_resize_of_a_ramp_is_exact_at_half_pixel_centres() {
        let img = Array3::from_shape_fn((1, 1, 4), |(_, _, x)| x as f32);
        let out = resize(&img, 1, 2, ResizeMode::Bilinear);
        // Output pixel centres map to input x = 0.5 and 2.5.
        assert_eq!(out.as_slice().unwrap(), &[0.5, 2.5]);
    }
}
