//! How a run reports its progress: [`ProgressSink`].

use shards::Split;

use crate::layout::LayoutKind;
use crate::summary::SplitSummary;

/// Receives progress from [`run`] (called on the writer thread).
pub trait ProgressSink {
    /// The layout the `--from` paths hold was found (before any split).
    fn layout(&self, _kind: LayoutKind) {}
    /// A split starts. `total_bytes`: size of its tar; `total_images`: number
    /// of files of a directory input. Either may be unknown.
    fn start_split(&self, split: Split, total_bytes: Option<u64>, total_images: Option<u64>);
    /// Totals so far in this split: inputs handled (written, skipped, or
    /// passed over because already in a completed shard) and bytes read.
    fn advance(&self, inputs_done: u64, bytes_read: u64);
    /// The split is complete.
    fn finish_split(&self, summary: &SplitSummary);
}

/// A [`ProgressSink`] that ignores everything.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn start_split(&self, _: Split, _: Option<u64>, _: Option<u64>) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish_split(&self, _: &SplitSummary) {}
}
