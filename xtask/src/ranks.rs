//! Which ranks this process is part of, and what sums their gradients: MPI
//! when an MPI launcher started it (`mpirun`, `mpiexec`, `srun`), otherwise
//! a process alone; NCCL for gradients on CUDA devices.

use std::time::Duration;

use clap::ValueEnum;
use trainer::{Collective, SingleProcess};

/// `--gradient-sums` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradientSums {
    /// NCCL when the devices are CUDA, the job has several ranks and the
    /// binary has the `nccl` feature; otherwise MPI through host memory.
    Auto,
    /// MPI through host memory.
    Host,
    /// NCCL, even for one rank alone (a check of the NCCL path against a
    /// process without sums).
    Nccl,
}

/// The job's collective for training on the `devices` pattern.
pub fn job_collective(
    timeout: Duration,
    sums: GradientSums,
    devices: &str,
) -> anyhow::Result<Box<dyn Collective>> {
    let host = host_collective(timeout)?;
    let cuda = devices.contains("cuda");
    match sums {
        GradientSums::Host => Ok(host),
        GradientSums::Auto if cfg!(feature = "nccl") && cuda && host.world_size() > 1 => {
            nccl(host, devices, false)
        }
        GradientSums::Auto => Ok(host),
        GradientSums::Nccl => nccl(host, devices, true),
    }
}

#[cfg(feature = "nccl")]
fn nccl(
    host: Box<dyn Collective>,
    devices: &str,
    always: bool,
) -> anyhow::Result<Box<dyn Collective>> {
    let local = trainer::distributed::local_devices(devices, host.local_rank())?;
    let placement = model::Placement::parse(&local)?;
    let devices = [placement.tower_a, placement.tower_b];
    Ok(Box::new(trainer::nccl::NcclCollective::new(
        host, &devices, always,
    )?))
}

#[cfg(not(feature = "nccl"))]
fn nccl(
    _host: Box<dyn Collective>,
    _devices: &str,
    _always: bool,
) -> anyhow::Result<Box<dyn Collective>> {
    anyhow::bail!(
        "--gradient-sums nccl: this binary was built without NCCL (cargo build --release -p xtask --features \"cuda nccl\")"
    )
}

/// MPI when launched by it, else a process alone.
#[cfg(feature = "mpi")]
fn host_collective(timeout: Duration) -> anyhow::Result<Box<dyn Collective>> {
    if trainer::distributed::mpi_launch_variable().is_none() {
        return Ok(Box::new(SingleProcess));
    }
    Ok(Box::new(trainer::mpi::MpiCollective::init(timeout)?))
}

/// A process alone. Started by an MPI launcher, this build (without the
/// `mpi` feature) refuses rather than have every rank train alone.
#[cfg(not(feature = "mpi"))]
fn host_collective(_timeout: Duration) -> anyhow::Result<Box<dyn Collective>> {
    match trainer::distributed::mpi_launch_variable() {
        Some((var, value)) => anyhow::bail!(
            "started by an MPI launcher ({var}={value}), but this binary was built without MPI: \
             build it with `cargo build --release -p xtask --features mpi` \
             (scripts/setup.sh --mpi installs OpenMPI)"
        ),
        None => Ok(Box::new(SingleProcess)),
    }
}
