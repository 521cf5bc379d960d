//! `DIR/DRILL.svg`: the run at a glance. Top: deliveries per second of each
//! bot. Bottom: 429s (the scheduler's, which must stay at zero, and the
//! emulator's forced ones) and the callers' final errors per second. Fault
//! events are red vertical lines; measured moments (failover, takeover,
//! re-sync) are green.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, anyhow};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::series::Series;
use crate::verdict::Moment;

/// Bot colours: distinct, readable on white (Okabe-Ito, then Tableau).
const BOT_COLORS: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(140, 86, 75),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];
const FAULT: RGBColor = RGBColor(200, 30, 30);
const MOMENT: RGBColor = RGBColor(20, 140, 60);

pub fn draw(
    path: &Path,
    title: &str,
    series: &Series,
    events: &[(Duration, String)],
    moments: &[Moment],
) -> Result<()> {
    let root = SVGBackend::new(path, (1100, 680)).into_drawing_area();
    let x_max = series.seconds.max(1) as f64;
    let bots: Vec<Line> = series
        .per_bot
        .iter()
        .enumerate()
        .map(|(i, (name, values))| {
            (
                name.clone(),
                values.as_slice(),
                BOT_COLORS[i % BOT_COLORS.len()],
            )
        })
        .collect();
    let trouble: Vec<Line> = vec![
        (
            "429 from the scheduler (must be 0)".into(),
            &series.rate_limited,
            RED,
        ),
        (
            "429 forced by the drill".into(),
            &series.forced_429,
            RGBColor(230, 150, 20),
        ),
        (
            "final errors to callers".into(),
            &series.errors,
            RGBColor(90, 90, 90),
        ),
    ];
    let drawn = (|| {
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(440);
        let marks = Marks { events, moments };
        let top_panel = Panel {
            caption: Some(title),
            x_desc: "",
            y_desc: "delivered / s",
            labels: true,
        };
        top_panel.draw(&top, x_max, &bots, &marks)?;
        let bottom_panel = Panel {
            caption: None,
            x_desc: "seconds since the load started",
            y_desc: "per second",
            labels: false,
        };
        bottom_panel.draw(&bottom, x_max, &trouble, &marks)?;
        root.present()
    })();
    drawn.map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

/// A named per-second series and its colour.
type Line<'a> = (String, &'a [u64], RGBColor);

/// The fault events and the measured moments, drawn on every panel.
struct Marks<'a> {
    events: &'a [(Duration, String)],
    moments: &'a [Moment],
}

/// One panel of the chart: its axes, its lines with a legend, the marks.
struct Panel<'a> {
    caption: Option<&'a str>,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Whether the marks carry their labels (once per chart is enough).
    labels: bool,
}

impl Panel<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
        x_max: f64,
        lines: &[Line],
        marks: &Marks,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let y_max = lines
            .iter()
            .flat_map(|(_, v, _)| v.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.25;
        let mut builder = ChartBuilder::on(area);
        if let Some(c) = self.caption {
            builder.caption(c, ("sans-serif", 20));
        }
        let mut ch = builder
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        ch.configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (name, values, color) in lines {
            let color = *color;
            ch.draw_series(LineSeries::new(points(values), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        draw_marks(&mut ch, x_max, y_max, marks, self.labels)?;
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
    }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Vertical lines for the events (red) and measured moments (green), with
/// their labels on the top panel.
fn draw_marks<DB: DrawingBackend>(
    ch: &mut Chart<'_, DB>,
    x_max: f64,
    y_max: f64,
    marks: &Marks,
    labels: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let lines = marks
        .events
        .iter()
        .map(|(t, what)| (t.as_secs_f64(), what, FAULT, 0.97))
        .chain(marks.moments.iter().enumerate().map(|(k, m)| {
            (
                m.at.as_secs_f64(),
                &m.what,
                MOMENT,
                0.88 - 0.07 * (k % 3) as f64,
            )
        }));
    for (x, what, color, height) in lines {
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, y_max)],
            color.stroke_width(2),
        )))?;
        if labels {
            ch.draw_series(std::iter::once(Text::new(
                what.clone(),
                (x + x_max * 0.005, y_max * height),
                ("sans-serif", 13).into_font().color(&color),
            )))?;
        }
    }
    Ok(())
}

/// A per-second count as points at the middle of each second.
fn points(values: &[u64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(s, v)| (s as f64 + 0.5, *v as f64))
        .collect()
}
