//! Where each file of a dataset lives: [`DatasetDir`] resolves every path,
//! [`Split`] names the two splits, and the shard and part file names are
//! made and parsed here and nowhere else.

use std::path::{Path, PathBuf};

use crate::atomic::TMP_SUFFIX;
use crate::ShardError;

const CLASSES_FILE: &str = "classes.tsv";
const STATS_FILE: &str = "stats.h5";
const MANIFEST_FILE: &str = "manifest.json";
const DATASET_ID_FILE: &str = "dataset.json";
const SKIPPED_FILE: &str = "skipped.tsv";
const WARNINGS_FILE: &str = "warnings.tsv";
const PARTS_DIR: &str = "parts";

/// A dataset split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// The training set (also gives the statistics).
    Train,
    /// The validation set.
    Val,
}

impl Split {
    /// Both splits, train first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Val];

    /// `"train"` or `"val"`: the split's subdirectory of the dataset.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// A split name other than `train` and `val`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown split `{0}`: expected train or val")]
pub struct UnknownSplit(pub String);

impl std::str::FromStr for Split {
    type Err = UnknownSplit;

    fn from_str(s: &str) -> Result<Split, UnknownSplit> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| UnknownSplit(s.to_owned()))
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A preprocessed dataset's directory (`cargo xtask preprocess --out`): the
/// one place that knows where each of its files lies.
///
/// ```text
/// OUT/
///   dataset.json            identity of the inputs            (dataset_id)
///   classes.tsv             index<TAB>wnid<TAB>words          (classes)
///   stats.h5                training-set statistics           (stats)
///   manifest.json           shards and counts of the whole    (manifest)
///   train/shard-00000.h5    shards; names from shard_file_name (split, train)
///   train/skipped.tsv       member<TAB>reason of every input that was not usable (skipped)
///   train/warnings.tsv      member<TAB>warning of images kept despite one  (warnings)
///   val/...
///   parts/                  only when converted in parts       (parts, part_file)
///     part-00001-of-00003.started   part 1 of 3 has begun
///     part-00001-of-00003.done      its results, once complete
/// ```
///
/// A checkpoint directory holds its own copies of `classes.tsv` and
/// `stats.h5` under the same names, so it can be opened as one too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetDir {
    root: PathBuf,
}

impl DatasetDir {
    /// The dataset at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DatasetDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `OUT/<split>`: the split's shards.
    pub fn split(&self, split: Split) -> PathBuf {
        self.root.join(split.name())
    }

    /// `OUT/train`.
    pub fn train(&self) -> PathBuf {
        self.split(Split::Train)
    }

    /// `OUT/val`.
    pub fn val(&self) -> PathBuf {
        self.split(Split::Val)
    }

    /// `OUT/classes.tsv` ([`read_classes`](crate::read_classes)).
    pub fn classes(&self) -> PathBuf {
        self.root.join(CLASSES_FILE)
    }

    /// `OUT/stats.h5` ([`Stats::open`](crate::Stats::open)).
    pub fn stats(&self) -> PathBuf {
        self.root.join(STATS_FILE)
    }

    /// `OUT/manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// `OUT/dataset.json`: the identity of the inputs and options.
    pub fn dataset_id(&self) -> PathBuf {
        self.root.join(DATASET_ID_FILE)
    }

    /// `OUT/<split>/skipped.tsv`.
    pub fn skipped(&self, split: Split) -> PathBuf {
        self.split(split).join(SKIPPED_FILE)
    }

    /// `OUT/<split>/warnings.tsv`: images kept although their decoder warned.
    pub fn warnings(&self, split: Split) -> PathBuf {
        self.split(split).join(WARNINGS_FILE)
    }

    /// `OUT/parts`: the records of a dataset converted in parts.
    pub fn parts(&self) -> PathBuf {
        self.root.join(PARTS_DIR)
    }

    /// `OUT/parts/` + [`part_file_name`].
    pub fn part_file(&self, index: u32, count: u32, kind: PartFile) -> PathBuf {
        self.parts().join(part_file_name(index, count, kind))
    }
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

/// Where a JPEG shard's streams wait until the shard is finished:
/// `shard-00042.h5.jpeg.tmp` next to `shard-00042.h5`.
pub(crate) fn jpeg_spill_path(final_path: &Path) -> PathBuf {
    crate::atomic::tmp_path(&final_path.with_extension("h5.jpeg"))
}

/// The shard id of a shard's temporary file (`shard-00042.h5.tmp` or its
/// JPEG spill file `shard-00042.h5.jpeg.tmp`); `None` for any other name.
pub fn parse_shard_tmp_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(TMP_SUFFIX)?;
    let shard = stem.strip_suffix(".jpeg").unwrap_or(stem);
    parse_shard_file_name(shard)
}

/// The complete shards of a split directory, sorted by id.
pub fn list_shards(split_dir: &Path) -> Result<Vec<(u64, PathBuf)>, ShardError> {
    let entries = std::fs::read_dir(split_dir)
        .map_err(|e| ShardError::io(split_dir, "listing the split directory", e))?;
    let mut shards = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| ShardError::io(split_dir, "listing the split directory", e))?;
        if let Some(id) = parse_shard_file_name(&entry.file_name().to_string_lossy()) {
            shards.push((id, entry.path()));
        }
    }
    shards.sort();
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::{is_tmp_of, unique_tmp_path};

    #[test]
    fn dataset_dir_resolves_every_file() {
        let d = DatasetDir::new("/o");
        assert_eq!(d.root(), Path::new("/o"));
        assert_eq!(d.train(), PathBuf::from("/o/train"));
        assert_eq!(d.val(), PathBuf::from("/o/val"));
        assert_eq!(d.split(Split::Val), d.val());
        assert_eq!(d.classes(), PathBuf::from("/o/classes.tsv"));
        assert_eq!(d.stats(), PathBuf::from("/o/stats.h5"));
        assert_eq!(d.manifest(), PathBuf::from("/o/manifest.json"));
        assert_eq!(d.dataset_id(), PathBuf::from("/o/dataset.json"));
        assert_eq!(
            d.skipped(Split::Train),
            PathBuf::from("/o/train/skipped.tsv")
        );
        assert_eq!(d.warnings(Split::Val), PathBuf::from("/o/val/warnings.tsv"));
        assert_eq!(d.parts(), PathBuf::from("/o/parts"));
        assert_eq!(Split::ALL.map(|s| s.to_string()), ["train", "val"]);
        assert_eq!("val".parse(), Ok(Split::Val));
        assert!("test".parse::<Split>().is_err());
    }

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
            DatasetDir::new("/o").part_file(2, 3, PartFile::Started),
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
}
