//! Training, evaluation and prediction for the 2012 AlexNet.
//!
//! - [`Trainer`]: the paper's recipe ([`TrainConfig::paper`], or
//!   [`TrainConfig::for_run`] from a command line's [`RunOptions`]): loader
//!   batches (augmented on the loader's threads) into [`model::AlexNet`],
//!   cross-entropy, backward, [`model::PaperSgd`]; per epoch validation on
//!   the centre crop, metrics files, a PNG plot and a checkpoint (and more
//!   often with [`CheckpointEvery`]); resume from the exact position;
//!   divergence stops the run naming the step. It reports through
//!   [`TrainSink`] events and never prints. [`train()`] runs it in one
//!   process, silently.
//! - Data parallelism: ranks each train on a share of the global batch and
//!   sum gradients through a [`Collective`] ([`job_collective`]: MPI with
//!   the `mpi` feature, NCCL with `nccl`); the result equals one process's
//!   training. A launch whose tasks MPI does not see is refused
//!   ([`LaunchMismatch`]).
//! - [`evaluate()`] and [`evaluate_checkpoint`]: top-1/top-5 error on the
//!   centre crop and the paper's 10-crop test.
//! - [`Predictor`]: classify photos with a checkpoint.
//! - [`figures`]: the paper's figures from a checkpoint (conv1 kernels,
//!   top-5 predictions, nearest neighbours in fc7, training-error curves);
//!   [`PerClass`]: top-1/top-5 error per class.
//! - [`checkpoint`]: the checkpoint format and the run directory's layout.
//!
//! A run directory holds `metrics.jsonl` and `metrics.csv` (one row per
//! epoch), `curves.png`, TensorBoard's event files in `tensorboard/` (see
//! [`tensorboard`]), `latest.json` and `checkpoints/` (see [`checkpoint`]
//! for the layout). Each checkpoint directory is
//! self-contained: prediction needs nothing else.

mod arch;
mod atomic;
pub mod checkpoint;
mod config;
mod device_input;
mod devices;
mod distributed;
mod error;
mod evaluate;
mod events;
pub mod figures;
mod metrics;
mod per_class;
mod plot;
mod predict;
mod schedule;
pub mod tensorboard;
mod topk;
mod train;
mod views;

pub use arch::Architecture;
pub use checkpoint::{Checkpoint, CheckpointState};
pub use config::{
    default_threads, CheckpointEvery, RunOptions, RunSettings, ScheduleKind, TrainConfig,
    DEFAULT_COLLECTIVE_TIMEOUT, DEFAULT_EPOCHS, DEFAULT_EVAL_BATCH, DEFAULT_PREFETCH,
    DEFAULT_TENSORBOARD_EVERY, QUICKSTART_DIR, QUICKSTART_EPOCHS, QUICKSTART_LR,
};
#[cfg(feature = "cuda")]
pub use device_input::stage_batch;
pub use devices::Devices;
pub use distributed::{job_collective, Collective, GradientSums, LaunchMismatch, SingleProcess};
pub use error::{Result, TrainerError};
pub use evaluate::{
    evaluate, evaluate_checkpoint, load_network, CheckpointEval, CheckpointEvalConfig, EvalOptions,
    EvalResult,
};
pub use events::{CheckpointReason, NoEvents, RunSummary, StepReport, TrainEvent, TrainSink};
pub use metrics::{EpochMetrics, MetricsFiles};
pub use per_class::{ClassCounts, PerClass};
pub use predict::{ClassScore, Predictor, DEFAULT_TOP};
pub use schedule::{LrDecision, LrSchedule, ScheduleRule};
pub use topk::TopKCounter;
pub use train::{train, EpochEnd, TrainOutcome, Trainer};
