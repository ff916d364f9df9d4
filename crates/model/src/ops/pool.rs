//! Max-pooling whose windows may overlap (kernel > stride), with a backward
//! that sends each gradient to the first maximum of its window.

use super::cpu::{slice_f32, with_f32};
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;
use std::sync::Mutex;

#[derive(Clone, Copy)]
pub(super) struct Geometry {
    planes: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    pub(super) fn new(shape: &[usize], kernel: usize, stride: usize) -> Result<Self> {
        let &[n, c, h, w] = shape else {
            bail!("max_pool_overlapping: expected x [N, C, H, W], got {shape:?}");
        };
        if kernel == 0 || stride == 0 {
            bail!("max_pool_overlapping: kernel ({kernel}) and stride ({stride}) must be positive");
        }
        if h < kernel || w < kernel {
            bail!("max_pool_overlapping: kernel {kernel} larger than the {h}x{w} input");
        }
        if kernel > 16 {
            bail!("max_pool_overlapping: kernel {kernel} larger than 16");
        }
        if h * w > u32::MAX as usize {
            bail!("max_pool_overlapping: a {h}x{w} plane is too large");
        }
        Ok(Self {
            planes: n * c,
            h,
            w,
            kernel,
            stride,
            ho: (h - kernel) / stride + 1,
            wo: (w - kernel) / stride + 1,
        })
    }

    /// Rows and columns of one phase of a plane: `ceil(H / s)`, `ceil(W / s)`.
    /// Output plane size `Ho * Wo`.
    pub(super) fn out_len(&self) -> usize {
        self.ho * self.wo
    }

    /// Output height and width.
    pub(super) fn out_dims(&self) -> (usize, usize) {
        (self.ho, self.wo)
    }

    fn phase_dims(&self) -> (usize, usize) {
        (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride))
    }
}

/// Planes per task of the forward pass (their phases stay in L2 cache).
const PLANES_PER_TASK: usize = 32;

/// Forward of a group of `planes` planes `x [planes, H, W]`: the maxima
/// `y [planes, Ho*Wo]` and the index in its plane of each window's first
/// maximum (row-major; a NaN wins over numbers).
///
/// The planes are first split into `s x s` phases,
/// `xp[pr][pc][plane][i][j] = x[plane][i*s + pr][j*s + pc]`, each phase
/// `[planes, Hp, Wp]`. Kernel tap `(ki, kj)` of output `(plane, oh, ow)` is
/// then `xp[ki % s][kj % s][plane][oh + ki/s][ow + kj/s]`: with the outputs
/// laid out on the same `[planes, Hp, Wp]` grid, one tap of every output of
/// the group is a single contiguous run of one phase, so each of the
/// `kernel²` taps is one long branch-free loop that the compiler vectorises.
/// Grid cells outside `Ho x Wo` compute garbage that is never read.
#[multiversion(targets = "simd")]
pub(super) fn forward_group(
    g: &Geometry,
    x: &[f32],
    buf: &mut GroupBuffers,
    y: &mut [f32],
    arg: &mut [u32],
) {
    let (s, k) = (g.stride, g.kernel);
    let (hp, wp) = g.phase_dims();
    let planes = x.len() / (g.h * g.w);
    let grid = planes * hp * wp;
    buf.resize(s * s * grid, grid);
    let GroupBuffers { phases, best, tap } = buf;
    for (p, x_p) in x.chunks_exact(g.h * g.w).enumerate() {
        for (i, row) in x_p.chunks_exact(g.w).enumerate() {
            let (pr, ii) = (i % s, i / s);
            for pc in 0..s.min(g.w) {
                let dst = &mut phases[(pr * s + pc) * grid + (p * hp + ii) * wp..][..wp];
                for (d, v) in dst.iter_mut().zip(row[pc..].iter().step_by(s)) {
                    *d = *v;
                }
            }
        }
    }
    // Outputs up to the last valid one of the last plane.
    let len = grid - (hp - g.ho) * wp - (wp - g.wo);
    for ki in 0..k {
        for kj in 0..k {
            let phase = &phases[((ki % s) * s + kj % s) * grid..][..grid];
            let run = &phase[(ki / s) * wp + kj / s..][..len];
            let (best, tap) = (&mut best[..len], &mut tap[..len]);
            let t = (ki * k + kj) as u32;
            if t == 0 {
                best.copy_from_slice(run);
                tap.fill(0);
                continue;
            }
            // Non-short-circuit `|` and `&` keep the loop branch-free.
            for q in 0..len {
                let (v, b) = (run[q], best[q]);
                let take = (v > b) | (v.is_nan() & !b.is_nan());
                best[q] = if take { v } else { b };
                tap[q] = if take { t } else { tap[q] };
            }
        }
    }
    // Plane offset of each tap from its window's first element.
    let mut tap_offset = [0u32; 256];
    for (t, off) in tap_offset.iter_mut().take(k * k).enumerate() {
        *off = ((t / k) * g.w + t % k) as u32;
    }
    let out_len = g.ho * g.wo;
    for p in 0..planes {
        for oh in 0..g.ho {
            let cell = (p * hp + oh) * wp;
            let out = p * out_len + oh * g.wo;
            y[out..out + g.wo].copy_from_slice(&best[cell..cell + g.wo]);
            let row_start = (oh * s * g.w) as u32;
            for (ow, (a, &t)) in arg[out..out + g.wo]
                .iter_mut()
                .zip(&tap[cell..cell + g.wo])
                .enumerate()
            {
                *a = row_start + (ow * s) as u32 + tap_offset[t as usize];
            }
        }
    }
}

