//! Drawing a task's own picture on one panel of a pair image: landmark markers, displacement
//! lines, mask overlays and outlines. Positions are given as fractions of the panel (`x` from the
//! left, `y` from the top, both in [0, 1]), masks at their own resolution; both are mapped onto
//! whatever size the panel was resampled to.

use image::{Rgb, RgbImage};

/// Colour of the unedited prediction (landmarks, mask outline): cyan, visible on skin and hair.
pub const ORIGINAL: Rgb<u8> = Rgb([0, 200, 255]);
/// Colour of the counterfactual prediction: magenta.
pub const COUNTERFACTUAL: Rgb<u8> = Rgb([255, 40, 200]);
/// Colour of pixels whose mask value changed.
pub const CHANGED: Rgb<u8> = Rgb([255, 60, 40]);
/// Dark rim around markers, so they stay visible on light backgrounds.
const RIM: Rgb<u8> = Rgb([20, 20, 20]);

/// Distinct colours for mask classes, in order (class k uses `PALETTE[k % len]`).
pub const PALETTE: [Rgb<u8>; 8] = [
    Rgb([30, 144, 255]),
    Rgb([255, 200, 0]),
    Rgb([50, 205, 50]),
    Rgb([255, 99, 71]),
    Rgb([186, 85, 211]),
    Rgb([0, 206, 209]),
    Rgb([255, 140, 0]),
    Rgb([154, 205, 50]),
];

/// Marker radius in pixels for a panel: about 1/60 of its side, at least 2.
pub fn marker_radius(img: &RgbImage) -> i64 {
    (i64::from(img.width().min(img.height())) / 60).max(2)
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0
        && y >= 0
        && (x as u64) < u64::from(img.width())
        && (y as u64) < u64::from(img.height())
    {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Panel pixel of a fractional position; `None` for a non-finite one (nothing is drawn).
fn to_px(img: &RgbImage, x: f64, y: f64) -> Option<(i64, i64)> {
    if !(x.is_finite() && y.is_finite()) {
        return None;
    }
    let px = (x * f64::from(img.width())).floor();
    let py = (y * f64::from(img.height())).floor();
    // Far-off points (a wild prediction) are clamped just outside the panel, not wrapped.
    let lim = 4.0 * f64::from(img.width().max(img.height()));
    Some((px.clamp(-lim, lim) as i64, py.clamp(-lim, lim) as i64))
}

/// A filled disc of radius `r` with a one-pixel dark rim, centred at fractional `(x, y)`.
pub fn dot(img: &mut RgbImage, x: f64, y: f64, r: i64, colour: Rgb<u8>) {
    let Some((cx, cy)) = to_px(img, x, y) else {
        return;
    };
    let (outer, inner) = ((r + 1) * (r + 1), r * r);
    for dy in -(r + 1)..=(r + 1) {
        for dx in -(r + 1)..=(r + 1) {
            let d = dx * dx + dy * dy;
            if d <= inner {
                put(img, cx + dx, cy + dy, colour);
            } else if d <= outer {
                put(img, cx + dx, cy + dy, RIM);
            }
        }
    }
}

/// A ring (hollow circle, two pixels thick) of radius `r` at fractional `(x, y)`.
pub fn ring(img: &mut RgbImage, x: f64, y: f64, r: i64, colour: Rgb<u8>) {
    let Some((cx, cy)) = to_px(img, x, y) else {
        return;
    };
    let (lo, hi) = ((r - 1).max(0).pow(2), (r + 1).pow(2));
    for dy in -(r + 1)..=(r + 1) {
        for dx in -(r + 1)..=(r + 1) {
            let d = dx * dx + dy * dy;
            if d >= lo && d <= hi {
                put(img, cx + dx, cy + dy, colour);
            }
        }
    }
}

/// A straight line between fractional points (Bresenham, one pixel wide).
pub fn line(img: &mut RgbImage, from: (f64, f64), to: (f64, f64), colour: Rgb<u8>) {
    let (Some((mut x0, mut y0)), Some((x1, y1))) =
        (to_px(img, from.0, from.1), to_px(img, to.0, to.1))
    else {
        return;
    };
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        put(img, x0, y0, colour);
        if x0 == x1 && y0 == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x0 += sx;
        }
        if e2 <= dx {
            err += dx;
            y0 += sy;
        }
    }
}

/// A boolean mask of `w × h` values (row-major), read at the panel pixel `(px, py)` of `img` by
/// nearest neighbour.
fn sample(mask: &[bool], w: usize, h: usize, img: &RgbImage, px: u32, py: u32) -> bool {
    let mx = (px as usize * w) / img.width().max(1) as usize;
    let my = (py as usize * h) / img.height().max(1) as usize;
    mask[my.min(h - 1) * w + mx.min(w - 1)]
}

