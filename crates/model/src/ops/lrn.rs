//! Local response normalisation across channels, fused, with its analytic
//! backward.
//!
//! With `s_c = k + alpha/n * sum_{j in W(c)} a_j^2` and `b_c = a_c * s_c^-beta`
//! (`W(c) = c - n/2 ..= c + (n-1)/2`, clipped), the input gradient is
//!
//! `dL/da_c = dy_c * s_c^-beta - (2 alpha beta / n) * a_c * sum_{j : c in W(j)} dy_j * a_j * s_j^(-beta-1)`
//!
//! where `c in W(j)` means `j` in `c - (n-1)/2 ..= c + n/2`.

use super::cpu::{slice_f32, with_f32, with_scratch};
use super::LrnConfig;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;

/// `[N, C, H*W]` view of a 4-D input.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    hw: usize,
}

impl Dims {
    /// One sample of `len` elements in `channels` channels.
    fn sample(channels: usize, len: usize) -> Self {
        Self {
            n: 1,
            c: channels,
            hw: len / channels.max(1),
        }
    }
}

fn dims(shape: &[usize]) -> Result<Dims> {
    match shape {
        &[n, c, h, w] => Ok(Dims { n, c, hw: h * w }),
        _ => bail!("lrn: expected x [N, C, H, W], got {shape:?}"),
    }
}

/// Channels `lo..hi` summed for channel `c` (the window `c - n/2 ..= c + (n-1)/2`).
fn window(c: usize, size: usize, channels: usize) -> (usize, usize) {
    (
        c.saturating_sub(size / 2),
        (c + (size - 1) / 2 + 1).min(channels),
    )
}

/// Channels `j` whose window contains `c`: `c - (n-1)/2 ..= c + n/2`.
fn reverse_window(c: usize, size: usize, channels: usize) -> (usize, usize) {
    (
        c.saturating_sub((size - 1) / 2),
        (c + size / 2 + 1).min(channels),
    )
}

/// `s <- s^-beta` for every element, with a fast path for the paper's
/// `beta = 0.75` (`1 / (sqrt(s) * sqrt(sqrt(s)))`, a loop the compiler
/// vectorises; `powf` is a scalar call).
#[inline(always)]
fn inv_pow_in_place(beta: f32, s: &mut [f32]) {
    if beta == 0.75 {
        for v in s {
            let r = v.sqrt();
            *v = 1.0 / (r * r.sqrt());
        }
    } else {
        for v in s {
            *v = v.powf(-beta);
        }
    }
}

/// Writes `s_c = k + alpha/n * sum_{j in W(c)} a_j^2` for every channel of one sample.
#[inline(always)]
fn scales(cfg: &LrnConfig, d: Dims, a: &[f32], s: &mut [f32]) {
    let (k, scale) = (cfg.k as f32, (cfg.alpha / cfg.size as f64) as f32);
    for c in 0..d.c {
        let (lo, hi) = window(c, cfg.size, d.c);
        let s_c = &mut s[c * d.hw..(c + 1) * d.hw];
        s_c.fill(0.0);
        for j in lo..hi {
            for (acc, v) in s_c.iter_mut().zip(&a[j * d.hw..(j + 1) * d.hw]) {
                *acc += v * v;
            }
        }
        s_c.iter_mut().for_each(|v| *v = k + scale * *v);
    }
}

/// Forward of one sample `a [C, H*W]` into `y [C, H*W]`.
#[multiversion(targets = "simd")]
pub(super) fn forward_sample(cfg: &LrnConfig, channels: usize, a: &[f32], y: &mut [f32]) {
    let d = Dims::sample(channels, a.len());
    // y serves as the scale buffer first, then is overwritten in place.
    scales(cfg, d, a, y);
    inv_pow_in_place(cfg.beta as f32, y);
    y.iter_mut().zip(a).for_each(|(y, a)| *y *= a);
}

