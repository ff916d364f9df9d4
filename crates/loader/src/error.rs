//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while opening shards or producing batches.
///
/// Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The HDF5 library refused to open or read something.
    #[error("{path}: {what}: {source}")]
    Hdf5 {
        /// The file being read.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The library's error.
        source: hdf5::Error,
    },
    /// An operating-system read failed (missing file, short read of a truncated file, ...).
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but does not hold what the shard format promises.
    #[error("{path}: {problem}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A split directory without any `shard-*.h5` file.
    #[error("{0}: no shard-*.h5 files in this directory")]
    NoShards(PathBuf),
    /// A [`LoaderConfig`](crate::LoaderConfig) that cannot work with this dataset.
    #[error("invalid loader configuration: {0}")]
    Config(String),
    /// A worker thread panicked while building a batch; the message is the panic payload.
    #[error("a loader worker panicked while building batch {batch}: {message}")]
    WorkerPanic {
        /// The batch number within the epoch.
        batch: usize,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The worker threads went away before the epoch was complete.
    #[error("the loader workers stopped before the epoch was complete ({delivered} of {expected} batches delivered)")]
    WorkersGone {
        /// Batches delivered so far.
        delivered: usize,
        /// Batches the epoch should have.
        expected: usize,
    },
}

impl LoaderError {
    pub(crate) fn hdf5(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: hdf5::Error,
    ) -> Self {
        LoaderError::Hdf5 {
            path: path.into(),
            what: what.into(),
            source,
        }
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        LoaderError::Io {
            path: path.into(),
            what: what.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        LoaderError::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
