//! Counterfactual pictures: original | counterfactual pairs with their scores, and grids of pairs.
//!
//! A pair image is two panels side by side, each the generator's `[3, H, W]` output in [−1, 1]
//! resampled to about [`PairStyle::panel`] pixels (nearest-neighbour up, box filter down, by an
//! integer factor so pixels stay square), with the task score printed under each panel and, when
//! the decision flipped, a red bar above the counterfactual and its score in red. Text is drawn
//! with a tiny built-in 5×7 bitmap font (digits and the few letters numbers need), so no font
//! file is involved and the pixels are identical everywhere.

use super::fmt_num;
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use ndarray::ArrayView3;
use std::path::Path;

/// Colour of the flip marker and of a flipped score.
pub const FLIP_COLOUR: Rgb<u8> = Rgb([224, 49, 49]);
const INK: Rgb<u8> = Rgb([33, 37, 41]);
const PAPER: Rgb<u8> = Rgb([255, 255, 255]);
/// Outer margin and the gap between the two panels, in pixels.
const PAD: u32 = 6;
/// Height of the flip marker bar.
const FLIP_BAR: u32 = 5;

/// How to draw one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairStyle {
    /// Target panel side in pixels; the image is scaled by the integer factor that comes closest
    /// (64 px → 192 px with the default).
    pub panel: u32,
    /// Task score of the original.
    pub score_before: f64,
    /// Task score of the counterfactual.
    pub score_after: f64,
    /// Whether the decision changed (draws the red marker).
    pub flipped: bool,
    /// Significant digits of the printed scores.
    pub digits: usize,
}

impl PairStyle {
    /// Default look for a pair with these scores.
    pub fn new(score_before: f64, score_after: f64, flipped: bool) -> Self {
        PairStyle {
            panel: 192,
            score_before,
            score_after,
            flipped,
            digits: 3,
        }
    }
}

/// Draws original | counterfactual side by side (see the module docs for the layout).
///
/// Both arrays must be `[3, H, W]` with the same shape; values are clamped to [−1, 1].
pub fn pair_image(
    original: ArrayView3<f32>,
    counterfactual: ArrayView3<f32>,
    style: &PairStyle,
) -> Result<RgbImage> {
    pair_image_annotated(original, counterfactual, style, &mut |_, _| None)
}

/// A task's drawing on one panel of a pair: called with the panel (already resampled to its
/// display size) and `true` for the counterfactual; returns a caption to print under the panel
/// instead of the score, or `None` to keep the score.
pub type Annotate<'a> = dyn FnMut(&mut RgbImage, bool) -> Option<String> + 'a;

/// [`pair_image`] with a task's own picture: `annotate` draws on each panel (landmarks, mask
/// overlays) and may replace the printed score by a caption (e.g. `NME 0.12`). A caption too
/// wide for the panel is printed at a smaller font scale.
pub fn pair_image_annotated(
    original: ArrayView3<f32>,
    counterfactual: ArrayView3<f32>,
    style: &PairStyle,
    annotate: &mut Annotate,
) -> Result<RgbImage> {
    check_shape(original, "original")?;
    check_shape(counterfactual, "counterfactual")?;
    if original.dim() != counterfactual.dim() {
        return Err(Error::Report(format!(
            "pair image: original is {:?} but counterfactual is {:?}; they must match",
            original.dim(),
            counterfactual.dim()
        )));
    }
    let mut a = resample(&crate::io::image::to_rgb8(original, -1.0, 1.0), style.panel);
    let mut b = resample(
        &crate::io::image::to_rgb8(counterfactual, -1.0, 1.0),
        style.panel,
    );
    let caption_a = annotate(&mut a, false);
    let caption_b = annotate(&mut b, true);
    let (pw, ph) = a.dimensions();

    let font = (pw / 96).clamp(1, 4);
    let label_h = GLYPH_H * font + 2 * PAD;
    let top = PAD + FLIP_BAR + 2;
    let width = 3 * PAD + 2 * pw;
    let height = top + ph + label_h;
    let mut out = RgbImage::from_pixel(width, height, PAPER);

    let (ax, bx) = (PAD, 2 * PAD + pw);
    image::imageops::replace(&mut out, &a, i64::from(ax), i64::from(top));
    image::imageops::replace(&mut out, &b, i64::from(bx), i64::from(top));
    if style.flipped {
        fill_rect(&mut out, bx, PAD, pw, FLIP_BAR, FLIP_COLOUR);
    }
    let ty = top + ph + PAD;
    let before = caption_a.unwrap_or_else(|| fmt_num(style.score_before, style.digits));
    let after = caption_b.unwrap_or_else(|| fmt_num(style.score_after, style.digits));
    // Shrink the font for a caption wider than its panel (never below scale 1).
    let fit = |t: &str| {
        let mut s = font;
        while s > 1 && text_width(t, s) > pw {
            s -= 1;
        }
        s
    };
    draw_text_centered(&mut out, ax + pw / 2, ty, &before, fit(&before), INK);
    let after_colour = if style.flipped { FLIP_COLOUR } else { INK };
    draw_text_centered(&mut out, bx + pw / 2, ty, &after, fit(&after), after_colour);
    Ok(out)
}

