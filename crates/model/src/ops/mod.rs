//! Custom Candle operations for AlexNet, each with its own backward pass.
//!
//! Stock Candle 0.11 cannot train the paper's network efficiently on the CPU:
//! overlapping max-pooling has no backward, the convolution backward is about
//! five times its forward, and local response normalisation built from
//! generic tensor operations is slow. The functions here replace them:
//!
//! * [`conv2d`]: im2col + `gemm` forward with fused bias; backward computes the
//!   weight and bias gradients with `gemm`, and the input gradient (col2im of
//!   `Wᵀ·dY`) only when asked to (`input_grad`).
//! * [`conv2d_relu`]: the same convolution with the ReLU that follows it fused
//!   into its forward and backward.
//! * [`lrn`]: fused local response normalisation across channels with its
//!   analytic backward, in the convention of `torch.nn.LocalResponseNorm`.
//! * [`lrn_max_pool`]: the two fused, as the paper uses them after conv1
//!   and conv2.
//! * [`max_pool_overlapping`]: max-pooling with kernel larger than stride (the
//!   paper's 3x3 stride 2), backward scattering to the first maximum.
//! * [`linear`]: fully connected layer with weights stored `[in, out]`.
//!
//! The fast paths run on the CPU with `f32` tensors and, in a build with the
//! `cudnn` feature, on CUDA with `f32` tensors (cuDNN convolutions, pooling
//! and LRN, NVRTC kernels for bias, ReLU mask and bias gradient; see
//! `ops/cuda`). The linear layer stays on Candle's matmul (cuBLAS) on CUDA.
//! On any other device or data type the functions fall back to
//! compositions of stock Candle operations (the `*_stock` functions below),
//! which have a backward on every device.

mod conv;
mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod cuda_plan;
mod linear;
mod lrn;
mod lrn_pool;
mod pool;

use candle_core::{DType, Result, Tensor};

pub use conv::conv2d_stock;
pub use linear::linear_stock;
pub use lrn::lrn_stock;
pub use pool::max_pool_overlapping_stock;

/// Parameters of local response normalisation across channels.
///
/// The output is `b_c = a_c / (k + alpha / size * sum_{j in window(c)} a_j^2)^beta`
/// where `window(c)` is the `size` channels `c - size/2 ..= c + (size-1)/2`,
/// clipped to the valid channels. This is the convention of PyTorch's
/// `torch.nn.LocalResponseNorm` (alpha divided by `size`); the paper writes
/// `alpha` without the division.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrnConfig {
    /// Number of neighbouring channels summed over (`n` in the paper).
    pub size: usize,
    /// Scale of the sum of squares (divided by `size`, PyTorch convention).
    pub alpha: f64,
    /// Exponent.
    pub beta: f64,
    /// Additive constant.
    pub k: f64,
}

impl Default for LrnConfig {
    /// The paper's values: `k = 2`, `n = 5`, `alpha = 1e-4`, `beta = 0.75`.
    fn default() -> Self {
        Self {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            k: 2.0,
        }
    }
}

/// True when the custom operations apply to `t`: `f32` on the CPU, or on
/// CUDA in a build with cuDNN.
fn fast_path(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && (t.device().is_cpu() || (CUDNN && t.device().is_cuda()))
}

/// True when the CPU kernels apply to `t` (the linear layer has no CUDA
/// path of its own: Candle's matmul is cuBLAS there).
fn cpu_path(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Whether this build runs the custom operations on CUDA (cuDNN).
const CUDNN: bool = cfg!(feature = "cudnn");

/// 2-D convolution with bias: `x [N, C, H, W]`, `w [O, C, kh, kw]`, `b [O]`,
/// square `stride` and zero `padding`; returns `[N, O, Ho, Wo]`.
///
/// With `input_grad == false` the backward pass returns no gradient for `x`
/// (use it where `x` needs none, e.g. the input image); the weight and bias
/// gradients are always computed.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    if fast_path(x) && fast_path(w) && fast_path(b) {
        conv::conv2d_cpu(x, w, b, stride, padding, input_grad, false)
    } else {
        conv2d_stock_input_grad(x, w, b, stride, padding, input_grad)
    }
}

