//! The training curves as a PNG: loss on the left, top-1/top-5 error on the right.
//!
//! Text is drawn with an embedded subset of DejaVu Sans (ASCII only,
//! `assets/DejaVuSans-ascii.ttf`, licence in `assets/FONT-LICENSE.txt`), so
//! the plot needs no system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Result, TrainerError};
use crate::metrics::EpochMetrics;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");
static REGISTER: Once = Once::new();
/// The font family name the embedded font is registered under.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the embedded font (once per process).
pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        // The font is embedded and known to parse (tested below).
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Draws `history` to `path` (PNG, 1200x480), replacing the file atomically.
pub fn draw_curves(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    register_font();
    // The bitmap encoder picks the format from the extension: keep `.png` last.
    let tmp = path.with_extension(format!("tmp-{}.png", std::process::id()));
    draw(&tmp, history).map_err(|source| TrainerError::Plot {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(crate::error::io_err(path))
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A curve: legend name, the value it plots, its colour.
type Curve = (&'static str, fn(&EpochMetrics) -> f64, RGBColor);

fn draw(path: &Path, history: &[EpochMetrics]) -> DrawResult {
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let last_epoch = history.iter().map(|m| m.epoch).max().unwrap_or(1).max(2) as f64;
    let x_range = 0.0..last_epoch + 0.5;

    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let max_loss = history
        .iter()
        .flat_map(|m| [finite(m.train_loss), finite(m.val_loss)])
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.1;
    let losses: [Curve; 2] = [
        ("train", |m| m.train_loss, BLUE),
        ("val (centre crop)", |m| m.val_loss, RED),
    ];
    let panel = Panel {
        caption: "loss",
        y_desc: "cross-entropy",
        x_range: x_range.clone(),
        y_max: max_loss,
    };
    draw_panel(&left, &panel, &losses, history)?;

    let green = RGBColor(0, 150, 0);
    let orange = RGBColor(230, 130, 0);
    let errors: [Curve; 4] = [
        ("train top-1", |m| m.train_top1_error, BLUE),
        ("val top-1", |m| m.val_top1_error, RED),
        ("train top-5", |m| m.train_top5_error, green),
        ("val top-5", |m| m.val_top5_error, orange),
    ];
    let panel = Panel {
        caption: "error (%)",
        y_desc: "error %",
        x_range,
        y_max: 100.0,
    };
    draw_panel(&right, &panel, &errors, history)?;
    root.present()?;
    Ok(())
}

/// One panel's axes.
struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    x_range: std::ops::Range<f64>,
    y_max: f64,
}

/// Draws one panel: its axes, each curve as a line with a dot per epoch
/// (non-finite values left out), and the legend.
fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    curves: &[Curve],
    history: &[EpochMetrics],
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(panel.x_range.clone(), 0.0..panel.y_max)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_desc)
        .label_style((FAMILY, 14))
        .draw()?;
    for &(name, f, colour) in curves {
        let points: Vec<(f64, f64)> = history
            .iter()
            .filter(|m| f(m).is_finite())
            .map(|m| (m.epoch as f64, f(m)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_parses() {
        assert!(plotters::style::register_font("test-font", FontStyle::Normal, FONT).is_ok());
    }

    #[test]
    fn draws_a_png_with_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let history: Vec<EpochMetrics> = (1..=3).map(crate::metrics::sample).collect();
        draw_curves(&path, &history).unwrap();
        let img = crate::figures::canvas::read_png(&path).unwrap();
        assert_eq!((img.width, img.height), (1200, 480));
        // Each curve's colour is drawn in its own panel: loss (train blue, val
        // red) on the left, errors (top-1 blue/red, top-5 green/orange) on the
        // right; the top-5 colours nowhere on the left.
        let count = |colour: [u8; 3], xs: std::ops::Range<usize>| {
            (0..img.height)
                .flat_map(|y| xs.clone().map(move |x| (x, y)))
                .filter(|&(x, y)| img.pixel(x, y) == colour)
                .count()
        };
        let (blue, red, green, orange) = ([0, 0, 255], [255, 0, 0], [0, 150, 0], [230, 130, 0]);
        for colour in [blue, red] {
            assert!(count(colour, 0..600) > 50, "{colour:?} in the loss panel");
            assert!(
                count(colour, 600..1200) > 50,
                "{colour:?} in the error panel"
            );
        }
        for colour in [green, orange] {
            assert!(
                count(colour, 600..1200) > 50,
                "{colour:?} in the error panel"
            );
            assert_eq!(count(colour, 0..600), 0, "{colour:?} in the loss panel");
        }
        // a single epoch (degenerate x range) and a NaN value still draw
        let mut one = vec![crate::metrics::sample(1)];
        one[0].val_loss = f64::NAN;
        draw_curves(&path, &one).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
