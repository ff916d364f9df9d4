//! The element-wise and reduction kernels of the CUDA operations
//! (`kernels.cu`), compiled with NVRTC (no `nvcc` at build time) once per
//! process for the device's own compute capability, and loaded once per
//! device object by Candle's module cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{CudaFunction, LaunchConfig};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use crate::ops::cuda_plan::{nvrtc_arch_option, Launch, KERNEL_SOURCE};

/// Name of the module in Candle's per-device cache of custom modules.
const MODULE: &str = "alexnet_ops";

/// Compiled PTX by compute capability.
type PtxByCapability = HashMap<(i32, i32), Arc<str>>;

/// The PTX of [`KERNEL_SOURCE`] for compute capability `major.minor`, compiled on
/// first use for each capability (a process normally sees one).
fn ptx(capability: (i32, i32)) -> Result<Arc<str>> {
    static PTX: OnceLock<Mutex<PtxByCapability>> = OnceLock::new();
    let cache = PTX.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().expect("PTX cache lock poisoned");
    if let Some(p) = cache.get(&capability) {
        return Ok(p.clone());
    }
    let opts = nvrtc::CompileOptions {
        options: vec![nvrtc_arch_option(capability.0, capability.1)],
        ..Default::default()
    };
    let p: Arc<str> = nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, opts)
        .map_err(|e| {
            candle_core::Error::Msg(format!(
                "NVRTC compilation of the op kernels for compute capability {}.{}: {e}",
                capability.0, capability.1
            ))
        })?
        .to_src()
        .into();
    cache.insert(capability, p.clone());
    Ok(p)
}

/// Kernel `name` of the module on `dev` (loaded on its first use there).
pub(crate) fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    let capability = dev
        .cuda_stream()
        .context()
        .compute_capability()
        .map_err(driver_err)?;
    Ok(dev
        .get_or_load_custom_func(name, MODULE, &ptx(capability)?)?
        .into_cuda_function())
}

/// cudarc's launch configuration of a planned [`Launch`].
pub(crate) fn config(l: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: l.block,
        shared_mem_bytes: 0,
    }
}

/// A driver error as a Candle error.
pub(crate) fn driver_err(
    e: candle_core::cuda_backend::cudarc::driver::DriverError,
) -> candle_core::Error {
    candle_core::Error::wrap(e)
}