/// Scratch of [`forward_group`], reused by the tasks of one thread.
#[derive(Default)]
pub(super) struct GroupBuffers {
    phases: Vec<f32>,
    best: Vec<f32>,
    tap: Vec<u32>,
}

impl GroupBuffers {
    fn resize(&mut self, phases: usize, grid: usize) {
        if self.phases.len() < phases {
            self.phases.resize(phases, 0.0);
        }
        if self.best.len() < grid {
            self.best.resize(grid, 0.0);
            self.tap.resize(grid, 0);
        }
    }
}

/// Maxima `[planes, Ho*Wo]` and the plane index of each one's input element.
fn forward(g: &Geometry, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (in_len, out_len) = (g.h * g.w, g.ho * g.wo);
    let mut y = vec![0.0f32; g.planes * out_len];
    let mut argmax = vec![0u32; g.planes * out_len];
    y.par_chunks_mut(out_len * PLANES_PER_TASK)
        .zip(argmax.par_chunks_mut(out_len * PLANES_PER_TASK))
        .zip(x.par_chunks(in_len * PLANES_PER_TASK))
        .for_each_init(GroupBuffers::default, |buf, ((y, arg), x)| {
            forward_group(g, x, buf, y, arg)
        });
    (y, argmax)
}

/// Adds each output's gradient `dy [planes, Ho*Wo]` to the input element its
/// window's maximum came from (`argmax`, from [`forward_group`]) in
/// `dx [planes, H*W]`.
#[multiversion(targets = "simd")]
pub(super) fn add_to_maxima(g: &Geometry, argmax: &[u32], dy: &[f32], dx: &mut [f32]) {
    let out_len = g.out_len();
    for ((dx_p, arg_p), dy_p) in dx
        .chunks_exact_mut(g.h * g.w)
        .zip(argmax.chunks_exact(out_len))
        .zip(dy.chunks_exact(out_len))
    {
        for (&a, &d) in arg_p.iter().zip(dy_p) {
            dx_p[a as usize] += d;
        }
    }
}

/// Scatters `dy` onto the input elements recorded in `argmax`.
fn backward(g: &Geometry, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    let (in_len, out_len) = (g.h * g.w, g.out_len());
    let mut dx = vec![0.0f32; g.planes * in_len];
    dx.par_chunks_mut(in_len * PLANES_PER_TASK)
        .zip(argmax.par_chunks(out_len * PLANES_PER_TASK))
        .zip(dy.par_chunks(out_len * PLANES_PER_TASK))
        .for_each(|((dx, argmax), dy)| add_to_maxima(g, argmax, dy, dx));
    dx
}

