//! The paper's SGD step on CUDA: one kernel per parameter that updates the
//! momentum and the weight in place (`v <- m v - wd lr w - lr g; w <- w + v`).

use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{bail, CpuStorage, CudaStorage, InplaceOp3, Layout, Result};

use super::kernels::{self, config, driver_err};
use super::view;
use crate::ops::cuda_plan::elementwise_launch;

/// The fused step, applied in place on the momentum `v` with the weight `w`
/// and the gradient `g` as the other operands. The kernel writes `w` too:
/// Candle hands the op `w`'s storage read-only, but the weight is a
/// variable that nothing else reads or writes while the step runs, and the
/// kernel runs on the stream of both.
pub(crate) struct FusedSgd {
    /// Momentum `m`.
    pub(crate) momentum: f32,
    /// Weight decay times learning rate.
    pub(crate) decay_lr: f32,
    /// Learning rate.
    pub(crate) lr: f32,
}

impl InplaceOp3 for FusedSgd {
    fn name(&self) -> &'static str {
        "paper-sgd-fused"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        bail!("fused SGD: CUDA only (the CPU path has its own two passes)")
    }

    fn cuda_fwd(
        &self,
        sv: &mut CudaStorage,
        lv: &Layout,
        sw: &CudaStorage,
        lw: &Layout,
        sg: &CudaStorage,
        lg: &Layout,
    ) -> Result<()> {
        let n = lv.shape().elem_count();
        if lw.shape().elem_count() != n || lg.shape().elem_count() != n {
            bail!("sgd: momentum, weight and gradient sizes differ");
        }
        if sw.device.id() != sv.device.id() || sg.device.id() != sv.device.id() {
            bail!("sgd: momentum, weight and gradient on different devices");
        }
        let dev = sv.device.clone();
        let (a, b) = lv
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("momentum must be contiguous".into()))?;
        let (w, g) = (view(sw, lw, "weight")?, view(sg, lg, "gradient")?);
        let v = sv.as_cuda_slice_mut::<f32>()?;
        let mut v = v.slice_mut(a..b);
        let f = kernels::function(&dev, "paper_sgd_f32")?;
        let stream = dev.cuda_stream();
        let len = n as u64;
        let mut launch = stream.launch_builder(&f);
        launch
            .arg(&mut v)
            .arg(&w)
            .arg(&g)
            .arg(&len)
            .arg(&self.momentum)
            .arg(&self.decay_lr)
            .arg(&self.lr);
        unsafe { launch.launch(config(elementwise_launch(n))) }.map_err(driver_err)?;
        Ok(())
    }
}
