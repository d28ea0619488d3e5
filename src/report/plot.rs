//! Charts: the sensitivity bar chart and the sweep response curves, as SVG and PNG.
//!
//! Each chart is written once, as a hand-made SVG string (escaped text, deterministic number
//! formatting, so the same report gives the same bytes); the PNG is that SVG rasterised.
//!
//! Why `resvg` for the PNG: it is a pure-Rust, well-maintained (linebender) SVG renderer built on
//! `tiny-skia`, so the PNG is pixel-for-pixel the chart the HTML shows, with one layout code path
//! instead of two. With default features off and only `text` on it pulls no system libraries and
//! reads no system fonts: text is shaped with fonts embedded in the binary from
//! `epaint_default_fonts` (egui's small font crate: Ubuntu Light, OFL/UFL; Hack, MIT/OFL), so the
//! PNG looks the same on every machine, including CI containers without any font installed.
//! `plotters` was the alternative; its bitmap backend needs either system fonts (font-kit) or a
//! registered font anyway, and would have meant drawing every chart twice (SVG and bitmap).

use super::schema::{AttributeResult, Curve, Report};
use super::{escape, fmt_num, fmt_pct};
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

/// Pixel scale of the PNGs relative to the SVG's CSS size (2 = sharp on high-DPI screens).
pub const PNG_SCALE: f32 = 2.0;

/// Width of every chart, in SVG user units (CSS pixels).
const WIDTH: f64 = 760.0;
/// Font stack: browsers use their own sans-serif; resvg maps `sans-serif` to the embedded font.
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
/// Longest attribute name drawn in full on a chart (longer ones end in "…").
const MAX_LABEL_CHARS: usize = 30;

// Colours (Open Color palette): distinguishable for common colour-vision deficiencies.
const BAR: &str = "#1c7ed6";
const BAR_BELOW_NULL: &str = "#adb5bd";
const INK: &str = "#212529";
const MUTED: &str = "#495057";
const GRIDLINE: &str = "#e9ecef";
const NULL_BAND: &str = "#868e96";

