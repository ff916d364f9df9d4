//! Max-pooling whose windows may overlap (kernel > stride), with a backward
//! that sends each gradient to the first maximum of its window.

use super::cpu::{slice_f32, with_f32};
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

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

    /// Elements per phase row: `ceil(W / stride)`.
    fn wp(&self) -> usize {
        self.w.div_ceil(self.stride)
    }
}

/// Forward of one plane: the maxima `y_p [Ho*Wo]` and the index in the plane
/// of each window's first maximum (row-major; a NaN wins over numbers).
///
/// Each input row is first split by column phase modulo the stride, so that
/// kernel tap `kj` of all outputs of a row is one contiguous run
/// (`phase kj % s`, from `kj / s`): the comparisons then run over whole
/// output rows, without branches, in SIMD registers.
fn forward_plane(
    g: &Geometry,
    x_p: &[f32],
    phases: &mut [f32],
    y_p: &mut [f32],
    arg_p: &mut [u32],
) {
    let (s, wp, wo) = (g.stride, g.wp(), g.wo);
    for (row, out) in x_p.chunks_exact(g.w).zip(phases.chunks_exact_mut(s * wp)) {
        for (r, phase) in out.chunks_exact_mut(wp).enumerate() {
            for (d, v) in phase.iter_mut().zip(row[r.min(g.w)..].iter().step_by(s)) {
                *d = *v;
            }
        }
    }
    for (oh, (best, arg)) in y_p
        .chunks_exact_mut(wo)
        .zip(arg_p.chunks_exact_mut(wo))
        .enumerate()
    {
        for ki in 0..g.kernel {
            let r = oh * s + ki;
            for kj in 0..g.kernel {
                let run = &phases[(r * s + kj % s) * wp + kj / s..][..wo];
                // Plane index of output column ow's tap: base + ow * s.
                let base = (r * g.w + kj) as u32;
                if ki == 0 && kj == 0 {
                    best.copy_from_slice(run);
                    for (ow, a) in arg.iter_mut().enumerate() {
                        *a = base + (ow * s) as u32;
                    }
                    continue;
                }
                // Non-short-circuit `|` and `&` keep the loop free of
                // branches, so that it is vectorised.
                for ow in 0..wo {
                    let (v, b) = (run[ow], best[ow]);
                    let take = (v > b) | (v.is_nan() & !b.is_nan());
                    best[ow] = if take { v } else { b };
                    arg[ow] = if take {
                        base + (ow * s) as u32
                    } else {
                        arg[ow]
                    };
                }
            }
        }
    }
}

/// Maxima `[planes, Ho*Wo]` and the plane index of each one's input element.
fn forward(g: &Geometry, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (in_len, out_len) = (g.h * g.w, g.ho * g.wo);
    let mut y = vec![0.0f32; g.planes * out_len];
    let mut argmax = vec![0u32; g.planes * out_len];
    y.par_chunks_mut(out_len)
        .zip(argmax.par_chunks_mut(out_len))
        .zip(x.par_chunks(in_len))
        .for_each_init(
            || vec![0.0f32; g.h * g.stride * g.wp()],
            |phases, ((y_p, arg_p), x_p)| forward_plane(g, x_p, phases, y_p, arg_p),
        );
    (y, argmax)
}

/// Scatters `dy` onto the input elements recorded in `argmax`.
fn backward(g: &Geometry, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    let (in_len, out_len) = (g.h * g.w, g.ho * g.wo);
    let mut dx = vec![0.0f32; g.planes * in_len];
    dx.par_chunks_mut(in_len)
        .zip(argmax.par_chunks(out_len))
        .zip(dy.par_chunks(out_len))
        .for_each(|((dx_p, arg_p), dy_p)| {
            for (&a, &d) in arg_p.iter().zip(dy_p) {
                dx_p[a as usize] += d;
            }
        });
    dx
}

/// The pooling as a Candle operation. The forward pass keeps the argmax of
/// every window for the backward pass of the same node (the op instance lives
/// in the graph with its output).
struct MaxPoolOp {
    kernel: usize,
    stride: usize,
    argmax: Mutex<Option<Vec<u32>>>,
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
        *self.argmax.lock().expect("argmax lock poisoned") = Some(argmax);
        Ok((CpuStorage::F32(y), Shape::from((n, c, g.ho, g.wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = Geometry::new(arg.dims(), self.kernel, self.stride)?;
        let dy = grad_res.contiguous()?;
        let cached = self.argmax.lock().expect("argmax lock poisoned");
        let recomputed;
        let argmax = match cached.as_deref() {
            Some(a) if a.len() == g.planes * g.ho * g.wo => a,
            // Not from this op's forward (cannot happen through Candle's
            // graph): find the maxima again.
            _ => {
                let x = arg.contiguous()?;
                recomputed = with_f32(&x, "max_pool_overlapping backward", |xs| forward(&g, xs).1)?;
                &recomputed
            }
        };
        let dx = with_f32(&dy, "max_pool_overlapping backward", |dys| {
            backward(&g, argmax, dys)
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// CPU `f32` path of [`super::max_pool_overlapping`].
pub(crate) fn max_pool_cpu(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    Geometry::new(x.dims(), kernel, stride)?;
    x.contiguous()?.apply_op1(MaxPoolOp {
        kernel,
        stride,
        argmax: Mutex::new(None),
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
