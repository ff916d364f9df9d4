//! 2-D convolution with bias (optionally fused with the ReLU after it):
//! im2col + `gemm` forward, `gemm` weight gradient and col2im input gradient.
//!
//! The column matrix of one sample is built and consumed in blocks of output
//! rows that fit in a core's L2 cache ([`COL_BLOCK_BYTES`]). A strided
//! convolution first splits each input row by phase modulo the stride
//! ([`split_phases`]), so that every kernel tap is a contiguous copy.

use super::cpu::{matmul, slice_f32, split_ranges, threads, with_f32, with_scratch, Mat};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;
use std::ops::Range;

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

/// Splits the columns of every input row by phase modulo the stride:
/// `xp[((c*H + ih)*s + r)*Wp + j] = x[c, ih, j*s + r]` with `Wp = ceil(W/s)`.
/// A strided convolution then reads each kernel tap as a contiguous run of
/// one phase row instead of gathering every `s`-th element.
#[multiversion(targets = "simd")]
fn split_phases(g: &Geometry, x: &[f32], xp: &mut [f32]) {
    let (s, wp) = (g.stride, g.w.div_ceil(g.stride));
    for (row, out) in x.chunks_exact(g.w).zip(xp.chunks_exact_mut(s * wp)) {
        for (r, phase) in out.chunks_exact_mut(wp).enumerate() {
            for (d, v) in phase.iter_mut().zip(row[r..].iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// Length of [`split_phases`]' output (0 for stride 1, which reads `x` as is).
fn phases_len(g: &Geometry) -> usize {
    if g.stride == 1 {
        0
    } else {
        g.c * g.h * g.stride * g.w.div_ceil(g.stride)
    }
}

/// Unfolds output rows `rows` of one sample into
/// `col [C*kh*kw, rows.len()*Wo]`. `x` is the sample `[C, H, W]` for stride
/// 1, and its [`split_phases`] layout otherwise.
#[multiversion(targets = "simd")]
fn im2col(g: &Geometry, x: &[f32], col: &mut [f32], rows: Range<usize>) {
    let (pb, s) = (rows.len() * g.wo, g.stride);
    // Elements per input row in `x`'s layout.
    let row_len = if s == 1 { g.w } else { s * g.w.div_ceil(s) };
    for c in 0..g.c {
        let plane = &x[c * g.h * row_len..(c + 1) * g.h * row_len];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * pb..][..pb];
                let (lo, hi) = g.valid_cols(kj);
                if lo >= hi {
                    row.fill(0.0);
                    continue;
                }
                // Input column of output column `lo`, and where its run starts.
                let first = lo * s + kj - g.pad;
                let start = if s == 1 {
                    first
                } else {
                    (first % s) * g.w.div_ceil(s) + first / s
                };
                for (oh, dst) in rows.clone().zip(row.chunks_exact_mut(g.wo)) {
                    let Some(ih) = g.in_row(oh, ki) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &plane[ih * row_len + start..][..hi - lo];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    dst[lo..hi].copy_from_slice(src);
                }
            }
        }
    }
}

/// Folds `col [C*kh*kw, rows.len()*Wo]` (output rows `rows`) back onto
/// `dx [C, H, W]`, adding overlaps (`dx` must be zeroed before the first block).
#[multiversion(targets = "simd")]
fn col2im(g: &Geometry, col: &[f32], dx: &mut [f32], rows: Range<usize>) {
    let (pb, s) = (rows.len() * g.wo, g.stride);
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &col[((c * g.kh + ki) * g.kw + kj) * pb..][..pb];
                let (lo, hi) = g.valid_cols(kj);
                if lo >= hi {
                    continue;
                }
                for (oh, src_row) in rows.clone().zip(row.chunks_exact(g.wo)) {
                    let Some(ih) = g.in_row(oh, ki) else { continue };
                    let src = &src_row[lo..hi];
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

/// Sample ranges of the backward pass (each with its own partial weight
/// gradient): enough for load balancing on a few cores.
const BACKWARD_RANGES: usize = 8;

/// Bytes of column buffer per block: small enough to stay in a core's L2
/// cache between the unfolding and the matrix product that reads it.
const COL_BLOCK_BYTES: usize = 1024 * 1024;

/// Output-row blocks `0..Ho` split so that one block's column buffer
/// (`K * rows * Wo` floats) fits in `budget` bytes (at least one row each).
fn row_blocks(g: &Geometry, budget: usize) -> Vec<Range<usize>> {
    let per_row = g.k() * g.wo * std::mem::size_of::<f32>();
    let rows = (budget / per_row.max(1)).clamp(1, g.ho.max(1));
    split_ranges(g.ho, g.ho.div_ceil(rows))
}

/// Forward on the CPU: `y [N, O, Ho*Wo]`, followed by `max(y, 0)` if `relu`.
fn forward(g: &Geometry, x: &[f32], w: &[f32], b: &[f32], relu: bool, budget: usize) -> Vec<f32> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let mut y = vec![0.0f32; g.n * o * p];
    let blocks = row_blocks(g, budget);
    let max_pb = blocks.iter().map(|r| r.len()).max().unwrap_or(0) * g.wo;
    // With fewer samples than threads, let gemm split each product.
    let gemm_threads = if g.n >= threads() { 1 } else { threads() };
    let one_sample = |(i, y_n): (usize, &mut [f32])| {
        for (row, &bias) in y_n.chunks_exact_mut(p).zip(b) {
            row.fill(bias);
        }
        let x_n = &x[i * g.in_len()..(i + 1) * g.in_len()];
        with_scratch([k * max_pb, 0, phases_len(g)], |col, _, xp| {
            let src = if g.stride == 1 {
                x_n
            } else {
                split_phases(g, x_n, xp);
                xp
            };
            for rows in &blocks {
                let pb = rows.len() * g.wo;
                im2col(g, src, col, rows.clone());
                let lhs = Mat {
                    data: w,
                    rs: k,
                    cs: 1,
                };
                let rhs = Mat {
                    data: col,
                    rs: pb,
                    cs: 1,
                };
                let dst = &mut y_n[rows.start * g.wo..];
                matmul(o, pb, k, dst, p, true, lhs, rhs, gemm_threads);
            }
        });
        if relu {
            // While the sample's output is still in cache.
            y_n.iter_mut().for_each(|v| *v = v.max(0.0));
        }
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

/// Backward on the CPU from `dy [N, O, Ho*Wo]`; with `relu_out` (the output
/// `y` of a convolution fused with ReLU) from `dy * (y > 0)`. The samples are
/// split into up to [`BACKWARD_RANGES`] contiguous ranges, taken by the
/// threads as they become free (a core slowed by other work does not hold
/// the others up); each range accumulates its own weight and bias gradient,
/// summed at the end in range order, so the result does not depend on the
/// number of threads or on timing.
fn backward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    relu_out: Option<&[f32]>,
    input_grad: bool,
    budget: usize,
) -> Grads {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let ranges = split_ranges(g.n, BACKWARD_RANGES);
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
    let blocks = row_blocks(g, budget);
    let max_pb = blocks.iter().map(|r| r.len()).max().unwrap_or(0) * g.wo;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = ranges
        .into_par_iter()
        .zip(dx_parts)
        .map(|(range, dx_part)| {
            let mut dw = vec![0.0f32; o * k];
            let mut db = vec![0.0f32; o];
            // dY of one sample after the ReLU mask (unused without ReLU).
            let mut masked = vec![0.0f32; if relu_out.is_some() { o * p } else { 0 }];
            let start = range.start;
            let dcol_len = if input_grad { k * max_pb } else { 0 };
            with_scratch([k * max_pb, dcol_len, phases_len(g)], |col, dcol, xp| {
                for i in range {
                    let x_n = &x[i * g.in_len()..(i + 1) * g.in_len()];
                    let src = if g.stride == 1 {
                        x_n
                    } else {
                        split_phases(g, x_n, xp);
                        &*xp
                    };
                    let mut dy_n = &dy[i * o * p..(i + 1) * o * p];
                    if let Some(y) = relu_out {
                        let y_n = &y[i * o * p..(i + 1) * o * p];
                        for ((m, &d), &y) in masked.iter_mut().zip(dy_n).zip(y_n) {
                            *m = if y > 0.0 { d } else { 0.0 };
                        }
                        dy_n = &masked;
                    }
                    for (acc, row) in db.iter_mut().zip(dy_n.chunks_exact(p)) {
                        *acc += row.iter().sum::<f32>();
                    }
                    let j = i - start;
                    for rows in &blocks {
                        let pb = rows.len() * g.wo;
                        let dy_block = Mat {
                            data: &dy_n[rows.start * g.wo..],
                            rs: p,
                            cs: 1,
                        };
                        // dW += dY_n[:, block] [O, pb] · colᵀ [pb, K]
                        im2col(g, src, col, rows.clone());
                        let col_t = Mat {
                            data: col,
                            rs: 1,
                            cs: pb,
                        };
                        matmul(o, k, pb, &mut dw, k, true, dy_block, col_t, gemm_threads);
                        if input_grad {
                            // dcol = Wᵀ [K, O] · dY_n[:, block] [O, pb]; dx_n += col2im(dcol)
                            let w_t = Mat {
                                data: w,
                                rs: 1,
                                cs: k,
                            };
                            matmul(k, pb, o, dcol, pb, false, w_t, dy_block, gemm_threads);
                            let dx_n = &mut dx_part[j * g.in_len()..(j + 1) * g.in_len()];
                            col2im(g, dcol, dx_n, rows.clone());
                        }
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
    relu: bool,
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
        let y = forward(&g, x, w, b, self.relu, COL_BLOCK_BYTES);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::conv::forward(s1, l1, s2, l2, s3, l3, self.stride, self.padding, self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cudnn")]
        if x.device().is_cuda() {
            return super::cuda::conv::backward(
                x,
                w,
                res,
                grad_res,
                self.stride,
                self.padding,
                self.input_grad,
                self.relu,
            );
        }
        let g = Geometry::new(x.dims(), w.dims(), b.dims(), self.stride, self.padding)?;
        let (x, w, dy, y) = (
            x.contiguous()?,
            w.contiguous()?,
            grad_res.contiguous()?,
            res.contiguous()?,
        );
        let what = "conv2d backward";
        let grads = with_f32(&x, what, |xs| {
            with_f32(&w, what, |ws| {
                with_f32(&dy, what, |dys| {
                    with_f32(&y, what, |ys| {
                        let relu_out = self.relu.then_some(ys);
                        backward(&g, xs, ws, dys, relu_out, self.input_grad, COL_BLOCK_BYTES)
                    })
                })
            })
        })????;
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

/// Custom-op path of [`super::conv2d`] and (with `relu`)
/// [`super::conv2d_relu`]: CPU `f32`, and CUDA `f32` with the `cudnn`
/// feature.
pub(crate) fn conv2d_cpu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
    relu: bool,
) -> Result<Tensor> {
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
    x.apply_op3(
        &w,
        &b,
        Conv2dOp {
            stride,
            padding,
            input_grad,
            relu,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // A small deterministic pseudo-random sequence in [-1, 1).
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Blocks of one output row each (and an uneven split) give the same
    /// results as the whole map in one block, for plain and strided
    /// convolutions with padding.
    #[test]
    fn row_blocks_match_one_block() {
        // (n, c, h, w, o, k, stride, pad)
        let cases = [
            (3, 3, 23, 19, 5, 5, 4, 2),
            (2, 4, 11, 9, 6, 3, 1, 1),
            (2, 2, 13, 13, 3, 4, 2, 1),
            (1, 3, 10, 12, 4, 3, 3, 2),
        ];
        for (idx, &(n, c, h, w, o, k, stride, pad)) in cases.iter().enumerate() {
            let g = Geometry::new(&[n, c, h, w], &[o, c, k, k], &[o], stride, pad).unwrap();
            let seed = idx as u32 * 4;
            let x = data(n * c * h * w, seed + 1);
            let wt = data(o * c * k * k, seed + 2);
            let b = data(o, seed + 3);
            let dy = data(n * o * g.p(), seed + 4);
            let whole = usize::MAX;
            // One output row per block, and about three rows per block.
            let per_row = g.k() * g.wo * 4;
            for budget in [1, 3 * per_row] {
                assert!(row_blocks(&g, budget).len() > 1);
                close(
                    &forward(&g, &x, &wt, &b, false, budget),
                    &forward(&g, &x, &wt, &b, false, whole),
                    "forward",
                );
                let got = backward(&g, &x, &wt, &dy, None, true, budget);
                let want = backward(&g, &x, &wt, &dy, None, true, whole);
                close(got.dx.as_ref().unwrap(), want.dx.as_ref().unwrap(), "dx");
                close(&got.dw, &want.dw, "dw");
                close(&got.db, &want.db, "db");
            }
        }
    }
}
