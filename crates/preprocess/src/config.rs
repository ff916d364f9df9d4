//! What to convert and where: [`PreprocessConfig`] and its defaults.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use decode::{JpegScaling, ResizeFilter};
use shards::Encoding;

use crate::part::Part;

/// Default `--images-per-shard`.
pub const DEFAULT_IMAGES_PER_SHARD: usize = 1024;
/// Default `--workers`: 0, one per available core.
pub const DEFAULT_WORKERS: usize = 0;
/// Default `--open-shards`.
pub const DEFAULT_OPEN_SHARDS: usize = 32;

/// What to convert and where.
#[derive(Clone, Debug)]
pub struct PreprocessConfig {
    /// Inputs in any layout ImageNet is downloaded in (see
    /// [`crate::detect_layout`]): directories or files, the layout found
    /// from them; instead of the per-split paths below.
    pub from: Vec<PathBuf>,
    /// `ILSVRC2012_img_train.tar` (outer tar of per-class tars).
    pub train_tar: Option<PathBuf>,
    /// Extracted train tree `DIR/<wnid>/*.JPEG` (instead of `train_tar`).
    pub train_dir: Option<PathBuf>,
    /// `ILSVRC2012_img_val.tar` (flat); needs `devkit`.
    pub val_tar: Option<PathBuf>,
    /// Extracted val directory `DIR/*.JPEG` (instead of `val_tar`); needs `devkit`.
    pub val_dir: Option<PathBuf>,
    /// `ILSVRC2012_devkit_t12.tar.gz`: class list and val ground truth.
    /// Without it the classes are the train input's WNIDs, sorted.
    pub devkit: Option<PathBuf>,
    /// Output directory (see the workspace README for its layout).
    pub out: PathBuf,
    /// Most images per shard.
    pub images_per_shard: usize,
    /// Shards written at the same time (the number of shards each group of
    /// consecutive inputs is spread over).
    pub open_shards: usize,
    /// Decode/resize threads; 0 = all cores.
    pub workers: usize,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// How JPEGs are decoded before the resize (DCT-domain scaling of large
    /// photos, or full size).
    pub jpeg_scaling: JpegScaling,
    /// The most pixels an input image may declare; larger ones are skipped
    /// from their header, before any pixel buffer is allocated (default:
    /// Pillow's limit, [`decode::DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
    /// How shards store images: raw pixels (the default) or JPEG.
    pub encoding: Encoding,
    /// Set to `true` (e.g. from a Ctrl-C handler) to stop soon; open
    /// temporary shards are removed and the run returns `Interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Stop abruptly, as a `kill -9` would (temporary shards are left behind),
    /// after this many shards were completed in this run. For testing resume.
    pub halt_after_shards: Option<u64>,
    /// Convert only this part's share (see [`crate::parts`]); `None`: everything.
    pub part: Option<Part>,
}

impl Default for PreprocessConfig {
    /// Default options, no inputs, and an empty output path.
    fn default() -> Self {
        PreprocessConfig {
            from: Vec::new(),
            train_tar: None,
            train_dir: None,
            val_tar: None,
            val_dir: None,
            devkit: None,
            out: PathBuf::new(),
            images_per_shard: DEFAULT_IMAGES_PER_SHARD,
            open_shards: DEFAULT_OPEN_SHARDS,
            workers: DEFAULT_WORKERS,
            filter: ResizeFilter::default(),
            jpeg_scaling: JpegScaling::default(),
            max_pixels: decode::DEFAULT_MAX_PIXELS,
            encoding: Encoding::Raw,
            cancel: None,
            halt_after_shards: None,
            part: None,
        }
    }
}

impl PreprocessConfig {
    /// A config writing to `out` with default options and no inputs yet.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        PreprocessConfig {
            out: out.into(),
            ..PreprocessConfig::default()
        }
    }
}
