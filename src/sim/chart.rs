//! `simulate --chart FILE.svg`: the simulation drawn with plotters' SVG backend. Above:
//! workers (all, and Ready) and pending pods over time, scale-ups and scale-downs marked;
//! below: CPU and memory requested of the Ready workers against the scale-up and
//! scale-down thresholds. A browser shows the file as it is.

use super::engine::Simulation;
use crate::config::Config;
use plotters::prelude::*;

/// The names of the series the chart draws, as its legend shows them (tests look for
/// them in the file).
pub const SERIES: [&str; 7] = [
    "workers",
    "ready workers",
    "pending pods",
    "scale-up",
    "scale-down",
    "cpu requested %",
    "memory requested %",
];

const UP: RGBColor = RGBColor(0, 150, 70);
const DOWN: RGBColor = RGBColor(200, 60, 40);

pub fn svg(sim: &Simulation, cfg: &Config, title: &str) -> Result<String, String> {
    let mut out = String::new();
    draw(sim, cfg, title, &mut out).map_err(|e| format!("cannot draw the chart: {e}"))?;
    Ok(out)
}

fn draw(
    sim: &Simulation,
    cfg: &Config,
    title: &str,
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (top, bottom) = root.split_vertically(340);
    let hours = |t: u64| t as f64 / 3600.0;
    let end = sim
        .steps
        .last()
        .map_or(1.0, |s| hours(s.t + sim.interval))
        .max(1.0 / 60.0);
    let peak = sim
        .steps
        .iter()
        .map(|s| s.workers.max(s.pending))
        .max()
        .unwrap_or(0)
        .max(cfg.limits.max_nodes as usize) as f64
        + 1.0;

    let mut c = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..end, 0.0..peak)?;
    c.configure_mesh()
        .x_desc("hours")
        .y_desc("count")
        .light_line_style(WHITE)
        .draw()?;
    let series = |f: &dyn Fn(&super::engine::Step) -> f64| -> Vec<(f64, f64)> {
        sim.steps.iter().map(|s| (hours(s.t), f(s))).collect()
    };
    c.draw_series(LineSeries::new(
        series(&|s| s.workers as f64),
        BLUE.stroke_width(2),
    ))?
    .label(SERIES[0])
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    c.draw_series(LineSeries::new(series(&|s| s.ready as f64), CYAN))?
        .label(SERIES[1])
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], CYAN));
    c.draw_series(LineSeries::new(series(&|s| s.pending as f64), MAGENTA))?
        .label(SERIES[2])
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    for (name, color, pick) in [(SERIES[3], UP, true), (SERIES[4], DOWN, false)] {
        let marks = sim.steps.iter().filter(|s| {
            if pick {
                !s.started.is_empty()
            } else {
                !s.removed.is_empty()
            }
        });
        c.draw_series(marks.map(|s| {
            let x = hours(s.t);
            PathElement::new(vec![(x, 0.0), (x, peak)], color.mix(0.5))
        }))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x + 10, y - 6), (x + 10, y + 6)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    let mut c = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..end, 0.0..100.0)?;
    c.configure_mesh()
        .x_desc("hours")
        .y_desc("% of allocatable")
        .light_line_style(WHITE)
        .draw()?;
    let pct = |f: &dyn Fn(&super::engine::Step) -> Option<f64>| -> Vec<(f64, f64)> {
        sim.steps
            .iter()
            .filter_map(|s| f(s).map(|v| (hours(s.t), v.min(100.0))))
            .collect()
    };
    c.draw_series(LineSeries::new(pct(&|s| s.cpu), RED))?
        .label(SERIES[5])
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.draw_series(LineSeries::new(pct(&|s| s.memory), GREEN))?
        .label(SERIES[6])
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    let t = &cfg.thresholds;
    // Per resource, its scale-up and scale-down lines; equal thresholds for both resources
    // are drawn once.
    let resources =
        if t.cpu_threshold == t.memory_threshold && t.cpu_scale_down == t.memory_scale_down {
            vec![("", t.cpu_threshold, t.cpu_scale_down, BLACK)]
        } else {
            vec![
                ("cpu ", t.cpu_threshold, t.cpu_scale_down, RED),
                ("memory ", t.memory_threshold, t.memory_scale_down, GREEN),
            ]
        };
    let lines = resources.into_iter().flat_map(|(res, up, down, color)| {
        [
            (format!("scale-up at {res}{up}%"), up, color),
            (format!("scale-down under {res}{down}%"), down, color),
        ]
    });
    for (name, v, color) in lines {
        let style = color.mix(0.6);
        c.draw_series(LineSeries::new(vec![(0.0, v), (end, v)], style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
