//! The layer primitives the network is built from, in one place: every call
//! of the network goes through these functions. They forward to the custom
//! operations of [`crate::ops`] (fast CPU kernels with their own backward,
//! stock Candle compositions on other devices).
//!
//! [`use_stock_ops`] switches every layer to the stock Candle compositions
//! (`ops::*_stock`) on all devices: the baseline the custom operations are
//! measured against, and a cross-check of them.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Result, Tensor};

use crate::config::Activation;
use crate::ops::{self, LrnConfig};

static STOCK: AtomicBool = AtomicBool::new(false);

/// Process-wide switch: `true` runs every layer with stock Candle operations
/// instead of the custom operations (for comparisons; off by default).
pub fn use_stock_ops(stock: bool) {
    STOCK.store(stock, Ordering::Relaxed);
}

fn stock() -> bool {
    STOCK.load(Ordering::Relaxed)
}

/// 2-D convolution `x [N,Cin,H,W] * w [Cout,Cin,kh,kw] + b [Cout]` followed
/// by ReLU, fused into one operation (every convolution of the network has
/// its ReLU). `input_grad: false` says that no gradient is needed for `x`.
pub fn conv2d_relu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    if stock() {
        return ops::conv2d_relu_stock(x, w, b, stride, padding, input_grad);
    }
    ops::conv2d_relu(x, w, b, stride, padding, input_grad)
}

/// 2-D convolution `x [N,Cin,H,W] * w [Cout,Cin,kh,kw] + b [Cout]` without
/// an activation (for non-linearities other than ReLU).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    if stock() {
        return ops::conv2d_stock_input_grad(x, w, b, stride, padding, input_grad);
    }
    ops::conv2d(x, w, b, stride, padding, input_grad)
}

/// Fully connected layer with weights stored `[in, out]`: `x [N,in] @ w + b`.
pub fn linear(x: &Tensor, w_in_out: &Tensor, b: &Tensor) -> Result<Tensor> {
    if stock() {
        return ops::linear_stock(x, w_in_out, b);
    }
    ops::linear(x, w_in_out, b)
}

/// Local response normalisation across channels of `x [N,C,H,W]`, then
/// [`max_pool_overlapping`], fused into one operation.
pub fn lrn_max_pool(x: &Tensor, cfg: &LrnConfig, kernel: usize, stride: usize) -> Result<Tensor> {
    if stock() {
        return ops::lrn_max_pool_stock(x, cfg, kernel, stride);
    }
    ops::lrn_max_pool(x, cfg, kernel, stride)
}

/// Overlapping max-pool of `x [N,C,H,W]`, no padding.
pub fn max_pool_overlapping(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    if stock() {
        return ops::max_pool_overlapping_stock(x, kernel, stride);
    }
    ops::max_pool_overlapping(x, kernel, stride)
}

/// ReLU (fused CPU op with a one-pass backward; Candle's elsewhere).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if stock() {
        return x.relu();
    }
    crate::relu::relu(x)
}

/// The network's non-linearity: [`relu`] or Candle's `tanh`.
pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Tanh => x.tanh(),
    }
}

/// Checks the element type of an input.
pub fn expect_f32(x: &Tensor, what: &str) -> Result<()> {
    if x.dtype() != DType::F32 {
        candle_core::bail!("{what} must be f32, got {:?}", x.dtype());
    }
    Ok(())
}
