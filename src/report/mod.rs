//! Report writers: everything a diagnosis run leaves in its output folder.
//!
//! `report` only reads results (a [`Report`], [`SampleRecord`]s, image arrays) and writes files;
//! it never runs a model. The pieces:
//!
//! - [`schema`]: the serde types of `report.json` and `samples.jsonl` (the contract).
//! - [`json`]: `report.json` (stable bytes, atomic), `samples.jsonl` (durable appends, torn-tail
//!   tolerant reads for resuming).
//! - [`plot`]: the sensitivity bar chart and the sweep response curves, as SVG and PNG.
//! - [`grid`]: original | counterfactual image pairs with scores, and grids of pairs.
//! - [`html`]: the self-contained `report.html`.
//!
//! [`write_all`] writes the finished-run files in one call; the engine appends samples and writes
//! pair images itself while it runs.

pub mod grid;
pub mod html;
pub mod json;
pub mod plot;
pub mod schema;

pub use grid::{pair_image, pairs_grid, write_grid, write_pair, PairStyle};
pub use html::{render_html, write_html, HTML_FILE};
pub use json::{
    append_sample, read_report, read_samples, write_report, SampleWriter, REPORT_FILE, SAMPLES_FILE,
};
pub use plot::{curves_svg, sensitivity_svg, svg_to_png};
pub use schema::{
    AttributeResult, Curve, Example, FlaggedSample, Mode, NullBaseline, Report, SampleRecord,
    Settings, TargetSummary,
};

use crate::error::Result;
use std::path::{Path, PathBuf};

/// File names of the charts inside the output folder.
pub const SENSITIVITY_SVG: &str = "sensitivity.svg";
/// PNG of the sensitivity chart.
pub const SENSITIVITY_PNG: &str = "sensitivity.png";
/// SVG of the sweep response curves (sweep mode only).
pub const CURVES_SVG: &str = "curves.svg";
/// PNG of the sweep response curves (sweep mode only).
pub const CURVES_PNG: &str = "curves.png";

/// Paths written by [`write_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFiles {
    /// `report.json`.
    pub json: PathBuf,
    /// `sensitivity.svg` and `sensitivity.png`.
    pub sensitivity: [PathBuf; 2],
    /// `curves.svg` and `curves.png`, when any attribute has a response curve.
    pub curves: Option<[PathBuf; 2]>,
    /// `report.html`.
    pub html: PathBuf,
}

/// Writes the end-of-run files into `dir`: `report.json`, `sensitivity.svg/png`,
/// `curves.svg/png` (when any attribute carries a sweep curve) and `report.html`.
///
/// Every file is written atomically; the HTML embeds the chart SVGs inline and refers to the
/// example pair PNGs by their relative paths (`Example::image`), which the engine has already
/// written. `report.html` is written last, so its presence means the rest is there.
pub fn write_all(dir: &Path, report: &Report) -> Result<WrittenFiles> {
    let json = write_report(dir, report)?;

    let sens_svg = sensitivity_svg(report);
    let sensitivity = [dir.join(SENSITIVITY_SVG), dir.join(SENSITIVITY_PNG)];
    crate::io::atomic::write(&sensitivity[0], sens_svg.as_bytes())?;
    crate::io::atomic::write(&sensitivity[1], &svg_to_png(&sens_svg, plot::PNG_SCALE)?)?;

    let curves = match curves_svg(report) {
        Some(svg) => {
            let paths = [dir.join(CURVES_SVG), dir.join(CURVES_PNG)];
            crate::io::atomic::write(&paths[0], svg.as_bytes())?;
            crate::io::atomic::write(&paths[1], &svg_to_png(&svg, plot::PNG_SCALE)?)?;
            Some(paths)
        }
        None => None,
    };

    let html = write_html(dir, report)?;
    Ok(WrittenFiles {
        json,
        sensitivity,
        curves,
        html,
    })
}

/// Escapes text for HTML and SVG/XML (element content and quoted attribute values).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab/newline are invalid in XML 1.0; drop them.
            c if c.is_control() && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Formats a number for people: `digits` significant digits, plain decimal notation between
