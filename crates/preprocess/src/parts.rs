//! Converting a dataset as `N` independent parts, e.g. the tasks of a Slurm
//! array on several nodes sharing one OUT.
//!
//! Part `I` of `N` converts the shards whose id `s` has `s mod N == I`
//! (shard ids as in [`shard_of`](crate::shard_of)): which shard an input goes
//! to and what the shard holds do not depend on the parts, so the parts'
//! shards together are exactly the shards of one run, and each part's share
//! is fixed by the inputs and options alone (balanced to one shard per
//! split). Each part reads every input's header but only its own inputs'
//! bytes.
//!
//! A part records itself in `OUT/parts/` (names from
//! [`shards::part_file_name`]): `part-0000I-of-0000N.started` when it
//! begins, and `part-0000I-of-0000N.done` (its classes, shards and skipped
//! inputs) when it is complete, written through a temporary file renamed into
//! place. After writing its `.done` record a part looks for all `N` of them;
//! the part that finds them all (at least the last one to finish does)
//! [`finish`]es the dataset: `classes.tsv`, `stats.h5`, each split's
//! `skipped.tsv` and `manifest.json`, from every shard's stored sums and
//! records, so they equal those of one run. Two parts finishing at the same
//! moment may both do it; they write the same files through their own
//! temporary names, so the result is the same.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shards::{parse_part_file_name, DatasetDir, PartFile, Split};

use crate::devkit::ClassInfo;
use crate::error::PreprocessError;
use crate::manifest::{read_json, record_splits, write_json, SplitManifest, FORMAT_VERSION};
use crate::part::{MissingPart, Part};
use crate::summary::{FinishSummary, PartSummary, SplitSummary};
use crate::tables::{gather_split, write_classes, write_split_tables, Gathered};

/// One class as a part's record holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRecord {
    /// Class index.
    pub index: usize,
    /// WordNet id.
    pub wnid: String,
    /// Human-readable words (empty without a devkit).
    pub words: String,
}

/// What a part converted of one split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSplit {
    /// Its shards (in id order), images and skipped inputs.
    #[serde(flatten)]
    pub manifest: SplitManifest,
    /// Its inputs that could not be used: `[member, reason]`, in shard order.
    pub skipped_inputs: Vec<(String, String)>,
    /// Its images kept although their decoder warned: `[member, warning]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<(String, String)>,
}

/// The content of `OUT/parts/part-0000I-of-0000N.done`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Output layout version.
    pub format_version: u32,
    /// This part, 0-based.
    pub part: u32,
    /// Number of parts.
    pub parts: u32,
    /// The class list the part labelled with.
    pub classes: Vec<ClassRecord>,
    /// True when the classes came from the devkit (with their words).
    pub classes_from_devkit: bool,
    /// Per split converted (`train`, `val`).
    pub splits: BTreeMap<String, PartSplit>,
}

impl PartRecord {
    pub(crate) fn new(part: Part, classes: &[ClassInfo], from_devkit: bool) -> Self {
        PartRecord {
            format_version: FORMAT_VERSION,
            part: part.index,
            parts: part.count,
            classes: classes
                .iter()
                .map(|c| ClassRecord {
                    index: c.index,
                    wnid: c.wnid.clone(),
                    words: c.words.clone(),
                })
                .collect(),
            classes_from_devkit: from_devkit,
            splits: BTreeMap::new(),
        }
    }

    /// Records what the part converted of `split`.
    pub(crate) fn add_split(&mut self, split: Split, gathered: Gathered) {
        self.splits.insert(
            split.name().to_owned(),
            PartSplit {
                manifest: gathered.manifest,
                skipped_inputs: gathered.skipped,
                warnings: gathered.warnings,
            },
        );
    }

    /// Reads `OUT/parts/part-0000I-of-0000N.done`, refusing a record that
    /// does not describe that part ([`PartRecordError`]).
    pub fn read(out: &Path, part: Part) -> Result<PartRecord, PreprocessError> {
        let path = DatasetDir::new(out).part_file(part.index, part.count, PartFile::Done);
        let record: PartRecord = read_json(&path)?;
        record
            .check(part)
            .map_err(|source| PreprocessError::PartRecord { path, source })?;
        Ok(record)
    }

