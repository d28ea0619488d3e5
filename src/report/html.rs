//! `report.html`: one self-contained page a person can read without zoom.
//!
//! Self-contained means no scripts, no web fonts and no network: the CSS is inline and the charts
//! are embedded as inline SVG (the same SVG as `sensitivity.svg` / `curves.svg`). The
//! counterfactual pair PNGs are *referenced* by their relative paths (`Example::image`, e.g.
//! `images/smile/0003.png`) rather than embedded, so the page stays small with many examples;
//! the page therefore works as long as it stays inside its output folder (copy the folder, not
//! only the file).
//!
//! Every piece of user text (names, prompts, model paths, warnings, flag reasons, the config) is
//! HTML-escaped, and image paths are percent-encoded so a path cannot become a `javascript:` URL
//! or break out of its attribute.

use super::plot::{curves_svg, sensitivity_svg};
use super::schema::{AttributeResult, Example, Mode, Report};
use super::{escape, fmt_num, fmt_pct};
use crate::error::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File name of the page inside the output folder.
pub const HTML_FILE: &str = "report.html";

/// Writes `DIR/report.html` atomically and returns its path.
pub fn write_html(dir: &Path, report: &Report) -> Result<PathBuf> {
    let path = dir.join(HTML_FILE);
    crate::io::atomic::write(&path, render_html(report).as_bytes())?;
    Ok(path)
}

/// Renders the whole page. Deterministic: the same report gives the same bytes.
pub fn render_html(report: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let score = escape(&report.target.score);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zoom diagnosis: {} ({score})</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<h1>What moves <span class="score">{score}</span>?</h1>
<p class="meta">target <code>{}</code> · task {} · {} mode · {} samples · seed {} · zoom {}</p>
</header>
"#,
        escape(&report.target.model),
        escape(&report.target.model),
        escape(&report.target.task),
        mode_name(report.mode),
        report.samples,
        report.seed,
        escape(&report.zoom_version),
    );

    let _ = writeln!(
        h,
        "<section id=\"summary\" class=\"summary\"><p>{}</p></section>",
        summary(report)
    );
    if !report.settings.warnings.is_empty() {
        h.push_str("<section id=\"warnings\" class=\"warnings\"><h2>Warnings</h2><ul>");
        for w in &report.settings.warnings {
            let _ = write!(h, "<li>{}</li>", escape(w));
        }
        h.push_str("</ul></section>\n");
    }

    let _ = write!(
        h,
        "<section id=\"sensitivity\"><h2>Sensitivity</h2><figure class=\"chart\">{}</figure>\n<p class=\"note\">{CHART_NOTE}{}</p></section>\n",
        sensitivity_svg(report),
        if report.null_baseline.is_some() { CHART_NOTE_NULL } else { "" }
    );
    attribute_table(&mut h, report);
    if let Some(svg) = curves_svg(report) {
        let _ = write!(
            h,
            "<section id=\"curves\"><h2>Response curves</h2><figure class=\"chart\">{svg}</figure>\n<p class=\"note\">{CURVES_NOTE}</p></section>\n"
        );
    }
    examples(&mut h, report);
    flagged(&mut h, report);
    settings(&mut h, report);
    let _ = write!(
        h,
        "<footer>Written by zoom {}. Zero-shot model diagnosis after Luo et al., CVPR 2023.</footer>\n</main>\n</body>\n</html>\n",
        escape(&report.zoom_version)
    );
    h
}

