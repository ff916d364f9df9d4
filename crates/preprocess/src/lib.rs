//! ImageNet's distribution files to sharded 256x256 HDF5.
//!
//! The entry point is [`run`]: a reader thread streams the inputs (the
//! official tars, extracted trees, Kaggle's and Hugging Face's layouts:
//! [`detect_layout`]), decode/resize workers turn each
//! photo into 256x256 RGB ([`decode`]), and the calling thread writes
//! shards ([`shards`], the on-disk format) in a deterministic order, so the
//! same inputs and options always give the same files and an interrupted
//! run resumes. [`finish`] completes a dataset converted in parts
//! ([`Part`]: `--part I/N`, or a Slurm array task).

mod config;
mod devkit;
mod error;
mod hf_parquet;
mod hf_tar;
mod kaggle;
mod layout;
mod manifest;
mod part;
mod parts;
mod pipeline;
mod progress;
mod scan;
mod shard;
mod source;
mod stats;
mod summary;
mod tables;

pub use config::{
    PreprocessConfig, DEFAULT_IMAGES_PER_SHARD, DEFAULT_OPEN_SHARDS, DEFAULT_WORKERS,
};
pub use decode::{JpegScaling, ResizeFilter};
pub use devkit::{
    parse_val_number, read_devkit, ClassInfo, Devkit, DevkitError, MAX_DEVKIT_MEMBER_BYTES,
};
pub use error::{OptionsError, PreprocessError};
pub use kaggle::{
    IMAGES as KAGGLE_IMAGES, MAX_TEXT_BYTES as KAGGLE_MAX_TEXT_BYTES,
    SYNSET_MAPPING as KAGGLE_SYNSET_MAPPING, VAL_SOLUTION as KAGGLE_VAL_SOLUTION,
};
pub use layout::{
    detect_layout, ilsvrc2012_classes, Layout, LayoutError, LayoutKind, HF_CLASSES_PY,
    HF_VAL_TAR_GZ, OFFICIAL_DEVKIT, OFFICIAL_TRAIN_TAR, OFFICIAL_VAL_TAR,
};
pub use manifest::{DatasetIdentity, InputId, Manifest, ShardEntry, SplitManifest, FORMAT_VERSION};
pub use part::{
    MissingPart, Part, PartError, SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_ID,
    SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_STEP,
};
pub use parts::{finish, ClassRecord, PartRecord, PartRecordError, PartSplit};
pub use pipeline::{run, shard_of};
pub use progress::{NoProgress, ProgressSink};
pub use scan::{scan_layout, scan_tar, TarMember};
pub use shards::Split;
pub use source::{list_train_classes, SplitInput, MAX_MEMBER_BYTES};
pub use summary::{FinishSummary, PartSummary, SplitSummary, Summary};
