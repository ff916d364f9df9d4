//! Local response normalisation followed by overlapping max-pooling, as one
//! operation (the paper's order after conv1 and conv2).
//!
//! Fused, the normalised maps exist only one sample at a time in a scratch
//! buffer: the graph keeps the input and the pooled output, not the
//! normalised activation, and the backward pass never materialises the
//! full-size gradient of that activation (it is scattered from the pooled
//! gradient and consumed by the normalisation's backward per sample, in
//! cache). The arithmetic is that of [`super::lrn`] then
//! [`super::max_pool_overlapping`].

use super::cpu::{slice_f32, with_f32, with_scratch};
use super::pool::{add_to_maxima, forward_group, ArgmaxCache, Geometry, GroupBuffers};
use super::{lrn, LrnConfig};
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Shapes of one fused operation.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    /// Pooling of one sample (`[1, C, H, W]`).
    pool: Geometry,
    /// Input elements per sample.
    in_len: usize,
    /// Output elements per sample.
    out_len: usize,
}

fn dims(shape: &[usize], kernel: usize, stride: usize) -> Result<Dims> {
    let &[n, c, h, w] = shape else {
        bail!("lrn_max_pool: expected x [N, C, H, W], got {shape:?}");
    };
    let pool = Geometry::new(&[1, c, h, w], kernel, stride)?;
    Ok(Dims {
        n,
        c,
        pool,
        in_len: c * h * w,
        out_len: c * pool.out_len(),
    })
}

fn forward(cfg: &LrnConfig, d: Dims, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let mut y = vec![0.0f32; d.n * d.out_len];
    let mut argmax = vec![0u32; d.n * d.out_len];
    y.par_chunks_mut(d.out_len.max(1))
        .zip(argmax.par_chunks_mut(d.out_len.max(1)))
        .zip(x.par_chunks(d.in_len.max(1)))
        .for_each_init(GroupBuffers::default, |buf, ((y_n, arg_n), x_n)| {
            with_scratch([d.in_len, 0, 0], |normalised, _, _| {
                lrn::forward_sample(cfg, d.c, x_n, normalised);
                forward_group(&d.pool, normalised, buf, y_n, arg_n);
            });
        });
    (y, argmax)
}

fn backward(cfg: &LrnConfig, d: Dims, x: &[f32], argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; d.n * d.in_len];
    dx.par_chunks_mut(d.in_len.max(1))
        .zip(x.par_chunks(d.in_len.max(1)))
        .zip(argmax.par_chunks(d.out_len.max(1)))
        .zip(dy.par_chunks(d.out_len.max(1)))
        .for_each(|(((dx_n, x_n), arg_n), dy_n)| {
            with_scratch([d.in_len, d.in_len, d.in_len], |g, s_pow, t| {
                // Gradient of the normalised maps: the pooled gradient sent
                // to each window's maximum.
                g.fill(0.0);
                add_to_maxima(&d.pool, arg_n, dy_n, g);
                lrn::backward_sample(cfg, d.c, x_n, g, dx_n, s_pow, t);
            });
        });
    dx
}

/// The fused operation.
struct LrnPoolOp {
    lrn: LrnConfig,
    kernel: usize,
    stride: usize,
    argmax: ArgmaxCache,
    /// The normalised maps of a CUDA forward, for its backward.
    #[cfg(feature = "cudnn")]
    kept: super::cuda::pool_lrn::KeptNormalised,
}

impl CustomOp1 for LrnPoolOp {
    fn name(&self) -> &'static str {
        "alexnet-lrn-max-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = dims(layout.dims(), self.kernel, self.stride)?;
        let x = slice_f32(storage, layout, "lrn_max_pool")?;
        let (y, argmax) = forward(&self.lrn, d, x);
        self.argmax.store(argmax);
        let (ho, wo) = d.pool.out_dims();
        Ok((CpuStorage::F32(y), Shape::from((d.n, d.c, ho, wo))))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::pool_lrn::lrn_pool_fwd(
            storage,
            layout,
            &self.lrn,
            self.kernel,
            self.stride,
            &self.kept,
        )
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cudnn")]
        if arg.device().is_cuda() {
            let op = super::cuda::pool_lrn::LrnPoolBackward {
                cfg: self.lrn,
                kernel: self.kernel,
                stride: self.stride,
                kept: &self.kept,
            };
            let (x, y, dy) = (arg.contiguous()?, res.contiguous()?, grad_res.contiguous()?);
            return Ok(Some(x.apply_op3_no_bwd(&y, &dy, &op)?));
        }
        let _ = res;
        let d = dims(arg.dims(), self.kernel, self.stride)?;
        let (x, dy) = (arg.contiguous()?, grad_res.contiguous()?);
        let what = "lrn_max_pool backward";
        let recompute = || with_f32(&x, what, |xs| forward(&self.lrn, d, xs).1);
        let dx = self.argmax.with(d.n * d.out_len, recompute, |argmax| {
            with_f32(&x, what, |xs| {
                with_f32(&dy, what, |dys| backward(&self.lrn, d, xs, argmax, dys))
            })
        })???;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Custom-op path of [`super::lrn_max_pool`] (CPU `f32`, and CUDA `f32`
/// with the `cudnn` feature).
pub(crate) fn lrn_max_pool_cpu(
    x: &Tensor,
    cfg: &LrnConfig,
    kernel: usize,
    stride: usize,
) -> Result<Tensor> {
    lrn::check(cfg)?;
    dims(x.dims(), kernel, stride)?;
    x.contiguous()?.apply_op1(LrnPoolOp {
        lrn: *cfg,
        kernel,
        stride,
        argmax: ArgmaxCache::default(),
        #[cfg(feature = "cudnn")]
        kept: Default::default(),
    })
}
