//! Classifying image files with a checkpoint: the same preprocessing as
//! training (shorter side 256, centre 256 crop by the preprocess decoder,
//! then the centre `input_size` crop minus the mean image at the same
//! pixels), softmax, and the top classes with their words.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, D};
use loader::{ClassEntry, Stats};
use model::{AlexNet, ForwardMode};

use crate::checkpoint::Checkpoint;
use crate::devices::Devices;
use crate::error::{io_err, Result, TrainerError};
use crate::evaluate::load_network;

/// Classes shown per image when not told (the paper's top-5).
pub const DEFAULT_TOP: usize = 5;

/// One class and its probability.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassScore {
    /// Class index.
    pub index: usize,
    /// WordNet ID.
    pub wnid: String,
    /// The class's words from `classes.tsv`.
    pub words: String,
    /// Softmax probability.
    pub probability: f32,
}

/// A network with its class table and mean image, ready to classify photos.
pub struct Predictor {
    net: AlexNet,
    classes: Vec<ClassEntry>,
    stats: Stats,
    input_size: usize,
}

impl Predictor {
    /// Loads the checkpoint at `checkpoint` (run or checkpoint directory).
    /// The class table and statistics come from `data_dir` when given,
    /// otherwise from the copies inside the checkpoint directory.
    pub fn open(checkpoint: &Path, data_dir: Option<&Path>, devices: &Devices) -> Result<Self> {
        let ck = Checkpoint::open(checkpoint)?;
        let (classes_path, stats_path): (PathBuf, PathBuf) = match data_dir {
            Some(d) => {
                let data = loader::DatasetDir::new(d);
                (data.classes(), data.stats())
            }
            None => (ck.classes_path(), ck.stats_path()),
        };
        let classes = loader::read_classes(&classes_path)?;
        if classes.len() != ck.state.num_classes {
            return Err(TrainerError::ClassCount {
                path: classes_path,
                listed: classes.len(),
                trained: ck.state.num_classes,
            });
        }
        let stats = Stats::open(&stats_path)?;
        let input_size = ck.state.architecture.input_size;
        if stats.height < input_size || stats.width < input_size {
            return Err(TrainerError::MeanImageTooSmall {
                path: stats_path,
                height: stats.height,
                width: stats.width,
                crop: input_size,
            });
        }
        let net = load_network(&ck, devices)?;
        Ok(Self {
            net,
            classes,
            stats,
            input_size,
        })
    }

    /// The top `k` classes of the image file at `path` (JPEG or PNG).
    pub fn predict_file(&self, path: &Path, k: usize) -> Result<Vec<ClassScore>> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let rgb = decode::decode_to_256(&bytes).map_err(|source| TrainerError::Decode {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        self.predict_rgb(&rgb, k)
    }

    /// The top `k` classes of a decoded image: RGB HWC of the mean image's
    /// size (256x256 from the preprocess decoder).
    pub fn predict_rgb(&self, rgb: &[u8], k: usize) -> Result<Vec<ClassScore>> {
        let input = self.input_tensor(rgb)?;
        let logits = self.net.forward(&input, ForwardMode::Eval)?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        Ok(order
            .into_iter()
            .take(k)
            .map(|i| ClassScore {
                index: i,
                wnid: self.classes[i].wnid.clone(),
                words: self.classes[i].words.clone(),
                probability: probs[i],
            })
            .collect())
    }

    /// The network's input for one decoded image: the centre crop minus
    /// the mean image at the same pixels, `[1, 3, S, S]`, as the loader's
    /// centre-crop mode builds it.
    pub fn input_tensor(&self, rgb: &[u8]) -> Result<Tensor> {
        let s = self.input_size;
        let chw = centre_crop_chw(rgb, &self.stats, s)?;
        Ok(Tensor::from_vec(
            chw,
            (1, 3, s, s),
            self.net.output_device(),
        )?)
    }
}

/// The centre `size`x`size` crop of a decoded image (RGB HWC of the mean
/// image's size) minus the mean image at the same pixels, as `f32` CHW:
/// what the loader's centre-crop mode produces for a stored image.
pub fn centre_crop_chw(rgb: &[u8], stats: &Stats, size: usize) -> Result<Vec<f32>> {
    let (h, w) = (stats.height, stats.width);
    if rgb.len() != h * w * 3 {
        return Err(TrainerError::Shape(format!(
            "decoded image has {} bytes, expected {h}x{w}x3",
            rgb.len()
        )));
    }
    if size > h || size > w {
        return Err(TrainerError::Shape(format!(
            "a {size} crop does not fit a {h}x{w} image"
        )));
    }
    let s = size;
    let (y0, x0) = ((h - s) / 2, (w - s) / 2);
    let mut chw = vec![0f32; 3 * s * s];
    for c in 0..3 {
        for y in 0..s {
            for x in 0..s {
                let src = ((y0 + y) * w + (x0 + x)) * 3 + c;
                chw[(c * s + y) * s + x] = rgb[src] as f32 - stats.mean_image[src];
            }
        }
    }
    Ok(chw)
}
