//! The element-wise and reduction kernels of the CUDA operations, compiled
//! once per process with NVRTC (no `nvcc` at build time) and loaded once per
//! device by Candle's module cache.

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{CudaFunction, LaunchConfig};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use crate::ops::cuda_plan::Launch;

/// Name of the module in Candle's per-device cache of custom modules.
const MODULE: &str = "alexnet_ops";

/// CUDA C of every kernel. All take element counts as 64-bit integers and
/// loop grid-stride, so any launch size covers any tensor.
const SOURCE: &str = r#"
// y <- y + b[channel], then max(y, 0) if relu. y is [N, O, P] (P = Ho*Wo).
extern "C" __global__ void bias_act_f32(float* y, const float* b,
        unsigned long long len, unsigned long long p, unsigned long long o, int relu) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < len; i += (unsigned long long)blockDim.x * gridDim.x) {
        float v = y[i] + b[(i / p) % o];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// dyr <- dy where y > 0, else 0 (the backward of a fused ReLU).
extern "C" __global__ void relu_mask_f32(const float* dy, const float* y, float* dyr,
        unsigned long long len) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < len; i += (unsigned long long)blockDim.x * gridDim.x) {
        dyr[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

// db[c] += sum over samples and pixels of dy [N, O, P]; block (c, g) sums
// samples g, g + gridDim.y, ...; blockDim.x must be 256. db starts at 0.
extern "C" __global__ void bias_grad_f32(const float* dy, float* db,
        unsigned int n, unsigned int o, unsigned long long p) {
    __shared__ float buf[256];
    unsigned int c = blockIdx.x;
    float acc = 0.0f;
    for (unsigned int s = blockIdx.y; s < n; s += gridDim.y) {
        const float* plane = dy + ((unsigned long long)s * o + c) * p;
        for (unsigned long long j = threadIdx.x; j < p; j += blockDim.x) acc += plane[j];
    }
    buf[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) buf[threadIdx.x] += buf[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(db + c, buf[0]);
}

// The paper's SGD step, in place: v <- m v - wd_lr w - lr g; w <- w + v.
extern "C" __global__ void paper_sgd_f32(float* v, float* w, const float* g,
        unsigned long long len, float m, float wd_lr, float lr) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < len; i += (unsigned long long)blockDim.x * gridDim.x) {
        float nv = m * v[i] - wd_lr * w[i] - lr * g[i];
        v[i] = nv;
        w[i] = w[i] + nv;
    }
}
"#;

/// The PTX of [`SOURCE`], compiled on first use.
fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(format!("NVRTC compilation of the op kernels: {e}")))
}

/// Kernel `name` of the module on `dev` (loaded on its first use there).
pub(crate) fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    Ok(dev
        .get_or_load_custom_func(name, MODULE, ptx()?)?
        .into_cuda_function())
}

/// cudarc's launch configuration of a planned [`Launch`].
pub(crate) fn config(l: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: l.block,
        shared_mem_bytes: 0,
    }
}

/// A driver error as a Candle error.
pub(crate) fn driver_err(
    e: candle_core::cuda_backend::cudarc::driver::DriverError,
) -> candle_core::Error {
    candle_core::Error::wrap(e)
}