/// The opening paragraph: the most sensitive attribute, its size and CI, the flip rate and how
/// it compares with the null baseline. Already escaped HTML.
fn summary(report: &Report) -> String {
    let score = escape(&report.target.score);
    let Some(top) = report
        .attributes
        .iter()
        .filter(|a| a.sensitivity.is_finite())
        .max_by(|a, b| a.sensitivity.total_cmp(&b.sensitivity))
    else {
        return "No attribute produced a usable result; see the flagged samples and warnings below.".into();
    };
    let mut s = format!(
        "Across {} sampled images, <b>{}</b>{} moves {score} most: {} of the total sensitivity, \
         a mean |Δ {score}| of {} (95&nbsp;% CI {}–{}).",
        report.samples,
        escape(&top.name),
        prompt_suffix(top),
        fmt_pct(top.sensitivity),
        fmt_num(top.mean_abs_change, 3),
        fmt_num(top.ci95[0], 3),
        fmt_num(top.ci95[1], 3),
    );
    match (report.mode, report.flip_rate, top.flip_rate) {
        (Mode::Multiple, Some(fr), _) => {
            let _ = write!(
                s,
                " Editing all attributes jointly {} for {} of samples.",
                report.target.changed_phrase(),
                fmt_pct(fr)
            );
        }
        (_, _, Some(fr)) => {
            let _ = write!(
                s,
                " Editing it alone {} for {} of samples.",
                report.target.changed_phrase(),
                fmt_pct(fr)
            );
        }
        _ => {}
    }
    match (&report.null_baseline, top.above_null) {
        (Some(n), Some(true)) => {
            let _ = write!(
                s,
                " That is more than the null baseline (random edits of the same size: {}, 95&nbsp;% CI {}–{}), \
                 so the effect belongs to the attribute, not to editing as such.",
                fmt_num(n.mean_abs_change, 3),
                fmt_num(n.ci95[0], 3),
                fmt_num(n.ci95[1], 3)
            );
        }
        (Some(n), _) => {
            let _ = write!(
                s,
                " It does <b>not</b> clear the null baseline (random edits of the same size: {}, 95&nbsp;% CI {}–{}): \
                 an arbitrary edit moves the score about as much.",
                fmt_num(n.mean_abs_change, 3),
                fmt_num(n.ci95[0], 3),
                fmt_num(n.ci95[1], 3)
            );
        }
        (None, _) => s.push_str(
            " No null baseline was run, so these numbers are not compared with arbitrary edits.",
        ),
    }
    if report.null_baseline.is_some() {
        let above = report
            .attributes
            .iter()
            .filter(|a| a.above_null == Some(true))
            .count();
        let _ = write!(
            s,
            " {above} of {} attributes are above the baseline.",
            report.attributes.len()
        );
    }
    if !report.flagged_samples.is_empty() {
        let _ = write!(
            s,
            " {} left out of the statistics.",
            flagged_phrase(report.flagged_samples.len())
        );
    }
    s
}

fn prompt_suffix(a: &AttributeResult) -> String {
    if a.prompt.is_empty() || a.prompt == a.name {
        String::new()
    } else {
        format!(" (“{}”)", escape(&a.prompt))
    }
}

fn attribute_table(h: &mut String, report: &Report) {
    let any_alpha = report.attributes.iter().any(|a| a.mean_alpha.is_some());
    let any_flip = report.attributes.iter().any(|a| a.flip_rate.is_some());
    h.push_str("<section id=\"attributes\"><h2>Attributes</h2><div class=\"scroll\"><table>\n<thead><tr><th>#</th><th>attribute</th><th>prompt</th><th class=\"num\">sensitivity</th><th class=\"num\">mean |Δ|</th><th class=\"num\">95&nbsp;% CI</th>");
    if any_flip {
        let _ = write!(
            h,
            "<th class=\"num\">{} rate</th>",
            escape(&report.target.change)
        );
    }
    if any_alpha {
        h.push_str("<th class=\"num\">mean α</th>");
    }
    h.push_str("<th class=\"num\">channels</th><th>above null</th></tr></thead>\n<tbody>\n");
    let max_sens = report
        .attributes
        .iter()
        .map(|a| a.sensitivity)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    for (i, a) in report.attributes.iter().enumerate() {
        let width = if max_sens > 0.0 && a.sensitivity.is_finite() {
            (a.sensitivity / max_sens * 100.0).clamp(0.0, 100.0)
        } else {
            0.0
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td><b>{}</b></td><td class=\"prompt\">{}</td><td class=\"num\"><span class=\"minibar\" style=\"width:{width:.0}px\"></span>{}</td><td class=\"num\">{}</td><td class=\"num\">{}–{}</td>",
            i + 1,
            escape(&a.name),
            escape(&a.prompt),
            fmt_pct(a.sensitivity),
            fmt_num(a.mean_abs_change, 3),
            fmt_num(a.ci95[0], 3),
            fmt_num(a.ci95[1], 3),
        );
        if any_flip {
            let _ = write!(
                h,
                "<td class=\"num\">{}</td>",
                a.flip_rate.map_or("—".into(), fmt_pct)
            );
        }
        if any_alpha {
            let _ = write!(
                h,
                "<td class=\"num\">{}</td>",
                a.mean_alpha.map_or("—".into(), |v| fmt_num(v, 3))
            );
        }
        let above = match a.above_null {
            Some(true) => "<span class=\"yes\">yes</span>",
            Some(false) => "<span class=\"no\">no</span>",
            None => "—",
        };
        let _ = writeln!(
            h,
            "<td class=\"num\">{}</td><td>{above}</td></tr>",
            a.channels
        );
    }
    h.push_str("</tbody></table></div>\n");
    if report.mode == Mode::Multiple {
        if let Some(fr) = report.flip_rate {
            let _ = writeln!(h, "<p class=\"note\">Joint attack over all attributes: decision flipped for <b>{}</b> of samples.</p>", fmt_pct(fr));
        }
    }
    h.push_str("</section>\n");
}

