//! The error type of the preprocess pipeline.

use std::path::PathBuf;

use shards::Split;

use crate::devkit::DevkitError;
use crate::layout::LayoutError;
use crate::part::{list_missing, MissingPart, Part, PartError};
use crate::parts::PartRecordError;

/// A run of the pipeline failed. Completed shards are kept; running the same
/// command again resumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    /// The options do not describe a valid run.
    #[error("invalid options: {0}")]
    Options(#[from] OptionsError),
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An input tar is truncated or corrupt.
    #[error("{file}: corrupt or truncated tar at member `{member}`: {source}")]
    Tar {
        /// The tar file (for an inner tar: `outer.tar/inner.tar`).
        file: String,
        /// The member being read, or the last good member when a header failed.
        member: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The `--from` paths hold no layout that can be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// An archive read front to back holds a member out of the canonical
    /// order (by class, then name), which the shards depend on.
    #[error("{file}: member `{member}` comes after `{after}`, out of the order by class and name that the shards are written in; the archive must list its images sorted (or give the images as a directory)")]
    OutOfOrderInput {
        /// The archive.
        file: String,
        /// The member out of order.
        member: String,
        /// The member before it.
        after: String,
    },
    /// A parquet file could not be read.
    #[error("{file}: {source}")]
    Parquet {
        /// The parquet file.
        file: String,
        /// The parquet reader's error.
        source: parquet::errors::ParquetError,
    },
    /// The parquet reader panicked on a damaged file (the panic is caught
    /// at each call into it).
    #[error("{file}: the parquet reader failed on this file: {message}")]
    ParquetPanic {
        /// The parquet file.
        file: String,
        /// The reader's panic message.
        message: String,
    },
    /// A parquet file does not have the columns of Hugging Face's layout.
    #[error("{file}: {message}")]
    ParquetSchema {
        /// The parquet file.
        file: String,
        /// What is missing.
        message: String,
    },
    /// A zip file could not be read.
    #[error("{file}: {source}")]
    Zip {
        /// The zip file, or `zip/member`.
        file: String,
        /// The zip reader's error.
        source: zip::result::ZipError,
    },
    /// The devkit could not be read.
    #[error("devkit {path}: {source}")]
    Devkit {
        /// The devkit file.
        path: PathBuf,
        /// What went wrong.
        source: DevkitError,
    },
    /// The output directory holds a different dataset.
    #[error("output directory {out} holds a different dataset: {reason}; choose another directory or delete it")]
    DifferentDataset {
        /// The output directory.
        out: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A JSON file in the output directory could not be read or written.
    #[error("{path}: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What went wrong.
        source: serde_json::Error,
    },
    /// Writing or reading back the dataset format failed (the message names the file).
    #[error(transparent)]
    Format(#[from] shards::ShardError),
    /// An image could not be re-encoded for storage.
    #[error("{name}: {source}")]
    Encode {
        /// The source member.
        name: String,
        /// The encoder's error.
        source: shards::JpegError,
    },
    /// `--part` or the Slurm array environment does not give a part.
    #[error(transparent)]
    Part(#[from] PartError),
    /// A part was asked for with another number of parts than the parts
    /// already begun in the output directory.
    #[error("{out} is being converted in {count} parts (parts/{file} exists), not in {}: give --part I/{count}, or use another directory", part.count)]
    PartCountMismatch {
        /// The output directory.
        out: PathBuf,
        /// The part asked for.
        part: Part,
        /// A record of a part of the other count.
        file: String,
        /// The number of parts that record belongs to.
        count: u32,
    },
    /// `OUT/parts` holds records of parts of different counts.
    #[error("{out}/parts holds records of different numbers of parts ({a} and {b}); remove the ones that do not belong")]
    MixedPartCounts {
        /// The output directory.
        out: PathBuf,
        /// A record.
        a: String,
        /// A record of another count.
        b: String,
    },
    /// Finishing an output directory that was not converted in parts.
    #[error("{out} holds no records of parts (parts/part-*-of-*.done): nothing to finish; --finish completes a dataset converted with --part I/N")]
    NoParts {
        /// The output directory.
        out: PathBuf,
    },
    /// Finishing while some parts are not complete.
    #[error("cannot finish {out}: {} of {count} parts not complete: part {}; run them (a stopped part resumes), the last one to complete finishes the dataset", missing.len(), list_missing(missing))]
    PartsMissing {
        /// The output directory.
        out: PathBuf,
        /// Number of parts.
        count: u32,
        /// The parts whose `.done` record is missing.
        missing: Vec<MissingPart>,
    },
    /// A part's record does not describe its part.
    #[error("{path}: {source}")]
    PartRecord {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        source: PartRecordError,
    },
    /// Two parts were run with different inputs.
    #[error("{out}: part {part} converted other {what} than part 0/{}; run every part with the same inputs and options (part {part} run again with them resumes)", part.count)]
    PartsDisagree {
        /// The output directory.
        out: PathBuf,
        /// The part that differs from part 0.
        part: Part,
        /// `"classes"` or `"splits"`.
        what: &'static str,
    },
    /// A shard a part reports is not on disk.
    #[error(
        "{out}: part {part} reports {file}, which is missing; run part {part} again to write it"
    )]
    PartShardMissing {
        /// The output directory.
        out: PathBuf,
        /// The part.
        part: Part,
        /// The shard, relative to OUT.
        file: String,
    },
    /// A shard on disk that no part reports.
    #[error("{out}: {file} is reported by none of the {count} parts; it does not belong to this conversion (remove it, or run its part again)")]
    UnclaimedShard {
        /// The output directory.
        out: PathBuf,
        /// The shard, relative to OUT.
        file: String,
        /// Number of parts.
        count: u32,
    },
    /// The run was stopped (Ctrl-C or a configured stop point); completed
    /// shards are kept and the same command resumes.
    #[error("interrupted; completed shards are kept, run the same command again to resume")]
    Interrupted,
    /// The reader thread panicked.
    #[error("internal error: the reader thread panicked")]
    ReaderPanic,
    /// Converted images arrived at the writer out of order.
    #[error("internal error: {0} results arrived without their predecessors")]
    OutOfOrder(usize),
}

/// Options that do not describe a valid run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// Both the tar and the directory of a split were given.
    #[error("give either --{0}-tar or --{0}-dir, not both")]
    BothInputs(Split),
    /// No input at all.
    #[error("nothing to do: give a train input (--train-tar or --train-dir) and/or a val input (--val-tar or --val-dir)")]
    NothingToDo,
    /// A val input without the devkit.
    #[error("the val split needs --devkit (its labels come from the devkit's ground truth)")]
    ValNeedsDevkit,
    /// A zero shard size.
    #[error("--images-per-shard and --open-shards must be at least 1")]
    ZeroShardSize,
    /// A tar input that is not a file.
    #[error("{} is not a file", .0.display())]
    NotAFile(PathBuf),
    /// A directory input that is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// `--from` and the per-split input flags were both given.
    #[error("give the inputs either with --from or with --train-tar/--train-dir/--val-tar/--val-dir, not both")]
    FromAndSplitFlags,
    /// The inputs name no class.
    #[error("no classes found in the inputs")]
    NoClasses,
}

impl PreprocessError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PreprocessError::Io {
            path: path.into(),
            source,
        }
    }
}
