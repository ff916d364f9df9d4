//! The on-disk format of a preprocessed dataset: the one place that knows
//! it. `cargo xtask preprocess` writes through this module, [`Dataset`](crate::Dataset) and
//! [`Stats`](crate::Stats) read through it, and test fixtures build data with it.
//!
//! ```text
//! OUT/
//!   dataset.json            identity of the inputs (written by preprocess)
//!   classes.tsv             index<TAB>wnid<TAB>words         (write_classes / read_classes)
//!   stats.h5                training-set statistics          (write_stats / Stats::open)
//!   manifest.json           shards and counts of the whole   (written by preprocess)
//!   train/shard-00000.h5    shards; file names from shard_file_name
//!   train/skipped.tsv       member<TAB>reason of every input that was not usable
//!   val/...
//!   parts/                  only when converted in parts (`--part I/N`):
//!     part-00001-of-00003.started   part 1 of 3 has begun     (part_file_name)
//!     part-00001-of-00003.done      its results, once complete
//! ```
//!
//! A shard holds its images in one of two [`Encoding`]s, told apart by which
//! dataset it has (a reader never needs to be told):
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

mod classes;
mod index;
mod jpeg;
mod names;
mod read;
mod sums;
mod write;

use std::path::{Path, PathBuf};

pub use classes::{read_classes, write_classes, ClassEntry};
pub use index::clear_index;
pub use jpeg::{decode_jpeg_into, encode_jpeg, JpegError};
pub use names::*;
pub(crate) use read::{open_shard_hdf5, open_shard_indexed, read_name, ImageSource, OpenedShard};
pub use read::{read_shard_record, ShardRecord};
pub use sums::ShardSums;
pub use write::{write_stats, ShardWriter};

use crate::LoaderError;

/// `OUT/classes.tsv`.
pub const CLASSES_FILE: &str = "classes.tsv";
/// `OUT/stats.h5`.
pub const STATS_FILE: &str = "stats.h5";
/// `OUT/manifest.json`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// `OUT/dataset.json`.
pub const DATASET_ID_FILE: &str = "dataset.json";
/// `OUT/<split>/skipped.tsv`.
pub const SKIPPED_FILE: &str = "skipped.tsv";
/// Suffix of a file still being written.
pub const TMP_SUFFIX: &str = ".tmp";
/// `OUT/parts`: the records of a dataset converted in parts.
pub const PARTS_DIR: &str = "parts";
/// The JPEG quality `Encoding::Jpeg` uses unless told otherwise.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// `OUT/classes.tsv`.
pub fn classes_path(out: &Path) -> PathBuf {
    out.join(CLASSES_FILE)
}

/// `OUT/stats.h5`.
pub fn stats_path(out: &Path) -> PathBuf {
    out.join(STATS_FILE)
}

/// `OUT/manifest.json`.
pub fn manifest_path(out: &Path) -> PathBuf {
    out.join(MANIFEST_FILE)
}

/// `OUT/dataset.json`.
pub fn dataset_id_path(out: &Path) -> PathBuf {
    out.join(DATASET_ID_FILE)
}

/// `OUT/<split>` (`train` or `val`).
pub fn split_dir(out: &Path, split: &str) -> PathBuf {
    out.join(split)
}

/// `OUT/parts`.
pub fn parts_dir(out: &Path) -> PathBuf {
    out.join(PARTS_DIR)
}

/// What a file in `OUT/parts` records about one part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartFile {
    /// `.started`: the part has begun (written before it converts anything).
    Started,
    /// `.done`: the part is complete; the file holds its results.
    Done,
}

impl PartFile {
    fn extension(self) -> &'static str {
        match self {
            PartFile::Started => "started",
            PartFile::Done => "done",
        }
    }
}

/// File name in `OUT/parts` of part `index` (0-based) of `count`:
/// `part-00001-of-00003.done` (numbers in at least five digits).
pub fn part_file_name(index: u32, count: u32, kind: PartFile) -> String {
    format!("part-{index:05}-of-{count:05}.{}", kind.extension())
}

/// `OUT/parts/` + [`part_file_name`].
pub fn part_file_path(out: &Path, index: u32, count: u32, kind: PartFile) -> PathBuf {
    parts_dir(out).join(part_file_name(index, count, kind))
}

