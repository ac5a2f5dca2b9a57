//! `varve-bench report`: charts from a results file (JSON lines), one SVG
//! per workload: operations per second per engine (bars) beside the p50,
//! p99 and p99.9 latency of each engine (lines, log scale). A markdown
//! table of the same figures goes to `summary.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::json::{ChartRow, parse_line};

/// Chart size in pixels.
const CHART_SIZE: (u32, u32) = (1000, 420);
/// Percentile labels of the latency panel.
const PERCENTILES: [&str; 3] = ["p50", "p99", "p99.9"];

/// The rows of a results file grouped by workload (in the order workloads
/// first appear), each with its engines in the order they first appear.
/// A later row for the same engine and workload replaces an earlier one.
pub fn group(text: &str) -> Vec<(String, Vec<ChartRow>)> {
    let mut groups: Vec<(String, Vec<ChartRow>)> = Vec::new();
    for row in text.lines().filter_map(parse_line) {
        let index = match groups.iter().position(|(w, _)| *w == row.workload) {
            Some(i) => i,
            None => {
                groups.push((row.workload.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let slot = &mut groups[index].1;
        match slot.iter_mut().find(|r| r.engine == row.engine) {
            Some(old) => *old = row,
            None => slot.push(row),
        }
    }
    groups
}

/// Reads `input` and writes `<workload>.svg` for each workload and
/// `summary.md` into `out_dir` (created if missing); returns the files
/// written.
///
/// # Errors
/// A message for unreadable input, a file with no results, or a drawing
/// or write failure.
pub fn render(input: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let text =
        std::fs::read_to_string(input).map_err(|e| format!("reading {}: {e}", input.display()))?;
    let groups = group(&text);
    if groups.is_empty() {
        return Err(format!("{} holds no results", input.display()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let mut written = Vec::new();
    for (workload, rows) in &groups {
        let path = out_dir.join(format!("{workload}.svg"));
        draw(&path, workload, rows).map_err(|e| format!("drawing {}: {e}", path.display()))?;
        written.push(path);
    }
    let summary = out_dir.join("summary.md");
    std::fs::write(&summary, markdown(&groups))
        .map_err(|e| format!("writing {}: {e}", summary.display()))?;
    written.push(summary);
    Ok(written)
}

/// The figures as a markdown table: one row per workload, per engine
/// `ops/s (p99 µs)`.
pub fn markdown(groups: &[(String, Vec<ChartRow>)]) -> String {
    let mut engines: Vec<&str> = Vec::new();
    for row in groups.iter().flat_map(|(_, rows)| rows) {
        if !engines.contains(&row.engine.as_str()) {
            engines.push(&row.engine);
        }
    }
    let mut out = String::from("| workload |");
    for engine in &engines {
        let _ = write!(out, " {engine} ops/s (p99 µs) |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(engines.len()));
    out.push('\n');
    for (workload, rows) in groups {
        let by_engine: BTreeMap<&str, &ChartRow> =
            rows.iter().map(|r| (r.engine.as_str(), r)).collect();
        let _ = write!(out, "| {workload} |");
        for engine in &engines {
            match by_engine.get(engine) {
                Some(r) => {
                    let p99 = r.latency_us[1].map_or_else(|| "-".to_owned(), |p| format!("{p:.1}"));
                    let _ = write!(out, " {} ({p99}) |", human(r.ops_per_sec));
                }
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out
}

/// `1234567.0` as `1.23 M`, `45600.0` as `45.6 K`.
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(path: &Path, workload: &str, rows: &[ChartRow]) -> DrawResult {
    let root = SVGBackend::new(path, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(CHART_SIZE.0 / 2);
    let panel = |area| Panel {
        area,
        workload,
        rows,
    };
    panel(&left).draw_throughput()?;
    panel(&right).draw_latency()?;
    root.present()?;
    Ok(())
}

fn engine_color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 5] = [
        RGBColor(0xc0, 0x39, 0x2b),
        RGBColor(0x29, 0x80, 0xb9),
        RGBColor(0x27, 0xae, 0x60),
        RGBColor(0x8e, 0x44, 0xad),
        RGBColor(0xd3, 0x8c, 0x00),
    ];
    COLORS[index % COLORS.len()]
}

/// One half of a workload's chart: where it is drawn and what of.
struct Panel<'a, DB: DrawingBackend> {
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    workload: &'a str,
    rows: &'a [ChartRow],
}

impl<'a, DB: DrawingBackend> Panel<'a, DB>
where
    DB::ErrorType: 'static,
{
    /// A chart on the panel captioned `"<workload>: <what>"`, with
    /// `y_label_width` pixels for the y labels.
    fn chart(&self, what: &str, y_label_width: u32) -> ChartBuilder<'a, 'a, DB> {
        let mut builder = ChartBuilder::on(self.area);
        builder
            .caption(format!("{}: {what}", self.workload), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(y_label_width);
        builder
    }

    fn draw_throughput(&self) -> DrawResult {
        let rows = self.rows;
        let top = rows.iter().map(|r| r.ops_per_sec).fold(1.0, f64::max) * 1.15;
        let mut chart = self
            .chart("operations per second", 70)
            // A segmented range includes its end: `0..n - 1` gives n slots.
            .build_cartesian_2d((0..rows.len().saturating_sub(1)).into_segmented(), 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    rows.get(*i).map_or_else(String::new, |r| r.engine.clone())
                }
                _ => String::new(),
            })
            .y_label_formatter(&|v| human(*v))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), r.ops_per_sec),
                ],
                engine_color(i).filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                human(r.ops_per_sec),
                (SegmentValue::CenterOf(i), r.ops_per_sec * 1.02),
                TextStyle::from(("sans-serif", 13).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
        Ok(())
    }

    fn draw_latency(&self) -> DrawResult {
        let rows = self.rows;
        let known = || {
            rows.iter()
                .flat_map(|r| r.latency_us.iter().flatten().copied())
        };
        let low = known().fold(f64::INFINITY, f64::min).clamp(0.01, 1.0);
        let high = known().fold(1.0, f64::max) * 2.0;
        let mut chart = self
            .chart("latency (µs, log scale)", 60)
            .build_cartesian_2d(
                (0..PERCENTILES.len() - 1).into_segmented(),
                (low * 0.5..high).log_scale(),
            )?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => PERCENTILES
                    .get(*i)
                    .map_or_else(String::new, |p| (*p).to_owned()),
                _ => String::new(),
            })
            .draw()?;
        for (index, row) in rows.iter().enumerate() {
            let color = engine_color(index);
            let points: Vec<(SegmentValue<usize>, f64)> = row
                .latency_us
                .iter()
                .enumerate()
                .filter_map(|(p, v)| v.map(|v| (SegmentValue::CenterOf(p), v.max(low))))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(row.engine.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = r#"{"engine":"varve","workload":"readrandom","ops_per_sec":1000.0,"p50_us":1.0,"p99_us":5.0,"p999_us":9.0}
{"engine":"fjall","workload":"readrandom","ops_per_sec":2000.0,"p50_us":0.5,"p99_us":3.0,"p999_us":null}
{"engine":"varve","workload":"compact","ops_per_sec":null,"skipped":"no compaction"}
not json
{"engine":"varve","workload":"fillseq","ops_per_sec":3000.0,"p50_us":2.0,"p99_us":4.0,"p999_us":8.0}"#;

    #[test]
    fn groups_by_workload_and_skips_skipped_lines() {
        let groups = group(LINES);
        let names: Vec<_> = groups
            .iter()
            .map(|(w, rows)| (w.as_str(), rows.len()))
            .collect();
        assert_eq!(names, [("readrandom", 2), ("fillseq", 1)]);
        let table = markdown(&groups);
        assert!(
            table.contains("| readrandom | 1.0 K (5.0) | 2.0 K (3.0) |"),
            "{table}"
        );
        assert!(table.contains("| fillseq | 3.0 K (4.0) | - |"), "{table}");
    }

    #[test]
    fn renders_one_svg_per_workload() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("results.jsonl");
        std::fs::write(&input, LINES).unwrap();
        let written = render(&input, &dir.path().join("charts")).unwrap();
        assert_eq!(written.len(), 3);
        let svg = std::fs::read_to_string(&written[0]).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("fjall"),
            "{}",
            &svg[..200.min(svg.len())]
        );
    }
}
