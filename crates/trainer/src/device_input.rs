//! How training batches reach the network.
//!
//! - On the CPU (and wherever the device path does not apply), the loader
//!   makes normalised `f32` batches and they become tensors as they are.
//! - On CUDA (feature `cuda`), the loader makes raw `u8` crops
//!   (`Output::U8Nchw`, a quarter of the bytes), and
//!   [`model::input::DeviceInput`] copies them from pinned memory on a copy
//!   stream into one of two buffers and normalises them on the GPU (mean
//!   image and PCA lighting in one kernel, the loader's arithmetic). The
//!   step on batch `n` stages batch `n + 1` ([`InputPath::prefetch`]) after
//!   queueing its own work and before reading its loss back, so that the
//!   copy runs while the GPU computes. `ALEXNET_INPUT=host` keeps the `f32`
//!   path on CUDA too (for comparison).
//!
//! [`Feed`] is the epoch's batches with one batch of lookahead, and the
//! time spent waiting for the loader.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use loader::{Batch, Epoch, LoaderConfig, MeanSubtraction, Output};

use crate::devices::Devices;
use crate::error::Result;

/// The environment variable that chooses the input path on CUDA: `host`
/// (normalised `f32` from the loader) or `device` (the default).
pub const INPUT_ENV: &str = "ALEXNET_INPUT";

/// Whether the training batches for tower A are normalised on its device:
/// a CUDA build, tower A on a CUDA device, the paper's mean-image
/// subtraction, and `ALEXNET_INPUT` not `host`.
pub fn normalise_on_device(tower_a_cuda: bool, mean: MeanSubtraction, env: Option<&str>) -> bool {
    cfg!(feature = "cuda")
        && tower_a_cuda
        && mean == MeanSubtraction::Image
        && env.map(str::trim) != Some("host")
}

/// The training loader's output for tower A on `devices` (this rank's):
/// raw `u8` crops when they are normalised on the device.
pub fn train_output(devices: &Devices, cfg: &LoaderConfig) -> Output {
    let env = std::env::var(INPUT_ENV).ok();
    if normalise_on_device(devices.tower_a_is_cuda(), cfg.mean, env.as_deref()) {
        Output::U8Nchw
    } else {
        cfg.output
    }
}

/// The epoch's batches with one batch of lookahead.
pub struct Feed {
    epoch: Epoch,
    ahead: Option<std::result::Result<Batch, loader::LoaderError>>,
    prefetch_wait: Duration,
}

impl Feed {
    /// Over one epoch of the loader.
    pub fn new(epoch: Epoch) -> Self {
        Self {
            epoch,
            ahead: None,
            prefetch_wait: Duration::ZERO,
        }
    }

    /// The next batch: the one fetched ahead, or the loader's next.
    pub fn next_batch(&mut self) -> Option<std::result::Result<Batch, loader::LoaderError>> {
        self.ahead.take().or_else(|| self.epoch.next())
    }

    /// Fetches the next batch ahead (waiting for the loader if it is not
    /// ready; that time is kept for [`Feed::take_prefetch_wait`]) and
    /// returns it; `None` at the end of the epoch or on an error, which
    /// [`Feed::next_batch`] then returns.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the CUDA path stages it
    pub fn peek(&mut self) -> Option<&Batch> {
        if self.ahead.is_none() {
            let t = Instant::now();
            self.ahead = self.epoch.next();
            self.prefetch_wait += t.elapsed();
        }
        self.ahead.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// Time spent waiting for the loader in [`Feed::peek`] since the last call.
    pub fn take_prefetch_wait(&mut self) -> Duration {
        std::mem::take(&mut self.prefetch_wait)
    }
}

/// Where training batches become the network's input.
pub enum InputPath {
    /// Normalised `f32` batches from the loader, copied as they are.
    Host(Device),
    /// Raw `u8` batches normalised on the GPU.
    #[cfg(feature = "cuda")]
    Device {
        /// The device path.
        input: Box<model::input::DeviceInput>,
        /// Tower A's device (labels go there).
        device: Device,
        /// Number of the batch staged ahead, if any.
        staged: Option<usize>,
    },
}

impl InputPath {
    /// The path for tower A's `device` and the training loader's
    /// configuration and statistics: the device path when the loader makes
    /// `u8` NCHW crops (see [`train_output`]).
    pub fn new(device: &Device, cfg: &LoaderConfig, stats: &loader::Stats) -> Result<Self> {
        if cfg.output == Output::F32Nchw {
            return Ok(Self::Host(device.clone()));
        }
        #[cfg(feature = "cuda")]
        if device.is_cuda() {
            let input = model::input::DeviceInput::new(
                device,
                &stats.mean_image,
                stats.height,
                stats.width,
                cfg.scale,
            )?;
            return Ok(Self::Device {
                input: Box::new(input),
                device: device.clone(),
                staged: None,
            });
        }
        let _ = stats;
        Err(crate::error::TrainerError::HostU8Batches(cfg.output))
    }

