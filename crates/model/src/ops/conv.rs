//! 2-D convolution with bias: im2col + `gemm` forward, `gemm` weight gradient
//! and col2im input gradient.

use super::cpu::{matmul, slice_f32, split_ranges, threads, with_f32, with_scratch, Mat};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Shapes of one convolution (square stride, symmetric zero padding).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], b: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[o, ci, kh, kw]) = (x, w) else {
            bail!("conv2d: expected x [N, C, H, W] and w [O, C, kh, kw], got {x:?} and {w:?}");
        };
        if ci != c {
            bail!("conv2d: x has {c} channels but w expects {ci} ({x:?} vs {w:?})");
        }
        if b != [o] {
            bail!("conv2d: bias shape {b:?} does not match {o} output channels");
        }
        if stride == 0 {
            bail!("conv2d: stride must be positive");
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw {
            bail!("conv2d: kernel {kh}x{kw} larger than padded input {h}x{wd} (padding {pad})");
        }
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride,
            pad,
            ho: (h + 2 * pad - kh) / stride + 1,
            wo: (wd + 2 * pad - kw) / stride + 1,
        })
    }
    /// Rows of the column matrix: `C * kh * kw`.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output pixels per channel: `Ho * Wo`.
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Valid output columns `lo..hi` for kernel column `kj`: those whose input
    /// column `ow * stride + kj - pad` lies inside `0..W`.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = if kj >= self.pad {
            0
        } else {
            (self.pad - kj).div_ceil(s)
        };
        let hi = if self.w + self.pad < kj + 1 {
            0
        } else {
            ((self.w + self.pad - kj - 1) / s + 1).min(self.wo)
        };
        (lo.min(hi), hi)
    }
    /// Input row for output row `oh` and kernel row `ki`, if inside the image.
    fn in_row(&self, oh: usize, ki: usize) -> Option<usize> {
        (oh * self.stride + ki)
            .checked_sub(self.pad)
            .filter(|&r| r < self.h)
    }
}