    /// What [`PartRecord::read`] refuses: another format version, another
    /// part than its file's name says, no classes, classes not numbered
    /// 0, 1, 2, ... in order, a WNID that `classes.tsv` cannot hold.
    fn check(&self, part: Part) -> Result<(), PartRecordError> {
        if self.format_version != FORMAT_VERSION {
            return Err(PartRecordError::FormatVersion {
                found: self.format_version,
            });
        }
        if (self.part, self.parts) != (part.index, part.count) {
            return Err(PartRecordError::OtherPart {
                part: self.part,
                parts: self.parts,
            });
        }
        if self.classes.is_empty() {
            return Err(PartRecordError::NoClasses);
        }
        for (expected, c) in self.classes.iter().enumerate() {
            if c.index != expected {
                return Err(PartRecordError::ClassIndex {
                    wnid: c.wnid.clone(),
                    index: c.index,
                    expected,
                });
            }
            if c.wnid.is_empty() || c.wnid.contains(['\t', '\n', '\r']) {
                return Err(PartRecordError::Wnid {
                    index: c.index,
                    wnid: c.wnid.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A part's record (`OUT/parts/part-0000I-of-0000N.done`) that does not
/// describe its part.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartRecordError {
    /// Written by another format version.
    #[error("format version {found} (this program writes {FORMAT_VERSION})")]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// The record says it is another part than its name does.
    #[error("it records part {part} of {parts}, not the part its name gives")]
    OtherPart {
        /// The part recorded.
        part: u32,
        /// The number of parts recorded.
        parts: u32,
    },
    /// No classes.
    #[error("it lists no classes")]
    NoClasses,
    /// A class out of order.
    #[error("class {wnid} has index {index}, expected {expected} (classes are numbered 0, 1, 2, ... in order)")]
    ClassIndex {
        /// The class's WNID.
        wnid: String,
        /// Its index.
        index: usize,
        /// The index it should have.
        expected: usize,
    },
    /// A WNID that `classes.tsv` cannot hold (empty, or with a tab or a
    /// line break).
    #[error("class {index} has the WNID {wnid:?}, which classes.tsv cannot hold")]
    Wnid {
        /// The class's index.
        index: usize,
        /// Its WNID.
        wnid: String,
    },
}

/// The parts files present in `OUT/parts`: `(part, kind, file name)`.
fn part_files(out: &Path) -> Result<Vec<(Part, PartFile, String)>, PreprocessError> {
    let dir = DatasetDir::new(out).parts();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PreprocessError::io(&dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let name = entry
            .map_err(|e| PreprocessError::io(&dir, e))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some((index, count, kind)) = parse_part_file_name(&name) {
            found.push((Part { index, count }, kind, name));
        }
    }
    found.sort();
    Ok(found)
}

/// Refuses a part whose number of parts differs from that of parts already
/// started or done in `out`, then records that `part` has begun.
pub(crate) fn begin_part(out: &Path, part: Part) -> Result<(), PreprocessError> {
    if let Some((other, _, file)) = part_files(out)?
        .into_iter()
        .find(|(p, _, _)| p.count != part.count)
    {
        return Err(PreprocessError::PartCountMismatch {
            out: out.to_path_buf(),
            part,
            file,
            count: other.count,
        });
    }
    let data = DatasetDir::new(out);
    let dir = data.parts();
    std::fs::create_dir_all(&dir).map_err(|e| PreprocessError::io(&dir, e))?;
    write_json(
        &data.part_file(part.index, part.count, PartFile::Started),
        &part_started(part),
    )
}

#[derive(Serialize)]
struct Started {
    part: u32,
    parts: u32,
}

fn part_started(part: Part) -> Started {
    Started {
        part: part.index,
        parts: part.count,
    }
}

/// Writes `part`'s `.done` record, then, when every part's record is
/// there, finishes the dataset.
pub(crate) fn complete_part(
    out: &Path,
    part: Part,
    record: &PartRecord,
) -> Result<PartSummary, PreprocessError> {
    write_json(
        &DatasetDir::new(out).part_file(part.index, part.count, PartFile::Done),
        record,
    )?;
    let waiting_for = missing_parts(out, part.count)?;
    let finished = if waiting_for.is_empty() {
        Some(finish(out)?)
    } else {
        None
    };
    Ok(PartSummary {
        part,
        waiting_for,
        finished,
    })
}

/// The parts of `count` whose `.done` record is not in `out`. Each record is
/// looked up by name.
fn missing_parts(out: &Path, count: u32) -> Result<Vec<MissingPart>, PreprocessError> {
    let mut missing = Vec::new();
    for index in 0..count {
        let part = Part { index, count };
        let exists = |kind| {
            let path = DatasetDir::new(out).part_file(index, count, kind);
            path.try_exists().map_err(|e| PreprocessError::io(&path, e))
        };
        if !exists(PartFile::Done)? {
            missing.push(MissingPart {
                part,
                started: exists(PartFile::Started)?,
            });
        }
    }
    Ok(missing)
}

/// The `.done` records of all `count` parts, refused unless they used the
/// same classes and splits.
fn agreeing_records(out: &Path, count: u32) -> Result<Vec<PartRecord>, PreprocessError> {
    let records: Vec<PartRecord> = (0..count)
        .map(|index| PartRecord::read(out, Part { index, count }))
        .collect::<Result<_, _>>()?;
    let reference = &records[0];
    for (index, r) in records.iter().enumerate().skip(1) {
        let disagree = |what| PreprocessError::PartsDisagree {
            out: out.to_path_buf(),
            part: Part {
                index: index as u32,
                count,
            },
            what,
        };
        if r.classes != reference.classes || r.classes_from_devkit != reference.classes_from_devkit
        {
            return Err(disagree("classes"));
        }
        if !r.splits.keys().eq(reference.splits.keys()) {
            return Err(disagree("splits"));
        }
    }
    Ok(records)
}

/// What the shards of `split` on disk hold, refused unless they are exactly
/// the shards the parts' records report.
fn gather_claimed_split(
    out: &Path,
    split: Split,
    records: &[PartRecord],
) -> Result<Gathered, PreprocessError> {
    let count = records.len() as u32;
    // The shards the parts report, and which part reported each.
    let mut claimed: BTreeMap<String, Part> = BTreeMap::new();
    for (index, r) in records.iter().enumerate() {
        for shard in &r.splits[split.name()].manifest.shards {
            let part = Part {
                index: index as u32,
                count,
            };
            claimed.insert(shard.file.clone(), part);
        }
    }
    let gathered = gather_split(out, split, None, Default::default())?;
    let on_disk: BTreeSet<&str> = gathered
        .manifest
        .shards
        .iter()
        .map(|s| s.file.as_str())
        .collect();
    if let Some((file, part)) = claimed.iter().find(|(f, _)| !on_disk.contains(f.as_str())) {
        return Err(PreprocessError::PartShardMissing {
            out: out.to_path_buf(),
            part: *part,
            file: file.clone(),
        });
    }
    if let Some(file) = on_disk.iter().find(|f| !claimed.contains_key(**f)) {
        return Err(PreprocessError::UnclaimedShard {
            out: out.to_path_buf(),
            file: file.to_string(),
            count,
        });
    }
    Ok(gathered)
}

/// Finishes a dataset converted in parts: checks that every part is
/// complete, that all parts used the same classes and splits and that the
/// shards on disk are exactly those the parts report, then writes
/// `classes.tsv`, `stats.h5`, each split's `skipped.tsv` and
/// `manifest.json` of the whole dataset, equal to those one run writes.
/// Running it again rewrites the same files.
pub fn finish(out: &Path) -> Result<FinishSummary, PreprocessError> {
    let t0 = Instant::now();
    let files = part_files(out)?;
    let Some(&(first, _, ref first_file)) = files.first() else {
        return Err(PreprocessError::NoParts {
            out: out.to_path_buf(),
        });
    };
    let count = first.count;
    if let Some((_, _, file)) = files.iter().find(|(p, _, _)| p.count != count) {
        return Err(PreprocessError::MixedPartCounts {
            out: out.to_path_buf(),
            a: first_file.clone(),
            b: file.clone(),
        });
    }
    let missing = missing_parts(out, count)?;
    if !missing.is_empty() {
        return Err(PreprocessError::PartsMissing {
            out: out.to_path_buf(),
            count,
            missing,
        });
    }
    let records = agreeing_records(out, count)?;
    let reference = &records[0];

    let classes: Vec<ClassInfo> = reference
        .classes
        .iter()
        .map(|c| ClassInfo {
            index: c.index,
            wnid: c.wnid.clone(),
            words: c.words.clone(),
            ilsvrc_id: 0,
        })
        .collect();
    write_classes(out, &classes, reference.classes_from_devkit)?;

    let mut summary = FinishSummary {
        parts: count,
        splits: Vec::new(),
        stats: None,
        classes: classes.len(),
        seconds: 0.0,
    };
    let mut manifests = Vec::new();
    for split in Split::ALL {
        if !reference.splits.contains_key(split.name()) {
            continue;
        }
        let gathered = gather_claimed_split(out, split, &records)?;
        if let Some(st) = write_split_tables(out, split, &gathered)? {
            summary.stats = Some(st);
        }
        summary.splits.push(SplitSummary {
            split,
            images: gathered.manifest.images,
            skipped: gathered.manifest.skipped,
            shards: gathered.manifest.shards.len(),
            written_this_run: 0,
            seconds: 0.0,
            part: None,
        });
        manifests.push((split, gathered.manifest));
    }
    record_splits(out, classes.len(), manifests)?;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}
