//! Training, evaluation and prediction for the 2012 AlexNet.
//!
//! - [`Trainer`]: the paper's recipe ([`TrainConfig::paper`]): loader
//!   batches (augmented on the loader's threads) into [`model::AlexNet`],
//!   cross-entropy, backward, [`model::PaperSgd`]; per epoch validation on the
//!   centre crop, metrics files, a PNG plot and a checkpoint (and more often
//!   with [`CheckpointEvery`]); resume from the exact position; divergence
//!   stops the run naming the step. It reports through [`TrainSink`] events
//!   and never prints. [`train()`] runs it in one process, silently.
//! - Data parallelism ([`distributed`]): ranks each train on a share of the
//!   global batch and sum gradients through a [`Collective`] (MPI with the
//!   `mpi` feature); the result equals one process's training.
//! - Command-line rules ([`config`]): the paper's defaults, the run
//!   settings a resume may repeat but not change, the quick-start recipe.
//! - [`evaluate`](mod@evaluate): top-1/top-5 error on the centre crop and the paper's
//!   10-crop test (softmax averaged over the views, [`views`]).
//! - [`predict::Predictor`]: classify photos with a checkpoint.
//! - [`figures`]: the paper's figures from a checkpoint (conv1 kernels,
//!   top-5 predictions, nearest neighbours in fc7, training-error curves);
//!   [`per_class`]: top-1/top-5 error per class.
//! - Pieces usable alone: the learning-rate schedule ([`schedule`]), top-k
//!   counting ([`topk`]), metrics files ([`metrics`]), the plot ([`plot`]),
//!   checkpoints ([`checkpoint`]).
//!
//! A run directory holds `metrics.jsonl` and `metrics.csv` (one row per
//! epoch), `curves.png`, `latest.json` and `checkpoints/` (see
//! [`checkpoint`] for the layout). Each checkpoint directory is
//! self-contained: prediction needs nothing else.

pub mod arch;
pub mod atomic;
pub mod checkpoint;
pub mod config;
pub mod device_input;
pub mod distributed;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod figures;
pub mod metrics;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod per_class;
pub mod plot;
pub mod predict;
pub mod schedule;
pub mod topk;
pub mod train;
pub mod views;

pub use arch::Architecture;
pub use checkpoint::{Checkpoint, CheckpointState};
pub use config::{CheckpointEvery, RunSettings, ScheduleKind, TrainConfig};
pub use distributed::{BatchShare, Collective, GradientReducer, SingleProcess};
pub use error::{Result, TrainerError};
pub use evaluate::{
    evaluate, evaluate_checkpoint, CheckpointEval, CheckpointEvalConfig, EvalOptions, EvalProgress,
    EvalResult,
};
pub use events::{CheckpointReason, NoEvents, RunSummary, StepReport, TrainEvent, TrainSink};
pub use metrics::{EpochMetrics, MetricsFiles};
pub use per_class::{ClassCounts, PerClass};
pub use predict::{ClassScore, Predictor};
pub use schedule::{LrDecision, LrSchedule, ScheduleRule};
pub use topk::TopKCounter;
pub use train::{dropout_seed, train, EpochEnd, TrainOutcome, Trainer};
