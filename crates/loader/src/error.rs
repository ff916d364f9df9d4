//! The crate's error types.

use std::path::PathBuf;

pub use shards::ShardError;

/// Everything that can go wrong while opening shards or producing batches.
///
/// Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// A file of the dataset could not be read, or does not hold what the
    /// format promises.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A split directory without any `shard-*.h5` file.
    #[error("{0}: no shard-*.h5 files in this directory")]
    NoShards(PathBuf),
    /// Every shard of a split directory is empty.
    #[error("{0}: every shard in this directory is empty")]
    AllShardsEmpty(PathBuf),
    /// Two shards of one split hold images of different sizes.
    #[error("{path}: images are {height}x{width} but {first} has {first_height}x{first_width}")]
    MixedImageSizes {
        /// The shard that differs.
        path: PathBuf,
        /// Its image height.
        height: usize,
        /// Its image width.
        width: usize,
        /// The first shard with images.
        first: PathBuf,
        /// The first shard's image height.
        first_height: usize,
        /// The first shard's image width.
        first_width: usize,
    },
    /// A [`LoaderConfig`](crate::LoaderConfig) that cannot work with this dataset.
    #[error("invalid loader configuration: {0}")]
    Config(#[from] ConfigError),
    /// A worker thread panicked; the message is the panic payload.
    #[error("a loader worker panicked while {during}: {message}")]
    WorkerPanic {
        /// What the worker was doing (`building batch 3`, `opening shards`).
        during: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A worker thread could not be started.
    #[error("starting a loader worker thread: {0}")]
    SpawnWorker(#[source] std::io::Error),
    /// The epoch was stopped (its iterator dropped) while a batch was built.
    #[error("the epoch was stopped")]
    Stopped,
    /// The worker threads went away before the epoch was complete.
    #[error("the loader workers stopped before the epoch was complete ({delivered} of {expected} batches delivered)")]
    WorkersGone {
        /// Batches delivered so far.
        delivered: usize,
        /// Batches the epoch should have.
        expected: usize,
    },
}

/// A loader configuration that cannot work with the dataset it is given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `batch_size` is 0.
    #[error("batch_size must be at least 1")]
    ZeroBatchSize,
    /// `threads` is 0.
    #[error("threads must be at least 1")]
    ZeroThreads,
    /// `rank` is not below `world_size`.
    #[error("rank {rank} is not below world_size {world_size}")]
    RankOutsideWorld {
        /// The rank.
        rank: usize,
        /// The world size.
        world_size: usize,
    },
    /// The crop is 0 or larger than the images.
    #[error("crop {crop} does not fit the {height}x{width} images of {dir}")]
    CropDoesNotFit {
        /// The crop side.
        crop: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// The split directory.
        dir: PathBuf,
    },
    /// `lighting_std` is negative or not finite.
    #[error("lighting_std {0} must be finite and not negative")]
    LightingStd(f32),
    /// `scale` is not finite.
    #[error("scale {0} must be finite")]
    Scale(f32),
    /// The statistics were computed on images of another size.
    #[error("the statistics' mean image is {stats_height}x{stats_width} ({values} values) but the images of {dir} are {height}x{width}")]
    StatsSize {
        /// Mean image height.
        stats_height: usize,
        /// Mean image width.
        stats_width: usize,
        /// Values in the mean image.
        values: usize,
        /// The split directory.
        dir: PathBuf,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
    },
    /// An epoch would hold no batch.
    #[error("an epoch would hold no batch: {images} images, world_size {world_size}, batch_size {batch_size}, drop_last {drop_last}")]
    NoBatches {
        /// Images in the split.
        images: usize,
        /// The world size.
        world_size: usize,
        /// The batch size.
        batch_size: usize,
        /// Whether a short last batch is dropped.
        drop_last: bool,
    },
    /// A batch past the end of the epoch was asked for.
    #[error("batch {number} requested but an epoch has {batches} batches")]
    BatchOutOfRange {
        /// The batch asked for.
        number: usize,
        /// Batches in an epoch.
        batches: usize,
    },
}