/// Draws a pair and writes it as PNG (atomically) to `path`.
pub fn write_pair(
    path: &Path,
    original: ArrayView3<f32>,
    counterfactual: ArrayView3<f32>,
    style: &PairStyle,
) -> Result<()> {
    crate::io::image::write_png(path, &pair_image(original, counterfactual, style)?)
}

/// [`pair_image_annotated`], written as PNG (atomically) to `path`.
pub fn write_pair_annotated(
    path: &Path,
    original: ArrayView3<f32>,
    counterfactual: ArrayView3<f32>,
    style: &PairStyle,
    annotate: &mut Annotate,
) -> Result<()> {
    crate::io::image::write_png(
        path,
        &pair_image_annotated(original, counterfactual, style, annotate)?,
    )
}

/// Tiles images (typically pair images of one attribute) into a grid, `columns` per row, in
/// order, on white with a small gap. Cells take the size of the largest image. An empty list
/// gives a 1×1 white image.
pub fn pairs_grid(images: &[RgbImage], columns: usize) -> RgbImage {
    if images.is_empty() {
        return RgbImage::from_pixel(1, 1, PAPER);
    }
    let columns = columns.clamp(1, images.len());
    let rows = images.len().div_ceil(columns);
    let cw = images.iter().map(RgbImage::width).max().unwrap_or(1);
    let ch = images.iter().map(RgbImage::height).max().unwrap_or(1);
    let gap = PAD;
    let width = columns as u32 * cw + (columns as u32 - 1) * gap;
    let height = rows as u32 * ch + (rows as u32 - 1) * gap;
    let mut out = RgbImage::from_pixel(width, height, PAPER);
    for (i, img) in images.iter().enumerate() {
        let (c, r) = ((i % columns) as u32, (i / columns) as u32);
        image::imageops::replace(
            &mut out,
            img,
            i64::from(c * (cw + gap)),
            i64::from(r * (ch + gap)),
        );
    }
    out
}

/// Tiles images with [`pairs_grid`] and writes the result as PNG (atomically) to `path`.
pub fn write_grid(path: &Path, images: &[RgbImage], columns: usize) -> Result<()> {
    crate::io::image::write_png(path, &pairs_grid(images, columns))
}

fn check_shape(img: ArrayView3<f32>, what: &str) -> Result<()> {
    let (c, h, w) = img.dim();
    if c != 3 || h == 0 || w == 0 {
        return Err(Error::Report(format!(
            "pair image: {what} has shape [{c}, {h}, {w}], expected [3, H, W] with H, W > 0"
        )));
    }
    Ok(())
}

/// Scales by the integer factor that brings the larger side closest to `target`: nearest
/// neighbour up (crisp pixels for small generator outputs), box average down (no aliasing for
/// 512/1024 px StyleGAN outputs).
fn resample(img: &RgbImage, target: u32) -> RgbImage {
    let side = img.width().max(img.height()).max(1);
    let target = target.max(1);
    if side * 2 <= target * 3 && side * 3 >= target * 2 {
        return img.clone(); // within 1.5× of the target: leave as is
    }
    if side < target {
        let k = ((target as f32 / side as f32).round() as u32).max(1);
        RgbImage::from_fn(img.width() * k, img.height() * k, |x, y| {
            *img.get_pixel(x / k, y / k)
        })
    } else {
        let k = ((side as f32 / target as f32).round() as u32).max(1);
        let (w, h) = ((img.width() / k).max(1), (img.height() / k).max(1));
        RgbImage::from_fn(w, h, |x, y| {
            let mut acc = [0u32; 3];
            let mut n = 0u32;
            for yy in y * k..((y + 1) * k).min(img.height()) {
                for xx in x * k..((x + 1) * k).min(img.width()) {
                    let p = img.get_pixel(xx, yy);
                    for c in 0..3 {
                        acc[c] += u32::from(p[c]);
                    }
                    n += 1;
                }
            }
            let n = n.max(1);
            Rgb([(acc[0] / n) as u8, (acc[1] / n) as u8, (acc[2] / n) as u8])
        })
    }
}

fn fill_rect(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, colour);
        }
    }
}

/// Glyph cell of the bitmap font (5×7 plus one column of spacing).
const GLYPH_W: u32 = 5;
const GLYPH_H: u32 = 7;

/// Width in pixels of `text` drawn at `scale` with [`draw_text`].
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    if n == 0 {
        0
    } else {
        (n * (GLYPH_W + 1) - 1) * scale
    }
}

