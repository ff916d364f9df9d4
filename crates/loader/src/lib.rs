//! Streams the HDF5 shards of `cargo xtask preprocess` through the AlexNet
//! paper's augmentation into ready `f32` NCHW batches, on several threads,
//! without the HDF5 library's global lock.
//!
//! - [`Dataset`]: a split directory (`OUT/train`, `OUT/val`) of shards; image
//!   bytes are located once and then read with positioned reads.
//! - [`Stats`]: `OUT/stats.h5` (mean image, RGB PCA); [`read_classes`]:
//!   `OUT/classes.tsv`; [`DatasetDir`] says where each file lies. These
//!   come from the `shards` crate, which owns the on-disk format.
//! - [`LoaderConfig`]: every option, paper defaults ([`LoaderConfig::train`],
//!   [`LoaderConfig::eval`]).
//! - [`Loader`] / [`Epoch`] / [`Batch`]: an epoch is an iterator of batches,
//!   delivered in order; a batch's memory returns to a pool when dropped.
//!
//! What each image goes through in [`Mode::Train`]: a random `crop`x`crop`
//! crop, a horizontal flip with probability 1/2, PCA lighting (per image and
//! use, `a ~ N(0, lighting_std)`, offset `255 * eigvecs · (a ∘ eigvals)` added
//! to 0..255 pixels), and subtraction of the mean image at the same source
//! pixels. Every random choice comes from a stream keyed by
//! `(seed, epoch, image index)`, so batches are the same for any number of
//! threads and one batch can be rebuilt alone ([`Loader::batch`]).
//!
//! # Example
//!
//! ```
//! use loader::{Dataset, DatasetDir, Loader, LoaderConfig, Stats};
//! # fn main() -> Result<(), loader::LoaderError> {
//! # let tmp = std::env::temp_dir().join(format!("loader-doc-{}", std::process::id()));
//! # let spec = shards::testing::ShardSpec { side: 64, ..shards::testing::ShardSpec::small() };
//! # shards::testing::write_dataset(&tmp, &spec)?;
//! // The directory `cargo xtask preprocess` wrote.
//! let data = DatasetDir::new(&tmp);
//! let train = Dataset::open(&data.train())?;
//! let stats = Stats::open(&data.stats())?;
//! let classes = loader::read_classes(&data.classes())?;
//!
//! let cfg = LoaderConfig { batch_size: 8, crop: 56, threads: 2, seed: 7, ..LoaderConfig::train() };
//! let loader = Loader::new(train, stats, cfg)?;
//! for epoch in 0..2 {
//!     for batch in loader.epoch(epoch)? {
//!         let batch = batch?;
//!         let images: &[f32] = batch.images(); // [n, 3, 56, 56], mean subtracted
//!         let labels: &[i64] = batch.labels();
//!         assert_eq!(images.len(), batch.len() * 3 * 56 * 56);
//!         assert!(labels.iter().all(|&l| (l as usize) < classes.len()));
//!     }
//! }
//! # std::fs::remove_dir_all(&tmp).ok();
//! # Ok(())
//! # }
//! ```

mod batch;
mod config;
mod dataset;
mod error;
mod loader;
mod render;
mod sampler;
#[cfg(feature = "candle")]
mod tensors;

pub use batch::{Batch, CropInfo};
pub use config::{
    default_threads, LoaderConfig, MeanSubtraction, Mode, Output, DEFAULT_BATCH_SIZE,
    DEFAULT_PREFETCH,
};
pub use dataset::Dataset;
pub use error::{ConfigError, LoaderError};
pub use loader::{Epoch, Loader};
pub use shards::{
    read_classes, ClassEntry, DatasetDir, DecodedRegion, Encoding, JpegDecodeOptions, ShardError,
    Split, Stats,
};
