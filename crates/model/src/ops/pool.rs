//! Max-pooling whose windows may overlap (kernel > stride), with a backward
//! that sends each gradient to the first maximum of its window.

use super::cpu::{slice_f32, with_f32};
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy)]
struct Geometry {
    planes: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(shape: &[usize], kernel: usize, stride: usize) -> Result<Self> {
        let &[n, c, h, w] = shape else {
            bail!("max_pool_overlapping: expected x [N, C, H, W], got {shape:?}");
        };
        if kernel == 0 || stride == 0 {
            bail!("max_pool_overlapping: kernel ({kernel}) and stride ({stride}) must be positive");
        }
        if h < kernel || w < kernel {
            bail!("max_pool_overlapping: kernel {kernel} larger than the {h}x{w} input");
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

    /// Index in the plane of the first maximum (row-major; NaN wins) of the
    /// window of output `(oh, ow)`, and its value.
    #[inline]
    fn argmax(&self, plane: &[f32], oh: usize, ow: usize) -> (usize, f32) {
        let (r0, c0) = (oh * self.stride, ow * self.stride);
        let mut best = (r0 * self.w + c0, plane[r0 * self.w + c0]);
        for r in r0..r0 + self.kernel {
            for c in c0..c0 + self.kernel {
                let i = r * self.w + c;
                let v = plane[i];
                if v > best.1 || (v.is_nan() && !best.1.is_nan()) {
                    best = (i, v);
                }
            }
        }
        best
    }
}

fn forward(g: &Geometry, x: &[f32]) -> Vec<f32> {
    let (in_len, out_len) = (g.h * g.w, g.ho * g.wo);
    let mut y = vec![0.0f32; g.planes * out_len];
    y.par_chunks_mut(out_len)
        .zip(x.par_chunks(in_len))
        .for_each(|(y_p, x_p)| {
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    y_p[oh * g.wo + ow] = g.argmax(x_p, oh, ow).1;
                }
            }
        });
    y
}

fn backward(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (in_len, out_len) = (g.h * g.w, g.ho * g.wo);
    let mut dx = vec![0.0f32; g.planes * in_len];
    dx.par_chunks_mut(in_len)
        .zip(x.par_chunks(in_len))
        .zip(dy.par_chunks(out_len))
        .for_each(|((dx_p, x_p), dy_p)| {
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    dx_p[g.argmax(x_p, oh, ow).0] += dy_p[oh * g.wo + ow];
                }
            }
        });
    dx
}

struct MaxPoolOp {
    kernel: usize,
    stride: usize,
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "alexnet-max-pool-overlapping"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(layout.dims(), self.kernel, self.stride)?;
        let x = slice_f32(storage, layout, "max_pool_overlapping")?;
        let n_c = layout.dims()[..2].to_vec();
        Ok((
            CpuStorage::F32(forward(&g, x)),
            Shape::from((n_c[0], n_c[1], g.ho, g.wo)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = Geometry::new(arg.dims(), self.kernel, self.stride)?;
        let (x, dy) = (arg.contiguous()?, grad_res.contiguous()?);
        let dx = with_f32(&x, "max_pool_overlapping backward", |xs| {
            with_f32(&dy, "max_pool_overlapping backward", |dys| {
                backward(&g, xs, dys)
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// CPU `f32` path of [`super::max_pool_overlapping`].
pub(crate) fn max_pool_cpu(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    Geometry::new(x.dims(), kernel, stride)?;
    x.contiguous()?.apply_op1(MaxPoolOp { kernel, stride })
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
