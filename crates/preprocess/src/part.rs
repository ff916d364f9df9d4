//! One part of a conversion split into `N` parts: `--part I/N`, or a Slurm
//! array task's environment, and what a part that has not completed is.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use shards::{part_file_name, PartFile};

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
#[non_exhaustive]
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
        part_file_name(self.index, self.count, kind)
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
