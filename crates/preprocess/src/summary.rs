//! What a run, a part and a finish report when they end.

use shards::{Split, Stats};

use crate::part::{MissingPart, Part};

/// Result of one split (for a part: of the part's share of it).
#[derive(Clone, Debug)]
pub struct SplitSummary {
    /// Which split.
    pub split: Split,
    /// Images in the split's shards (all runs).
    pub images: u64,
    /// Inputs skipped (all runs), listed in `OUT/<split>/skipped.tsv` (for
    /// a part: in its record in `OUT/parts`, until the dataset is finished).
    pub skipped: u64,
    /// Number of shards.
    pub shards: usize,
    /// Images decoded and written by this run (0 when everything was done).
    pub written_this_run: u64,
    /// Wall time of this split in this run, seconds.
    pub seconds: f64,
    /// The part whose share this is; `None` for the whole split.
    pub part: Option<Part>,
}

/// Result of [`run`].
#[derive(Clone, Debug)]
pub struct Summary {
    /// One entry per split converted, train first.
    pub splits: Vec<SplitSummary>,
    /// Training-set statistics (when a train split was converted and held
    /// images; for a part, see [`PartSummary::finished`]).
    pub stats: Option<Stats>,
    /// Number of classes.
    pub classes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// For a part: whether it finished the dataset, or which parts it left
    /// to do so.
    pub part: Option<PartSummary>,
}

impl Summary {
    /// Images in all shards of the converted splits.
    pub fn images(&self) -> u64 {
        self.splits.iter().map(|s| s.images).sum()
    }
    /// Inputs skipped in the converted splits.
    pub fn skipped(&self) -> u64 {
        self.splits.iter().map(|s| s.skipped).sum()
    }
    /// Images decoded and written by this run.
    pub fn written_this_run(&self) -> u64 {
        self.splits.iter().map(|s| s.written_this_run).sum()
    }
    /// Images written by this run per second of this run.
    pub fn images_per_second(&self) -> f64 {
        self.written_this_run() as f64 / self.seconds.max(1e-9)
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
    pub stats: Option<Stats>,
    /// Number of classes.
    pub classes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}
