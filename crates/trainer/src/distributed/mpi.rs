//! MPI as the [`Collective`] (feature `mpi`): rsmpi over OpenMPI or MPICH,
//! launched by `mpirun`/`mpiexec` or Slurm's `srun`.
//!
//! Sums go through host memory with `MPI_Allreduce`. A watchdog ends the
//! job when one collective call waits longer than a timeout (a rank that
//! hangs rather than dies); a rank that dies is seen by the launcher,
//! which stops the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use crate::distributed::{host_values, Collective};
use crate::error::{Result, TrainerError};

/// The job's MPI world.
pub struct MpiCollective {
    // Dropped last: finalises MPI.
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    watchdog: Arc<Watchdog>,
    _universe: Universe,
}

/// Milliseconds since `start` at which the current collective began (0: none).
struct Watchdog {
    start: Instant,
    since_ms: AtomicU64,
}

impl MpiCollective {
    /// Initialises MPI (once per process). `timeout`: the longest one
    /// collective call may wait before this rank ends the job.
    pub fn init(timeout: Duration) -> Result<Self> {
        let universe = mpi::initialize().ok_or(TrainerError::MpiInitialised)?;
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        let watchdog = Arc::new(Watchdog {
            start: Instant::now(),
            since_ms: AtomicU64::new(0),
        });
        let dog = watchdog.clone();
        std::thread::Builder::new()
            .name("collective-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(500));
                let since = dog.since_ms.load(Ordering::Acquire);
                if since == 0 {
                    continue;
                }
                let now = dog.start.elapsed().as_millis() as u64;
                if now.saturating_sub(since) > timeout.as_millis() as u64 {
                    eprintln!(
                        "rank {rank}: an all-reduce has waited more than {} s for the other ranks: \
                         one of them is gone or stuck; ending the job",
                        timeout.as_secs()
                    );
                    // Leaving without MPI_Finalize makes the launcher stop
                    // every other rank.
                    std::process::exit(3);
                }
            })
            .map_err(TrainerError::Watchdog)?;
        Ok(Self {
            world,
            rank,
            size,
            local_rank,
            watchdog,
            _universe: universe,
        })
    }

    fn guarded<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.watchdog.start.elapsed().as_millis() as u64;
        self.watchdog.since_ms.store(now.max(1), Ordering::Release);
        let out = f();
        self.watchdog.since_ms.store(0, Ordering::Release);
        out
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn transport(&self) -> &'static str {
        "MPI"
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        self.guarded(|| {
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum())
        });
        Ok(())
    }
    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
        let send = host_values(flat)?;
        let mut recv = vec![0f32; send.len()];
        self.guarded(|| {
            self.world
                .all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum())
        });
        Ok(Tensor::from_vec(recv, send.len(), flat.device())?)
    }
    fn broadcast_bytes(&self, bytes: &mut [u8]) -> Result<()> {
        self.guarded(|| self.world.process_at_rank(0).broadcast_into(bytes));
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
