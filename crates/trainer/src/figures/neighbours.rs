//! The paper's Figure 4 (right): for some validation images, the training
//! images whose last-hidden-layer (fc7) activations are nearest in
//! Euclidean distance.
//!
//! The training features come from one batched pass over the training split
//! with the loader's centre crop (no augmentation). Only the `k` nearest
//! images per query are kept while the pass streams ([`NearestK`]), so
//! memory does not grow with the training set.

use std::path::Path;

use candle_core::Device;
use loader::{Loader, LoaderConfig, Split};

use super::canvas::{Canvas, RgbImage};
use super::{ellipsize, read_image, FigureSource};
use crate::error::Result;
use crate::events::{TrainEvent, TrainSink};

/// The `k` smallest `(distance, index)` pairs seen so far, ascending (ties
/// keep the smaller index first).
#[derive(Clone, Debug, PartialEq)]
pub struct NearestK {
    k: usize,
    best: Vec<(f32, u64)>,
}

impl NearestK {
    /// Keeps the `k` nearest.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            best: Vec::with_capacity(k + 1),
        }
    }

    /// Offers one candidate.
    pub fn offer(&mut self, distance: f32, index: u64) {
        let worse = |a: &(f32, u64), b: &(f32, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if self.best.len() == self.k {
            match self.best.last() {
                Some(last) if worse(&(distance, index), last).is_lt() => {}
                _ => return,
            }
        }
        let at = self
            .best
            .partition_point(|e| worse(e, &(distance, index)).is_lt());
        self.best.insert(at, (distance, index));
        self.best.truncate(self.k);
    }

    /// The kept pairs, nearest first.
    pub fn into_sorted(self) -> Vec<(f32, u64)> {
        self.best
    }
}

/// Layout options of the neighbours figure.
#[derive(Clone, Debug, PartialEq)]
pub struct NeighboursOptions {
    /// Training images shown per query (the paper: 6).
    pub k: usize,
    /// Side of each image in pixels.
    pub thumb: usize,
    /// Images per batch of the feature pass.
    pub batch_size: usize,
    /// Loader threads of the feature pass.
    pub threads: usize,
}

impl Default for NeighboursOptions {
    /// 6 neighbours, 96-pixel images, batches of 128.
    fn default() -> Self {
        Self {
            k: 6,
            thumb: 96,
            batch_size: 128,
            threads: 2,
        }
    }
}

const MARGIN: usize = 8;
const GAP: usize = 4;
/// Extra space between the query and its neighbours.
const SEPARATOR: usize = 16;
/// Two caption lines under each image.
const CAPTION: usize = 26;

/// Positions of everything in the neighbours figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighboursLayout {
    /// Query rows.
    pub rows: usize,
    /// Neighbours per row.
    pub k: usize,
    /// Image side in pixels.
    pub thumb: usize,
}

impl NeighboursLayout {
    fn row_h(&self) -> usize {
        self.thumb + CAPTION + GAP
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        2 * MARGIN + (self.k + 1) * (self.thumb + GAP) - GAP + SEPARATOR
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        2 * MARGIN + self.rows.max(1) * self.row_h() - GAP
    }
    /// Top-left pixel of column `col` (0: the query, 1..=k: its neighbours,
    /// nearest first) of row `row`.
    pub fn image_origin(&self, row: usize, col: usize) -> (usize, usize) {
        let sep = if col > 0 { SEPARATOR } else { 0 };
        (
            MARGIN + col * (self.thumb + GAP) + sep,
            MARGIN + row * self.row_h(),
        )
    }
}

/// One training image near a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    /// Index in the training split.
    pub index: u64,
    /// Its class.
    pub label: usize,
    /// Euclidean distance of its fc7 activations to the query's.
    pub distance: f32,
}

/// One query row.
#[derive(Clone, Debug, PartialEq)]
pub struct NeighbourRow {
    /// Index of the query in the validation split.
    pub query: u64,
    /// Its class.
    pub label: usize,
    /// The nearest training images, nearest first.
    pub neighbours: Vec<Neighbour>,
}

/// What the neighbours figure shows.
#[derive(Clone, Debug, PartialEq)]
pub struct NeighboursFigure {
    /// Where things are in the image.
    pub layout: NeighboursLayout,
    /// The rows, in drawing order.
    pub rows: Vec<NeighbourRow>,
    /// Training images whose features were compared.
    pub train_images: usize,
}