/// Backward of one sample: `dx [C, H*W]` from the input `a` and the output
/// gradient `g`; `s_pow` and `t` are scratch buffers of the same length.
#[multiversion(targets = "simd")]
pub(super) fn backward_sample(
    cfg: &LrnConfig,
    channels: usize,
    a: &[f32],
    g: &[f32],
    dx: &mut [f32],
    s_pow: &mut [f32],
    t: &mut [f32],
) {
    let d = Dims::sample(channels, a.len());
    let beta = cfg.beta as f32;
    let coef = (2.0 * cfg.alpha * cfg.beta / cfg.size as f64) as f32;
    scales(cfg, d, a, s_pow);
    // t <- dy * a / s (first pass), s_pow <- s^-beta,
    // t <- t * s^-beta = dy * a * s^(-beta-1)
    for (((t, s), a), g) in t.iter_mut().zip(&*s_pow).zip(a).zip(g) {
        *t = g * a / s;
    }
    inv_pow_in_place(beta, s_pow);
    for (t, p) in t.iter_mut().zip(&*s_pow) {
        *t *= p;
    }
    for c in 0..d.c {
        let (lo, hi) = reverse_window(c, cfg.size, d.c);
        let out = &mut dx[c * d.hw..(c + 1) * d.hw];
        out.fill(0.0);
        for j in lo..hi {
            for (o, v) in out.iter_mut().zip(&t[j * d.hw..(j + 1) * d.hw]) {
                *o += v;
            }
        }
        let range = c * d.hw..(c + 1) * d.hw;
        for (((o, a), g), p) in out
            .iter_mut()
            .zip(&a[range.clone()])
            .zip(&g[range.clone()])
            .zip(&s_pow[range])
        {
            *o = g * p - coef * a * *o;
        }
    }
}

fn forward(cfg: &LrnConfig, d: Dims, x: &[f32]) -> Vec<f32> {
    let len = d.c * d.hw;
    let mut y = vec![0.0f32; d.n * len];
    y.par_chunks_mut(len.max(1))
        .zip(x.par_chunks(len.max(1)))
        .for_each(|(y_n, a)| forward_sample(cfg, d.c, a, y_n));
    y
}

fn backward(cfg: &LrnConfig, d: Dims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let len = d.c * d.hw;
    let mut dx = vec![0.0f32; d.n * len];
    dx.par_chunks_mut(len.max(1))
        .zip(x.par_chunks(len.max(1)))
        .zip(dy.par_chunks(len.max(1)))
        .for_each(|((dx_n, a), g)| {
            with_scratch([len, len, 0], |s_pow, t, _| {
                backward_sample(cfg, d.c, a, g, dx_n, s_pow, t)
            });
        });
    dx
}

struct LrnOp(LrnConfig);

impl CustomOp1 for LrnOp {
    fn name(&self) -> &'static str {
        "alexnet-lrn"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = dims(layout.dims())?;
        let x = slice_f32(storage, layout, "lrn")?;
        Ok((
            CpuStorage::F32(forward(&self.0, d, x)),
            layout.shape().clone(),
        ))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::pool_lrn::lrn_fwd(storage, layout, &self.0)
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cudnn")]
        if arg.device().is_cuda() {
            let op = super::cuda::pool_lrn::LrnBackward { cfg: self.0 };
            let (x, y, dy) = (arg.contiguous()?, res.contiguous()?, grad_res.contiguous()?);
            return Ok(Some(x.apply_op3_no_bwd(&y, &dy, &op)?));
        }
        let _ = res;
        let d = dims(arg.dims())?;
        let (x, dy) = (arg.contiguous()?, grad_res.contiguous()?);
        let dx = with_f32(&x, "lrn backward", |xs| {
            with_f32(&dy, "lrn backward", |dys| backward(&self.0, d, xs, dys))
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

pub(super) fn check(cfg: &LrnConfig) -> Result<()> {
    if cfg.size == 0 {
        bail!("lrn: size must be positive");
    }
    Ok(())
}

/// Custom-op path of [`super::lrn`] (CPU `f32`, and CUDA `f32` with the
/// `cudnn` feature).
pub(crate) fn lrn_cpu(x: &Tensor, cfg: &LrnConfig) -> Result<Tensor> {
    check(cfg)?;
    dims(x.dims())?;
    x.contiguous()?.apply_op1(LrnOp(*cfg))
}

/// The same normalisation with stock Candle operations (square, zero-padded
/// channel window sum, `powf`); differentiable on every device. Used as the
/// fallback off the CPU and as the reference in tests and benchmarks.
pub fn lrn_stock(x: &Tensor, cfg: &LrnConfig) -> Result<Tensor> {
    check(cfg)?;
    let d = dims(x.dims())?;
    let sq = x
        .sqr()?
        .pad_with_zeros(1, cfg.size / 2, (cfg.size - 1) / 2)?;
    let mut sum = sq.narrow(1, 0, d.c)?;
    for i in 1..cfg.size {
        sum = (sum + sq.narrow(1, i, d.c)?)?;
    }
    let s = sum.affine(cfg.alpha / cfg.size as f64, cfg.k)?;
    x * s.powf(-cfg.beta)?
}