/// Parses a [`part_file_name`] back into `(index, count, kind)`; `None` for
/// any other name (temporary files included).
pub fn parse_part_file_name(name: &str) -> Option<(u32, u32, PartFile)> {
    let (stem, ext) = name.strip_prefix("part-")?.rsplit_once('.')?;
    let kind = [PartFile::Started, PartFile::Done]
        .into_iter()
        .find(|k| k.extension() == ext)?;
    let (index, count) = stem.split_once("-of-")?;
    let number = |digits: &str| -> Option<u32> {
        if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (index, count) = (number(index)?, number(count)?);
    // One spelling per part, as for shards.
    (part_file_name(index, count, kind) == name).then_some((index, count, kind))
}

/// File name of shard `id`: `shard-00042.h5` (at least five digits).
pub fn shard_file_name(id: u64) -> String {
    format!("shard-{id:05}.h5")
}

/// Parses a shard file name back into its id (`shard-00042.h5` -> 42);
/// `None` for anything [`shard_file_name`] does not produce.
pub fn parse_shard_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("shard-")?.strip_suffix(".h5")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok()?;
    // One spelling per id: `shard-000042.h5` is not shard 42.
    (shard_file_name(id) == name).then_some(id)
}

/// The name a file has while it is being written: `path` + `.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// A temporary name for `path` that no other process uses at the same time
/// (`path.<pid>-<random>.tmp`), for files that several processes may write
/// concurrently with the same content (`classes.tsv`, `stats.h5`, JSON
/// records): each writes its own and renames it into place.
pub fn unique_tmp_path(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness: two
    // processes on different hosts with the same pid still differ.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}-{random:016x}{TMP_SUFFIX}", std::process::id()));
    PathBuf::from(s)
}

/// True when `name` is a temporary file of the file named `file`: its
/// [`tmp_path`] or a [`unique_tmp_path`].
pub fn is_tmp_of(name: &str, file: &str) -> bool {
    name.strip_prefix(file)
        .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(TMP_SUFFIX))
}

/// Where a JPEG shard's streams wait until the shard is finished:
/// `shard-00042.h5.jpeg.tmp` next to `shard-00042.h5`.
pub fn jpeg_spill_path(final_path: &Path) -> PathBuf {
    tmp_path(&final_path.with_extension("h5.jpeg"))
}

/// The shard id of a shard's temporary file (`shard-00042.h5.tmp` or its
/// JPEG spill file `shard-00042.h5.jpeg.tmp`); `None` for any other name.
pub fn parse_shard_tmp_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(TMP_SUFFIX)?;
    let shard = stem.strip_suffix(".jpeg").unwrap_or(stem);
    parse_shard_file_name(shard)
}

/// The complete shards of a split directory, sorted by id.
pub fn list_shards(split_dir: &Path) -> Result<Vec<(u64, PathBuf)>, LoaderError> {
    let entries = std::fs::read_dir(split_dir)
        .map_err(|e| LoaderError::io(split_dir, "listing the split directory", e))?;
    let mut shards = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| LoaderError::io(split_dir, "listing the split directory", e))?;
        if let Some(id) = parse_shard_file_name(&entry.file_name().to_string_lossy()) {
            shards.push((id, entry.path()));
        }
    }
    shards.sort();
    Ok(shards)
}

/// How a shard stores its images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Uncompressed `u8` HWC, one HDF5 chunk per image (the default; 196,608
    /// bytes per 256x256 image; no decoding cost when read).
    #[default]
    Raw,
    /// Each image re-encoded as a baseline JPEG (4:2:0 chroma) at `quality`
    /// 1..=100 with libjpeg-turbo; decoded by the loader's worker threads.
    Jpeg {
        /// libjpeg-style quality, 1..=100.
        quality: u8,
    },
}

impl Encoding {
    /// JPEG at [`DEFAULT_JPEG_QUALITY`].
    pub fn jpeg() -> Self {
        Encoding::Jpeg {
            quality: DEFAULT_JPEG_QUALITY,
        }
    }

