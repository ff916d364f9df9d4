//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing the dataset's files.
///
/// Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The HDF5 library refused to open, read or write something.
    #[error("{path}: {what}: {source}")]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The library's error.
        source: hdf5::Error,
    },
    /// An operating-system call failed (missing file, short read of a truncated file, full disk, ...).
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but does not hold what the format promises.
    #[error("{path}: {problem}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored JPEG stream could not be encoded or decoded.
    #[error("{path}: {what}: {source}")]
    Jpeg {
        /// The shard.
        path: PathBuf,
        /// Which image, or what was being done.
        what: String,
        /// The codec's error.
        source: crate::JpegError,
    },
}

impl ShardError {
    pub(crate) fn hdf5(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: hdf5::Error,
    ) -> Self {
        ShardError::Hdf5 {
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
        ShardError::Io {
            path: path.into(),
            what: what.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        ShardError::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// The file the error concerns.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ShardError::Hdf5 { path, .. }
            | ShardError::Io { path, .. }
            | ShardError::Format { path, .. }
            | ShardError::Jpeg { path, .. } => path,
        }
    }
}

impl From<crate::AtomicWriteError> for ShardError {
    fn from(e: crate::AtomicWriteError) -> Self {
        ShardError::Io {
            path: e.path,
            what: "writing the file whole".into(),
            source: e.source,
        }
    }
}