/// Finds, for validation images `queries`, the `opts.k` nearest training
/// images in fc7 activations, and draws them to `out` (PNG): one row per
/// query, the query on the left; under each neighbour its distance and
/// class, in red when its class differs from the query's. `sink` is
/// told the batches done and in all of the feature pass over the training
/// images.
pub fn draw_neighbours(
    src: &FigureSource,
    queries: &[u64],
    out: &Path,
    opts: &NeighboursOptions,
    sink: &dyn TrainSink,
) -> Result<NeighboursFigure> {
    let val = src.split(Split::Val)?;
    let query_images: Vec<RgbImage> = queries
        .iter()
        .map(|&i| read_image(&val, i))
        .collect::<Result<_>>()?;
    let rows = nearest_training_images(src, &query_images, opts, sink)?;
    let train = src.split(Split::Train)?;
    let rows: Vec<NeighbourRow> = queries
        .iter()
        .zip(rows)
        .map(|(&q, found)| NeighbourRow {
            query: q,
            label: val.label(q) as usize,
            neighbours: found
                .into_iter()
                .map(|(distance, index)| Neighbour {
                    index,
                    label: train.label(index) as usize,
                    distance,
                })
                .collect(),
        })
        .collect();

    let layout = NeighboursLayout {
        rows: rows.len(),
        k: opts.k,
        thumb: opts.thumb.max(1),
    };
    let mut canvas = Canvas::new(layout.width(), layout.height());
    let chars = layout.thumb / 6;
    for (r, (row, img)) in rows.iter().zip(&query_images).enumerate() {
        let (x, y) = layout.image_origin(r, 0);
        canvas.blit(x, y, &img.resized(layout.thumb, layout.thumb));
        let caption = ellipsize(src.words(row.label), chars);
        canvas.text(x, y + layout.thumb + 1, &caption, 11.0, [0; 3]);
        for (c, n) in row.neighbours.iter().enumerate() {
            let (x, y) = layout.image_origin(r, c + 1);
            let img = read_image(&train, n.index)?;
            canvas.blit(x, y, &img.resized(layout.thumb, layout.thumb));
            let colour = if n.label == row.label {
                [0; 3]
            } else {
                [190, 30, 30]
            };
            let distance = format!("d = {:.3}", n.distance);
            canvas.text(x, y + layout.thumb + 1, &distance, 11.0, colour);
            let words = ellipsize(src.words(n.label), chars);
            canvas.text(x, y + layout.thumb + 13, &words, 11.0, colour);
        }
    }
    canvas.save_png(out)?;
    Ok(NeighboursFigure {
        layout,
        rows,
        train_images: train.len(),
    })
}

/// For each query image, the `opts.k` training images nearest in fc7
/// activations: `(distance, training index)`, nearest first. `sink` is
/// told the batches done and in all after each batch (pass `fc7 features`).
pub fn nearest_training_images(
    src: &FigureSource,
    queries: &[RgbImage],
    opts: &NeighboursOptions,
    sink: &dyn TrainSink,
) -> Result<Vec<Vec<(f32, u64)>>> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let q = src
        .net
        .fc7_features(&src.inputs(queries)?)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    let mut nearest: Vec<NearestK> = q.iter().map(|_| NearestK::new(opts.k)).collect();

    let loader = Loader::new(
        src.split(Split::Train)?,
        src.stats.clone(),
        LoaderConfig {
            batch_size: opts.batch_size.max(1),
            threads: opts.threads.max(1),
            crop: src.input_size(),
            ..LoaderConfig::eval()
        },
    )?;
    let total = loader.batches_per_epoch();
    let device = src.net.output_device().clone();
    for (i, batch) in loader.epoch(0)?.enumerate() {
        let batch = batch?;
        let (images, _) = batch.to_tensors(&device)?;
        let indices = batch.indices().to_vec();
        drop(batch);
        let feats = src
            .net
            .fc7_features(&images)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        for (f, &index) in feats.iter().zip(&indices) {
            for (qf, best) in q.iter().zip(nearest.iter_mut()) {
                best.offer(euclidean(qf, f), index);
            }
        }
        sink.event(&TrainEvent::EvalBatch {
            pass: "fc7 features",
            done: i + 1,
            total,
        });
    }
    Ok(nearest.into_iter().map(NearestK::into_sorted).collect())
}

/// Euclidean distance, accumulated in `f64`.
fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(x - y);
            d * d
        })
        .sum::<f64>()
        .sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_k_keeps_the_smallest_in_order() {
        let mut n = NearestK::new(3);
        for (d, i) in [(5.0, 0), (1.0, 1), (3.0, 2), (0.5, 3), (9.0, 4), (1.0, 5)] {
            n.offer(d, i);
        }
        assert_eq!(n.into_sorted(), vec![(0.5, 3), (1.0, 1), (1.0, 5)]);
        let mut few = NearestK::new(6);
        few.offer(2.0, 7);
        assert_eq!(few.into_sorted(), vec![(2.0, 7)]);
        assert_eq!(euclidean(&[0.0, 3.0], &[4.0, 0.0]), 5.0);
    }

    #[test]
    fn layout_separates_the_query_from_its_neighbours() {
        let l = NeighboursLayout {
            rows: 2,
            k: 6,
            thumb: 96,
        };
        assert_eq!(l.image_origin(0, 0), (MARGIN, MARGIN));
        assert_eq!(l.image_origin(0, 1).0, MARGIN + 100 + SEPARATOR);
        assert_eq!(l.image_origin(1, 6).0 + 96 + MARGIN, l.width());
        assert_eq!(l.image_origin(1, 0).1 + 96 + CAPTION + MARGIN, l.height());
    }
}
