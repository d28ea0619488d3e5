//! Image files: decoding with limits, and writing PNGs from [-1, 1] or [0, 1] float tensors.

use crate::error::{Error, Result};
use ndarray::{Array3, ArrayView3};
use std::path::Path;

/// Largest image side zoom decodes; larger files are rejected before allocation.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation (bytes).
pub const MAX_ALLOC: u64 = 1 << 30;

/// Decodes an image file into an RGB float array `[3, H, W]` with values in [0, 1].
pub fn read_rgb(path: &Path) -> Result<Array3<f32>> {
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::data(path, format!("cannot decode image: {e}")))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut out = Array3::<f32>::zeros((3, h as usize, w as usize));
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[[c, y as usize, x as usize]] = p[c] as f32 / 255.0;
        }
    }
    Ok(out)
}

/// Converts a `[3, H, W]` float image with values in `[lo, hi]` to 8-bit RGB.
pub fn to_rgb8(img: ArrayView3<f32>, lo: f32, hi: f32) -> image::RgbImage {
    let (_, h, w) = img.dim();
    let scale = 255.0 / (hi - lo);
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let px = |c: usize| {
            ((img[[c, y as usize, x as usize]] - lo) * scale)
                .round()
                .clamp(0.0, 255.0) as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// Encodes an image as PNG bytes.
pub fn png_bytes(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::Report(format!("PNG encoding failed: {e}")))?;
    Ok(buf.into_inner())
}

/// Writes an image as PNG, atomically.
pub fn write_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    super::atomic::write(path, &png_bytes(img)?)
}
