//! Small SVG plotters shared by the examples: line charts (one or more panels), bar charts,
//! grouped bar charts (with optional error bars), a grouped bar chart beside a line chart,
//! and histograms. Each returns the SVG text; [`write_svg`] writes it atomically.
//!
//! ```
//! use neg_rs::plot::{line_svg, LineSpec, Panel, Series};
//! let panel = Panel {
//!     title: "agnews".into(),
//!     series: vec![Series::new("polar", vec![(0.0, 0.3), (1.0, 0.5), (2.0, 0.6)])],
//! };
//! let svg = line_svg(&LineSpec::new("accuracy", "log2 neurons", "accuracy"), &[panel]).unwrap();
//! assert!(svg.starts_with("<svg") && svg.contains("polar"));
//! ```
use std::path::Path;

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// A drawing area of an SVG figure.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One labelled line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from a label and points.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
        }
    }
}

/// One chart area of a line figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption of the panel.
    pub title: String,
    /// Its lines.
    pub series: Vec<Series>,
}

/// Axis labels and layout of a line figure.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    /// Figure title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Width and height of one panel in pixels.
    pub panel_size: (u32, u32),
    /// Draw a dot at every point (off for long curves such as sorted scores).
    pub markers: bool,
}

impl LineSpec {
    /// A spec with a fitted y range, 480 x 360 panels and a dot at every point.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            y_range: None,
            panel_size: (480, 360),
            markers: true,
        }
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
}

/// A (lo, hi) range covering `values`, widened when degenerate.
fn range_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Line chart with one panel per entry of `panels`, side by side (at most 3 per row).
pub fn line_svg(spec: &LineSpec, panels: &[Panel]) -> Result<String> {
    if panels.is_empty() {
        bail!("nothing to plot: no panels");
    }
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let (pw, ph) = spec.panel_size;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (pw * cols as u32, ph * rows as u32 + 40))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root
            .titled(&spec.title, ("sans-serif", 20))
            .map_err(plot_err)?;
        for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
            draw_line_panel(area, spec, panel)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Draws `panel` (its title as caption) into `area` with the axis labels, y range and markers
