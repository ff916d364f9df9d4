//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training, evaluating or predicting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainerError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The loss became NaN or infinite.
    #[error(
        "training diverged: the loss is {loss} at step {step} (epoch {epoch}, batch {batch}); \
         stopped before updating the weights{}",
        match last_checkpoint {
            Some(p) => format!("; the last good checkpoint is {}", p.display()),
            None => String::from("; no checkpoint was written yet"),
        }
    )]
    Diverged {
        /// The loss value (NaN or +-inf).
        loss: f32,
        /// Global optimizer step (0-based) whose forward pass produced it.
        step: u64,
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The last checkpoint on disk, kept untouched.
        last_checkpoint: Option<PathBuf>,
    },
    /// A checkpoint is missing, incomplete or does not fit the request.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint's `state.json` holds values a run cannot resume from.
    #[error("{path}: {source}")]
    CheckpointState {
        /// The `state.json` file.
        path: PathBuf,
        /// The value refused.
        source: crate::checkpoint::StateError,
    },
    /// A run's `latest.json` names a place outside its `checkpoints/`.
    #[error(
        "{path}: points at {pointer}, which is not a checkpoint of this run \
         (expected checkpoints/<name>)"
    )]
    LatestPointer {
        /// The `latest.json` file.
        path: PathBuf,
        /// The path it holds.
        pointer: PathBuf,
    },
    /// A checkpoint's tensors (parameters or momentum buffers) could not be
    /// read or written.
    #[error("checkpoint {path}: {action}: {source}")]
    CheckpointTensors {
        /// The safetensors file.
        path: PathBuf,
        /// What was being done (`loading parameters`, ...).
        action: &'static str,
        /// The underlying error.
        source: Box<candle_core::Error>,
    },
    /// A checkpoint names an initialisation this build does not know.
    #[error("checkpoint {path}: {source}")]
    CheckpointInit {
        /// The checkpoint directory.
        path: PathBuf,
        /// The underlying error.
        source: model::ParseInitError,
    },
    /// The dataset could not be opened or read.
    #[error("data: {0}")]
    Data(#[from] loader::LoaderError),
    /// An image file could not be decoded.
    #[error("{path}: {source}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: Box<decode::DecodeError>,
    },
    /// A class table does not have the classes a checkpoint was trained on.
    #[error("{path} lists {listed} classes, the checkpoint was trained on {trained}")]
    ClassCount {
        /// The class table (or the dataset directory holding it).
        path: PathBuf,
        /// Classes it lists.
        listed: usize,
        /// Classes of the checkpoint.
        trained: usize,
    },
    /// A label is not a class index.
    #[error("data: label {label} outside 0..{classes}")]
    LabelOutOfRange {
        /// The label.
        label: i64,
        /// Number of classes.
        classes: usize,
    },
    /// Scores, labels or images do not have the sizes that fit together.
    #[error("{0}")]
    Shape(String),
    /// An epoch's loader ended early.
    #[error("data: epoch {epoch} ended after {batches} of {expected} batches")]
    EpochEndedEarly {
        /// The epoch (1-based).
        epoch: usize,
        /// Batches it gave.
        batches: usize,
        /// Batches it should have given.
        expected: usize,
    },
    /// A mean image smaller than the network's input crop.
    #[error("{path}: mean image {height}x{width} is smaller than the {crop} crop")]
    MeanImageTooSmall {
        /// `stats.h5`.
        path: PathBuf,
        /// Mean image height.
        height: usize,
        /// Mean image width.
        width: usize,
        /// The network's input size.
        crop: usize,
    },
    /// A setting that must be at least 1 is 0.
    #[error("invalid configuration: {what} must be at least 1")]
    Zero {
        /// The setting(s), as flags.
        what: &'static str,
    },
    /// A model name that is not one of the known networks.
    #[error("unknown model '{0}': expected 'alexnet' or 'alexnet-small'")]
    UnknownModel(String),
    /// Nothing to draw.
    #[error("invalid configuration: no runs to plot")]
    NoRuns,
    /// A new run was asked for in a directory that holds one.
    #[error(
        "invalid configuration: {0} already holds a run's checkpoints: pass --resume to \
         continue it, or choose another --run-dir"
    )]
    RunExists(PathBuf),
    /// No dataset directory: neither given nor known from a checkpoint.
    #[error(
        "--data is required: {0} has no checkpoint yet to take the dataset from \
         (--resume takes it from the run's checkpoint)"
    )]
    NoDataDir(PathBuf),
    /// `--resume` was given settings that differ from the run's own.
    #[error(
        "{run_dir}: --resume continues the run exactly, but these settings differ from it: {}",
        conflicts.join("; ")
    )]
    ResumeConflict {
        /// The run directory.
        run_dir: PathBuf,
        /// One entry per setting: what was asked and what the run uses.
        conflicts: Vec<String>,
    },
    /// The global batch cannot be split evenly over the ranks.
    #[error(
        "--batch-size {batch_size} (the global batch) is not a multiple of the {world_size} ranks"
    )]
    BatchNotDivisible {
        /// The global batch.
        batch_size: usize,
        /// Ranks in the job.
        world_size: usize,
    },
    /// A device pattern could not be read.
    #[error("--devices {pattern}: {reason}")]
    Devices {
        /// The pattern given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--checkpoint-every` value could not be read.
    #[error(
        "--checkpoint-every {0:?}: expected `epoch`, a number of steps (`500`, `500steps`) \
         or a duration (`90s`, `30m`, `2h`)"
    )]
    CheckpointEvery(String),
    /// A rank outside its job's world.
    #[error("between ranks: rank {rank} is not below the world size {world_size}")]
    RankOutOfRange {
        /// The rank.
        rank: usize,
        /// Ranks in the job.
        world_size: usize,
    },
    /// MPI could be initialised only once per process.
    #[error("between ranks: MPI was already initialised in this process")]
    MpiInitialised,
    /// The thread that ends a stuck job could not be started.
    #[error("between ranks: starting the watchdog: {0}")]
    Watchdog(#[source] std::io::Error),
    /// An NCCL call failed.
    #[error("between ranks: {call}: {reason}")]
    Nccl {
        /// The NCCL call.
        call: &'static str,
        /// NCCL's error.
        reason: String,
    },
    /// The loader was set to make `u8` batches for a device that cannot
    /// normalise them (only a CUDA device does).
    #[error("the loader makes {0:?} batches, which only a CUDA device normalises")]
    HostU8Batches(loader::Output),
    /// NCCL sums were asked for a placement without CUDA devices.
    #[error("between ranks: NCCL needs CUDA devices; the placement has none")]
    NcclNeedsCuda,
    /// NCCL sums were asked of a build without NCCL.
    #[error(
        "--gradient-sums nccl: this binary was built without NCCL \
         (cargo build --release -p xtask --features \"cuda nccl\")"
    )]
    NcclNotBuilt,
    /// An MPI launcher started a binary built without MPI.
    #[error(
        "started by an MPI launcher ({variable}={value}), but this binary was built without MPI: \
         build it with `cargo build --release -p xtask --features mpi` \
         (scripts/setup.sh --mpi installs OpenMPI)"
    )]
    NoMpi {
        /// The launcher's variable seen.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// The launcher started several tasks, but MPI sees another world: the
    /// tasks would train as separate copies.
    #[error(transparent)]
    LaunchMismatch(#[from] crate::distributed::LaunchMismatch),
    /// A TensorBoard event file holds a record that is not an event.
    #[error("{path}: event record {index} is not a TensorBoard event: {source}")]
    EventRecord {
        /// The event file.
        path: PathBuf,
        /// The record's index in the file (0 is the first).
        index: usize,
        /// What the protocol buffer decoder found.
        source: prost::DecodeError,
    },
    /// The plot could not be drawn.
    #[error("plot {path}: {source}")]
    Plot {
        /// The PNG being written.
        path: PathBuf,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result alias for the trainer.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainerError {
    let path = path.into();
    move |source| TrainerError::Io { path, source }
}

impl From<loader::ShardError> for TrainerError {
    fn from(e: loader::ShardError) -> Self {
        TrainerError::Data(e.into())
    }
}
