//! ReLU as one fused CPU pass forward and one backward (`grad * (y > 0)`).
//! Candle's own ReLU backward takes five passes over the tensor (zeros,
//! compare, convert, multiply, accumulate); at batch 32 that cost more than
//! the ReLU forward of the whole network. Other devices and dtypes use
//! Candle's ReLU.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 1 << 15;

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Option<&'a [f32]> {
    let (a, b) = l.contiguous_offsets()?;
    match s {
        CpuStorage::F32(d) => Some(&d[a..b]),
        _ => None,
    }
}

/// `max(x, 0)`.
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)
            .ok_or_else(|| candle_core::Error::Msg("relu: contiguous f32 input expected".into()))?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (y, x) in y.iter_mut().zip(x) {
                    *y = x.max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op2_no_bwd(res, &ReluBackward)?))
    }
}

/// `grad * (y > 0)`.
struct ReluBackward;

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "relu-fused-backward"
    }

    fn cpu_fwd(
        &self,
        sg: &CpuStorage,
        lg: &Layout,
        sy: &CpuStorage,
        ly: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (Some(g), Some(y)) = (contiguous_f32(sg, lg), contiguous_f32(sy, ly)) else {
            candle_core::bail!("relu backward: contiguous f32 tensors expected");
        };
        if g.len() != y.len() {
            candle_core::bail!("relu backward: gradient and output sizes differ");
        }
        let mut dx = vec![0f32; g.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(dx, (g, y))| {
                for ((dx, g), y) in dx.iter_mut().zip(g).zip(y) {
                    *dx = if *y > 0.0 { *g } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(dx), lg.shape().clone()))
    }
}

/// ReLU: the fused op for contiguous f32 CPU tensors, Candle's otherwise.
pub(crate) fn relu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        x.apply_op1(Relu)
    } else {
        x.relu()
    }
}
