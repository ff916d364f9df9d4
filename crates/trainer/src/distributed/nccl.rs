//! NCCL as the [`Collective`] for gradients on CUDA (feature `nccl`).
//!
//! The usual pattern of NVIDIA's examples: the job's ranks come from a
//! host collective (MPI, or one process alone), rank 0 creates an NCCL
//! unique id per device of the placement and the host collective
//! broadcasts it, then each rank joins one NCCL communicator per device.
//! Gradient buckets on a CUDA device are summed there by `ncclAllReduce`
//! on Candle's own stream (no copy to the host); small host sums (counts,
//! the stop flag) and buckets off CUDA go through the host collective.

use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::CudaStorage;
use candle_core::{CpuStorage, CustomOp1, DeviceLocation, Layout, Shape, Tensor};

use crate::distributed::Collective;
use crate::error::{Result, TrainerError};

/// Sums over the ranks of one device's communicator, as a Candle op.
struct NcclSum {
    comm: Comm,
}

// SAFETY: the communicator is used from the training thread only, one
// collective at a time, on the stream it was created with.
unsafe impl Send for NcclSum {}
unsafe impl Sync for NcclSum {}

impl CustomOp1 for NcclSum {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL sums CUDA tensors only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("NCCL all-reduce: the bucket is not contiguous");
        };
        let dev = s.device.clone();
        let src = s.as_cuda_slice::<f32>()?.slice(start..end);
        let mut out = unsafe { dev.alloc::<f32>(end - start) }?;
        // The communicator's stream waits for the gradients, and Candle's
        // stream for the sum (the same stream when both are the thread's).
        let (ours, theirs) = (self.comm.stream(), dev.cuda_stream());
        let sync = |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
            candle_core::Error::Cuda(format!("stream sync: {e:?}").into())
        };
        ours.join(&theirs).map_err(sync)?;
        self.comm
            .all_reduce(&src, &mut out, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Cuda(format!("ncclAllReduce: {e:?}").into()))?;
        theirs.join(&ours).map_err(sync)?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), l.shape().clone()))
    }
}

/// NCCL communicators (one per CUDA device of this rank's placement) over
/// the ranks of a host collective.
pub struct NcclCollective {
    host: Box<dyn Collective>,
    /// CUDA ordinal and its communicator's sum.
    sums: Vec<(usize, NcclSum)>,
    /// Sum even alone (a check that the NCCL path gives one process's result).
    always: bool,
}

impl NcclCollective {
    /// Joins one communicator per CUDA device in `devices` (this rank's
    /// tower devices, e.g. from [`crate::Devices::for_local_rank`]).
    /// `always`: run the sums even in a job of one rank.
    pub fn new(
        host: Box<dyn Collective>,
        devices: &[candle_core::Device],
        always: bool,
    ) -> Result<Self> {
        let mut sums = Vec::new();
        for device in devices {
            let candle_core::Device::Cuda(cuda) = device else {
                continue;
            };
            let DeviceLocation::Cuda { gpu_id } = device.location() else {
                continue;
            };
            if sums.iter().any(|(o, _)| *o == gpu_id) {
                continue;
            }
            let mut bytes = [0u8; 128];
            if host.rank() == 0 {
                let id = Id::new().map_err(|e| TrainerError::Nccl {
                    call: "ncclGetUniqueId",
                    reason: format!("{e:?}"),
                })?;
                for (b, c) in bytes.iter_mut().zip(id.internal()) {
                    *b = *c as u8;
                }
            }
            host.broadcast_bytes(&mut bytes)?;
            let mut internal = [0 as core::ffi::c_char; 128];
            for (c, b) in internal.iter_mut().zip(bytes) {
                *c = b as core::ffi::c_char;
            }
            // ncclCommInitRank joins the device of the thread's current
            // context: make it this device's, or with two GPUs both
            // communicators would land on whichever was current.
            let stream = cuda.cuda_stream();
            stream
                .context()
                .bind_to_thread()
                .map_err(|e| TrainerError::Nccl {
                    call: "binding the device's context",
                    reason: format!("cuda:{gpu_id}: {e:?}"),
                })?;
            let comm =
                Comm::from_rank(stream, host.rank(), host.world_size(), Id::uninit(internal))
                    .map_err(|e| TrainerError::Nccl {
                        call: "ncclCommInitRank",
                        reason: format!("{e:?}"),
                    })?;
            sums.push((gpu_id, NcclSum { comm }));
        }
        if sums.is_empty() {
            return Err(TrainerError::NcclNeedsCuda);
        }
        Ok(Self { host, sums, always })
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.host.rank()
    }
    fn world_size(&self) -> usize {
        self.host.world_size()
    }
    fn local_rank(&self) -> usize {
        self.host.local_rank()
    }
    fn transport(&self) -> &'static str {
        "NCCL"
    }
    fn sums_needed(&self) -> bool {
        self.always || self.world_size() > 1
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.host.all_reduce_sum_f64(values)
    }
    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
        if let DeviceLocation::Cuda { gpu_id } = flat.device().location() {
            if let Some((_, sum)) = self.sums.iter().find(|(o, _)| *o == gpu_id) {
                return Ok(flat
                    .to_dtype(candle_core::DType::F32)?
                    .apply_op1_no_bwd(sum)?);
            }
        }
        self.host.all_reduce_sum(flat)
    }
    fn broadcast_bytes(&self, bytes: &mut [u8]) -> Result<()> {
        self.host.broadcast_bytes(bytes)
    }
    fn abort(&self, code: i32) -> ! {
        self.host.abort(code)
    }
}