/// SVG of the sensitivity chart: one horizontal bar per attribute (in report order, i.e. by
/// descending sensitivity) showing the mean |Δ score| with its 95 % CI whisker, the normalised
/// sensitivity written beside each bar, and the null baseline (random directions of the same
/// norm) as a dashed line over a shaded band of its 95 % CI.
///
/// Bars are blue, or grey for attributes whose `above_null` is `false`. The axis is mean |Δ score|
/// rather than the normalised share because that is the unit of the CIs and of the null baseline;
/// the order and the relative lengths are the same either way.
pub fn sensitivity_svg(report: &Report) -> String {
    let attrs = &report.attributes;
    let null = report.null_baseline.as_ref();
    let label_chars = attrs
        .iter()
        .map(|a| short_label(&a.name).chars().count())
        .max()
        .unwrap_or(8);
    let label_w = (label_chars as f64 * 7.0 + 16.0).clamp(80.0, 240.0);
    let (left, right) = (label_w + 12.0, WIDTH - 110.0);
    let top = if null.is_some() { 74.0 } else { 58.0 };
    let row = 28.0;
    let plot_h = row * attrs.len().max(1) as f64;
    let height = top + plot_h + 56.0;

    // x range: everything drawn must fit (bars, whisker ends, the null band).
    let mut hi = 0.0f64;
    for a in attrs {
        for v in [a.mean_abs_change, a.ci95[0], a.ci95[1]] {
            if v.is_finite() {
                hi = hi.max(v);
            }
        }
    }
    if let Some(n) = null {
        for v in [n.mean_abs_change, n.ci95[0], n.ci95[1]] {
            if v.is_finite() {
                hi = hi.max(v);
            }
        }
    }
    let ticks = nice_ticks(0.0, if hi > 0.0 { hi } else { 1.0 }, 6);
    let xmax = *ticks.last().unwrap_or(&1.0);
    let x = |v: f64| left + (right - left) * (v.clamp(0.0, xmax) / xmax);

    let mut s = svg_open(WIDTH, height, "Attribute sensitivity chart");
    let score = &report.target.score;
    let _ = write!(
        s,
        r#"<text x="16" y="26" font-size="16" font-weight="600" fill="{INK}">Sensitivity of {} to each attribute</text>"#,
        escape(score)
    );
    let _ = write!(
        s,
        r#"<text x="16" y="46" font-size="12" fill="{MUTED}">{} mode · {} samples · bars: mean |Δ score| with 95 % CI · label: share of total</text>"#,
        mode_name(report),
        report.samples
    );
    if null.is_some() {
        legend_null(&mut s, 16.0, 64.0);
    }

    // Grid and tick labels.
    for &t in &ticks {
        let tx = x(t);
        let _ = write!(
            s,
            r#"<line x1="{tx:.1}" y1="{top:.1}" x2="{tx:.1}" y2="{:.1}" stroke="{GRIDLINE}"/><text x="{tx:.1}" y="{:.1}" font-size="11" fill="{MUTED}" text-anchor="middle">{}</text>"#,
            top + plot_h,
            top + plot_h + 16.0,
            fmt_num(t, 3)
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{left:.1}" y1="{:.1}" x2="{right:.1}" y2="{:.1}" stroke="{MUTED}"/>"#,
        top + plot_h,
        top + plot_h
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{INK}" text-anchor="middle">mean |Δ {}| over samples</text>"#,
        (left + right) / 2.0,
        top + plot_h + 38.0,
        escape(score)
    );

    // Null baseline band and line, under the bars.
    if let Some(n) = null {
        let (bx0, bx1) = (x(n.ci95[0].min(n.ci95[1])), x(n.ci95[0].max(n.ci95[1])));
        if bx0.is_finite() && bx1.is_finite() {
            let _ = write!(
                s,
                r#"<rect x="{bx0:.1}" y="{top:.1}" width="{:.1}" height="{plot_h:.1}" fill="{NULL_BAND}" fill-opacity="0.15"/>"#,
                (bx1 - bx0).max(1.0)
            );
        }
        if n.mean_abs_change.is_finite() {
            let nx = x(n.mean_abs_change);
            let _ = write!(
                s,
                r#"<line x1="{nx:.1}" y1="{:.1}" x2="{nx:.1}" y2="{:.1}" stroke="{MUTED}" stroke-width="1.5" stroke-dasharray="5 4"/>"#,
                top - 4.0,
                top + plot_h
            );
        }
    }

    if attrs.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="13" fill="{MUTED}" text-anchor="middle">no attributes</text>"#,
            (left + right) / 2.0,
            top + row * 0.6
        );
    }
    for (i, a) in attrs.iter().enumerate() {
        let cy = top + row * (i as f64 + 0.5);
        bar_row(&mut s, a, cy, left, &x);
    }
    s.push_str("</svg>\n");
    s
}

/// One bar with its label, whisker and value text.
fn bar_row(s: &mut String, a: &AttributeResult, cy: f64, left: f64, x: &impl Fn(f64) -> f64) {
    let bar_h = 16.0;
    let _ = write!(
        s,
        r#"<g><title>{}: {}</title><text x="{:.1}" y="{:.1}" font-size="13" fill="{INK}" text-anchor="end">{}</text>"#,
        escape(&a.name),
        escape(&a.prompt),
        left - 10.0,
        cy + 4.5,
        escape(&short_label(&a.name))
    );
    let mut end = left;
    if a.mean_abs_change.is_finite() {
        let fill = if a.above_null == Some(false) {
            BAR_BELOW_NULL
        } else {
            BAR
        };
        let w = (x(a.mean_abs_change) - left).max(0.0);
        end = left + w;
        let _ = write!(
            s,
            r#"<rect x="{left:.1}" y="{:.1}" width="{w:.1}" height="{bar_h:.1}" rx="2" fill="{fill}"/>"#,
            cy - bar_h / 2.0
        );
    }
    let [lo, hi] = a.ci95;
    if lo.is_finite() && hi.is_finite() {
        let (x0, x1) = (x(lo.min(hi)), x(lo.max(hi)));
        end = end.max(x1);
        let cap = 5.0;
        let _ = write!(
            s,
            r#"<path d="M{x0:.1} {cy:.1}H{x1:.1}M{x0:.1} {:.1}V{:.1}M{x1:.1} {:.1}V{:.1}" stroke="{INK}" stroke-width="1.5" fill="none"/>"#,
            cy - cap,
            cy + cap,
            cy - cap,
            cy + cap
        );
    }
    let value = if a.mean_abs_change.is_finite() {
        format!(
            "{} · {}",
            fmt_num(a.mean_abs_change, 3),
            fmt_pct(a.sensitivity)
        )
    } else {
        "n/a".to_string()
    };
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{MUTED}">{}</text></g>"#,
        end + 8.0,
        cy + 4.0,
        escape(&value)
    );
}