/// [`conv2d`] followed by ReLU, `max(conv2d(x, w, b), 0)`, in one operation:
/// the ReLU runs on each sample's output while it is in cache, its backward
/// (`dy * (y > 0)`) inside the convolution's backward, and the graph holds
/// one node and one activation instead of two.
pub fn conv2d_relu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    if fast_path(x) && fast_path(w) && fast_path(b) {
        conv::conv2d_cpu(x, w, b, stride, padding, input_grad, true)
    } else {
        conv2d_relu_stock(x, w, b, stride, padding, input_grad)
    }
}

/// [`conv2d_relu`] from stock Candle operations (the convolution of
/// [`conv2d_stock_input_grad`], then Candle's ReLU).
pub(crate) fn conv2d_relu_stock(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    conv2d_stock_input_grad(x, w, b, stride, padding, input_grad)?.relu()
}

/// [`conv2d_stock`] that, like [`conv2d`], computes no gradient for `x` when
/// `input_grad` is false (the input is detached from the graph).
pub(crate) fn conv2d_stock_input_grad(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    let x = if input_grad { x.clone() } else { x.detach() };
    conv2d_stock(&x, w, b, stride, padding)
}

/// Local response normalisation across channels of `x [N, C, H, W]`
/// (see [`LrnConfig`] for the formula and convention).
pub fn lrn(x: &Tensor, cfg: &LrnConfig) -> Result<Tensor> {
    if fast_path(x) && lrn_on_device(x, cfg) {
        lrn::lrn_cpu(x, cfg)
    } else {
        lrn_stock(x, cfg)
    }
}

/// [`lrn`] followed by [`max_pool_overlapping`], in one operation: the
/// normalised maps exist one sample at a time in a scratch buffer, the graph
/// holds one node instead of two, and the backward pass runs per sample in
/// cache. The paper applies the two in this order after conv1 and conv2.
pub fn lrn_max_pool(x: &Tensor, cfg: &LrnConfig, kernel: usize, stride: usize) -> Result<Tensor> {
    if fast_path(x) && lrn_on_device(x, cfg) {
        lrn_pool::lrn_max_pool_cpu(x, cfg, kernel, stride)
    } else {
        lrn_max_pool_stock(x, cfg, kernel, stride)
    }
}

/// [`lrn_max_pool`] from stock Candle operations ([`lrn_stock`] then
/// [`max_pool_overlapping_stock`]); differentiable on every device.
pub fn lrn_max_pool_stock(
    x: &Tensor,
    cfg: &LrnConfig,
    kernel: usize,
    stride: usize,
) -> Result<Tensor> {
    max_pool_overlapping_stock(&lrn_stock(x, cfg)?, kernel, stride)
}

/// Max-pooling of `x [N, C, H, W]` with a square `kernel` and `stride`
/// (overlapping when `kernel > stride`), no padding, floor mode:
/// `Ho = (H - kernel) / stride + 1` (55 -> 27, 27 -> 13, 13 -> 6 for 3/2).
///
/// The backward pass sends each output's gradient to the first maximum of
/// its window in row-major order, as PyTorch does.
pub fn max_pool_overlapping(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    if fast_path(x) {
        pool::max_pool_cpu(x, kernel, stride)
    } else {
        max_pool_overlapping_stock(x, kernel, stride)
    }
}

/// Fully connected layer `x [N, in] · w [in, out] + b [out]` -> `[N, out]`,
/// weights stored `[in, out]`.
pub fn linear(x: &Tensor, w_in_out: &Tensor, b: &Tensor) -> Result<Tensor> {
    if cpu_path(x) && cpu_path(w_in_out) && cpu_path(b) {
        linear::linear_cpu(x, w_in_out, b)
    } else {
        linear_stock(x, w_in_out, b)
    }
}

/// False for an LRN configuration that cuDNN cannot compute in this crate's
/// convention (an even window, for one) when `x` is on CUDA: such a call
/// takes the stock operations. Always true on the CPU.
fn lrn_on_device(x: &Tensor, cfg: &LrnConfig) -> bool {
    if x.device().is_cpu() {
        return true;
    }
    cuda_plan::CudnnLrn::new(cfg).is_ok()
}
