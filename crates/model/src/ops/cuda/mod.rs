//! CUDA paths of the custom operations (features `cuda` and `cudnn`).
//!
//! * [`conv`]: convolution forward, backward-data and backward-filter on
//!   cuDNN (per-shape plans with their algorithm and workspace), bias with
//!   fused ReLU, ReLU mask and bias gradient in NVRTC kernels.
//! * [`pool_lrn`]: overlapping max-pooling, cross-channel LRN and the two
//!   fused, forward and backward, on cuDNN.
//! * [`sgd`]: the paper's SGD step as one NVRTC kernel per parameter.
//! * [`input`]: the network's input from `u8` crops, copied on a stream of
//!   its own and normalised by one NVRTC kernel.
//!
//! The NVRTC kernels are in `kernels.cu`, compiled for the device's compute
//! capability.
//!
//! The device-free parts (descriptor shapes, plan keys, the algorithm
//! choice, launch sizes) are in [`super::cuda_plan`].

#[cfg(feature = "cudnn")]
pub(crate) mod conv;
pub(crate) mod input;
pub(crate) mod kernels;
#[cfg(feature = "cudnn")]
pub(crate) mod pool_lrn;
pub(crate) mod sgd;

use candle_core::cuda_backend::cudarc::driver::CudaView;
use candle_core::{CudaStorage, Layout, Result};

/// The `f32` elements of a contiguous tensor's storage, from its offset.
pub(crate) fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
    Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
}
