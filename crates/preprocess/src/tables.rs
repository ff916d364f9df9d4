//! The dataset's tables, written in one place for a run and for a
//! dataset finished from its parts: `classes.tsv`, each split's
//! `skipped.tsv`, and `stats.h5` from the train shards' exact sums.

use std::collections::BTreeMap;
use std::path::Path;

use decode::IMAGE_BYTES;
use shards::{ClassEntry, DatasetDir, ShardRecord, ShardSums, Split, Stats};

use crate::devkit::ClassInfo;
use crate::error::PreprocessError;
use crate::manifest::{ShardEntry, SplitManifest};
use crate::part::Part;
use crate::stats::finish_stats;

/// Refuses a `classes.tsv` in `out` that lists other WNIDs than `classes`;
/// true when there is one.
pub(crate) fn check_classes(out: &Path, classes: &[ClassInfo]) -> Result<bool, PreprocessError> {
    let path = DatasetDir::new(out).classes();
    if !path.exists() {
        return Ok(false);
    }
    let old = shards::read_classes(&path)?;
    let same = old.len() == classes.len() && old.iter().zip(classes).all(|(a, b)| a.wnid == b.wnid);
    if !same {
        return Err(PreprocessError::DifferentDataset {
            out: out.to_path_buf(),
            reason: format!(
                "its classes.tsv lists {} classes that differ from the {} classes of these inputs",
                old.len(),
                classes.len()
            ),
        });
    }
    Ok(true)
}

/// Writes `classes.tsv`, or checks that the one present lists the same WNIDs
/// (and keeps it when `classes` carry no words).
pub(crate) fn write_classes(
    out: &Path,
    classes: &[ClassInfo],
    with_words: bool,
) -> Result<(), PreprocessError> {
    if check_classes(out, classes)? && !with_words {
        return Ok(());
    }
    let entries: Vec<ClassEntry> = classes
        .iter()
        .map(|c| ClassEntry {
            index: c.index,
            wnid: c.wnid.clone(),
            words: c.words.clone(),
        })
        .collect();
    shards::write_classes(&DatasetDir::new(out).classes(), &entries)?;
    Ok(())
}

/// What the complete shards of a split hold.
pub(crate) struct Gathered {
    /// Shards in id order, with their counts.
    pub manifest: SplitManifest,
    /// Sum of the shards' statistics sums (train: `Some`, even for no images).
    pub sums: Option<ShardSums>,
    /// Skipped inputs `(member, reason)` in shard order.
    pub skipped: Vec<(String, String)>,
    /// Images kept despite a decoder warning `(member, warning)`, in shard order.
    pub warnings: Vec<(String, String)>,
}

/// What the shards a run finished record, kept as they finish: each shard's
/// counts and skipped inputs, and their statistics sums already added up
/// (one shard's per-pixel sums are 1.5 MB; ImageNet has 1,252 train shards).
#[derive(Default)]
pub(crate) struct FinishedShards {
    /// By shard id, without their sums.
    records: BTreeMap<u64, ShardRecord>,
    /// The sum of their sums (train shards).
    sums: Option<ShardSums>,
}

impl FinishedShards {
    /// Keeps what shard `id` records, adding its sums to the total.
    pub(crate) fn add(&mut self, id: u64, mut record: ShardRecord) {
        if let Some(st) = record.sums.take() {
            match &mut self.sums {
                Some(acc) => acc.add(&st),
                None => self.sums = Some(st),
            }
        }
        self.records.insert(id, record);
    }
}

/// The records of the split's complete shards (of `part`'s own only, when
/// given): those `known` (the shards this run finished) as kept, the others
/// read from their files.
pub(crate) fn gather_split(
    out: &Path,
    split: Split,
    part: Option<Part>,
    known: FinishedShards,
) -> Result<Gathered, PreprocessError> {
    let FinishedShards {
        records: mut known,
        sums: known_sums,
    } = known;
    let dir = DatasetDir::new(out).split(split);
    let mut gathered = Gathered {
        manifest: SplitManifest::default(),
        sums: (split == Split::Train).then(|| ShardSums::zero(IMAGE_BYTES)),
        skipped: Vec::new(),
        warnings: Vec::new(),
    };
    let manifest = &mut gathered.manifest;
    for (id, path) in shards::list_shards(&dir)? {
        if part.is_some_and(|p| !p.owns_shard(id)) {
            continue;
        }
        let record = match known.remove(&id) {
            Some(record) => record,
            None => shards::read_shard_record(&path)?,
        };
        manifest.shards.push(ShardEntry {
            file: format!("{split}/{}", shards::shard_file_name(id)),
            images: record.images,
            skipped: record.skipped.len() as u64,
        });
        manifest.images += record.images;
        manifest.skipped += record.skipped.len() as u64;
        gathered.skipped.extend(record.skipped);
        gathered.warnings.extend(record.warnings);
        if let (Some(acc), Some(st)) = (&mut gathered.sums, &record.sums) {
            acc.add(st);
        }
    }
    // Integer sums: adding this run's total last gives the same result.
    if let (Some(acc), Some(st)) = (&mut gathered.sums, &known_sums) {
        acc.add(st);
    }
    Ok(gathered)
}

/// Writes a whole split's tables from what its shards hold: `skipped.tsv`,
/// `warnings.tsv` and, for train, `stats.h5` (returned; `None` when the
/// split holds no image).
pub(crate) fn write_split_tables(
    out: &Path,
    split: Split,
    gathered: &Gathered,
) -> Result<Option<Stats>, PreprocessError> {
    let data = DatasetDir::new(out);
    write_members(&data.skipped(split), &gathered.skipped)?;
    write_members(&data.warnings(split), &gathered.warnings)?;
    let Some(st) = gathered.sums.as_ref().and_then(finish_stats) else {
        return Ok(None);
    };
    shards::write_stats(&data.stats(), &st)?;
    Ok(Some(st))
}

/// Writes `member<TAB>text` lines (`skipped.tsv`, `warnings.tsv`).
fn write_members(path: &Path, members: &[(String, String)]) -> Result<(), PreprocessError> {
    let mut text = String::new();
    for (name, reason) in members {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        text.push_str(&format!("{}\t{}\n", clean(name), clean(reason)));
    }
    shards::write_atomically(path, text.as_bytes())
        .map_err(|e| PreprocessError::io(e.path, e.source))
}