    /// The name used on the command line and in the manifest: `raw` or `jpeg`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg { .. } => "jpeg",
        }
    }

    /// The bytes a shard stores for one `side x side` RGB image (HWC), in
    /// `out` (cleared first). Raw copies the pixels; JPEG encodes them.
    pub fn encode(self, image: &[u8], side: usize, out: &mut Vec<u8>) -> Result<(), JpegError> {
        match self {
            Encoding::Raw => {
                out.clear();
                out.extend_from_slice(image);
                Ok(())
            }
            Encoding::Jpeg { quality } => encode_jpeg(image, side, side, quality, out),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoding::Raw => f.write_str("raw"),
            Encoding::Jpeg { quality } => write!(f, "jpeg (quality {quality})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip_and_reject_other_spellings() {
        assert_eq!(shard_file_name(42), "shard-00042.h5");
        assert_eq!(shard_file_name(123_456), "shard-123456.h5");
        for id in [0, 7, 99_999, 100_000, 1_234_567] {
            assert_eq!(parse_shard_file_name(&shard_file_name(id)), Some(id));
        }
        for bad in [
            "shard-0042.h5",
            "shard-000042.h5",
            "shard-00042.h5.tmp",
            "shard-0004a.h5",
            "shard-00042.hdf5",
            "x-00042.h5",
        ] {
            assert_eq!(parse_shard_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn tmp_path_appends_the_suffix() {
        assert_eq!(
            tmp_path(Path::new("/o/train/shard-00001.h5")),
            PathBuf::from("/o/train/shard-00001.h5.tmp")
        );
    }

    #[test]
    fn part_file_names_round_trip_and_reject_other_spellings() {
        assert_eq!(
            part_file_name(1, 3, PartFile::Done),
            "part-00001-of-00003.done"
        );
        assert_eq!(
            part_file_name(0, 123_456, PartFile::Started),
            "part-00000-of-123456.started"
        );
        for (i, n) in [(0, 1), (2, 3), (99_999, 100_000)] {
            for kind in [PartFile::Started, PartFile::Done] {
                let name = part_file_name(i, n, kind);
                assert_eq!(parse_part_file_name(&name), Some((i, n, kind)), "{name}");
            }
        }
        for bad in [
            "part-0001-of-00003.done",
            "part-00001-of-000003.done",
            "part-00001-of-00003.done.tmp",
            "part-00001-of-00003.json",
            "part-00001-00003.done",
            "shard-00001.h5",
        ] {
            assert_eq!(parse_part_file_name(bad), None, "{bad}");
        }
        assert_eq!(
            part_file_path(Path::new("/o"), 2, 3, PartFile::Started),
            PathBuf::from("/o/parts/part-00002-of-00003.started")
        );
    }

    #[test]
    fn temporary_names() {
        assert_eq!(parse_shard_tmp_file_name("shard-00042.h5.tmp"), Some(42));
        assert_eq!(
            parse_shard_tmp_file_name("shard-00042.h5.jpeg.tmp"),
            Some(42)
        );
        let spill = jpeg_spill_path(Path::new("/o/train/shard-00042.h5"));
        assert_eq!(spill, PathBuf::from("/o/train/shard-00042.h5.jpeg.tmp"));
        for bad in ["shard-00042.h5", "skipped.tsv.tmp", "shard-0042.h5.tmp"] {
            assert_eq!(parse_shard_tmp_file_name(bad), None, "{bad}");
        }
        let a = unique_tmp_path(Path::new("/o/stats.h5"));
        let b = unique_tmp_path(Path::new("/o/stats.h5"));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(is_tmp_of(name, STATS_FILE), "{name}");
        assert!(is_tmp_of("dataset.json.tmp", DATASET_ID_FILE));
        assert!(!is_tmp_of("dataset.json", DATASET_ID_FILE));
        assert!(!is_tmp_of("dataset.jsonx.tmp", DATASET_ID_FILE));
        assert!(!is_tmp_of("notes.tmp", DATASET_ID_FILE));
    }

    #[test]
    fn list_shards_sorts_by_id_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "shard-00010.h5",
            "shard-00002.h5",
            "shard-00003.h5.tmp",
            "skipped.tsv",
            "shard-100000.h5",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let ids: Vec<u64> = list_shards(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, [2, 10, 100_000]);
    }

    #[test]
    fn raw_encoding_stores_the_pixels_themselves() {
        let image: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let mut out = vec![9; 5];
        Encoding::Raw.encode(&image, 4, &mut out).unwrap();
        assert_eq!(out, image);
        assert_eq!(Encoding::default(), Encoding::Raw);
        assert_eq!(Encoding::jpeg(), Encoding::Jpeg { quality: 90 });
    }
}