/// Draws `text` with the built-in 5×7 font, top-left at (x, y), each font pixel a `scale`×`scale`
/// block. Covers digits, `A`–`Z`, `. - + = % : / ( ) _ #`, space and `a e f i n p`; other
/// characters draw as `?`.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, colour: Rgb<u8>) {
    let scale = scale.max(1);
    for (i, c) in text.chars().enumerate() {
        let gx = x + i as u32 * (GLYPH_W + 1) * scale;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                    fill_rect(
                        img,
                        gx + col * scale,
                        y + row as u32 * scale,
                        scale,
                        scale,
                        colour,
                    );
                }
            }
        }
    }
}

fn draw_text_centered(
    img: &mut RgbImage,
    cx: u32,
    y: u32,
    text: &str,
    scale: u32,
    colour: Rgb<u8>,
) {
    let x = cx.saturating_sub(text_width(text, scale) / 2);
    draw_text(img, x, y, text, scale, colour);
}

/// Rows of a 5×7 glyph, most significant of the low 5 bits = leftmost pixel.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
        ],
        '1' => [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        '2' => [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
        '3' => [
            0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
        ],
        '4' => [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
        ],
        '5' => [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
        ],
        '6' => [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
        ],
        '7' => [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
        ],
        '8' => [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
        ],
        '9' => [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
        ],
        '.' => [0, 0, 0, 0, 0, 0b01100, 0b01100],
        '-' => [0, 0, 0, 0b01110, 0, 0, 0],
        '+' => [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0],
        '=' => [0, 0, 0b11111, 0, 0b11111, 0, 0],
        ':' => [0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0],
        '/' => [0, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0],
        '%' => [
            0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011,
        ],
        ' ' => [0; 7],
        'a' => [0, 0, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
        'e' => [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
        'f' => [
            0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000,
        ],
        'i' => [0b00100, 0, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110],
        'n' => [0, 0, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'p' => [0, 0, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000],
        '(' => [
            0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010,
        ],
        ')' => [
            0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000,
        ],
        '_' => [0, 0, 0, 0, 0, 0, 0b11111],
        '#' => [
            0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010,
        ],
        'A'..='Z' => UPPER[(c as u8 - b'A') as usize],
        _ => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100],
    }
}

/// Capital letters of the 5×7 font (task captions: `NME`, `IOU`, label names).
const UPPER: [[u8; 7]; 26] = [
    [
        0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
    ], // A
    [
        0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110,
    ], // B
    [
        0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110,
    ], // C
    [
        0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100,
    ], // D
    [
        0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
    ], // E
    [
        0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000,
    ], // F
    [
        0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111,
    ], // G
    [
        0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
    ], // H
    [
        0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
    ], // I
    [
        0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100,
    ], // J
    [
        0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001,
    ], // K
    [
        0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111,
    ], // L
    [
        0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
    ], // M
    [
        0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001,
    ], // N
    [
        0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
    ], // O
    [
        0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000,
    ], // P
    [
        0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101,
    ], // Q
    [
        0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001,
    ], // R
    [
        0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110,
    ], // S
    [
        0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
    ], // T
    [
        0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
    ], // U
    [
        0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
    ], // V
    [
        0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010,
    ], // W
    [
        0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001,
    ], // X
    [
        0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100,
    ], // Y
    [
        0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111,
    ], // Z
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use ndarray::Array3;

    fn face(h: usize, w: usize, shift: f32) -> Array3<f32> {
        Array3::from_shape_fn((3, h, w), |(c, y, x)| {
            ((x + y + c * 7) as f32 / (h + w) as f32) * 2.0 - 1.0 + shift
        })
    }

    #[test]
    fn pair_layout_and_upscale() {
        let (a, b) = (face(64, 64, 0.0), face(64, 64, 0.3));
        let img = pair_image(a.view(), b.view(), &PairStyle::new(0.91, 0.12, true)).unwrap();
        // 64 px → 192 px panels, two of them plus three gaps.
        assert_eq!(img.width(), 3 * PAD + 2 * 192);
        // Nearest upscale: each source pixel is a 3×3 block.
        let top = PAD + FLIP_BAR + 2;
        let p = |x, y| *img.get_pixel(PAD + x, top + y);
        assert_eq!(p(0, 0), p(2, 2));
        assert_eq!(
            p(0, 0),
            Rgb(crate::io::image::to_rgb8(a.view(), -1.0, 1.0)
                .get_pixel(0, 0)
                .0)
        );
        // Flip bar above the counterfactual panel only.
        assert_eq!(*img.get_pixel(2 * PAD + 192 + 10, PAD + 1), FLIP_COLOUR);
        assert_eq!(*img.get_pixel(PAD + 10, PAD + 1), PAPER);
        // Scores are drawn under the panels: the label strip has ink in both halves.
        let strip = top + 192..img.height();
        let ink = |x0: u32, x1: u32| {
            strip
                .clone()
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| *img.get_pixel(x, y) != PAPER)
                .count()
        };
        assert!(ink(0, img.width() / 2) > 20 && ink(img.width() / 2, img.width()) > 20);
    }

    #[test]
    fn no_flip_no_bar_and_downscale_large() {
        let (a, b) = (face(512, 512, 0.0), face(512, 512, 0.0));
        let img = pair_image(a.view(), b.view(), &PairStyle::new(0.4, 0.45, false)).unwrap();
        // 512 px is nearer 192 × 3 than × 2: box-filtered down by 3 to 170 px panels.
        assert_eq!(img.width(), 3 * PAD + 2 * 170);
        for x in 0..img.width() {
            assert_eq!(*img.get_pixel(x, PAD + 1), PAPER);
        }
    }

    #[test]
    fn shape_errors_are_clear() {
        let a = face(8, 8, 0.0);
        let b = face(8, 9, 0.0);
        let err = pair_image(a.view(), b.view(), &PairStyle::new(0.0, 0.0, false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[3, 8, 8]") || err.contains("(3, 8, 8)"),
            "{err}"
        );
        let g = Array3::<f32>::zeros((1, 8, 8));
        let err = pair_image(g.view(), g.view(), &PairStyle::new(0.0, 0.0, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected [3, H, W]"), "{err}");
    }

    #[test]
    fn grid_tiles_in_order() {
        let imgs: Vec<RgbImage> = (0..5)
            .map(|i| RgbImage::from_pixel(10, 4, Rgb([i * 40, 0, 0])))
            .collect();
        let g = pairs_grid(&imgs, 2);
        assert_eq!(g.dimensions(), (2 * 10 + PAD, 3 * 4 + 2 * PAD));
        assert_eq!(*g.get_pixel(10 + PAD, 0), Rgb([40, 0, 0]));
        assert_eq!(*g.get_pixel(0, 2 * (4 + PAD)), Rgb([160, 0, 0]));
        assert_eq!(
            *g.get_pixel(10 + PAD, 2 * (4 + PAD)),
            PAPER,
            "empty last cell stays white"
        );
        assert_eq!(pairs_grid(&[], 3).dimensions(), (1, 1));
    }

    #[test]
    fn annotations_draw_on_panels_and_replace_captions() {
        let (a, b) = (face(64, 64, 0.0), face(64, 64, 0.0));
        let style = PairStyle::new(0.0, 0.5, false);
        let plain = pair_image(a.view(), b.view(), &style).unwrap();
        let mut seen = Vec::new();
        let img = pair_image_annotated(a.view(), b.view(), &style, &mut |p, cf| {
            seen.push((p.dimensions(), cf));
            p.put_pixel(0, 0, FLIP_COLOUR);
            cf.then(|| "NME 0.5 (EXTRA LONG CAPTION)".to_string())
        })
        .unwrap();
        // Called once per panel, on the resampled panel.
        assert_eq!(seen, vec![((192, 192), false), ((192, 192), true)]);
        let top = PAD + FLIP_BAR + 2;
        assert_eq!(*img.get_pixel(PAD, top), FLIP_COLOUR);
        assert_eq!(*img.get_pixel(2 * PAD + 192, top), FLIP_COLOUR);
        // Left caption unchanged (the score), right one replaced.
        let half = |im: &RgbImage, right: bool| -> Vec<Rgb<u8>> {
            let x0 = if right { im.width() / 2 } else { 0 };
            (top + 192..im.height())
                .flat_map(|y| (x0..x0 + im.width() / 2).map(move |x| (x, y)))
                .map(|(x, y)| *im.get_pixel(x, y))
                .collect()
        };
        assert_eq!(half(&img, false), half(&plain, false));
        assert_ne!(half(&img, true), half(&plain, true));
        // A 28-character caption at scale 2 would be 334 px: shrunk to fit 192 px.
        assert!(text_width("NME 0.5 (EXTRA LONG CAPTION)", 1) <= 192);
    }

    #[test]
    fn capitals_have_their_own_glyphs() {
        let unknown = glyph('?');
        for c in 'A'..='Z' {
            assert_ne!(glyph(c), unknown, "{c}");
        }
        assert_eq!(glyph('N'), UPPER[13]);
    }

    #[test]
    fn text_width_and_unknown_glyphs() {
        assert_eq!(text_width("0.5", 2), (3 * 6 - 1) * 2);
        let mut img = RgbImage::from_pixel(40, 10, PAPER);
        draw_text(&mut img, 0, 0, "Z", 1, INK);
        assert!(
            img.pixels().any(|p| *p == INK),
            "unknown characters still draw (as ?)"
        );
    }
}
