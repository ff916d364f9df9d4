//! `OUT/dataset.json` (identity of the dataset being written) and
//! `OUT/manifest.json` (shards and counts per split).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use shards::atomic::is_tmp_of;
use shards::{DatasetDir, Split};

use crate::error::PreprocessError;

/// Version of the output layout written by this crate. 2: the inputs are
/// taken in the canonical order (train by class, then file name; val by
/// file name) whatever the layout, where 1 followed the official train
/// tar's order; an output begun by 1 is not resumed by 2.
pub const FORMAT_VERSION: u32 = 2;

/// Identity of one input file or directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputId {
    /// `"tar"`, `"dir"` or `"devkit"`.
    pub kind: String,
    /// File or directory name (without its parent path).
    pub name: String,
    /// Size in bytes (files) or number of image files (directories).
    pub size: u64,
    /// FNV-1a hash of the first and last MiB of a file (0 for directories).
    #[serde(default)]
    pub head_tail_hash: u64,
}

/// FNV-1a 64 of the first and last MiB of `path` (cheap even for 138 GB).
pub(crate) fn head_tail_hash(path: &Path) -> Result<u64, PreprocessError> {
    use std::io::{Read, Seek, SeekFrom};
    const SPAN: u64 = 1 << 20;
    let io = |e| PreprocessError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut buf = Vec::new();
    (&mut f).take(SPAN).read_to_end(&mut buf).map_err(io)?;
    if len > SPAN {
        f.seek(SeekFrom::Start(len.saturating_sub(SPAN).max(SPAN)))
            .map_err(io)?;
        f.take(SPAN).read_to_end(&mut buf).map_err(io)?;
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in &buf {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Ok(h)
}

/// The content of `OUT/dataset.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    /// Output layout version.
    pub format_version: u32,
    /// `--images-per-shard`.
    pub images_per_shard: usize,
    /// `--open-shards`.
    pub open_shards: usize,
    /// `--filter` (resampling filter).
    #[serde(default)]
    pub resize_filter: String,
    /// `--jpeg-scaling`: `draft` or `full` (absent: `full`, as every
    /// JPEG was decoded before the option existed).
    #[serde(default = "full_scaling")]
    pub jpeg_scaling: String,
    /// `--encoding` with its quality: `raw`, or `jpeg-q90` (absent: raw).
    #[serde(default = "raw_encoding")]
    pub encoding: String,
    /// `--max-pixels` (absent: no limit, as before the option existed).
    #[serde(default = "no_pixel_limit")]
    pub max_pixels: u64,
    /// The devkit, when one was given.
    pub devkit: Option<InputId>,
    /// Per split (`train`, `val`): its input.
    pub splits: BTreeMap<String, InputId>,
}

fn raw_encoding() -> String {
    "raw".into()
}

fn full_scaling() -> String {
    "full".into()
}

fn no_pixel_limit() -> u64 {
    u64::MAX
}

/// A pixel limit as the refusal names it.
fn pixel_limit(limit: u64) -> String {
    match limit {
        u64::MAX => "no limit".into(),
        n => n.to_string(),
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, PreprocessError> {
    let text = std::fs::read_to_string(path).map_err(|e| PreprocessError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| PreprocessError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes JSON through a temporary file of its own renamed into place
/// (parts running at the same time write the same records).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PreprocessError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| PreprocessError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    shards::write_atomically(path, (text + "\n").as_bytes())
        .map_err(|e| PreprocessError::io(e.path, e.source))
}

/// Checks that `out` is empty or holds the same dataset as `new`, then
/// records `new` (merged with splits written earlier) in `dataset.json`.
pub(crate) fn check_and_record_identity(
    out: &Path,
    new: &DatasetIdentity,
) -> Result<(), PreprocessError> {
    let path = DatasetDir::new(out).dataset_id();
    let refuse = |reason: String| PreprocessError::DifferentDataset {
        out: out.to_path_buf(),
        reason,
    };
    let merged = if path.exists() {
        let old: DatasetIdentity = read_json(&path)?;
        if old.format_version != new.format_version {
            return Err(refuse(format!(
                "format version {} (this program writes {})",
                old.format_version, new.format_version
            )));
        }
        if old.encoding != new.encoding {
            return Err(refuse(format!(
                "it was written with encoding {}, not {}",
                old.encoding, new.encoding
            )));
        }
        if old.resize_filter != new.resize_filter {
            return Err(refuse(format!(
                "it was written with --filter {}, not {}",
                old.resize_filter, new.resize_filter
            )));
        }
        if old.jpeg_scaling != new.jpeg_scaling {
            return Err(refuse(format!(
                "it was written with --jpeg-scaling {}, not {}",
                old.jpeg_scaling, new.jpeg_scaling
            )));
        }
        if old.max_pixels != new.max_pixels {
            return Err(refuse(format!(
                "it was written with --max-pixels {}, not {}",
                pixel_limit(old.max_pixels),
                pixel_limit(new.max_pixels)
            )));
        }
        if old.images_per_shard != new.images_per_shard || old.open_shards != new.open_shards {
            return Err(refuse(format!(
                "it was written with --images-per-shard {} --open-shards {}, not {} and {}",
                old.images_per_shard, old.open_shards, new.images_per_shard, new.open_shards
            )));
        }
        if let (Some(a), Some(b)) = (&old.devkit, &new.devkit) {
            if a != b {
                return Err(refuse(format!(
                    "devkit {} ({} bytes), not {} ({} bytes)",
                    a.name, a.size, b.name, b.size
                )));
            }
        }
        let mut merged = old.clone();
        for (split, input) in &new.splits {
            if let Some(prev) = old.splits.get(split) {
                if prev != input {
                    return Err(refuse(format!(
                        "its {split} split came from {} {} (size {}, hash {:016x}), not {} {} (size {}, hash {:016x})",
                        prev.kind, prev.name, prev.size, prev.head_tail_hash, input.kind, input.name, input.size, input.head_tail_hash
                    )));
                }
            }
            merged.splits.insert(split.clone(), input.clone());
        }
        if merged.devkit.is_none() {
            merged.devkit = new.devkit.clone();
        }
        merged
    } else {
        if out.exists() {
            // A part starting at the same time may be writing dataset.json.
            let id_file = path.file_name().unwrap_or_default().to_string_lossy();
            let mut others = Vec::new();
            for e in std::fs::read_dir(out).map_err(|e| PreprocessError::io(out, e))? {
                let name = e.map_err(|e| PreprocessError::io(out, e))?.file_name();
                if !is_tmp_of(&name.to_string_lossy(), &id_file) {
                    others.push(name);
                }
            }
            if !others.is_empty() {
                if path.exists() {
                    // Written meanwhile by a part starting at the same time.
                    return check_and_record_identity(out, new);
                }
                return Err(refuse(
                    "the directory is not empty and holds no dataset.json".into(),
                ));
            }
        }
        new.clone()
    };
    std::fs::create_dir_all(out).map_err(|e| PreprocessError::io(out, e))?;
    write_json(&path, &merged)
}

/// One shard in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Path relative to OUT, e.g. `train/shard-00000.h5`.
    pub file: String,
    /// Images it holds.
    pub images: u64,
    /// Inputs of this shard's sequence positions that were skipped.
    pub skipped: u64,
}

/// One split in the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Shards in id order.
    pub shards: Vec<ShardEntry>,
    /// Total images.
    pub images: u64,
    /// Total skipped inputs (listed in `<split>/skipped.tsv`).
    pub skipped: u64,
}

/// The content of `OUT/manifest.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Output layout version.
    pub format_version: u32,
    /// Number of classes (lines of `classes.tsv`).
    pub classes: usize,
    /// Per split (`train`, `val`).
    pub splits: BTreeMap<String, SplitManifest>,
}

impl Manifest {
    /// Reads `OUT/manifest.json`.
    pub fn read(out: &Path) -> Result<Manifest, PreprocessError> {
        read_json(&DatasetDir::new(out).manifest())
    }
}

/// Records finished splits in `OUT/manifest.json`, keeping the others.
pub(crate) fn record_splits(
    out: &Path,
    classes: usize,
    splits: Vec<(Split, SplitManifest)>,
) -> Result<(), PreprocessError> {
    let path = DatasetDir::new(out).manifest();
    let mut m = if path.exists() {
        read_json(&path)?
    } else {
        Manifest::default()
    };
    m.format_version = FORMAT_VERSION;
    m.classes = classes;
    for (split, entry) in splits {
        m.splits.insert(split.name().to_owned(), entry);
    }
    write_json(&path, &m)
}