/// Blends `colour` at opacity `alpha` over every panel pixel where `mask` (`w × h`, row-major)
/// is set.
pub fn tint(img: &mut RgbImage, mask: &[bool], w: usize, h: usize, colour: Rgb<u8>, alpha: f32) {
    if w == 0 || h == 0 || mask.len() != w * h {
        return;
    }
    for py in 0..img.height() {
        for px in 0..img.width() {
            if sample(mask, w, h, img, px, py) {
                let p = img.get_pixel_mut(px, py);
                for c in 0..3 {
                    let v = (1.0 - alpha) * f32::from(p[c]) + alpha * f32::from(colour[c]);
                    p[c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Like [`tint`], but only on diagonal stripes (a third of the pixels), so the image stays
/// visible underneath: marks a region on top of another overlay.
pub fn hatch(img: &mut RgbImage, mask: &[bool], w: usize, h: usize, colour: Rgb<u8>, alpha: f32) {
    if w == 0 || h == 0 || mask.len() != w * h {
        return;
    }
    let period = (img.width().min(img.height()) / 32).max(3);
    let stripe = (period / 3).max(1);
    for py in 0..img.height() {
        for px in 0..img.width() {
            if (px + py) % period < stripe && sample(mask, w, h, img, px, py) {
                let p = img.get_pixel_mut(px, py);
                for c in 0..3 {
                    let v = (1.0 - alpha) * f32::from(p[c]) + alpha * f32::from(colour[c]);
                    p[c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Paints the boundary of `mask` (panel pixels inside whose right or lower neighbour is outside,
/// or the reverse), thickened to two pixels.
pub fn outline(img: &mut RgbImage, mask: &[bool], w: usize, h: usize, colour: Rgb<u8>) {
    if w == 0 || h == 0 || mask.len() != w * h {
        return;
    }
    let (pw, ph) = img.dimensions();
    let at = |img: &RgbImage, x: u32, y: u32| sample(mask, w, h, img, x, y);
    let mut edge = Vec::new();
    for py in 0..ph {
        for px in 0..pw {
            let v = at(img, px, py);
            let right = px + 1 < pw && at(img, px + 1, py) != v;
            let down = py + 1 < ph && at(img, px, py + 1) != v;
            if right || down {
                edge.push((px, py));
            }
        }
    }
    for (x, y) in edge {
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            put(img, i64::from(x) + dx, i64::from(y) + dy, colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_lands_where_the_fraction_says() {
        let mut img = RgbImage::new(100, 50);
        dot(&mut img, 0.25, 0.5, 3, ORIGINAL);
        assert_eq!(*img.get_pixel(25, 25), ORIGINAL);
        assert_eq!(*img.get_pixel(25 + 4, 25), RIM);
        assert_eq!(*img.get_pixel(60, 25), Rgb([0, 0, 0]));
        // Off-panel points draw nothing and do not panic.
        dot(&mut img, 5.0, -3.0, 3, ORIGINAL);
        ring(&mut img, f64::NAN, 0.5, 3, ORIGINAL);
        line(&mut img, (f64::INFINITY, 0.0), (0.5, 0.5), ORIGINAL);
        assert_eq!(*img.get_pixel(0, 0), Rgb([0, 0, 0]));
    }

    #[test]
    fn line_joins_its_end_points() {
        let mut img = RgbImage::new(20, 20);
        line(&mut img, (0.0, 0.0), (0.5, 0.5), CHANGED);
        assert_eq!(*img.get_pixel(0, 0), CHANGED);
        assert_eq!(*img.get_pixel(5, 5), CHANGED);
        assert_eq!(*img.get_pixel(10, 10), CHANGED);
        assert_eq!(*img.get_pixel(10, 0), Rgb([0, 0, 0]));
    }

    #[test]
    fn tint_and_outline_follow_the_mask_at_any_scale() {
        // A 4×4 mask whose left half is set, drawn on a 12×12 panel (×3).
        let mask: Vec<bool> = (0..16).map(|i| i % 4 < 2).collect();
        let mut img = RgbImage::from_pixel(12, 12, Rgb([0, 0, 0]));
        tint(&mut img, &mask, 4, 4, Rgb([200, 100, 0]), 0.5);
        assert_eq!(*img.get_pixel(0, 0), Rgb([100, 50, 0]));
        assert_eq!(*img.get_pixel(5, 11), Rgb([100, 50, 0]));
        assert_eq!(*img.get_pixel(6, 0), Rgb([0, 0, 0]));
        // Hatching covers a third of the masked pixels, none outside.
        let mut img = RgbImage::from_pixel(12, 12, Rgb([0, 0, 0]));
        hatch(&mut img, &mask, 4, 4, Rgb([200, 100, 0]), 1.0);
        let lit = |img: &RgbImage, x0: u32, x1: u32| {
            (0..12)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| *img.get_pixel(x, y) != Rgb([0, 0, 0]))
                .count()
        };
        assert_eq!(lit(&img, 0, 6), 24);
        assert_eq!(lit(&img, 6, 12), 0);
        let mut img = RgbImage::from_pixel(12, 12, Rgb([0, 0, 0]));
        outline(&mut img, &mask, 4, 4, ORIGINAL);
        assert_eq!(*img.get_pixel(5, 3), ORIGINAL);
        assert_eq!(*img.get_pixel(6, 3), ORIGINAL);
        assert_eq!(*img.get_pixel(0, 3), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(11, 3), Rgb([0, 0, 0]));
    }
}
