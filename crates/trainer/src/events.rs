//! What a [`Trainer`](crate::Trainer) reports while it runs. The trainer
//! never prints: a [`TrainSink`] renders its events (the command line draws
//! progress bars and a line per epoch on rank 0; other ranks pass
//! [`NoEvents`]).

use std::path::Path;

use crate::metrics::EpochMetrics;
use crate::schedule::LrDecision;

/// One thing that happened in a run.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// The run is set up and about to train.
    Started(&'a RunSummary),
    /// `resume` was asked but the run directory holds no checkpoint yet:
    /// training starts from the beginning.
    FreshStart {
        /// The run directory.
        run_dir: &'a Path,
    },
    /// Training continues from a checkpoint.
    Resumed {
        /// The checkpoint directory.
        checkpoint: &'a Path,
        /// Whole epochs done.
        epochs_done: usize,
        /// Optimizer steps done.
        step: u64,
        /// Batches already done of the epoch in progress (0 at an epoch boundary).
        batches_into_epoch: usize,
    },
    /// An epoch's training pass begins.
    EpochStarted {
        /// 1-based epoch.
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Batches in the epoch.
        batches: usize,
        /// Batches already done (resumed mid-epoch).
        done: usize,
    },
    /// One optimizer step is done.
    Step(&'a StepReport),
    /// Validation of an epoch begins.
    ValidationStarted {
        /// 1-based epoch.
        epoch: usize,
        /// Batches this rank evaluates.
        batches: usize,
    },
    /// One batch of an evaluation pass is done: validation in a run, a
    /// checkpoint's evaluation (`centre crop`, `10-crop`), the fc7
    /// features of a figure.
    EvalBatch {
        /// Which pass.
        pass: &'a str,
        /// Batches done so far.
        done: usize,
        /// Batches in the pass (on this rank).
        total: usize,
    },
    /// An epoch is done: trained, validated, metrics written.
    EpochFinished {
        /// Its metrics (also appended to the metrics files).
        metrics: &'a EpochMetrics,
        /// Epochs of the run.
        epochs: usize,
        /// Share of training time spent summing gradients over ranks.
        allreduce_share: f64,
        /// What the schedule decided for the next epoch.
        decision: LrDecision,
        /// Why the rate changed, when it did.
        reason: Option<&'static str>,
    },
    /// A checkpoint was written.
    Checkpointed {
        /// Its directory.
        dir: &'a Path,
        /// Why it was written.
        why: CheckpointReason,
    },
}

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointReason {
    /// The end of an epoch.
    EpochEnd,
    /// `checkpoint_every` inside an epoch.
    Periodic,
    /// A stop (Ctrl-C or `stop_at_step`).
    Stop,
}

/// Set-up facts, reported once at the start.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// `alexnet` or `alexnet-small`.
    pub model: String,
    /// Parameters of the network.
    pub parameters: usize,
    /// Classes.
    pub classes: usize,
    /// Initialisation.
    pub init: String,
    /// The non-linearity.
    pub activation: String,
    /// This rank's tower placement.
    pub devices: String,
    /// `fp32` or `tf32`.
    pub precision: String,
    /// Training images per epoch (all ranks).
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Global batch.
    pub batch_size: usize,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
    /// Ranks in the job.
    pub world_size: usize,
    /// What carries the gradient sums.
    pub transport: &'static str,
    /// Bytes of gradients summed over ranks per step (0 for one rank).
    pub allreduce_bytes: usize,
    /// Collective calls per step.
    pub allreduce_buckets: usize,
    /// Warnings about the data for the user (shards the loader can only
    /// read through the HDF5 library, one thread at a time).
    pub data_warnings: Vec<String>,
}

/// One optimizer step, with the running figures of its epoch (over all ranks).
#[derive(Clone, Debug)]
pub struct StepReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Batches done in the epoch, this one included.
    pub batch: usize,
    /// Optimizer steps done in all.
    pub step: u64,
    /// This step's loss (mean over the global batch).
    pub loss: f64,
    /// This step's top-1 error over the global batch, percent.
    pub top1_error: f64,
    /// The learning rate of the step.
    pub lr: f64,
    /// Mean loss of the epoch so far.
    pub mean_loss: f64,
    /// Training images per second in the epoch so far (all ranks).
    pub images_per_sec: f64,
    /// Share of the epoch's time spent waiting for data (this rank).
    pub data_wait_share: f64,
    /// Time of this step's gradient all-reduce, seconds.
    pub allreduce_seconds: f64,
}

/// Receives the trainer's events: a run's, and the progress of
/// evaluations and figures.
pub trait TrainSink {
    /// One event.
    fn event(&self, event: &TrainEvent<'_>);
}

/// A [`TrainSink`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl TrainSink for NoEvents {
    fn event(&self, _: &TrainEvent<'_>) {}
}