/// Legend for the null baseline (only drawn when the report has one).
fn legend_null(s: &mut String, x0: f64, y: f64) {
    let _ = write!(
        s,
        r#"<rect x="{x0:.1}" y="{:.1}" width="12" height="10" fill="{BAR}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="{MUTED}">above null baseline</text>"#,
        y - 9.0,
        x0 + 17.0,
        y
    );
    let x1 = x0 + 150.0;
    let _ = write!(
        s,
        r#"<rect x="{x1:.1}" y="{:.1}" width="12" height="10" fill="{BAR_BELOW_NULL}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="{MUTED}">not above</text>"#,
        y - 9.0,
        x1 + 17.0,
        y
    );
    let x2 = x1 + 95.0;
    let _ = write!(
        s,
        r#"<rect x="{x2:.1}" y="{:.1}" width="24" height="12" fill="{NULL_BAND}" fill-opacity="0.15"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{MUTED}" stroke-width="1.5" stroke-dasharray="5 4"/><text x="{:.1}" y="{:.1}" font-size="12" fill="{MUTED}">null baseline: random edits of equal norm (mean, 95 % CI)</text>"#,
        y - 10.0,
        x2 + 12.0,
        y - 11.0,
        x2 + 12.0,
        y + 3.0,
        x2 + 30.0,
        y
    );
}

