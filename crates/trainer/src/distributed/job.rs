//! The job's [`Collective`]: MPI when an MPI launcher started this process
//! (`mpirun`, `mpiexec`, `srun --mpi=pmix`), otherwise a process alone;
//! NCCL for gradients on CUDA devices. A launch whose tasks MPI does not
//! see is refused ([`super::LaunchMismatch`]).

use std::time::Duration;

use super::launch;
use super::{Collective, SingleProcess};
use crate::devices::Devices;
use crate::error::Result;

/// What sums the gradients of several ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradientSums {
    /// NCCL when the devices are CUDA, the job has several ranks and the
    /// build has the `nccl` feature; otherwise MPI through host memory.
    #[default]
    Auto,
    /// MPI through host memory.
    Host,
    /// NCCL, even for one rank alone (a check of the NCCL path against a
    /// process without sums).
    Nccl,
}

/// The job's collective for training on `devices` (local rank 0's
/// pattern). `timeout`: the longest one MPI collective call may wait for
/// the other ranks before this rank ends the job.
pub fn job_collective(
    devices: &Devices,
    sums: GradientSums,
    timeout: Duration,
) -> Result<Box<dyn Collective>> {
    let host = host_collective(timeout)?;
    launch::check(
        |name| std::env::var(name).ok(),
        host.world_size(),
        cfg!(feature = "mpi"),
    )?;
    match sums {
        GradientSums::Host => Ok(host),
        GradientSums::Auto
            if cfg!(feature = "nccl") && devices.is_cuda() && host.world_size() > 1 =>
        {
            nccl(host, devices, false)
        }
        GradientSums::Auto => Ok(host),
        GradientSums::Nccl => nccl(host, devices, true),
    }
}

#[cfg(feature = "nccl")]
fn nccl(host: Box<dyn Collective>, devices: &Devices, always: bool) -> Result<Box<dyn Collective>> {
    let placement = devices.for_local_rank(host.local_rank()).placement()?;
    let devices = [placement.tower_a, placement.tower_b];
    Ok(Box::new(super::nccl::NcclCollective::new(
        host, &devices, always,
    )?))
}

#[cfg(not(feature = "nccl"))]
fn nccl(
    _host: Box<dyn Collective>,
    _devices: &Devices,
    _always: bool,
) -> Result<Box<dyn Collective>> {
    Err(crate::error::TrainerError::NcclNotBuilt)
}

/// MPI when launched by it, else a process alone.
#[cfg(feature = "mpi")]
fn host_collective(timeout: Duration) -> Result<Box<dyn Collective>> {
    if launch::mpi_launch_variable().is_none() {
        return Ok(Box::new(SingleProcess));
    }
    Ok(Box::new(super::mpi::MpiCollective::init(timeout)?))
}

/// A process alone. Started by an MPI launcher, this build (without the
/// `mpi` feature) refuses rather than have every rank train alone.
#[cfg(not(feature = "mpi"))]
fn host_collective(_timeout: Duration) -> Result<Box<dyn Collective>> {
    match launch::mpi_launch_variable() {
        Some((variable, value)) => Err(crate::error::TrainerError::NoMpi { variable, value }),
        None => Ok(Box::new(SingleProcess)),
    }
}
