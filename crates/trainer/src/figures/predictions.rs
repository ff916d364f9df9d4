//! The paper's Figure 4 (left): validation images, each with the network's
//! five most probable classes as bars of probability; the true class's bar
//! is red (the paper's convention), and the true class is written under the
//! image.

use std::path::Path;

use loader::Split;
use model::ForwardMode;

use super::canvas::{Canvas, RgbImage};
use super::{ellipsize, read_image, softmax_rows, FigureSource};
use crate::error::Result;

/// Layout options of the predictions figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PredictionsOptions {
    /// Side of each image in pixels (the stored image is scaled to it).
    pub thumb: usize,
    /// Images per row.
    pub columns: usize,
}

impl Default for PredictionsOptions {
    /// 128-pixel images, 4 per row.
    fn default() -> Self {
        Self {
            thumb: 128,
            columns: 4,
        }
    }
}

/// Bars per image.
pub const TOP: usize = 5;
const MARGIN: usize = 8;
const PAD: usize = 6;
const LINE: usize = 16;
const MIN_BAR_WIDTH: usize = 200;

/// Bar colour of the true class.
pub const TRUE_RGB: [u8; 3] = [200, 40, 40];
/// Bar colour of the other classes.
pub const OTHER_RGB: [u8; 3] = [90, 130, 210];
/// Background of a bar's full length (probability 1).
pub const TRACK_RGB: [u8; 3] = [232, 232, 232];

/// Positions of everything in the predictions figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PredictionsLayout {
    /// Images shown.
    pub images: usize,
    /// Image side in pixels.
    pub thumb: usize,
    /// Images per row.
    pub columns: usize,
}

impl PredictionsLayout {
    /// Width of a bar at probability 1.
    pub fn bar_width(&self) -> usize {
        self.thumb.max(MIN_BAR_WIDTH)
    }
    fn cell_w(&self) -> usize {
        self.bar_width() + 2 * PAD
    }
    fn cell_h(&self) -> usize {
        PAD + self.thumb + 4 + LINE + TOP * LINE + PAD
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        2 * MARGIN + self.columns.min(self.images).max(1) * self.cell_w()
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        2 * MARGIN + self.images.div_ceil(self.columns).max(1) * self.cell_h()
    }
    /// Top-left pixel of image `i`.
    pub fn image_origin(&self, i: usize) -> (usize, usize) {
        let (row, col) = (i / self.columns, i % self.columns);
        let x = MARGIN + col * self.cell_w() + PAD + (self.bar_width() - self.thumb) / 2;
        (x, MARGIN + row * self.cell_h() + PAD)
    }
    /// Top-left pixel of the bar of rank `rank` (0 = most probable) of
    /// image `i`; bars are `LINE - 2` pixels high.
    pub fn bar_origin(&self, i: usize, rank: usize) -> (usize, usize) {
        let (row, col) = (i / self.columns, i % self.columns);
        (
            MARGIN + col * self.cell_w() + PAD,
            MARGIN + row * self.cell_h() + PAD + self.thumb + 4 + LINE + rank * LINE,
        )
    }
}

/// One class and its probability.
#[derive(Clone, Debug, PartialEq)]
pub struct RankedClass {
    /// Class index.
    pub class: usize,
    /// Softmax probability.
    pub probability: f32,
}

/// One image of the figure.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionItem {
    /// Index of the image in the validation split.
    pub index: u64,
    /// Its true class.
    pub label: usize,
    /// The most probable classes, most probable first.
    pub top: Vec<RankedClass>,
}

/// What the predictions figure shows.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionsFigure {
    /// Where things are in the image.
    pub layout: PredictionsLayout,
    /// The images, in drawing order.
    pub items: Vec<PredictionItem>,
}

/// Classifies validation images `indices` (centre crop) and draws them with
/// their top-5 bars to `out` (PNG).
pub fn draw_predictions(
    src: &FigureSource,
    indices: &[u64],
    out: &Path,
    opts: &PredictionsOptions,
) -> Result<PredictionsFigure> {
    let val = src.split(Split::Val)?;
    let images: Vec<RgbImage> = indices
        .iter()
        .map(|&i| read_image(&val, i))
        .collect::<Result<_>>()?;
    let probs = if images.is_empty() {
        Vec::new()
    } else {
        let logits = src.net.forward(&src.inputs(&images)?, ForwardMode::Eval)?;
        softmax_rows(&logits)?
    };
    let items: Vec<PredictionItem> = indices
        .iter()
        .zip(&probs)
        .map(|(&index, p)| {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            PredictionItem {
                index,
                label: val.label(index) as usize,
                top: order
                    .into_iter()
                    .take(TOP)
                    .map(|c| RankedClass {
                        class: c,
                        probability: p[c],
                    })
                    .collect(),
            }
        })
        .collect();

    let layout = PredictionsLayout {
        images: items.len(),
        thumb: opts.thumb.max(1),
        columns: opts.columns.max(1),
    };
    let mut canvas = Canvas::new(layout.width(), layout.height());
    let chars = layout.bar_width() / 7;
    for (i, (item, img)) in items.iter().zip(&images).enumerate() {
        let (x, y) = layout.image_origin(i);
        canvas.blit(x, y, &img.resized(layout.thumb, layout.thumb));
        let (bx, by) = layout.bar_origin(i, 0);
        let truth = format!("true: {}", src.words(item.label));
        canvas.text(bx, by - LINE + 1, &ellipsize(&truth, chars), 12.0, [0; 3]);
        for (rank, c) in item.top.iter().enumerate() {
            let (bx, by) = layout.bar_origin(i, rank);
            let w = layout.bar_width();
            canvas.fill(bx, by, w, LINE - 2, TRACK_RGB);
            let filled = ((c.probability.clamp(0.0, 1.0) * w as f32).round() as usize).max(1);
            let colour = if c.class == item.label {
                TRUE_RGB
            } else {
                OTHER_RGB
            };
            canvas.fill(bx, by, filled, LINE - 2, colour);
            let pct = format!("{:.0}%", 100.0 * c.probability);
            canvas.text(
                bx + 2,
                by + 1,
                &ellipsize(src.words(c.class), chars.saturating_sub(6)),
                11.0,
                [0; 3],
            );
            canvas.text_right(bx + w - 2, by + 1, &pct, 11.0, [0; 3]);
        }
    }
    canvas.save_png(out)?;
    Ok(PredictionsFigure { layout, items })
}