/// The argmax of every pooling window, kept by an op's forward pass for the
/// backward pass of the same graph node (the op instance lives in the graph
/// with its output).
#[derive(Default)]
pub(super) struct ArgmaxCache(Mutex<Option<Vec<u32>>>);

impl ArgmaxCache {
    pub(super) fn store(&self, argmax: Vec<u32>) {
        *self.0.lock().expect("argmax lock poisoned") = Some(argmax);
    }

    /// Runs `f` on the stored argmax if it has `len` entries, otherwise on
    /// the one `recompute` returns (a backward pass without this op's
    /// forward: cannot happen through Candle's graph).
    pub(super) fn with<R>(
        &self,
        len: usize,
        recompute: impl FnOnce() -> Result<Vec<u32>>,
        f: impl FnOnce(&[u32]) -> R,
    ) -> Result<R> {
        let cached = self.0.lock().expect("argmax lock poisoned");
        match cached.as_deref() {
            Some(argmax) if argmax.len() == len => Ok(f(argmax)),
            _ => Ok(f(&recompute()?)),
        }
    }
}

/// The pooling as a Candle operation.
struct MaxPoolOp {
    kernel: usize,
    stride: usize,
    argmax: ArgmaxCache,
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "alexnet-max-pool-overlapping"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(layout.dims(), self.kernel, self.stride)?;
        let x = slice_f32(storage, layout, "max_pool_overlapping")?;
        let (n, c) = (layout.dims()[0], layout.dims()[1]);
        let (y, argmax) = forward(&g, x);
        self.argmax.store(argmax);
        Ok((CpuStorage::F32(y), Shape::from((n, c, g.ho, g.wo))))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::pool_lrn::max_pool_fwd(storage, layout, self.kernel, self.stride)
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cudnn")]
        if arg.device().is_cuda() {
            let op = super::cuda::pool_lrn::MaxPoolBackward {
                kernel: self.kernel,
                stride: self.stride,
            };
            let (x, y, dy) = (arg.contiguous()?, res.contiguous()?, grad_res.contiguous()?);
            return Ok(Some(x.apply_op3_no_bwd(&y, &dy, &op)?));
        }
        let _ = res;
        let g = Geometry::new(arg.dims(), self.kernel, self.stride)?;
        let dy = grad_res.contiguous()?;
        let what = "max_pool_overlapping backward";
        let recompute = || {
            let x = arg.contiguous()?;
            with_f32(&x, what, |xs| forward(&g, xs).1)
        };
        let dx = self
            .argmax
            .with(g.planes * g.out_len(), recompute, |argmax| {
                with_f32(&dy, what, |dys| backward(&g, argmax, dys))
            })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Custom-op path of [`super::max_pool_overlapping`] (CPU `f32`, and CUDA
/// `f32` with the `cudnn` feature).
pub(crate) fn max_pool_cpu(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    Geometry::new(x.dims(), kernel, stride)?;
    x.contiguous()?.apply_op1(MaxPoolOp {
        kernel,
        stride,
        argmax: ArgmaxCache::default(),
    })
}

/// The same pooling with stock Candle operations: the `kernel²` strided
/// sub-grids of `x` (`index_select` on rows and columns) reduced with
/// `maximum`. Differentiable on every device; where several elements of a
/// window tie for the maximum, the gradient is split between them (Candle's
/// `maximum` backward) rather than sent to the first one. Used as the
/// fallback off the CPU and as a reference in tests.
pub fn max_pool_overlapping_stock(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let g = Geometry::new(x.dims(), kernel, stride)?;
    let index = |offset: usize, len: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..len).map(|i| (i * stride + offset) as u32).collect();
        Tensor::from_vec(idx, len, x.device())
    };
    let mut out = x
        .index_select(&index(0, g.ho)?, 2)?
        .index_select(&index(0, g.wo)?, 3)?;
    for ki in 0..kernel {
        let rows = x.index_select(&index(ki, g.ho)?, 2)?;
        for kj in (0..kernel).filter(|&kj| ki + kj > 0) {
            out = out.maximum(&rows.index_select(&index(kj, g.wo)?, 3)?)?;
        }
    }
    Ok(out)
}
