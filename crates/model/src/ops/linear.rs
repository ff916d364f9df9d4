//! Fully connected layer with weights stored `[in, out]`, forward and
//! backward as single `gemm` calls split over the rayon pool.

use super::cpu::{matmul, slice_f32, threads, with_f32, Mat};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    inp: usize,
    out: usize,
}

fn dims(x: &[usize], w: &[usize], b: &[usize]) -> Result<Dims> {
    let (&[n, inp], &[wi, out]) = (x, w) else {
        bail!("linear: expected x [N, in] and w [in, out], got {x:?} and {w:?}");
    };
    if wi != inp {
        bail!("linear: x has {inp} features but w is [{wi}, {out}] (weights are stored [in, out])");
    }
    if b != [out] {
        bail!("linear: bias shape {b:?} does not match {out} outputs");
    }
    Ok(Dims { n, inp, out })
}

struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "alexnet-linear"
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
        let d = dims(l1.dims(), l2.dims(), l3.dims())?;
        let x = slice_f32(s1, l1, "linear")?;
        let w = slice_f32(s2, l2, "linear")?;
        let b = slice_f32(s3, l3, "linear")?;
        let mut y = vec![0.0f32; d.n * d.out];
        for row in y.chunks_exact_mut(d.out.max(1)) {
            row.copy_from_slice(b);
        }
        let lhs = Mat {
            data: x,
            rs: d.inp,
            cs: 1,
        };
        let rhs = Mat {
            data: w,
            rs: d.out,
            cs: 1,
        };
        matmul(d.n, d.out, d.inp, &mut y, d.out, true, lhs, rhs, threads());
        Ok((CpuStorage::F32(y), Shape::from((d.n, d.out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = dims(x.dims(), w.dims(), b.dims())?;
        let (x, w, dy) = (x.contiguous()?, w.contiguous()?, grad_res.contiguous()?);
        let (dx, dw, db) = with_f32(&x, "linear backward", |xs| {
            with_f32(&w, "linear backward", |ws| {
                with_f32(&dy, "linear backward", |dys| {
                    let t = threads();
                    // dx [N, in] = dy [N, out] · wᵀ [out, in]
                    let mut dx = vec![0.0f32; d.n * d.inp];
                    let lhs = Mat {
                        data: dys,
                        rs: d.out,
                        cs: 1,
                    };
                    matmul(
                        d.n,
                        d.inp,
                        d.out,
                        &mut dx,
                        d.inp,
                        false,
                        lhs,
                        Mat {
                            data: ws,
                            rs: 1,
                            cs: d.out,
                        },
                        t,
                    );
                    // dw [in, out] = xᵀ [in, N] · dy [N, out]
                    let mut dw = vec![0.0f32; d.inp * d.out];
                    let xt = Mat {
                        data: xs,
                        rs: 1,
                        cs: d.inp,
                    };
                    matmul(d.inp, d.out, d.n, &mut dw, d.out, false, xt, lhs, t);
                    let mut db = vec![0.0f32; d.out];
                    for row in dys.chunks_exact(d.out.max(1)) {
                        db.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                    }
                    (dx, dw, db)
                })
            })
        })???;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, b.shape(), dev)?),
        ))
    }
}

/// CPU `f32` path of [`super::linear`].
pub(crate) fn linear_cpu(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    dims(x.dims(), w.dims(), b.dims())?;
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
    x.apply_op3(&w, &b, LinearOp)
}

/// The same layer with stock Candle operations (`matmul` + `broadcast_add`);
/// differentiable on every device. Used as the fallback off the CPU and as
/// the reference in tests and benchmarks.
pub fn linear_stock(x: &Tensor, w_in_out: &Tensor, b: &Tensor) -> Result<Tensor> {
    dims(x.dims(), w_in_out.dims(), b.dims())?;
    x.matmul(w_in_out)?.broadcast_add(b)
}