/// SVG of the sweep response curves, or `None` when no attribute carries a curve.
///
/// Small multiples: one panel per attribute (report order), three per row, sharing the α and
/// score axes so panels compare at a glance. Each panel shows the mean task score over samples
/// against α as a line, with a ±1 standard-deviation band, and a dashed vertical line at α = 0
/// (the unedited images).
pub fn curves_svg(report: &Report) -> Option<String> {
    let curves: Vec<(&AttributeResult, &Curve)> = report
        .attributes
        .iter()
        .filter_map(|a| a.curve.as_ref().map(|c| (a, c)))
        .collect();
    if curves.is_empty() {
        return None;
    }
    let cols = curves.len().min(3);
    let rows = curves.len().div_ceil(cols);
    let (margin_l, margin_r, top) = (16.0, 16.0, 60.0);
    let gap = 14.0;
    let panel_w = (WIDTH - margin_l - margin_r - gap * (cols as f64 - 1.0)) / cols as f64;
    let panel_h = 190.0;
    let height = top + rows as f64 * (panel_h + gap) + 24.0;

    // Shared ranges over every finite point (mean ± std) and α.
    let (mut ylo, mut yhi, mut alo, mut ahi) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (_, c) in &curves {
        for (i, &a) in c.alpha.iter().enumerate() {
            let (m, sd) = (
                c.mean.get(i).copied().unwrap_or(f64::NAN),
                c.std.get(i).copied().unwrap_or(0.0),
            );
            if !(a.is_finite() && m.is_finite()) {
                continue;
            }
            let sd = if sd.is_finite() { sd.abs() } else { 0.0 };
            (alo, ahi) = (alo.min(a), ahi.max(a));
            (ylo, yhi) = (ylo.min(m - sd), yhi.max(m + sd));
        }
    }
    if !(ylo.is_finite() && yhi.is_finite()) {
        (ylo, yhi) = (0.0, 1.0);
    }
    if !(alo.is_finite() && ahi.is_finite()) {
        (alo, ahi) = (-1.0, 1.0);
    }
    let yticks = nice_ticks(ylo, yhi, 5);
    let aticks = nice_ticks(alo, ahi, 7);
    let (y0, y1) = (yticks[0], *yticks.last().unwrap_or(&1.0));
    let (a0, a1) = (aticks[0], *aticks.last().unwrap_or(&1.0));

    let mut s = svg_open(WIDTH, height, "Response curves");
    let score = escape(&report.target.score);
    let _ = write!(
        s,
        r#"<text x="16" y="26" font-size="16" font-weight="600" fill="{INK}">Response of {score} along each attribute direction</text><text x="16" y="46" font-size="12" fill="{MUTED}">mean over {} samples (line) ± 1 std (band) against the edit strength α; dashed: α = 0</text>"#,
        report.samples
    );

    for (k, (attr, c)) in curves.iter().enumerate() {
        let px = margin_l + (k % cols) as f64 * (panel_w + gap);
        let py = top + (k / cols) as f64 * (panel_h + gap);
        // Inner plot area leaves room for the panel title and the tick labels.
        let (ix0, ix1, iy0, iy1) = (
            px + 40.0,
            px + panel_w - 8.0,
            py + 24.0,
            py + panel_h - 28.0,
        );
        let xa = |a: f64| ix0 + (ix1 - ix0) * ((a - a0) / (a1 - a0));
        let ys = |v: f64| iy1 - (iy1 - iy0) * ((v.clamp(y0, y1) - y0) / (y1 - y0));

        let _ = write!(
            s,
            r##"<g><title>{}: {}</title><rect x="{px:.1}" y="{py:.1}" width="{panel_w:.1}" height="{panel_h:.1}" fill="#ffffff" stroke="{GRIDLINE}"/><text x="{:.1}" y="{:.1}" font-size="13" fill="{INK}" font-weight="600">{}</text>"##,
            escape(&attr.name),
            escape(&attr.prompt),
            px + 10.0,
            py + 17.0,
            escape(&short_label(&attr.name))
        );
        for &t in &yticks {
            let ty = ys(t);
            let _ = write!(
                s,
                r#"<line x1="{ix0:.1}" y1="{ty:.1}" x2="{ix1:.1}" y2="{ty:.1}" stroke="{GRIDLINE}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{MUTED}" text-anchor="end">{}</text>"#,
                ix0 - 4.0,
                ty + 3.5,
                fmt_num(t, 3)
            );
        }
        for &t in &aticks {
            let tx = xa(t);
            let _ = write!(
                s,
                r#"<line x1="{tx:.1}" y1="{iy1:.1}" x2="{tx:.1}" y2="{:.1}" stroke="{MUTED}"/><text x="{tx:.1}" y="{:.1}" font-size="10" fill="{MUTED}" text-anchor="middle">{}</text>"#,
                iy1 + 3.0,
                iy1 + 14.0,
                fmt_num(t, 3)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{MUTED}" text-anchor="middle">α</text>"#,
            (ix0 + ix1) / 2.0,
            iy1 + 25.0
        );
        if a0 < 0.0 && a1 > 0.0 {
            let zx = xa(0.0);
            let _ = write!(
                s,
                r#"<line x1="{zx:.1}" y1="{iy0:.1}" x2="{zx:.1}" y2="{iy1:.1}" stroke="{NULL_BAND}" stroke-dasharray="4 3"/>"#
            );
        }
        let pts: Vec<(f64, f64, f64)> = (0..c.alpha.len())
            .filter_map(|i| {
                let (a, m) = (c.alpha[i], *c.mean.get(i)?);
                let sd = c
                    .std
                    .get(i)
                    .copied()
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0)
                    .abs();
                (a.is_finite() && m.is_finite()).then_some((a, m, sd))
            })
            .collect();
        if pts.len() >= 2 {
            let mut band = String::new();
            for (i, &(a, m, sd)) in pts.iter().enumerate() {
                let _ = write!(
                    band,
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { "L" },
                    xa(a),
                    ys(m + sd)
                );
            }
            for &(a, m, sd) in pts.iter().rev() {
                let _ = write!(band, "L{:.1} {:.1}", xa(a), ys(m - sd));
            }
            let _ = write!(s, r#"<path d="{band}Z" fill="{BAR}" fill-opacity="0.18"/>"#);
            let mut line = String::new();
            for (i, &(a, m, _)) in pts.iter().enumerate() {
                let _ = write!(
                    line,
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { "L" },
                    xa(a),
                    ys(m)
                );
            }
            let _ = write!(
                s,
                r#"<path d="{line}" fill="none" stroke="{BAR}" stroke-width="2"/>"#
            );
        }
        for &(a, m, _) in &pts {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{BAR}"/>"#,
                xa(a),
                ys(m)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>\n");
    Some(s)
}

/// Rasterises an SVG (as written by this module) to PNG bytes at `scale` × its size, on white.
///
/// Text is drawn with the embedded font (see the module docs); no system font is read.
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options {
        fontdb: fonts(),
        font_family: "Ubuntu".into(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| Error::Report(format!("chart SVG does not parse: {e}")))?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or_else(|| {
        Error::Report(format!(
            "chart size {:?} × {scale} is not a valid image size",
            tree.size()
        ))
    })?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
        Error::Report(format!(
            "cannot allocate a {}×{} chart image",
            size.width(),
            size.height()
        ))
    })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    // Opaque on white, so dropping alpha loses nothing; PNG via the `image` crate like every
    // other image zoom writes.
    let rgb = image::RgbImage::from_fn(size.width(), size.height(), |x, y| {
        let p = pixmap.pixel(x, y).map(|p| p.demultiply());
        p.map_or(image::Rgb([255, 255, 255]), |p| {
            image::Rgb([p.red(), p.green(), p.blue()])
        })
    });
    crate::io::image::png_bytes(&rgb)
}

/// The embedded fonts, loaded once: Ubuntu Light as `sans-serif` (and every generic family but
/// `monospace`), Hack as `monospace`.
fn fonts() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(epaint_default_fonts::UBUNTU_LIGHT.to_vec());
        db.load_font_data(epaint_default_fonts::HACK_REGULAR.to_vec());
        db.set_sans_serif_family("Ubuntu");
        db.set_serif_family("Ubuntu");
        db.set_cursive_family("Ubuntu");
        db.set_fantasy_family("Ubuntu");
        db.set_monospace_family("Hack");
        Arc::new(db)
    })
    .clone()
}

