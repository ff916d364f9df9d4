//! Conversion of a batch to Candle tensors (feature `candle`).

use candle_core::{Device, Tensor};

use crate::{Batch, Output};

impl Batch {
    /// The images and labels as tensors on `device`: images `f32 [N, 3, H, W]`
    /// for [`Output::F32Nchw`] (`u8` in the layout of [`Batch::shape`]
    /// otherwise), labels `i64 [n]` (one per image, not per view).
    pub fn to_tensors(&self, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let shape = self.shape();
        let images = match self.output() {
            Output::F32Nchw => Tensor::from_slice(self.images(), &shape, device)?,
            Output::U8Nhwc | Output::U8Nchw => {
                Tensor::from_slice(self.images_u8(), &shape, device)?
            }
        };
        let labels = Tensor::from_slice(self.labels(), self.len(), device)?;
        Ok((images, labels))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use crate::{Dataset, Loader, LoaderConfig, Output, Stats};
    use shards::testing::{write_dataset, ShardSpec};
    use shards::DatasetDir;

    #[test]
    fn batches_become_tensors_with_the_same_values() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), &ShardSpec::small()).unwrap();
        for output in [Output::F32Nchw, Output::U8Nhwc] {
            let cfg = LoaderConfig {
                batch_size: 4,
                crop: 24,
                threads: 1,
                output,
                ..LoaderConfig::train()
            };
            let data = DatasetDir::new(dir.path());
            let dataset = Dataset::open(&data.train()).unwrap();
            let stats = Stats::open(&data.stats()).unwrap();
            let batch = Loader::new(dataset, stats, cfg)
                .unwrap()
                .batch(0, 0)
                .unwrap();
            let (images, labels) = batch.to_tensors(&Device::Cpu).unwrap();
            assert_eq!(images.dims(), batch.shape());
            assert_eq!(labels.dims(), [4]);
            assert_eq!(labels.to_vec1::<i64>().unwrap(), batch.labels());
            match output {
                Output::F32Nchw => {
                    assert_eq!(images.dtype(), DType::F32);
                    assert_eq!(
                        images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                        batch.images()
                    );
                }
                _ => {
                    assert_eq!(images.dtype(), DType::U8);
                    assert_eq!(
                        images.flatten_all().unwrap().to_vec1::<u8>().unwrap(),
                        batch.images_u8()
                    );
                }
            }
        }
    }
}
