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
//! [`loader::format::part_file_name`]): `part-0000I-of-0000N.started` when it
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
use std::fmt;
use std::num::ParseIntError;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use loader::format::{self, PartFile, ShardSums};
use serde::{Deserialize, Serialize};

use crate::devkit::ClassInfo;
use crate::error::PreprocessError;
use crate::image::IMAGE_BYTES;
use crate::manifest::{read_json, record_splits, write_json, SplitManifest, FORMAT_VERSION};
use crate::pipeline::{gather_split, write_classes, write_skipped, Split, SplitSummary};
use crate::stats::finish_stats;

/// The Slurm variable holding this array task's id.
pub const SLURM_ARRAY_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// The Slurm variable holding the number of tasks of the array.
pub const SLURM_ARRAY_TASK_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
/// The Slurm variable holding the array's lowest task id (`--array=1-16`: 1).
pub const SLURM_ARRAY_TASK_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// The Slurm variable holding the array's id step (`--array=0-30:2`: 2).
pub const SLURM_ARRAY_TASK_STEP: &str = "SLURM_ARRAY_TASK_STEP";

/// One part of a conversion split into `count` parts: `index` in `0..count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Part {
    /// This part, 0-based.
    pub index: u32,
    /// Number of parts.
    pub count: u32,
}

/// A part could not be worked out from `--part` or the Slurm environment.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Not of the form `I/N`.
    #[error("`{spec}` is not I/N (e.g. 0/3: the first of three parts)")]
    Syntax {
        /// What was given.
        spec: String,
    },
    /// `I` or `N` is not a number.
    #[error("`{spec}`: {source}")]
    Number {
        /// What was given.
        spec: String,
        /// The parse error.
        source: ParseIntError,
    },
    /// `N` is 0.
    #[error("the number of parts must be at least 1")]
    NoParts,
    /// `I` is not below `N`.
    #[error("part {index} of {count} does not exist: parts are numbered 0 to {}", count - 1)]
    OutOfRange {
        /// The part asked for.
        index: u64,
        /// Number of parts.
        count: u32,
    },
    /// A Slurm variable is not a number.
    #[error("{var}={value}: {source}")]
    SlurmVar {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The parse error.
        source: ParseIntError,
    },
    /// Only one of the task id and the task count is set.
    #[error("{set} is set but {unset} is not; give --part I/N")]
    SlurmIncomplete {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing.
        unset: &'static str,
    },
    /// The array's ids are not `MIN, MIN+STEP, ...` below `MIN + COUNT*STEP`.
    #[error(
        "SLURM_ARRAY_TASK_ID={id} is not one of {count} ids {min}, {}, ... (step {step}); \
         run the array as a range, e.g. --array=0-{}, or give --part I/N",
        min + step,
        count.saturating_sub(1)
    )]
    SlurmNotARange {
        /// `SLURM_ARRAY_TASK_ID`.
        id: u64,
        /// `SLURM_ARRAY_TASK_MIN` (0 when unset).
        min: u64,
        /// `SLURM_ARRAY_TASK_STEP` (1 when unset).
        step: u64,
        /// `SLURM_ARRAY_TASK_COUNT`.
        count: u64,
    },
}

impl Part {
    /// Part `index` of `count`.
    pub fn new(index: u64, count: u64) -> Result<Part, PartError> {
        let count = u32::try_from(count)
            .ok()
            .filter(|&c| c > 0)
            .ok_or(PartError::NoParts)?;
        match u32::try_from(index) {
            Ok(index) if index < count => Ok(Part { index, count }),
            _ => Err(PartError::OutOfRange { index, count }),
        }
    }

    /// True when shard `shard` is this part's to write: `shard mod count == index`.
    pub fn owns_shard(self, shard: u64) -> bool {
        shard % self.count as u64 == self.index as u64
    }

    /// The part given by a Slurm array task's environment: `None` when
    /// neither `SLURM_ARRAY_TASK_ID` nor `SLURM_ARRAY_TASK_COUNT` is set.
    /// The part is `(ID - MIN) / STEP` of `COUNT` (`SLURM_ARRAY_TASK_MIN`,
    /// default 0; `SLURM_ARRAY_TASK_STEP`, default 1), so `--array=0-15`
    /// and `--array=1-16` both give parts 0..15 of 16.
    pub fn from_slurm_env() -> Result<Option<Part>, PartError> {
        Part::from_slurm_vars(|name| std::env::var(name).ok())
    }