fn examples(h: &mut String, report: &Report) {
    if report.attributes.iter().all(|a| a.examples.is_empty()) {
        return;
    }
    let _ = writeln!(
        h,
        "<section id=\"examples\"><h2>Counterfactual examples</h2><p class=\"note\">Each image: original (left) | counterfactual (right), with {} under each; a red bar marks a flipped decision. Largest change first.</p>",
        escape(&report.target.score)
    );
    for a in &report.attributes {
        if a.examples.is_empty() {
            continue;
        }
        let _ = write!(h, "<h3>{}</h3>", escape(&a.name));
        if !a.prompt.is_empty() {
            let _ = write!(h, "<p class=\"prompt\">“{}”</p>", escape(&a.prompt));
        }
        h.push_str("<div class=\"pairs\">\n");
        for e in &a.examples {
            example(h, a, e);
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

fn example(h: &mut String, a: &AttributeResult, e: &Example) {
    let alpha = e
        .alpha
        .iter()
        .map(|v| signed(*v))
        .collect::<Vec<_>>()
        .join(", ");
    let flip = if e.flipped {
        " · <span class=\"no\">flipped</span>"
    } else {
        ""
    };
    let _ = writeln!(
        h,
        "<figure><img src=\"{}\" alt=\"sample {}: original and counterfactual for {}\" loading=\"lazy\"><figcaption>sample {} · α {} · {} → {}{flip}</figcaption></figure>",
        escape(&url_path(&e.image)),
        e.sample,
        escape(&a.name),
        e.sample,
        escape(&alpha),
        fmt_num(e.score_before, 3),
        fmt_num(e.score_after, 3),
    );
}

fn flagged(h: &mut String, report: &Report) {
    h.push_str("<section id=\"flagged\"><h2>Flagged samples</h2>");
    if report.flagged_samples.is_empty() {
        h.push_str("<p class=\"note\">None: every sample attack produced finite outputs and entered the statistics.</p></section>\n");
        return;
    }
    let _ = writeln!(
        h,
        "<p class=\"note\">{} left out of the statistics.</p><div class=\"scroll\"><table><thead><tr><th class=\"num\">sample</th><th>attack</th><th>reason</th></tr></thead><tbody>",
        flagged_phrase(report.flagged_samples.len())
    );
    for f in &report.flagged_samples {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            f.sample,
            escape(&f.attack),
            escape(&f.reason)
        );
    }
    h.push_str("</tbody></table></div></section>\n");
}

fn settings(h: &mut String, report: &Report) {
    let s = &report.settings;
    let _ = write!(
        h,
        "<section id=\"settings\"><h2>Settings and versions</h2><dl>\
         <dt>zoom</dt><dd>{}</dd><dt>ONNX Runtime</dt><dd>{}</dd><dt>gradient</dt><dd>{}</dd>\
         <dt>mode</dt><dd>{}</dd><dt>samples</dt><dd>{}</dd><dt>seed</dt><dd>{}</dd>\
         <dt>target</dt><dd><code>{}</code> ({}, score {})</dd>",
        escape(&report.zoom_version),
        escape(&s.onnxruntime),
        escape(&s.gradient),
        mode_name(report.mode),
        report.samples,
        report.seed,
        escape(&report.target.model),
        escape(&report.target.task),
        escape(&report.target.score),
    );
    if !report.target.labels.is_empty() {
        let labels: Vec<String> = report.target.labels.iter().map(|l| escape(l)).collect();
        let _ = write!(h, "<dt>labels</dt><dd>{}</dd>", labels.join(", "));
    }
    if let Some(n) = &report.null_baseline {
        let _ = write!(
            h,
            "<dt>null baseline</dt><dd>{} random directions · mean |Δ| {} (95&nbsp;% CI {}–{})</dd>",
            n.directions,
            fmt_num(n.mean_abs_change, 3),
            fmt_num(n.ci95[0], 3),
            fmt_num(n.ci95[1], 3)
        );
    }
    if !s.providers.is_empty() {
        let list: Vec<String> = s
            .providers
            .iter()
            .map(|(role, p)| format!("{}: {}", escape(role), escape(p)))
            .collect();
        let _ = write!(h, "<dt>providers</dt><dd>{}</dd>", list.join(" · "));
    }
    h.push_str("</dl>");
    let config = serde_json::to_string_pretty(&s.config)
        .unwrap_or_else(|e| format!("(config not printable: {e})"));
    let _ = writeln!(
        h,
        "<details><summary>Resolved configuration</summary><pre>{}</pre></details></section>",
        escape(&config)
    );
}

/// "1 flagged sample attack was" / "3 flagged sample attacks were".
fn flagged_phrase(n: usize) -> String {
    if n == 1 {
        "1 flagged sample attack was".into()
    } else {
        format!("{n} flagged sample attacks were")
    }
}

/// Percent-encodes a relative path for use as a URL: `/` separates segments, unreserved
/// characters stay, everything else (including `:`, so no scheme can appear) is `%XX`.
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.replace('\\', "/").bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn signed(v: f64) -> String {
    let s = fmt_num(v, 3);
    if v > 0.0 && v.is_finite() {
        format!("+{s}")
    } else {
        s
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Single => "single",
        Mode::Multiple => "multiple",
        Mode::Sweep => "sweep",
    }
}

const CHART_NOTE: &str = "Bar: mean absolute change of the task score when the attribute is edited \
    (counterfactual search, or the sweep), averaged over samples; whisker: 95&nbsp;% bootstrap interval \
    over samples; label: the attribute's share of the summed changes (the normalised sensitivity).";

const CHART_NOTE_NULL: &str = " The dashed line and shaded band are the null baseline: the same edit along \
    random directions of equal norm. A bar whose interval lies right of the dashed line matters more than \
    an arbitrary edit.";

const CURVES_NOTE: &str = "Each panel moves along one attribute direction with no optimisation: the task \
    score of every sample is evaluated on a grid of α. Line: mean over samples; band: ± one standard \
    deviation. A flat curve means the model ignores the attribute; a steep one means it relies on it.";

const CSS: &str = "
:root{--ink:#212529;--muted:#495057;--line:#dee2e6;--soft:#f8f9fa;--blue:#1c7ed6;--red:#e03131;--green:#2b8a3e}
*{box-sizing:border-box}
body{margin:0;background:#f1f3f5;color:var(--ink);font:15px/1.5 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 28px 40px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:8px 0 4px}h1 .score{color:var(--blue)}
h2{font-size:19px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:18px 0 2px}
.meta{color:var(--muted);margin:0}.meta code{font-size:13px}
.summary p{font-size:16px;background:var(--soft);border-left:4px solid var(--blue);padding:12px 16px;margin:18px 0 0}
.warnings{background:#fff9db;border:1px solid #ffe066;padding:4px 16px;margin-top:16px}
.warnings h2{border:0;margin:8px 0 0;font-size:16px}
.note{color:var(--muted);font-size:13px}
figure{margin:0}.chart svg{width:100%;max-width:920px;height:auto;display:block}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.prompt,p.prompt{color:var(--muted);font-style:italic}p.prompt{margin:0 0 8px}
.minibar{display:inline-block;height:9px;background:var(--blue);opacity:.55;margin-right:6px;vertical-align:middle;border-radius:2px}
.yes{color:var(--green);font-weight:600}.no{color:var(--red);font-weight:600}
.pairs{display:flex;flex-wrap:wrap;gap:14px}
.pairs figure{background:var(--soft);padding:6px;border:1px solid var(--line);border-radius:4px}
.pairs img{display:block;max-width:100%;image-rendering:pixelated}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:14px}dt{color:var(--muted)}dd{margin:0}
details{margin-top:12px}summary{cursor:pointer;color:var(--muted)}
pre{background:var(--soft);border:1px solid var(--line);padding:10px;overflow-x:auto;font-size:12px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::report::testdata;

    const EVIL: &str = "<script>alert(1)</script> & \"quotes\"";

    #[test]
    fn all_user_text_is_escaped() {
        let mut r = testdata::single_report();
        r.attributes[0].prompt = EVIL.into();
        r.attributes[1].name = EVIL.into();
        r.target.model = format!("models/{EVIL}.onnx");
        r.target.score = EVIL.into();
        r.target.labels = vec![EVIL.into()];
        r.settings.warnings.push(EVIL.into());
        r.settings.providers.push((EVIL.into(), EVIL.into()));
        r.settings.config = serde_json::json!({ "prompt": EVIL });
        r.flagged_samples[0].reason = EVIL.into();
        r.attributes[0].examples[0].image = "x\" onerror=\"alert(1)".into();
        r.attributes[0].examples[1].image = "javascript:alert(1)".into();
        let html = render_html(&r);
        assert!(!html.contains("<script"), "raw script tag in the page");
        assert!(!html.contains("alert(1)</"), "unescaped closing tag");
        assert!(
            !html.contains("onerror=\""),
            "attribute injection through an image path"
        );
        assert!(
            !html.contains("src=\"javascript:"),
            "scheme through an image path"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert!(html.contains("src=\"javascript%3Aalert%281%29\""));
        // Every tag we open is one of ours: no element named by user text.
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn page_has_every_section_and_is_self_contained() {
        let r = testdata::single_report();
        let html = render_html(&r);
        for needle in [
            "<!DOCTYPE html>",
            "<h2>Sensitivity</h2>",
            "<svg",
            "<h2>Attributes</h2>",
            "<h2>Counterfactual examples</h2>",
            "<h2>Flagged samples</h2>",
            "<h2>Settings and versions</h2>",
            "null baseline",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert!(
            !html.contains("<h2>Response curves</h2>"),
            "no curves outside sweep mode"
        );
        // No external resources other than the relative pair images.
        assert!(
            !html.contains("http://")
                || html.matches("http://").count()
                    == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(!html.contains("https://"));
        // Table rows in report order.
        let pos: Vec<usize> = r
            .attributes
            .iter()
            .map(|a| {
                html.find(&format!("<td><b>{}</b>", escape(&a.name)))
                    .unwrap()
            })
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        // Summary names the top attribute and the baseline verdict.
        let top = &r.attributes[0].name;
        assert!(html.contains(&format!("<b>{}</b>", escape(top))));
        assert!(html.contains("more than the null baseline"));
    }

    #[test]
    fn sweep_page_shows_curves() {
        let html = render_html(&testdata::sweep_report());
        assert!(html.contains("<h2>Response curves</h2>"));
        assert!(html.contains("No null baseline was run"));
    }

    #[test]
    fn summary_without_attributes_or_baseline_clearance() {
        let mut r = testdata::single_report();
        r.attributes[0].above_null = Some(false);
        assert!(summary(&r).contains("does <b>not</b> clear"));
        r.attributes.clear();
        assert!(summary(&r).starts_with("No attribute produced"));
        render_html(&r); // renders without panicking
    }

    #[test]
    fn url_path_cases() {
        let cases = [
            ("images/smile/0001.png", "images/smile/0001.png"),
            ("images\\a b.png", "images/a%20b.png"),
            ("a#b?c.png", "a%23b%3Fc.png"),
            ("über.png", "%C3%BCber.png"),
        ];
        for (input, want) in cases {
            assert_eq!(url_path(input), want, "{input}");
        }
    }
}
