//! `report.json` and `samples.jsonl`: the machine-readable outputs.
//!
//! # `report.json`
//!
//! One [`Report`], pretty-printed with two-space indentation, fields in the order of the schema
//! structs (not sorted), written atomically (temp file, fsync, rename) by [`write_report`]. Every
//! float goes through one formatter that rounds it to [`SIGNIFICANT_DIGITS`] significant digits, so
//! float noise below that level does not change the bytes and a rerun with the same config and seed
//! writes an identical file. `-0` is written as `0`; NaN and ±∞ are written as `null` (serde_json's
//! rule), which is why the engine flags such samples instead of letting them reach the statistics.
//!
//! # `samples.jsonl`
//!
//! One [`SampleRecord`] per line, compact, appended by [`append_sample`] or a [`SampleWriter`].
//! Floats here are written at full precision (shortest round-trip form), **not** rounded: a resumed
//! run rebuilds its statistics from these records, and they must be the very numbers an
//! uninterrupted run held in memory, or the two reports could differ in the last digit.
//!
//! Durability: each line (record plus `\n`) is written with a single `write` call on a file opened
//! in append mode, then `fsync`ed. A process killed mid-write (even SIGKILL) can only leave a torn
//! *last* line without its newline; [`read_samples`] drops it, and opening a writer cuts it off
//! before appending, so the next record never glues onto a fragment.

use super::schema::{Report, SampleRecord};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the report inside the output folder.
pub const REPORT_FILE: &str = "report.json";
/// File name of the per-sample log inside the output folder.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// Significant digits kept for every float in `report.json`.
pub const SIGNIFICANT_DIGITS: usize = 6;

/// Rounds `x` to `digits` significant digits (decimal), mapping `-0` to `0`.
///
/// Goes through the decimal scientific form, so the result is the f64 nearest to the rounded
/// decimal and prints back as that short decimal.
pub fn round_significant(x: f64, digits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let digits = digits.max(1);
    let r: f64 = format!("{:.*e}", digits - 1, x).parse().unwrap_or(x);
    if r == 0.0 {
        0.0 // also turns -0 into 0
    } else {
        r
    }
}

/// serde_json formatter: pretty printing with every float rounded to [`SIGNIFICANT_DIGITS`].
///
/// Wraps [`PrettyFormatter`] for the layout and [`CompactFormatter`] for number text, so the only
/// change from serde_json's own output is the rounding.
struct RoundingFormatter<'a> {
    pretty: PrettyFormatter<'a>,
}

impl Formatter for RoundingFormatter<'_> {
    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        CompactFormatter.write_f64(writer, round_significant(value, SIGNIFICANT_DIGITS))
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

/// Serializes any value the way `report.json` is written: pretty, struct field order, floats
/// rounded to [`SIGNIFICANT_DIGITS`], trailing newline.
pub fn to_stable_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let formatter = RoundingFormatter {
        pretty: PrettyFormatter::with_indent(b"  "),
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value
        .serialize(&mut ser)
        .map_err(|e| Error::Report(format!("cannot serialize report.json: {e}")))?;
    buf.push(b'\n');
    Ok(buf)
}

/// Writes `DIR/report.json` atomically and returns its path.
pub fn write_report(dir: &Path, report: &Report) -> Result<PathBuf> {
    let path = dir.join(REPORT_FILE);
    crate::io::atomic::write(&path, &to_stable_json(report)?)?;
    Ok(path)
}

/// Reads `DIR/report.json` back (e.g. to re-render the HTML of a finished run).
pub fn read_report(dir: &Path) -> Result<Report> {
    let path = dir.join(REPORT_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::data(&path, format!("not a zoom report: {e}")))
}

/// Appends records to `DIR/samples.jsonl`, one durable line each.
///
/// Keeps the file open between records; use it in the sample loop. Opening it creates the folder
/// and the file if needed and cuts off a torn last line left by a killed run.
#[derive(Debug)]
pub struct SampleWriter {
    file: File,
    path: PathBuf,
}

