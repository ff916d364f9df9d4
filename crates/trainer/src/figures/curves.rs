//! The paper's Figure 1: training-error curves of several runs against
//! epochs on one chart (e.g. ReLU against tanh), with the error level the
//! paper compares at (25%) as a dashed line.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainerError};
use crate::metrics::EpochMetrics;
use crate::plot::{register_font, FAMILY};

/// Width and height of the curves figure.
pub const SIZE: (u32, u32) = (900, 560);

/// One run's curve.
#[derive(Clone, Debug)]
pub struct RunCurve {
    /// Legend text.
    pub label: String,
    /// Its epochs (training top-1 error is plotted).
    pub history: Vec<EpochMetrics>,
}

impl RunCurve {
    /// The first epoch whose training top-1 error is at or below
    /// `threshold` percent, if any.
    pub fn first_epoch_at_or_below(&self, threshold: f64) -> Option<usize> {
        self.history
            .iter()
            .find(|m| m.train_top1_error <= threshold)
            .map(|m| m.epoch)
    }
}

/// The training error the paper compares ReLU and tanh at (percent).
pub const PAPER_THRESHOLD: f64 = 25.0;

const COLOURS: [RGBColor; 6] = [
    RGBColor(20, 20, 20),
    RGBColor(200, 40, 40),
    RGBColor(40, 90, 200),
    RGBColor(0, 150, 0),
    RGBColor(230, 130, 0),
    RGBColor(140, 60, 170),
];

/// Draws the training top-1 error of each run against epochs to `out`
/// (PNG, [`SIZE`]), with a dashed line at `threshold` percent when given.
/// The first run is drawn solid black, the next in colours, dashed (the
/// paper's solid ReLU and dashed tanh).
pub fn draw_error_curves(out: &Path, runs: &[RunCurve], threshold: Option<f64>) -> Result<()> {
    if runs.is_empty() {
        return Err(TrainerError::NoRuns);
    }
    register_font();
    let tmp = out.with_extension(format!("tmp-{}.png", std::process::id()));
    draw(&tmp, runs, threshold).map_err(|source| TrainerError::Plot {
        path: out.to_path_buf(),
        source,
    })?;
    std::fs::rename(&tmp, out).map_err(crate::error::io_err(out))
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn draw(path: &Path, runs: &[RunCurve], threshold: Option<f64>) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let last_epoch = runs
        .iter()
        .flat_map(|r| r.history.iter().map(|m| m.epoch))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("training error (top-1)", (FAMILY, 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..last_epoch + 0.5, 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("epochs")
        .y_desc("training error rate (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FAMILY, 14))
        .draw()?;
    if let Some(t) = threshold {
        let grey = RGBColor(120, 120, 120);
        chart.draw_series(DashedLineSeries::new(
            [(0.0, t), (last_epoch + 0.5, t)],
            6,
            4,
            grey.stroke_width(1),
        ))?;
    }
    for (i, run) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = run
            .history
            .iter()
            .filter(|m| m.train_top1_error.is_finite())
            .map(|m| (m.epoch as f64, m.train_top1_error))
            .collect();
        let style = colour.stroke_width(2);
        let legend = move |(x, y): (i32, i32)| {
            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
        };
        if i == 0 {
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(run.label.clone())
                .legend(legend);
        } else {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))?
                .label(run.label.clone())
                .legend(legend);
        }
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::canvas::read_png;

    #[test]
    fn overlays_runs_and_finds_the_threshold_epoch() {
        let run = |label: &str, errors: &[f64]| RunCurve {
            label: label.into(),
            history: errors
                .iter()
                .enumerate()
                .map(|(i, &e)| {
                    let mut m = crate::metrics::sample(i + 1);
                    m.train_top1_error = e;
                    m
                })
                .collect(),
        };
        let relu = run("relu", &[60.0, 30.0, 20.0, 10.0]);
        let tanh = run("tanh", &[80.0, 70.0, 50.0, 40.0]);
        assert_eq!(relu.first_epoch_at_or_below(25.0), Some(3));
        assert_eq!(tanh.first_epoch_at_or_below(25.0), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        draw_error_curves(&path, &[relu, tanh], Some(25.0)).unwrap();
        let img = read_png(&path).unwrap();
        assert_eq!((img.width as u32, img.height as u32), SIZE);
        // both colours appear: black (ReLU) and red (tanh)
        let has = |rgb: [u8; 3]| img.data.chunks_exact(3).any(|p| p == rgb);
        assert!(has([20, 20, 20]) && has([200, 40, 40]));
        assert!(draw_error_curves(&path, &[], None).is_err());
    }
}