/// Opening `<svg>` tag with size, viewBox, default font and an accessible title.
fn svg_open(width: f64, height: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT}" role="img"><title>{}</title><rect width="100%" height="100%" fill="#ffffff"/>"##,
        escape(title)
    )
}

fn mode_name(report: &Report) -> &'static str {
    match report.mode {
        super::schema::Mode::Single => "single",
        super::schema::Mode::Multiple => "multiple",
        super::schema::Mode::Sweep => "sweep",
    }
}

/// An attribute name cut to [`MAX_LABEL_CHARS`] characters for chart labels.
fn short_label(name: &str) -> String {
    if name.chars().count() <= MAX_LABEL_CHARS {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(MAX_LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// "Nice" axis ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `target` of them, the
/// first ≤ lo and the last ≥ hi. Always at least two ticks.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (mut lo, mut hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !(lo.is_finite() && hi.is_finite()) {
        return vec![0.0, 1.0];
    }
    if hi - lo < 1e-12 * hi.abs().max(1.0) {
        // A flat range: widen it so the axis still has two distinct ticks.
        if lo == 0.0 {
            hi = 1.0;
        } else {
            let pad = lo.abs() * 0.1;
            (lo, hi) = (lo - pad, hi + pad);
        }
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&st| st >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() as i64;
    let end = (hi / step).ceil() as i64;
    // Integer multiples of the step, so tick values print cleanly (0.30000000000000004 → 0.3).
    (start..=end.max(start + 1))
        .map(|k| crate::report::json::round_significant(k as f64 * step, 12))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::report::testdata;

    #[test]
    fn ticks_cover_the_range() {
        let cases = [
            (0.0, 0.37, 6),
            (0.0, 1.0, 5),
            (-3.0, 3.0, 5),
            (0.2, 0.8, 5),
            (0.5, 0.5, 5),
            (0.0, 0.0, 6),
            (1e-5, 3e-4, 5),
        ];
        let mut failures = Vec::new();
        for (lo, hi, n) in cases {
            let t = nice_ticks(lo, hi, n);
            if t.len() < 2 || t[0] > lo || *t.last().unwrap() < hi || t.len() > 2 * n + 2 {
                failures.push(format!("({lo}, {hi}, {n}) → {t:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(nice_ticks(0.0, 0.37, 6), vec![0.0, 0.1, 0.2, 0.3, 0.4]);
    }

    #[test]
    fn sensitivity_chart_has_every_attribute_escaped_and_null_line() {
        let r = testdata::single_report();
        let svg = sensitivity_svg(&r);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        for a in &r.attributes {
            assert!(svg.contains(&escape(&short_label(&a.name))), "{}", a.name);
        }
        assert!(!svg.contains("<script>"), "prompt text must be escaped");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(
            svg.contains("stroke-dasharray=\"5 4\""),
            "null baseline line"
        );
        // Bars appear in report order (descending sensitivity): label positions increase.
        let ys: Vec<usize> = r
            .attributes
            .iter()
            .map(|a| svg.find(&format!("<title>{}:", escape(&a.name))).unwrap())
            .collect();
        assert!(ys.windows(2).all(|w| w[0] < w[1]));
        // The SVG parses as well-formed XML (resvg's parser is strict).
        svg_to_png(&svg, 1.0).unwrap();
    }

    #[test]
    fn chart_survives_empty_and_non_finite_input() {
        let mut r = testdata::single_report();
        r.attributes[0].mean_abs_change = f64::NAN;
        r.attributes[1].ci95 = [f64::INFINITY, f64::NAN];
        r.null_baseline = None;
        let svg = sensitivity_svg(&r);
        assert!(svg.contains("n/a") && !svg.contains("NaN") && !svg.contains("inf"));
        svg_to_png(&svg, 1.0).unwrap();
        r.attributes.clear();
        let svg = sensitivity_svg(&r);
        assert!(svg.contains("no attributes"));
        svg_to_png(&svg, 1.0).unwrap();
        assert!(curves_svg(&r).is_none());
    }

    #[test]
    fn curves_chart_has_a_panel_per_curve() {
        let r = testdata::sweep_report();
        let svg = curves_svg(&r).unwrap();
        let n = r.attributes.iter().filter(|a| a.curve.is_some()).count();
        assert_eq!(
            svg.matches("fill-opacity=\"0.18\"").count(),
            n,
            "one band per attribute"
        );
        assert!(!svg.contains("NaN"));
        let png = svg_to_png(&svg, 1.0).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!(img.width(), WIDTH as u32);
    }

    #[test]
    fn png_has_text_pixels_drawn_with_the_embedded_font() {
        // A lone text element: if no font were found, resvg would draw nothing and the image
        // would stay white.
        let svg = format!(
            "{}<text x=\"10\" y=\"30\" font-size=\"24\" fill=\"#000000\">Smile 0.42</text></svg>",
            svg_open(200.0, 50.0, "t")
        );
        let png = svg_to_png(&svg, 1.0).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        let dark = img.pixels().filter(|p| p[0] < 128).count();
        assert!(
            dark > 50,
            "only {dark} dark pixels: the text was not rendered"
        );
    }
}