/// of `spec`.
fn draw_line_panel(area: &Area, spec: &LineSpec, panel: &Panel) -> Result<()> {
    let points = || panel.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range_of(points().map(|p| p.0));
    let (y0, y1) = spec
        .y_range
        .unwrap_or_else(|| range_of(points().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(44)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(&spec.x_label)
        .y_desc(&spec.y_label)
        .draw()
        .map_err(plot_err)?;
    for (i, s) in panel.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(&s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        if spec.markers {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// One bar series of a grouped bar chart: a value per group and, optionally, an error
/// (drawn as a +- whisker) per group.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Legend label.
    pub label: String,
    /// One value per group; a non-finite value draws no bar.
    pub values: Vec<f64>,
    /// One error per group (e.g. a standard deviation), or `None`.
    pub errors: Option<Vec<f64>>,
    /// Fill colour (RGB); `None` picks one from the palette.
    pub color: Option<(u8, u8, u8)>,
}

/// A grouped bar chart: one group of bars per label, one bar per series in each group (no
/// groups draws empty axes).
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroups {
    /// Caption.
    pub title: String,
    /// y-axis label.
    pub y_label: String,
    /// Group labels, left to right.
    pub groups: Vec<String>,
    /// The series, drawn in this order within each group.
    pub series: Vec<BarSeries>,
    /// Fixed y range; `None` fits 0, the bars and their error whiskers.
    pub y_range: Option<(f64, f64)>,
}

/// Draws `bars` into `area`.
fn draw_bar_groups(area: &Area, bars: &BarGroups) -> Result<()> {
    let n = bars.groups.len();
    if let Some(s) = bars
        .series
        .iter()
        .find(|s| s.values.len() != n || s.errors.as_ref().is_some_and(|e| e.len() != n))
    {
        bail!(
            "bar series `{}` does not have one value (and error) per group ({n})",
            s.label
        );
    }
    // (value, error) of series `s` in group `g`; a non-finite value is no bar.
    let at = |s: &BarSeries, g: usize| {
        let v = s.values[g];
        let e = s.errors.as_ref().map_or(0.0, |e| e[g]);
        v.is_finite()
            .then_some((v, if e.is_finite() { e } else { 0.0 }))
    };
    let (y0, y1) = bars.y_range.unwrap_or_else(|| {
        let ends = bars
            .series
            .iter()
            .flat_map(|s| (0..n).filter_map(move |g| at(s, g)))
            .flat_map(|(v, e)| [v - e, v + e]);
        range_of(ends.chain([0.0]))
    });
    let mut chart = ChartBuilder::on(area)
        .caption(&bars.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n.max(1) as f64, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&|x| {
            // Labels only at the group centres (x = i + 0.5).
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 && i < n {
                bars.groups[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc(&bars.y_label)
        .draw()
        .map_err(plot_err)?;
    let width = 0.8 / bars.series.len() as f64;
    for (k, s) in bars.series.iter().enumerate() {
        let color = match s.color {
            Some((r, g, b)) => RGBColor(r, g, b).to_rgba(),
            None => Palette99::pick(k).to_rgba(),
        };
        let x0 = |g: usize| g as f64 + 0.1 + k as f64 * width;
        chart
            .draw_series((0..n).filter_map(|g| {
                let (v, _) = at(s, g)?;
                Some(Rectangle::new(
                    [(x0(g), 0.0), (x0(g) + width * 0.9, v)],
                    color.filled(),
                ))
            }))
            .map_err(plot_err)?
            .label(&s.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        if s.errors.is_some() {
            chart
                .draw_series((0..n).filter_map(|g| {
                    let (v, e) = at(s, g)?;
                    let x = x0(g) + width * 0.45;
                    // Whiskers are cut at the axis ends.
                    let (lo, hi) = ((v - e).max(y0), (v + e).min(y1));
                    Some(PathElement::new(vec![(x, lo), (x, hi)], BLACK))
                }))
                .map_err(plot_err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// A grouped bar chart of `size` pixels.
pub fn grouped_bar_svg(bars: &BarGroups, size: (u32, u32)) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw_bar_groups(&root, bars)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// A grouped bar chart (left, `bars_width` pixels wide) beside a line chart of `panel` (right;
/// `spec` gives its axis labels, y range and markers; `spec.title` is unused, the panel's
/// title is the caption), in a figure of `size` pixels.
pub fn bars_beside_lines_svg(
    bars: &BarGroups,
    spec: &LineSpec,
    panel: &Panel,
    size: (u32, u32),
    bars_width: u32,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (left, right) = root.split_horizontally(bars_width);
        draw_bar_groups(&left, bars)?;
        draw_line_panel(&right, spec, panel)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Vertical bar chart of labelled values.
pub fn bar_svg(title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<String> {
    if bars.is_empty() {
        bail!("nothing to plot: no bars");
    }
    let (lo, hi) = range_of(bars.iter().map(|b| b.1).chain([0.0]));
    let mut svg = String::new();
    {
        let width = (80 * bars.len() as u32).max(480);
        let root = SVGBackend::with_string(&mut svg, (width, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size(50)
            .build_cartesian_2d((0..bars.len()).into_segmented(), lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_label)
            .x_labels(bars.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let color = Palette99::pick(i).filled();
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), b.1),
                    ],
                    color,
                )
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Histogram of `values` in `bins` equal-width bins (non-finite values are ignored).
pub fn histogram_svg(title: &str, x_label: &str, values: &[f64], bins: usize) -> Result<String> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || bins == 0 {
        bail!("nothing to plot: no finite values or zero bins");
    }
    let (lo, hi) = range_of(finite.iter().copied());
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1) as f64 * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("count")
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x = lo + i as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, c as f64)], BLUE.mix(0.6).filled())
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Writes an SVG string atomically.
pub fn write_svg(path: &Path, svg: &str) -> Result<()> {
    crate::output::write_atomic(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_has_one_path_per_series_and_the_legend() {
        let panels = vec![
            Panel {
                title: "task a".into(),
                series: vec![
                    Series::new("polar", vec![(0.0, 0.2), (1.0, 0.4)]),
                    Series::new("magn", vec![(0.0, 0.3), (1.0, 0.1)]),
                ],
            },
            Panel {
                title: "task b".into(),
                series: vec![Series::new("polar", vec![(0.0, 0.5)])],
            },
        ];
        let svg = line_svg(&LineSpec::new("t", "x", "y"), &panels).unwrap();
        assert!(svg.contains("task a") && svg.contains("task b"));
        assert!(svg.contains("magn"));
        assert!(svg.matches("<polyline").count() >= 3, "{svg}");
    }

    #[test]
    fn empty_inputs_are_errors() {
        assert!(line_svg(&LineSpec::new("t", "x", "y"), &[]).is_err());
        assert!(bar_svg("t", "y", &[]).is_err());
        assert!(histogram_svg("t", "x", &[f64::NAN], 4).is_err());
    }

    fn two_groups() -> BarGroups {
        BarGroups {
            title: "grouped".into(),
            y_label: "y".into(),
            groups: vec!["first".into(), "second".into()],
            series: vec![
                BarSeries {
                    label: "top".into(),
                    values: vec![0.5, f64::NAN],
                    errors: Some(vec![0.1, 0.2]),
                    color: Some((214, 39, 40)),
                },
                BarSeries {
                    label: "random".into(),
                    values: vec![0.2, 0.3],
                    errors: None,
                    color: None,
                },
            ],
            y_range: None,
        }
    }

    #[test]
    fn grouped_bars_label_groups_and_series_and_skip_non_finite_values() {
        let svg = grouped_bar_svg(&two_groups(), (600, 400)).unwrap();
        for text in ["grouped", "first", "second", "top", "random"] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Fill colour of the first series: one legend swatch and one bar (its NaN draws none).
        assert_eq!(svg.matches("#D62728").count(), 2, "{svg}");
        let beside = bars_beside_lines_svg(
            &two_groups(),
            &LineSpec {
                markers: false,
                ..LineSpec::new("", "rank", "|r|")
            },
            &Panel {
                title: "curves".into(),
                series: vec![Series::new("gold_prob", vec![(1.0, 0.9), (2.0, 0.4)])],
            },
            (1000, 400),
            500,
        )
        .unwrap();
        assert!(beside.contains("curves") && beside.contains("gold_prob"));
        assert!(beside.contains("first") && !beside.contains("<circle"));
    }

    #[test]
    fn grouped_bars_need_one_value_per_group() {
        let mut bars = two_groups();
        bars.series[1].values.pop();
        let err = grouped_bar_svg(&bars, (600, 400)).unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
        let empty = BarGroups {
            groups: Vec::new(),
            series: Vec::new(),
            ..two_groups()
        };
        assert!(grouped_bar_svg(&empty, (600, 400)).is_ok());
    }

    #[test]
    fn histogram_and_bars_draw_rectangles() {
        let h = histogram_svg("h", "x", &[0.0, 1.0, 1.0, 2.0], 4).unwrap();
        assert!(h.matches("<rect").count() >= 4);
        let b = bar_svg("b", "y", &[("one".into(), 1.0), ("two".into(), -0.5)]).unwrap();
        assert!(b.contains("one") && b.contains("two"));
    }
}
