//! SVG plots with plotters: latency by percentile (log axis, as the HdrHistogram plotter draws
//! it), line charts over time, CDFs and bar charts. Text is laid out by plotters' built-in
//! estimator (no font files needed); the SVG names the font and the viewer draws it.

use std::path::Path;

use anyhow::anyhow;
use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::{BarPlot, LinePlot, Series};

const SIZE: (u32, u32) = (960, 600);

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Latency (ms, linear) against percentile on a log axis of 1/(1-q): 0 %, 90 %, 99 %, 99.9 %...
pub fn latency_by_percentile(path: &Path, title: &str, series: &[&Series]) -> anyhow::Result<()> {
    let mut curves = Vec::new();
    let mut ymax = 0f64;
    let mut xmax = 10f64;
    for s in series {
        let mut pts = Vec::new();
        for v in s.hist.iter_quantiles(super::hgrm::TICKS_PER_HALF) {
            let q = v.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            let x = 1.0 / (1.0 - q);
            let y = v.value_iterated_to() as f64 / 1e6;
            xmax = xmax.max(x);
            ymax = ymax.max(y);
            pts.push((x, y));
        }
        // The maximum, drawn at the last percentile shown.
        pts.push((xmax, s.hist.max() as f64 / 1e6));
        ymax = ymax.max(s.hist.max() as f64 / 1e6);
        curves.push((s.name.clone(), pts));
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..xmax * 1.2).log_scale(), 0f64..(ymax * 1.1).max(1e-3))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The cumulative distribution of a latency histogram (ms on x, fraction on y).
pub fn cdf(path: &Path, title: &str, h: &Histogram<u64>) -> anyhow::Result<()> {
    let mut pts = vec![(0.0, 0.0)];
    let mut total = 0u64;
    let n = h.len().max(1) as f64;
    for v in h.iter_recorded() {
        total += v.count_since_last_iteration();
        pts.push((v.value_iterated_to() as f64 / 1e6, total as f64 / n));
    }
    let plot = LinePlot {
        file: String::new(),
        title: title.into(),
        x_label: "latency (ms)".into(),
        y_label: "fraction delivered".into(),
        lines: vec![("delivered".into(), pts)],
    };
    lines(path, &plot)
}

/// A line chart.
pub fn lines(path: &Path, p: &LinePlot) -> anyhow::Result<()> {
    let all = p.lines.iter().flat_map(|(_, pts)| pts.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&p.title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, 0f64..(y1 * 1.1).max(1e-9))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in p.lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if p.lines.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// A bar chart with one labelled bar per entry.
pub fn bars(path: &Path, p: &BarPlot) -> anyhow::Result<()> {
    let n = p.bars.len().max(1);
    let ymax = p.bars.iter().map(|b| b.1).fold(0f64, f64::max);
    let labels: Vec<String> = p.bars.iter().map(|b| b.0.clone()).collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&p.title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..(ymax * 1.1).max(1e-9))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.05 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .draw()
        .map_err(err)?;
    let color = Palette99::pick(0).to_rgba();
    chart
        .draw_series(p.bars.iter().enumerate().map(|(i, (_, v))| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], color.filled())
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
