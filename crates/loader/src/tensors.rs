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
