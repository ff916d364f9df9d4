//! The on-disk format of a preprocessed dataset, the one place that knows
//! it: `preprocess` writes through this crate, `loader` reads through it.
//!
//! - [`DatasetDir`] and [`Split`]: where every file of a dataset lies
//!   (shards per split, `classes.tsv`, `stats.h5`, `manifest.json`,
//!   `dataset.json`, `skipped.tsv`, the part records).
//! - [`ShardWriter`] / [`open_shard_indexed`]: the shards themselves, with their
//!   open-time index; [`read_shard_record`] reads back what a shard holds.
//! - [`Stats`] / [`write_stats`]: `stats.h5`; [`read_classes`] /
//!   [`write_classes`]: `classes.tsv`.
//! - [`atomic`](mod@atomic): every file is written whole or not at all.
//! - `testing` (feature `testing`): small datasets in the exact layout with
//!   pixels from a known formula, for the tests of crates that read shards.
//!
//! A shard holds its images in one of two [`Encoding`]s, told apart by which
//! dataset it has (a reader never needs to be told); dataset names are in
//! [`names`]:
//!
//! | dataset | type | shape | meaning |
//! |---|---|---|---|
//! | `images` | `u8` | `[n, H, W, 3]` | [`Encoding::Raw`]: RGB HWC, one uncompressed chunk per image |
//! | `image_offsets` | `u64` | `[n]` | raw: file byte offset of each image's chunk (the open-time index) |
//! | `jpeg` | `u8` | `[total]` | [`Encoding::Jpeg`]: all images' JPEG streams back to back, contiguous; attribute `image_shape` = `[H, W, 3]` |
//! | `jpeg_offsets` | `u64` | `[n + 1]` | jpeg: image `i` is `jpeg[jpeg_offsets[i]..jpeg_offsets[i+1]]` |
//! | `labels` | `i64` | `[n]` | class index |
//! | `names` | UTF-8 | `[n]` | source member name |
//! | `skipped_names`, `skipped_reasons` | UTF-8 | `[m]` | inputs of this shard that could not be decoded |
//! | `warning_names`, `warning_texts` | UTF-8 | `[w]` | only when `w > 0`: images kept although their decoder warned |
//! | `stats_pixel_sum` | `u32` | `[H, W, 3]` | train only: per-pixel sums ([`ShardSums`]; `u64` past 16,843,009 images) |
//! | `stats_rgb_sum` | `u64` | `[3]` | train only |
//! | `stats_rgb_outer_sum` | `u64` | `[3, 3]` | train only |
//! | `stats_image_count` | `u64` | scalar | train only |
//!
//! Either way every image is one positioned read (`pread`) at an offset
//! known once the shard is open, with no HDF5 call and so no HDF5 lock.
//!
//! The file's HDF5 user block (the bytes before HDF5's own superblock,
//! which HDF5 reserves for the application) holds the shard's open-time
//! index: encoding, image shape, labels and where each image lies, with a
//! CRC (layout in `index.rs`). Opening a shard is then one positioned read,
//! again without HDF5; a shard without an index is opened through the
//! datasets above. All byte offsets, in the index and in `image_offsets`,
//! count from the start of the file.
//! Shards are written as `shard-XXXXX.h5.tmp` (plus `.jpeg.tmp` spill files)
//! and renamed when complete: a file named by [`shard_file_name`] is whole.

pub mod atomic;
mod classes;
mod encoding;
mod error;
mod index;
mod jpeg;
mod layout;
pub mod names;
mod read;
mod stats;
mod sums;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod write;

pub use atomic::{write_atomically, AtomicFile, AtomicWriteError};
pub use classes::{read_classes, write_classes, ClassEntry};
pub use encoding::{Encoding, DEFAULT_JPEG_QUALITY};
pub use error::ShardError;
pub use index::clear_index;
pub use jpeg::{
    decode_jpeg_into, decode_jpeg_region_into, encode_jpeg, DecodedRegion, JpegDecodeOptions,
    JpegError,
};
pub use layout::{
    list_shards, parse_part_file_name, parse_shard_file_name, parse_shard_tmp_file_name,
    part_file_name, shard_file_name, DatasetDir, PartFile, Split, UnknownSplit,
};
pub use read::{
    open_shard_hdf5, open_shard_indexed, read_name, read_shard_record, ImageSource, OpenedShard,
    ShardRecord,
};
pub use stats::Stats;
pub use sums::ShardSums;
pub use write::{write_stats, ShardWriter};
