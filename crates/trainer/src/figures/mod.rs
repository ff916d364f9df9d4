//! The paper's figures from a checkpoint, as PNG files:
//!
//! - [`filters`]: Figure 3, the conv1 kernels of each tower, with a
//!   colourfulness measure per tower;
//! - [`predictions`]: Figure 4 (left), validation images with their top-5
//!   classes as bars;
//! - [`neighbours`]: Figure 4 (right), validation images with the training
//!   images nearest in last-hidden-layer (fc7) activations;
//! - [`curves`]: Figure 1, the training-error curves of several runs (e.g.
//!   ReLU against tanh) against epochs.
//!
//! Text uses the embedded font of [`crate::plot`]; images are composed on a
//! [`canvas::Canvas`]. Every function returns what it drew (positions,
//! classes, distances), so callers print it and tests check it.

/// Validation images a figure shows when not told.
pub const DEFAULT_COUNT: usize = 8;

pub mod canvas;
pub mod curves;
pub mod filters;
pub mod neighbours;
pub mod predictions;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use loader::{ClassEntry, Dataset, DatasetDir, Split, Stats};
use model::AlexNet;

use crate::checkpoint::Checkpoint;
use crate::devices::Devices;
use crate::error::{Result, TrainerError};
use crate::evaluate::load_network;
use crate::predict::centre_crop_chw;
use canvas::RgbImage;

/// A checkpoint's network with the dataset its figures read.
pub struct FigureSource {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Its network, in evaluation mode use.
    pub net: AlexNet,
    /// The dataset directory (`train/`, `val/`, `stats.h5`, `classes.tsv`).
    pub data_dir: PathBuf,
    /// The class table.
    pub classes: Vec<ClassEntry>,
    /// The statistics (mean image).
    pub stats: Stats,
}

impl FigureSource {
    /// Opens the checkpoint at `checkpoint` (run or checkpoint directory) on
    /// `devices`, and the dataset `data_dir` (default: the one it trained on;
    /// its `stats.h5` and `classes.tsv`, or the checkpoint's copies when the
    /// dataset lacks them).
    pub fn open(checkpoint: &Path, data_dir: Option<&Path>, devices: &Devices) -> Result<Self> {
        let ck = Checkpoint::open(checkpoint)?;
        let data_dir = data_dir.map_or_else(|| ck.state.data_dir.clone(), Path::to_path_buf);
        let data = DatasetDir::new(&data_dir);
        let stats_path = if data.stats().is_file() {
            data.stats()
        } else {
            ck.stats_path()
        };
        let stats = Stats::open(&stats_path)?;
        let classes = loader::read_classes(&data.classes())
            .or_else(|_| loader::read_classes(&ck.classes_path()))?;
        if classes.len() != ck.state.num_classes {
            return Err(TrainerError::ClassCount {
                path: data_dir,
                listed: classes.len(),
                trained: ck.state.num_classes,
            });
        }
        let net = load_network(&ck, devices)?;
        Ok(Self {
            checkpoint: ck,
            net,
            data_dir,
            classes,
            stats,
        })
    }

    /// The split `split` (`train` or `val`) of the dataset.
    pub fn split(&self, split: Split) -> Result<Dataset> {
        Dataset::open(&DatasetDir::new(&self.data_dir).split(split)).map_err(TrainerError::from)
    }

    /// The network's input side.
    pub fn input_size(&self) -> usize {
        self.checkpoint.state.architecture.input_size
    }

    /// Centre-crop inputs `[n, 3, S, S]` of stored images `rgb` (each of the
    /// mean image's size), on the network's input device.
    pub fn inputs(&self, images: &[RgbImage]) -> Result<Tensor> {
        let s = self.input_size();
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for img in images {
            data.extend(centre_crop_chw(&img.data, &self.stats, s)?);
        }
        Ok(Tensor::from_vec(
            data,
            (images.len(), 3, s, s),
            self.net.output_device(),
        )?)
    }

    /// The words of class `index` (its WNID when the words are empty).
    pub fn words(&self, index: usize) -> &str {
        let c = &self.classes[index];
        if c.words.is_empty() {
            &c.wnid
        } else {
            &c.words
        }
    }
}

/// Reads stored image `index` of `ds` as an [`RgbImage`].
pub fn read_image(ds: &Dataset, index: u64) -> Result<RgbImage> {
    let (h, w) = ds.image_size();
    let mut data = vec![0u8; h * w * 3];
    ds.read_image(index, &mut data)?;
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

/// Which `count` images of `len` to show: spread evenly over the split
/// (`i * len / count`) when `seed` is `None`, otherwise `count` distinct
/// images drawn at random from `seed`, in ascending order.
pub fn pick_images(len: usize, count: usize, seed: Option<u64>) -> Vec<u64> {
    let count = count.min(len);
    match seed {
        None => (0..count).map(|i| (i * len / count) as u64).collect(),
        Some(seed) => {
            use rand::seq::index::sample;
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut v: Vec<u64> = sample(&mut rng, len, count)
                .into_iter()
                .map(|i| i as u64)
                .collect();
            v.sort_unstable();
            v
        }
    }
}

/// Softmax of each row of `logits` `[n, C]`, on the CPU.
pub(crate) fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let p = candle_nn::ops::softmax(logits, candle_core::D::Minus1)?;
    Ok(p.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
}

/// Shortens `text` to at most `max` characters, ending in `...` when cut.
pub(crate) fn ellipsize(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_spread_or_random_distinct_images() {
        assert_eq!(pick_images(10, 4, None), vec![0, 2, 5, 7]);
        assert_eq!(pick_images(3, 8, None), vec![0, 1, 2]);
        let r = pick_images(100, 10, Some(3));
        assert_eq!(r.len(), 10);
        assert!(r.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(r, pick_images(100, 10, Some(3)));
        assert_ne!(r, pick_images(100, 10, Some(4)));
        assert_eq!(ellipsize("abcdefgh", 6), "abc...");
        assert_eq!(ellipsize("abc", 6), "abc");
    }
}
