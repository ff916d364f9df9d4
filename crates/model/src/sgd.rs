//! The paper's stochastic gradient descent with momentum and weight decay.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Device, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use candle_nn::VarMap;
use rayon::prelude::*;

/// SGD in the paper's form, for every variable of a VarMap:
/// ```text
/// v <- momentum * v - weight_decay * lr * w - lr * grad
/// w <- w + v
/// ```
/// (PyTorch's `torch.optim.SGD` differs: it adds the decay to the gradient
/// and multiplies the learning rate after the momentum; the two agree for a
/// constant learning rate up to the scaling of `v`.)
///
/// Momentum buffers start at zero, live on their parameter's device, and
/// are kept by parameter name for checkpoints. On the CPU the update runs
/// in place in two fused passes; on CUDA (feature `cuda`) in place in one
/// kernel per parameter; elsewhere with generic tensor operations.
pub struct PaperSgd {
    params: Vec<(String, Var, Var)>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl PaperSgd {
    /// Optimises every variable in `varmap` (ordered by name).
    pub fn new(varmap: &VarMap, lr: f64, momentum: f64, weight_decay: f64) -> Result<Self> {
        let data = varmap.data().lock().expect("VarMap lock poisoned");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut params = Vec::with_capacity(names.len());
        for name in names {
            let var = data[name].clone();
            let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
            params.push((name.clone(), var, v));
        }
        Ok(Self {
            params,
            lr,
            momentum,
            weight_decay,
        })
    }

    /// One update from `grads` (of a `loss.backward()`); parameters without a
    /// gradient are left unchanged.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (_, w, v) in &self.params {
            let Some(g) = grads.get(w.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            #[cfg(feature = "cuda")]
            if w.device().is_cuda() && w.dtype() == candle_core::DType::F32 {
                // In place on the weight (its write tracked), the momentum
                // updated by the same kernel.
                w.as_tensor().inplace_op3(
                    v.as_tensor(),
                    &g,
                    &crate::ops::cuda::sgd::FusedSgd {
                        momentum: self.momentum as f32,
                        decay_lr: (self.weight_decay * self.lr) as f32,
                        lr: self.lr as f32,
                    },
                )?;
                continue;
            }
            if matches!(w.device(), Device::Cpu) && w.dtype() == candle_core::DType::F32 {
                v.as_tensor().inplace_op3(
                    w.as_tensor(),
                    &g,
                    &MomentumUpdate {
                        momentum: self.momentum as f32,
                        decay_lr: (self.weight_decay * self.lr) as f32,
                        lr: self.lr as f32,
                    },
                )?;
                w.as_tensor().inplace_op2(v.as_tensor(), &AddInPlace)?;
            } else {
                let new_v = ((v.as_tensor().affine(self.momentum, 0.0)?
                    - w.as_tensor().affine(self.weight_decay * self.lr, 0.0)?)?
                    - g.affine(self.lr, 0.0)?)?;
                v.set(&new_v)?;
                w.set(&(w.as_tensor() + v.as_tensor())?)?;
            }
        }
        Ok(())
    }

    /// Current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate (e.g. divided by 10 on a plateau).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Copies of the momentum buffers by parameter name (for checkpoints).
    pub fn momentum_state(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|(name, _, v)| {
                let t = v
                    .as_tensor()
                    .copy()
                    .unwrap_or_else(|_| v.as_tensor().clone());
                (name.clone(), t)
            })
            .collect()
    }

    /// Restores buffers saved by [`PaperSgd::momentum_state`]: every
    /// parameter needs an entry of its shape; unknown names are an error.
    pub fn load_momentum_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for name in state.keys() {
            if !self.params.iter().any(|(n, _, _)| n == name) {
                candle_core::bail!("momentum state has an unknown parameter {name}");
            }
        }
        for (name, w, v) in &self.params {
            let t = state
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("momentum state lacks {name}")))?;
            if t.dims() != w.dims() {
                candle_core::bail!(
                    "momentum state of {name} has shape {:?}, the parameter has {:?}",
                    t.dims(),
                    w.dims()
                );
            }
            v.set(&t.to_device(w.device())?.to_dtype(w.dtype())?)?;
        }
        Ok(())
    }
}

/// Contiguous f32 slice of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
    match s {
        CpuStorage::F32(d) => Ok(&d[a..b]),
        _ => candle_core::bail!("{what} must be f32"),
    }
}

fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
    match s {
        CpuStorage::F32(d) => Ok(&mut d[a..b]),
        _ => candle_core::bail!("{what} must be f32"),
    }
}

const CHUNK: usize = 1 << 16;

/// `v <- momentum v - decay_lr w - lr g`, in place on `v`.
struct MomentumUpdate {
    momentum: f32,
    decay_lr: f32,
    lr: f32,
}

impl InplaceOp3 for MomentumUpdate {
    fn name(&self) -> &'static str {
        "paper-sgd-momentum"
    }

    fn cpu_fwd(
        &self,
        sv: &mut CpuStorage,
        lv: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> Result<()> {
        let v = f32_slice_mut(sv, lv, "momentum")?;
        let w = f32_slice(sw, lw, "weight")?;
        let g = f32_slice(sg, lg, "gradient")?;
        if v.len() != w.len() || v.len() != g.len() {
            candle_core::bail!("sgd: momentum, weight and gradient sizes differ");
        }
        let (m, d, lr) = (self.momentum, self.decay_lr, self.lr);
        v.par_chunks_mut(CHUNK)
            .zip(w.par_chunks(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((v, w), g)| {
                for ((v, w), g) in v.iter_mut().zip(w).zip(g) {
                    *v = m * *v - d * *w - lr * *g;
                }
            });
        Ok(())
    }
}

/// `w <- w + v`, in place on `w`.
struct AddInPlace;

impl InplaceOp2 for AddInPlace {
    fn name(&self) -> &'static str {
        "paper-sgd-apply"
    }

    fn cpu_fwd(
        &self,
        sw: &mut CpuStorage,
        lw: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<()> {
        let w = f32_slice_mut(sw, lw, "weight")?;
        let v = f32_slice(sv, lv, "momentum")?;
        if v.len() != w.len() {
            candle_core::bail!("sgd: weight and momentum sizes differ");
        }
        w.par_chunks_mut(CHUNK)
            .zip(v.par_chunks(CHUNK))
            .for_each(|(w, v)| {
                for (w, v) in w.iter_mut().zip(v) {
                    *w += *v;
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_kernels_refuse_mismatched_sizes() {
        let t = |n: usize| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
        let op = MomentumUpdate {
            momentum: 0.9,
            decay_lr: 0.0,
            lr: 0.1,
        };
        assert!(t(3).inplace_op3(&t(3), &t(2), &op).is_err());
        assert!(t(3).inplace_op3(&t(2), &t(3), &op).is_err());
        assert!(t(3).inplace_op3(&t(3), &t(3), &op).is_ok());
        assert!(t(3).inplace_op2(&t(2), &AddInPlace).is_err());
        assert!(t(3).inplace_op2(&t(3), &AddInPlace).is_ok());
    }
}