    /// [`from_slurm_env`](Self::from_slurm_env) with the variables looked up
    /// through `var` (empty values count as unset).
    pub fn from_slurm_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Part>, PartError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let number = |name: &'static str, value: String| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|source| PartError::SlurmVar {
                    var: name,
                    value,
                    source,
                })
        };
        let (id, count) = match (get(SLURM_ARRAY_TASK_ID), get(SLURM_ARRAY_TASK_COUNT)) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(PartError::SlurmIncomplete {
                    set: SLURM_ARRAY_TASK_ID,
                    unset: SLURM_ARRAY_TASK_COUNT,
                })
            }
            (None, Some(_)) => {
                return Err(PartError::SlurmIncomplete {
                    set: SLURM_ARRAY_TASK_COUNT,
                    unset: SLURM_ARRAY_TASK_ID,
                })
            }
            (Some(id), Some(count)) => (
                number(SLURM_ARRAY_TASK_ID, id)?,
                number(SLURM_ARRAY_TASK_COUNT, count)?,
            ),
        };
        let min = match get(SLURM_ARRAY_TASK_MIN) {
            Some(v) => number(SLURM_ARRAY_TASK_MIN, v)?,
            None => 0,
        };
        let step = match get(SLURM_ARRAY_TASK_STEP) {
            Some(v) => number(SLURM_ARRAY_TASK_STEP, v)?.max(1),
            None => 1,
        };
        let not_a_range = PartError::SlurmNotARange {
            id,
            min,
            step,
            count,
        };
        if id < min || (id - min) % step != 0 {
            return Err(not_a_range);
        }
        match Part::new((id - min) / step, count) {
            Ok(part) => Ok(Some(part)),
            Err(PartError::OutOfRange { .. }) => Err(not_a_range),
            Err(e) => Err(e),
        }
    }

    /// `explicit` (from `--part`) when given, otherwise the Slurm array
    /// task's part ([`from_slurm_env`](Self::from_slurm_env)), otherwise none.
    pub fn explicit_or_slurm(explicit: Option<Part>) -> Result<Option<Part>, PartError> {
        match explicit {
            Some(p) => Ok(Some(p)),
            None => Part::from_slurm_env(),
        }
    }

    fn file_name(self, kind: PartFile) -> String {
        format::part_file_name(self.index, self.count, kind)
    }
}

impl FromStr for Part {
    type Err = PartError;

    /// `I/N`, e.g. `0/3`.
    fn from_str(spec: &str) -> Result<Part, PartError> {
        let (i, n) = spec
            .trim()
            .split_once('/')
            .ok_or_else(|| PartError::Syntax {
                spec: spec.to_string(),
            })?;
        let number = |s: &str| {
            s.trim().parse::<u64>().map_err(|source| PartError::Number {
                spec: spec.to_string(),
                source,
            })
        };
        Part::new(number(i)?, number(n)?)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A part that has not completed, as [`finish`] and [`PartSummary`] report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingPart {
    /// The part.
    pub part: Part,
    /// True when it began (its `.started` record exists) but is not complete:
    /// still running, or stopped (running it again resumes it).
    pub started: bool,
}

impl fmt::Display for MissingPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.started {
            "started, not complete"
        } else {
            "not started"
        };
        write!(
            f,
            "{} ({what}: {})",
            self.part,
            self.part.file_name(PartFile::Done)
        )
    }
}

/// `a, b and c` of the missing parts.
pub(crate) fn list_missing(missing: &[MissingPart]) -> String {
    let items: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

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

    /// Reads `OUT/parts/part-0000I-of-0000N.done`.
    pub fn read(out: &Path, part: Part) -> Result<PartRecord, PreprocessError> {
        read_json(&format::part_file_path(
            out,
            part.index,
            part.count,
            PartFile::Done,
        ))
    }
}

/// What became of a part run, besides its own splits.
#[derive(Clone, Debug)]
pub struct PartSummary {
    /// The part.
    pub part: Part,
    /// The parts not complete when this one completed (empty when all were).
    pub waiting_for: Vec<MissingPart>,
    /// The whole dataset, when this part found all parts complete and
    /// finished it.
    pub finished: Option<FinishSummary>,
}

