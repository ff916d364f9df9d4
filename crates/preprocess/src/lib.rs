//! ImageNet's distribution files to sharded 256x256 HDF5.
//!
//! See the workspace README for the output format (the contract the loader,
//! other tools and Python rely on). The entry point is [`run`]; one image can
//! be converted alone with [`decode_to_256`].

pub mod devkit;
pub mod error;
pub mod image;
pub mod lanczos;
pub mod manifest;
pub mod matv5;
pub mod parts;
pub mod pipeline;
pub mod shard;
pub mod source;
pub mod stats;
pub mod synth;

pub use error::{DecodeError, PreprocessError};
pub use image::{decode_to_256, Decoder256, JpegScaling, ResizeFilter, IMAGE_BYTES, SIDE};
pub use manifest::Manifest;
pub use parts::{finish, FinishSummary, MissingPart, Part, PartError, PartSummary};
pub use pipeline::{
    run, shard_of, NoProgress, PreprocessConfig, ProgressSink, Split, SplitSummary, Summary,
    DEFAULT_IMAGES_PER_SHARD, DEFAULT_OPEN_SHARDS,
};
pub use source::SplitInput;
