//! Which ranks this process is part of: MPI when an MPI launcher started
//! it (`mpirun`, `mpiexec`, `srun`), otherwise a process alone.

use std::time::Duration;

use trainer::Collective;

/// The job's collective when launched by MPI; `None` for a process alone.
#[cfg(feature = "mpi")]
pub fn job_collective(timeout: Duration) -> anyhow::Result<Option<Box<dyn Collective>>> {
    if trainer::distributed::mpi_launch_variable().is_none() {
        return Ok(None);
    }
    Ok(Some(Box::new(trainer::mpi::MpiCollective::init(timeout)?)))
}

/// The job's collective: a process alone. Started by an MPI launcher, this
/// build (without the `mpi` feature) refuses rather than have every rank
/// train alone.
#[cfg(not(feature = "mpi"))]
pub fn job_collective(_timeout: Duration) -> anyhow::Result<Option<Box<dyn Collective>>> {
    match trainer::distributed::mpi_launch_variable() {
        Some((var, value)) => anyhow::bail!(
            "started by an MPI launcher ({var}={value}), but this binary was built without MPI: \
             build it with `cargo build --release -p xtask --features mpi` \
             (scripts/setup.sh --mpi installs OpenMPI)"
        ),
        None => Ok(None),
    }
}
