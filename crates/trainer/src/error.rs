//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training, evaluating or predicting.
#[derive(Debug, thiserror::Error)]
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
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data could not be loaded.
    #[error("data: {0}")]
    Data(String),
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
    /// A collective operation between ranks failed.
    #[error("between ranks: {0}")]
    Collective(String),
    /// The plot could not be drawn.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The PNG being written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Result alias for the trainer.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainerError {
    let path = path.into();
    move |source| TrainerError::Io { path, source }
}
