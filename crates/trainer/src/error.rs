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
