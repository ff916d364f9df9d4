//! The input check of `bench ops-check`: raw `u8` crops normalised on a
//! CUDA device ([`model::input::DeviceInput`]: pinned copy on its own
//! stream, two buffers, one kernel) against the loader's own `f32` output
//! for the same batches (random crops, flips and PCA lighting).

use model::candle_core::{Device, Tensor};

/// `(test, reference)` input tensors for two consecutive batches, staged
/// before either is taken (both buffers in use); `None` where the device
/// does not normalise on the device (the CPU keeps the loader's path).
pub fn input_pairs(device: &Device) -> anyhow::Result<Option<Vec<(Tensor, Tensor)>>> {
    if !device.is_cuda() {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let spec = shards::testing::ShardSpec::small();
    shards::testing::write_split(dir.path(), loader::Split::Train, &spec)?;
    let stats = spec.stats();
    let open = |output| -> anyhow::Result<loader::Loader> {
        let ds = loader::Dataset::open(&loader::DatasetDir::new(dir.path()).train())?;
        let cfg = loader::LoaderConfig {
            batch_size: 6,
            threads: 1,
            crop: 24,
            output,
            ..loader::LoaderConfig::train()
        };
        Ok(loader::Loader::new(ds, stats.clone(), cfg)?)
    };
    let (f32s, u8s) = (
        open(loader::Output::F32Nchw)?,
        open(loader::Output::U8Nchw)?,
    );
    normalised(device, &stats, &f32s, &u8s)
}

#[cfg(feature = "cuda")]
fn normalised(
    device: &Device,
    stats: &loader::Stats,
    f32s: &loader::Loader,
    u8s: &loader::Loader,
) -> anyhow::Result<Option<Vec<(Tensor, Tensor)>>> {
    use model::input::DeviceInput;
    let mut input = DeviceInput::new(
        device,
        &stats.mean_image,
        stats.height,
        stats.width,
        u8s.config().scale,
    )?;
    let batches: Vec<loader::Batch> = (0..2).map(|b| u8s.batch(1, b)).collect::<Result<_, _>>()?;
    for b in &batches {
        trainer::stage_batch(&mut input, b)?;
    }
    let mut out = Vec::new();
    for i in 0..batches.len() {
        let reference = f32s.batch(1, i)?;
        let want =
            Tensor::from_slice(reference.images(), reference.shape().to_vec(), &Device::Cpu)?;
        out.push((input.take()?.to_device(&Device::Cpu)?, want));
    }
    Ok(Some(out))
}

#[cfg(not(feature = "cuda"))]
fn normalised(
    device: &Device,
    _: &loader::Stats,
    _: &loader::Loader,
    _: &loader::Loader,
) -> anyhow::Result<Option<Vec<(Tensor, Tensor)>>> {
    anyhow::bail!("{device:?}: a CUDA device in a build without the cuda feature")
}