/// 1e-4 and 1e6, scientific outside; `n/a` for NaN and ±∞. Deterministic (reruns give the same
/// text, hence the same SVG/HTML bytes).
pub fn fmt_num(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let digits = digits.max(1);
    let x = json::round_significant(x, digits);
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{:.*e}", digits - 1, x);
    }
    let decimals = (digits as i32 - 1 - mag).max(0) as usize;
    let s = format!("{x:.decimals$}");
    // Trim trailing zeros of a fraction ("0.2500" → "0.25") but keep integers as they are.
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Formats a share in [0, 1] as a percentage with at most one decimal ("12.5 %").
pub fn fmt_pct(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.1}", x * 100.0);
    let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
    format!("{s}\u{a0}%")
}

/// A hand-made report exercising every section (used by the tests of each writer and by the
/// rendering check `cargo test --lib report::tests::render_sample_report -- --ignored`).
#[cfg(test)]
pub(crate) mod testdata;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert(1)</script> & \"q\" 'a'\u{1}"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;a&#39;"
        );
    }

    #[test]
    fn number_formatting_cases() {
        let cases: &[(f64, usize, &str)] = &[
            (0.123_456, 3, "0.123"),
            (0.25, 3, "0.25"),
            (1.0, 3, "1"),
            (12.345, 3, "12.3"),
            (1234.5, 3, "1230"),
            (-0.000_5, 2, "-0.0005"),
            (1.5e-7, 2, "1.5e-7"),
            (2.5e8, 3, "2.50e8"),
            (0.0, 3, "0"),
            (-0.0, 3, "0"),
            (f64::NAN, 3, "n/a"),
            (f64::INFINITY, 3, "n/a"),
            (0.999_9, 3, "1"),
        ];
        let mut failures = Vec::new();
        for &(x, d, want) in cases {
            let got = fmt_num(x, d);
            if got != want {
                failures.push(format!("fmt_num({x}, {d}) = {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(fmt_pct(0.125), "12.5\u{a0}%");
        assert_eq!(fmt_pct(0.5), "50\u{a0}%");
    }

    #[test]
    fn write_all_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let report = testdata::sweep_report();
        let files = write_all(dir.path(), &report).unwrap();
        for p in [
            &files.json,
            &files.sensitivity[0],
            &files.sensitivity[1],
            &files.html,
        ] {
            assert!(p.metadata().unwrap().len() > 100, "{}", p.display());
        }
        let curves = files.curves.expect("sweep mode writes curves");
        assert!(curves[1].metadata().unwrap().len() > 100);
        assert!(std::fs::read(&curves[1]).unwrap().starts_with(b"\x89PNG"));

        let single = testdata::single_report();
        let dir2 = tempfile::tempdir().unwrap();
        assert!(write_all(dir2.path(), &single).unwrap().curves.is_none());
    }

    #[test]
    fn write_all_is_byte_identical_on_rerun() {
        let report = testdata::single_report();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_all(a.path(), &report).unwrap();
        write_all(b.path(), &report).unwrap();
        for name in [REPORT_FILE, SENSITIVITY_SVG, SENSITIVITY_PNG, HTML_FILE] {
            let (x, y) = (
                std::fs::read(a.path().join(name)).unwrap(),
                std::fs::read(b.path().join(name)).unwrap(),
            );
            assert!(
                x == y,
                "{name} differs between two writes of the same report"
            );
        }
    }

    /// Writes a full sample report (with example pair images) to `/tmp/zoom-report-sample/` for
    /// looking at by eye. Ignored: it is a rendering check, not a unit test.
    #[test]
    #[ignore]
    fn render_sample_report() {
        for (name, report) in [
            ("single", testdata::single_report()),
            ("sweep", testdata::sweep_report()),
        ] {
            let dir = std::path::PathBuf::from(format!("/tmp/zoom-report-sample/{name}"));
            testdata::write_example_images(&dir, &report);
            let files = write_all(&dir, &report).unwrap();
            eprintln!("{files:#?}");
        }
    }
}