/// Result of [`finish`]: the whole dataset.
#[derive(Clone, Debug)]
pub struct FinishSummary {
    /// Number of parts.
    pub parts: u32,
    /// Per split, train first: the whole split (`written_this_run` is 0).
    pub splits: Vec<SplitSummary>,
    /// Training-set statistics (when a train split was converted and held images).
    pub stats: Option<loader::Stats>,
    /// Number of classes.
    pub classes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The parts files present in `OUT/parts`: `(part, kind, file name)`.
fn part_files(out: &Path) -> Result<Vec<(Part, PartFile, String)>, PreprocessError> {
    let dir = format::parts_dir(out);
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
        if let Some((index, count, kind)) = format::parse_part_file_name(&name) {
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
    let dir = format::parts_dir(out);
    std::fs::create_dir_all(&dir).map_err(|e| PreprocessError::io(&dir, e))?;
    write_json(
        &format::part_file_path(out, part.index, part.count, PartFile::Started),
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
        &format::part_file_path(out, part.index, part.count, PartFile::Done),
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
            let path = format::part_file_path(out, index, count, kind);
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
    for split in [Split::Train, Split::Val] {
        if !reference.splits.contains_key(split.name()) {
            continue;
        }
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
        write_skipped(out, split, &gathered.skipped)?;
        if split == Split::Train {
            let sums = gathered
                .sums
                .clone()
                .unwrap_or_else(|| ShardSums::zero(IMAGE_BYTES));
            if let Some(st) = finish_stats(&sums) {
                format::write_stats(&format::stats_path(out), &st)?;
                summary.stats = Some(st);
            }
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
        manifests.push((split.name(), gathered.manifest));
    }
    record_splits(out, classes.len(), manifests)?;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slurm(vars: &[(&str, &str)]) -> Result<Option<Part>, PartError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Part::from_slurm_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn parses_i_over_n_and_refuses_the_rest() {
        assert_eq!("0/3".parse::<Part>().unwrap(), Part { index: 0, count: 3 });
        assert_eq!(" 2 / 3 ".parse::<Part>().unwrap().to_string(), "2/3");
        assert!(matches!(
            "3/3".parse::<Part>(),
            Err(PartError::OutOfRange { .. })
        ));
        assert!(matches!("0/0".parse::<Part>(), Err(PartError::NoParts)));
        assert!(matches!("1".parse::<Part>(), Err(PartError::Syntax { .. })));
        let err = "a/3".parse::<Part>().unwrap_err();
        assert!(matches!(err, PartError::Number { .. }), "{err}");
        assert!(err.to_string().contains("a/3"), "{err}");
    }

    #[test]
    fn shards_are_dealt_by_id_modulo_the_count() {
        let parts: Vec<Part> = (0..3).map(|i| Part { index: i, count: 3 }).collect();
        for shard in 0..20u64 {
            let owners: Vec<u32> = parts
                .iter()
                .filter(|p| p.owns_shard(shard))
                .map(|p| p.index)
                .collect();
            assert_eq!(owners, [(shard % 3) as u32]);
        }
    }

    #[test]
    fn slurm_array_variables_give_the_part() {
        assert_eq!(slurm(&[]).unwrap(), None);
        let p = |index, count| Some(Part { index, count });
        let id_count = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(slurm(&id_count).unwrap(), p(2, 3));
        // --array=1-16: ids 1..16 are parts 0..15.
        let shifted = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "16"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(slurm(&shifted).unwrap(), p(0, 16));
        // --array=10-18:4 -> ids 10, 14, 18.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "18"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ];
        assert_eq!(slurm(&stepped).unwrap(), p(2, 3));
        // An empty value is unset.
        assert_eq!(
            slurm(&[("SLURM_ARRAY_TASK_ID", ""), ("SLURM_ARRAY_TASK_COUNT", "")]).unwrap(),
            None
        );
    }

    #[test]
    fn slurm_variables_that_do_not_describe_a_range_are_refused() {
        let err = slurm(&[("SLURM_ARRAY_TASK_ID", "1")]).unwrap_err();
        assert!(err.to_string().contains("SLURM_ARRAY_TASK_COUNT"), "{err}");
        let err = slurm(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("SLURM_ARRAY_TASK_ID=x"),
            "{err}"
        );
        // --array=0,2,7: three tasks, but id 7 is no part of three.
        let sparse = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let err = slurm(&sparse).unwrap_err();
        assert!(matches!(err, PartError::SlurmNotARange { .. }), "{err}");
        assert!(err.to_string().contains("--array=0-2"), "{err}");
        let below = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert!(matches!(
            slurm(&below),
            Err(PartError::SlurmNotARange { .. })
        ));
    }

    #[test]
    fn missing_parts_are_listed_by_name() {
        let missing = [
            MissingPart {
                part: Part { index: 0, count: 3 },
                started: true,
            },
            MissingPart {
                part: Part { index: 2, count: 3 },
                started: false,
            },
        ];
        assert_eq!(
            list_missing(&missing),
            "0/3 (started, not complete: part-00000-of-00003.done) and \
             2/3 (not started: part-00002-of-00003.done)"
        );
    }
}