impl SampleWriter {
    /// Opens (or creates) `DIR/samples.jsonl` for appending.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(SAMPLES_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        cut_torn_tail(&mut file).map_err(|e| Error::io(&path, e))?;
        if !existed {
            // Make the new directory entry itself durable, not only the file's contents.
            sync_dir(dir);
        }
        Ok(SampleWriter { file, path })
    }

    /// Appends one record as one line with a single write call, then fsyncs the file.
    pub fn append(&mut self, record: &SampleRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| {
            Error::Report(format!("cannot serialize sample {}: {e}", record.sample))
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// The file being appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Appends one record to `DIR/samples.jsonl` durably (opens, appends one line, fsyncs, closes).
///
/// Convenience for occasional records; a loop over many samples should keep a [`SampleWriter`].
pub fn append_sample(dir: &Path, record: &SampleRecord) -> Result<()> {
    SampleWriter::open(dir)?.append(record)
}

/// Reads every complete record of `DIR/samples.jsonl`; a missing file is an empty list.
///
/// A last line without its newline is a record torn by a killed run: it is dropped (with a log
/// line), never half-read. Blank lines are skipped. Any other line that does not parse is an
/// error naming the file and line, because it means the file was damaged in a way resuming cannot
/// repair by itself.
pub fn read_samples(dir: &Path) -> Result<Vec<SampleRecord>> {
    let path = dir.join(SAMPLES_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if complete < bytes.len() {
        tracing::warn!(
            "{}: dropping a torn last line ({} bytes) left by an interrupted run",
            path.display(),
            bytes.len() - complete
        );
    }
    let mut out = Vec::new();
    for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = serde_json::from_slice(line)
            .map_err(|e| Error::data(&path, format!("line {}: not a sample record: {e}", i + 1)))?;
        out.push(record);
    }
    Ok(out)
}

/// Truncates everything after the last newline (a torn record); leaves the cursor at the end.
fn cut_torn_tail(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Scan backwards in chunks for the last newline; records are short, so this reads little.
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(buf.len());
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    if keep < len {
        tracing::warn!(
            "samples.jsonl: cutting a torn last line ({} bytes) before appending",
            len - keep
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    file.seek(SeekFrom::End(0))?;
    Ok(())
}

/// Best-effort fsync of a directory (makes a newly created entry durable on Linux).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::report::schema::*;

    fn record(sample: usize, score: f64) -> SampleRecord {
        SampleRecord {
            sample,
            attack: "single:smile".into(),
            attributes: vec!["smile".into()],
            alpha: vec![1.234_567_891_234],
            score_before: 0.1 + 0.2,
            score_after: vec![score],
            flipped: score > 0.5,
            flagged: None,
            images: vec![format!("images/smile/{sample:04}.png")],
            contributions: None,
        }
    }

    pub(crate) fn tiny_report() -> Report {
        Report {
            zoom_version: "0.1.0".into(),
            mode: Mode::Single,
            samples: 3,
            seed: 7,
            target: TargetSummary {
                model: "target.onnx".into(),
                task: "binary".into(),
                score: "p(male)".into(),
                labels: vec!["female".into(), "male".into()],
                change: "flip".into(),
            },
            attributes: vec![AttributeResult {
                name: "smile".into(),
                prompt: "a smiling face".into(),
                sensitivity: 1.0,
                mean_abs_change: 0.123_456_789_012,
                ci95: [0.1 + 0.2, 2.0 / 3.0],
                flip_rate: Some(0.5),
                mean_alpha: Some(-0.0),
                channels: 12,
                above_null: None,
                curve: None,
                examples: vec![],
            }],
            flip_rate: None,
            null_baseline: None,
            flagged_samples: vec![],
            settings: Settings {
                config: serde_json::json!({"b": 1.000_000_000_1, "a": [0.333_333_333]}),
                gradient: "exact".into(),
                providers: vec![("target".into(), "CPU".into())],
                onnxruntime: "1.24.1".into(),
                warnings: vec![],
            },
        }
    }

    #[test]
    fn rounding_cases() {
        let cases = [
            (0.1 + 0.2, 0.3),
            (2.0 / 3.0, 0.666_667),
            (123_456_789.0, 123_457_000.0),
            (-0.0, 0.0),
            (1.234_567_4e-9, 1.234_57e-9),
            (0.0, 0.0),
            (-2.5, -2.5),
        ];
        let mut failures = Vec::new();
        for (x, want) in cases {
            let got = round_significant(x, 6);
            if got != want || got.to_bits() != want.to_bits() {
                failures.push(format!("{x:e}: got {got:e}, want {want:e}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn report_json_is_stable_and_rounded() {
        let r = tiny_report();
        let a = String::from_utf8(to_stable_json(&r).unwrap()).unwrap();
        // Float noise below the 6th digit does not change the bytes.
        let mut noisy = r.clone();
        noisy.attributes[0].mean_abs_change += 1e-13;
        noisy.attributes[0].ci95[0] -= 1e-14;
        assert_eq!(
            a,
            String::from_utf8(to_stable_json(&noisy).unwrap()).unwrap()
        );
        assert!(a.contains("\"mean_abs_change\": 0.123457"), "{a}");
        assert!(
            a.contains("\"ci95\": [\n        0.3,\n        0.666667\n      ]"),
            "{a}"
        );
        assert!(a.contains("\"mean_alpha\": 0.0"), "{a}");
        assert!(a.contains("\"b\": 1.0"), "{a}");
        // Struct field order, not alphabetical.
        let zv = a.find("zoom_version").unwrap();
        let mode = a.find("\"mode\"").unwrap();
        assert!(zv < mode);
        assert!(a.ends_with("}\n"));
    }

    #[test]
    fn report_round_trips_through_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = tiny_report();
        let path = write_report(dir.path(), &r).unwrap();
        let first = std::fs::read(&path).unwrap();
        write_report(dir.path(), &r).unwrap();
        assert_eq!(
            first,
            std::fs::read(&path).unwrap(),
            "rewrite must be byte-identical"
        );
        let back = read_report(dir.path()).unwrap();
        assert_eq!(back.attributes[0].mean_abs_change, 0.123457);
        assert_eq!(back.mode, Mode::Single);
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(REPORT_FILE)]);
    }

    #[test]
    fn samples_append_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_samples(dir.path()).unwrap().is_empty(),
            "missing file = no samples"
        );
        let recs: Vec<_> = (0..5).map(|i| record(i, i as f64 / 7.0)).collect();
        append_sample(dir.path(), &recs[0]).unwrap();
        let mut w = SampleWriter::open(dir.path()).unwrap();
        for r in &recs[1..] {
            w.append(r).unwrap();
        }
        let back = read_samples(dir.path()).unwrap();
        // Full precision: the records come back bit for bit.
        assert_eq!(back, recs);
        let text = std::fs::read_to_string(w.path()).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text
            .lines()
            .all(|l| !l.contains('\n') && l.starts_with('{')));
    }

    #[test]
    fn torn_last_line_is_dropped_then_cut_before_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SAMPLES_FILE);
        for i in 0..3 {
            append_sample(dir.path(), &record(i, 0.25)).unwrap();
        }
        // Simulate SIGKILL in the middle of the 4th write: a prefix of the line, no newline.
        let full = serde_json::to_string(&record(3, 0.75)).unwrap();
        let cases = [&full[..1], &full[..full.len() / 2], &full[..]];
        for torn in cases {
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(torn.as_bytes()).unwrap();
            drop(f);
            let back = read_samples(dir.path()).unwrap();
            assert_eq!(back.len(), 3, "torn {torn:?} must be dropped");
            // Resuming: opening the writer cuts the fragment, so the next line is clean.
            SampleWriter::open(dir.path()).unwrap();
            assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        }
        append_sample(dir.path(), &record(3, 0.75)).unwrap();
        let back = read_samples(dir.path()).unwrap();
        assert_eq!(
            back.iter().map(|r| r.sample).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn torn_only_line_and_damage_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SAMPLES_FILE);
        std::fs::write(&path, b"{\"sample\":0,\"att").unwrap();
        assert!(read_samples(dir.path()).unwrap().is_empty());
        SampleWriter::open(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");

        std::fs::write(&path, b"{\"sample\":0}\n\n").unwrap();
        let err = read_samples(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("samples.jsonl") && err.contains("line 1"),
            "{err}"
        );
    }
}
