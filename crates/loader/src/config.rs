//! The loader's options: one plain struct, paper defaults.

use shards::JpegDecodeOptions;

/// Which views of each image a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: one random `crop`x`crop` crop per image, a horizontal flip
    /// with probability 1/2 (if `flip`), PCA lighting (if `lighting_std > 0`).
    Train,
    /// Evaluation: the centre crop, no randomness.
    CenterCrop,
    /// The paper's 10-crop test: the four corner crops and the centre crop,
    /// then the same five flipped (the order of torchvision's `TenCrop`:
    /// top-left, top-right, bottom-left, bottom-right, centre, and their
    /// mirror images). No randomness.
    TenCrop,
}

impl Mode {
    /// Views per image: 10 for [`Mode::TenCrop`], 1 otherwise.
    pub fn views(self) -> usize {
        match self {
            Mode::TenCrop => 10,
            Mode::Train | Mode::CenterCrop => 1,
        }
    }
}

/// What is subtracted from each pixel of the `f32` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeanSubtraction {
    /// The mean image, at the same source pixels as the crop (so it is
    /// cropped and flipped with the image): the paper's choice.
    Image,
    /// The per-channel mean `rgb_mean`.
    Channel,
    /// Nothing: raw 0..255 values (plus lighting).
    None,
}

/// The element type and layout of [`Batch`](crate::Batch) images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `f32` NCHW `[N, 3, crop, crop]`: `(pixel - mean + lighting) * scale`.
    F32Nchw,
    /// Raw `u8` crops (flipped when drawn so), NHWC `[N, crop, crop, 3]`.
    /// Mean subtraction and lighting are left to the consumer (see
    /// [`Batch::lighting`](crate::Batch::lighting) and [`Batch::crops`](crate::Batch::crops)).
    U8Nhwc,
    /// Raw `u8` crops, NCHW `[N, 3, crop, crop]`; as [`Output::U8Nhwc`] otherwise.
    U8Nchw,
}

/// Everything a [`Loader`](crate::Loader) can be told. Build one with
/// [`LoaderConfig::train`] or [`LoaderConfig::eval`] and change fields.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch (the last batch of an epoch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Which crops to produce.
    pub mode: Mode,
    /// Seeds the shuffle and every image's augmentation.
    pub seed: u64,
    /// Worker threads building batches (at least 1).
    pub threads: usize,
    /// Batches that may be finished ahead of the consumer, on top of the one
    /// each worker is building. Memory is bounded by `threads + prefetch`
    /// batch buffers plus the batches the caller still holds.
    pub prefetch: usize,
    /// Drop the incomplete tail: the images that do not divide evenly among
    /// ranks and the last partial batch. When false, ranks are padded by
    /// wrapping around (as PyTorch's `DistributedSampler`) and the last batch
    /// may be short.
    pub drop_last: bool,
    /// This process's rank among `world_size` (0-based).
    pub rank: usize,
    /// Number of processes sharing each epoch; each rank gets a disjoint,
    /// equally long part (positions `rank, rank + world_size, ...` of the epoch order).
    pub world_size: usize,
    /// Side of the square crop (224 in the paper).
    pub crop: usize,
    /// Random horizontal flip with probability 1/2 ([`Mode::Train`] only).
    pub flip: bool,
    /// Standard deviation of the PCA lighting draws `a ~ N(0, lighting_std)`
    /// (0.1 in the paper; 0 disables; [`Mode::Train`] only).
    pub lighting_std: f32,
    /// What to subtract from the pixels of `f32` output.
    pub mean: MeanSubtraction,
    /// Multiplies `f32` output after subtraction (1 keeps 0..255 units, as the paper).
    pub scale: f32,
    /// A new random order every epoch; false reads images in stored order.
    pub shuffle: bool,
    /// Element type and layout of the images.
    pub output: Output,
    /// How JPEG shards are decoded: faithful by default (the pixels of a
    /// full decode); the fast IDCT and fast chroma upsampling trade exactness
    /// for speed (measured in `benchmarks/loader.md`). Raw shards ignore it.
    pub jpeg: JpegDecodeOptions,
}

impl LoaderConfig {
    /// The paper's training pipeline: batch 128, random 224 crop, flip, PCA
    /// lighting with std 0.1, mean-image subtraction, shuffled every epoch,
    /// one worker per available core.
    pub fn train() -> Self {
        LoaderConfig {
            batch_size: DEFAULT_BATCH_SIZE,
            mode: Mode::Train,
            seed: 0,
            threads: default_threads(),
            prefetch: DEFAULT_PREFETCH,
            drop_last: false,
            rank: 0,
            world_size: 1,
            crop: 224,
            flip: true,
            lighting_std: 0.1,
            mean: MeanSubtraction::Image,
            scale: 1.0,
            shuffle: true,
            output: Output::F32Nchw,
            jpeg: JpegDecodeOptions::default(),
        }
    }

    /// Evaluation: centre 224 crop, mean-image subtraction, no flip, no
    /// lighting, stored order, nothing dropped. Set `mode` to
    /// [`Mode::TenCrop`] for the paper's 10-view test.
    pub fn eval() -> Self {
        LoaderConfig {
            mode: Mode::CenterCrop,
            flip: false,
            lighting_std: 0.0,
            shuffle: false,
            ..Self::train()
        }
    }
}

impl Default for LoaderConfig {
    /// [`LoaderConfig::train`].
    fn default() -> Self {
        Self::train()
    }
}

/// The paper's batch: 128 images.
pub const DEFAULT_BATCH_SIZE: usize = 128;

/// Batches a loader builds ahead beyond one per worker thread.
pub const DEFAULT_PREFETCH: usize = 2;

/// Worker threads when none are asked for: one per available core (2 where
/// the count cannot be read).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