/// Unfolds one sample `x [C, H, W]` into `col [C*kh*kw, Ho*Wo]`.
fn im2col(g: &Geometry, x: &[f32], col: &mut [f32]) {
    let (p, s) = (g.p(), g.stride);
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * p..][..p];
                let (lo, hi) = g.valid_cols(kj);
                for oh in 0..g.ho {
                    let dst = &mut row[oh * g.wo..(oh + 1) * g.wo];
                    let Some(ih) = g.in_row(oh, ki) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &plane[ih * g.w..(ih + 1) * g.w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    let first = lo * s + kj - g.pad;
                    if s == 1 {
                        dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        for (d, v) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Folds `col [C*kh*kw, Ho*Wo]` back onto `dx [C, H, W]`, adding overlaps
/// (`dx` must be zeroed by the caller).
fn col2im(g: &Geometry, col: &[f32], dx: &mut [f32]) {
    let (p, s) = (g.p(), g.stride);
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &col[((c * g.kh + ki) * g.kw + kj) * p..][..p];
                let (lo, hi) = g.valid_cols(kj);
                if lo >= hi {
                    continue;
                }
                for oh in 0..g.ho {
                    let Some(ih) = g.in_row(oh, ki) else { continue };
                    let src = &row[oh * g.wo + lo..oh * g.wo + hi];
                    let first = lo * s + kj - g.pad;
                    let dst = &mut plane[ih * g.w..(ih + 1) * g.w];
                    if s == 1 {
                        for (d, v) in dst[first..first + (hi - lo)].iter_mut().zip(src) {
                            *d += *v;
                        }
                    } else {
                        for (d, v) in dst[first..].iter_mut().step_by(s).zip(src) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Forward on the CPU: `y [N, O, Ho*Wo]`.
fn forward(g: &Geometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let mut y = vec![0.0f32; g.n * o * p];
    let one_sample = |(i, y_n): (usize, &mut [f32])| {
        for (row, &bias) in y_n.chunks_exact_mut(p).zip(b) {
            row.fill(bias);
        }
        let x_n = &x[i * g.in_len()..(i + 1) * g.in_len()];
        // With fewer samples than threads, let gemm split each product.
        let gemm_threads = if g.n >= threads() { 1 } else { threads() };
        with_scratch(k * p, 0, |col, _| {
            im2col(g, x_n, col);
            let lhs = Mat {
                data: w,
                rs: k,
                cs: 1,
            };
            let rhs = Mat {
                data: col,
                rs: p,
                cs: 1,
            };
            matmul(o, p, k, y_n, p, true, lhs, rhs, gemm_threads);
        });
    };
    if g.n >= threads() {
        y.par_chunks_mut(o * p).enumerate().for_each(one_sample);
    } else {
        y.chunks_mut(o * p).enumerate().for_each(one_sample);
    }
    y
}

/// Gradients of one convolution on the CPU.
struct Grads {
    dx: Option<Vec<f32>>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// Backward on the CPU from `dy [N, O, Ho*Wo]`. The samples are split into one
/// contiguous range per thread; each range accumulates its own weight and bias
/// gradient, summed at the end in a fixed order (deterministic for a given
/// thread count).
fn backward(g: &Geometry, x: &[f32], w: &[f32], dy: &[f32], input_grad: bool) -> Grads {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let ranges = split_ranges(g.n, threads());
    let mut dx = if input_grad {
        vec![0.0f32; g.n * g.in_len()]
    } else {
        Vec::new()
    };
    // One mutable part of dx per range (empty when no input gradient is wanted).
    let mut dx_parts: Vec<&mut [f32]> = Vec::with_capacity(ranges.len());
    let mut rest: &mut [f32] = &mut dx;
    for r in &ranges {
        let len = if input_grad { r.len() * g.in_len() } else { 0 };
        let (head, tail) = rest.split_at_mut(len);
        dx_parts.push(head);
        rest = tail;
    }
    let gemm_threads = if ranges.len() > 1 { 1 } else { threads() };
    let partials: Vec<(Vec<f32>, Vec<f32>)> = ranges
        .into_par_iter()
        .zip(dx_parts)
        .map(|(range, dx_part)| {
            let mut dw = vec![0.0f32; o * k];
            let mut db = vec![0.0f32; o];
            let start = range.start;
            with_scratch(k * p, if input_grad { k * p } else { 0 }, |col, dcol| {
                for i in range {
                    let x_n = &x[i * g.in_len()..(i + 1) * g.in_len()];
                    let dy_n = &dy[i * o * p..(i + 1) * o * p];
                    for (acc, row) in db.iter_mut().zip(dy_n.chunks_exact(p)) {
                        *acc += row.iter().sum::<f32>();
                    }
                    // dW += dY_n [O, P] · col_nᵀ [P, K]
                    im2col(g, x_n, col);
                    let lhs = Mat {
                        data: dy_n,
                        rs: p,
                        cs: 1,
                    };
                    let rhs = Mat {
                        data: col,
                        rs: 1,
                        cs: p,
                    };
                    matmul(o, k, p, &mut dw, k, true, lhs, rhs, gemm_threads);
                    if input_grad {
                        // dcol = Wᵀ [K, O] · dY_n [O, P]; dx_n = col2im(dcol)
                        let lhs = Mat {
                            data: w,
                            rs: 1,
                            cs: k,
                        };
                        let rhs = Mat {
                            data: dy_n,
                            rs: p,
                            cs: 1,
                        };
                        matmul(k, p, o, dcol, p, false, lhs, rhs, gemm_threads);
                        let j = i - start;
                        col2im(g, dcol, &mut dx_part[j * g.in_len()..(j + 1) * g.in_len()]);
                    }
                }
            });
            (dw, db)
        })
        .collect();
    let mut parts = partials.into_iter();
    let (mut dw, mut db) = parts
        .next()
        .unwrap_or_else(|| (vec![0.0; o * k], vec![0.0; o]));
    for (pw, pb) in parts {
        dw.iter_mut().zip(&pw).for_each(|(a, v)| *a += v);
        db.iter_mut().zip(&pb).for_each(|(a, v)| *a += v);
    }
    Grads {
        dx: input_grad.then_some(dx),
        dw,
        db,
    }
}

/// The convolution as a Candle operation on `(x, w, b)`.
struct Conv2dOp {
    stride: usize,
    padding: usize,
    input_grad: bool,
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "alexnet-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), l3.dims(), self.stride, self.padding)?;
        let x = slice_f32(s1, l1, "conv2d")?;
        let w = slice_f32(s2, l2, "conv2d")?;
        let b = slice_f32(s3, l3, "conv2d")?;
        let y = forward(&g, x, w, b);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geometry::new(x.dims(), w.dims(), b.dims(), self.stride, self.padding)?;
        let (x, w, dy) = (x.contiguous()?, w.contiguous()?, grad_res.contiguous()?);
        let grads = with_f32(&x, "conv2d backward", |xs| {
            with_f32(&w, "conv2d backward", |ws| {
                with_f32(&dy, "conv2d backward", |dys| {
                    backward(&g, xs, ws, dys, self.input_grad)
                })
            })
        })???;
        let dev = x.device();
        let dx = match grads.dx {
            Some(dx) => Some(Tensor::from_vec(dx, x.shape(), dev)?),
            None => None,
        };
        let dw = Tensor::from_vec(grads.dw, w.shape(), dev)?;
        let db = Tensor::from_vec(grads.db, b.shape(), dev)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// CPU `f32` path of [`super::conv2d`].
pub(crate) fn conv2d_cpu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
    x.apply_op3(
        &w,
        &b,
        Conv2dOp {
            stride,
            padding,
            input_grad,
        },
    )
}

/// The same convolution with stock Candle operations (`Tensor::conv2d` and a
/// broadcast bias add); differentiable on every device. Used as the fallback
/// off the CPU and as the reference in tests and benchmarks.
pub fn conv2d_stock(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let o = b.dims1()?;
    x.conv2d(w, padding, stride, 1, 1)?
        .broadcast_add(&b.reshape((1, o, 1, 1))?)
}
