//! The paper's SGD step on CUDA: one kernel per parameter that updates the
//! momentum and the weight in place (`v <- m v - wd lr w - lr g; w <- w + v`).

use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{bail, CpuStorage, CudaStorage, InplaceOp3, Layout, Result};

use super::kernels::{self, config, driver_err};
use super::view;
use crate::ops::cuda_plan::elementwise_launch;

/// The fused step, applied in place on the weight `w` with the momentum
/// `v` and the gradient `g` as the other operands. The weight is the
/// operand Candle hands over mutably, so its write is tracked: a reader of
/// the weight on another stream (another tower's device object, a copy to
/// the host) waits for the update. The kernel writes `v` too, through the
/// read-only operand: the momentum is a buffer of the optimizer's own that
/// only this kernel and the checkpoint's copy to the host touch, both
/// queued on the weight's device stream, which orders them.
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
        sw: &mut CudaStorage,
        lw: &Layout,
        sv: &CudaStorage,
        lv: &Layout,
        sg: &CudaStorage,
        lg: &Layout,
    ) -> Result<()> {
        let n = lw.shape().elem_count();
        if lv.shape().elem_count() != n || lg.shape().elem_count() != n {
            bail!("sgd: momentum, weight and gradient sizes differ");
        }
        if sv.device.id() != sw.device.id() || sg.device.id() != sw.device.id() {
            bail!("sgd: momentum, weight and gradient on different devices");
        }
        let dev = sw.device.clone();
        let (a, b) = lw
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("weight must be contiguous".into()))?;
        let (v, g) = (view(sv, lv, "momentum")?, view(sg, lg, "gradient")?);
        let w = sw.as_cuda_slice_mut::<f32>()?;
        let mut w = w.slice_mut(a..b);
        let f = kernels::function(&dev, "paper_sgd_f32")?;
        let stream = dev.cuda_stream();
        let len = n as u64;
        let mut launch = stream.launch_builder(&f);
        // Kernel order: v, w, g.
        launch
            .arg(&v)
            .arg(&mut w)
            .arg(&g)
            .arg(&len)
            .arg(&self.momentum)
            .arg(&self.decay_lr)
            .arg(&self.lr);
        unsafe { launch.launch(config(elementwise_launch(n))) }.map_err(driver_err)?;
        Ok(())
    }
}
