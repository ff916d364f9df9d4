//! Shared helpers of the CPU kernels: slice access, a bounds-checked `gemm`
//! call and per-thread scratch buffers.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};
use std::cell::RefCell;

/// The `f32` elements of a contiguous CPU storage described by `layout`.
pub(crate) fn slice_f32<'a>(s: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// Runs `f` on the `f32` elements of a contiguous CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(slice_f32(s, layout, op)?)),
        _ => bail!("{op}: the CPU kernel got a tensor on {:?}", t.device()),
    }
}

/// A row-major-or-strided matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

fn check(len: usize, rows: usize, cols: usize, rs: usize, cs: usize, what: &str) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1) * rs + (cols - 1) * cs;
        assert!(last < len, "gemm {what} view out of bounds");
    }
}

/// `dst[m x n] (row stride dst_rs, unit column stride) = (accumulate ? dst : 0) + lhs[m x k] · rhs[k x n]`.
///
/// `threads > 1` lets `gemm` split the product over the rayon pool.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    threads: usize,
) {
    check(dst.len(), m, n, dst_rs, 1, "dst");
    check(lhs.data.len(), m, k, lhs.rs, lhs.cs, "lhs");
    check(rhs.data.len(), k, n, rhs.rs, rhs.cs, "rhs");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views were checked to lie inside their slices; `dst`
    // is borrowed mutably, so it does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with three per-thread scratch buffers of at least `lens[i]`
/// elements (contents unspecified), kept between calls so that large column
/// buffers are not allocated per sample.
pub(crate) fn with_scratch<R>(
    lens: [usize; 3],
    f: impl FnOnce(&mut [f32], &mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|cell| {
        // A nested call on the same thread (rayon work stealing inside `f`)
        // gets fresh buffers instead of a borrow panic.
        let Ok(mut guard) = cell.try_borrow_mut() else {
            let [a, b, c] = lens.map(|n| vec![0.0; n]);
            let (mut a, mut b, mut c) = (a, b, c);
            return f(&mut a, &mut b, &mut c);
        };
        let [a, b, c] = &mut *guard;
        for (buf, &len) in [&mut *a, &mut *b, &mut *c].into_iter().zip(&lens) {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        f(&mut a[..lens[0]], &mut b[..lens[1]], &mut c[..lens[2]])
    })
}

/// Number of threads of the rayon pool the kernels run on.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads()
}

/// Splits `0..n` into at most `parts` contiguous, nearly equal ranges.
pub(crate) fn split_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|i| (i * n / parts)..((i + 1) * n / parts))
        .filter(|r| !r.is_empty())
        .collect()
}