    /// Whether batches are normalised on the device.
    #[cfg(test)]
    pub fn on_device(&self) -> bool {
        !matches!(self, Self::Host(_))
    }

    /// Images and labels of `batch` on the device.
    pub fn tensors(&mut self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        match self {
            Self::Host(device) => Ok(batch.to_tensors(device)?),
            #[cfg(feature = "cuda")]
            Self::Device {
                input,
                device,
                staged,
            } => {
                if *staged != Some(batch.number()) {
                    // Not staged ahead (an epoch's first batch).
                    input.clear();
                    stage_batch(input, batch)?;
                }
                *staged = None;
                let images = input.take()?;
                let labels = Tensor::from_slice(batch.labels(), batch.len(), device)?;
                Ok((images, labels))
            }
        }
    }

    /// Forgets a batch staged ahead and not used (at the start of an epoch).
    pub fn reset(&mut self) {
        #[cfg(feature = "cuda")]
        if let Self::Device { input, staged, .. } = self {
            input.clear();
            *staged = None;
        }
    }

    /// Starts the copy of the feed's next batch (device path only); the
    /// step calls it once its own work is queued.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn prefetch(&mut self, feed: &mut Feed) -> Result<()> {
        match self {
            Self::Host(_) => Ok(()),
            #[cfg(feature = "cuda")]
            Self::Device { input, staged, .. } => {
                if staged.is_some() {
                    return Ok(());
                }
                if let Some(next) = feed.peek() {
                    stage_batch(input, next)?;
                    *staged = Some(next.number());
                }
                Ok(())
            }
        }
    }
}

/// Stages a loader batch of `u8` crops on `input`: its pixels, and where
/// each view was cut and the lighting it gets.
#[cfg(feature = "cuda")]
pub fn stage_batch(input: &mut model::input::DeviceInput, batch: &Batch) -> Result<()> {
    let views: Vec<model::input::ViewMeta> = batch
        .crops()
        .iter()
        .zip(batch.lighting())
        .map(|(c, l)| model::input::ViewMeta {
            y: c.y,
            x: c.x,
            flipped: c.flipped,
            light: *l,
        })
        .collect();
    input.stage(batch.images_u8(), &views, batch.crop())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_normalisation_needs_cuda_the_mean_image_and_no_override() {
        let cuda = cfg!(feature = "cuda");
        let image = MeanSubtraction::Image;
        assert_eq!(normalise_on_device(true, image, None), cuda);
        assert_eq!(normalise_on_device(true, image, Some("device")), cuda);
        assert!(!normalise_on_device(true, image, Some("host")));
        assert!(!normalise_on_device(false, image, None));
        assert!(!normalise_on_device(true, MeanSubtraction::Channel, None));
        let gpu: Devices = "cuda:0,cpu".parse().unwrap();
        assert!(gpu.tower_a_is_cuda());
        let cfg = LoaderConfig::train();
        let cpu: Devices = "cpu,cpu".parse().unwrap();
        assert_eq!(train_output(&cpu, &cfg), Output::F32Nchw);
    }

    #[test]
    fn the_cpu_keeps_the_loaders_f32_path() {
        let stats = shards::testing::ShardSpec::small().stats();
        let path = InputPath::new(&Device::Cpu, &LoaderConfig::train(), &stats).unwrap();
        assert!(!path.on_device());
        let u8_cfg = LoaderConfig {
            output: Output::U8Nchw,
            ..LoaderConfig::train()
        };
        assert!(InputPath::new(&Device::Cpu, &u8_cfg, &stats).is_err());
    }

    #[test]
    fn the_feed_returns_the_batch_it_fetched_ahead_and_counts_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let spec = shards::testing::ShardSpec::small();
        shards::testing::write_split(dir.path(), loader::Split::Train, &spec).unwrap();
        let ds = loader::Dataset::open(&loader::DatasetDir::new(dir.path()).train()).unwrap();
        let l = loader::Loader::new(
            ds,
            spec.stats(),
            LoaderConfig {
                batch_size: 8,
                threads: 1,
                crop: 24,
                ..LoaderConfig::train()
            },
        )
        .unwrap();
        let mut feed = Feed::new(l.epoch(0).unwrap());
        let first = feed.next_batch().unwrap().unwrap();
        assert_eq!(first.number(), 0);
        assert_eq!(feed.peek().map(Batch::number), Some(1));
        assert_eq!(
            feed.peek().map(Batch::number),
            Some(1),
            "peeking twice fetches once"
        );
        let _ = feed.take_prefetch_wait();
        assert_eq!(feed.take_prefetch_wait(), Duration::ZERO);
        assert_eq!(feed.next_batch().unwrap().unwrap().number(), 1);
        assert_eq!(feed.next_batch().unwrap().unwrap().number(), 2);
        assert!(feed.peek().is_none(), "21 images: 3 batches");
        assert!(feed.next_batch().is_none());
    }
}
