//! One shard being written by the pipeline: the format's
//! [`shards::ShardWriter`] plus, for train shards, the
//! statistics sums of its images.

use std::path::Path;

use shards::{Encoding, ShardRecord, ShardWriter};

use crate::error::PreprocessError;
use crate::stats::{ImageColorSums, ShardStatAcc};
use decode::SIDE;

/// A shard being written (`shard-XXXXX.h5.tmp` until [`finish`](Self::finish)).
pub(crate) struct PipelineShard {
    writer: ShardWriter,
    stats: Option<ShardStatAcc>,
}

impl PipelineShard {
    /// Starts shard `id` in `dir`, with room for `capacity` images.
    pub(crate) fn create(
        dir: &Path,
        id: u64,
        encoding: Encoding,
        capacity: usize,
        with_stats: bool,
    ) -> Result<Self, PreprocessError> {
        let path = dir.join(shards::shard_file_name(id));
        Ok(PipelineShard {
            writer: ShardWriter::create(&path, SIDE, encoding, capacity)?,
            stats: with_stats.then(ShardStatAcc::new),
        })
    }

    /// Appends one decoded image: `image` is its pixels (for the statistics),
    /// `stored` what the shard keeps of it (the pixels again, or a JPEG stream).
    pub(crate) fn push_image(
        &mut self,
        image: &[u8],
        stored: &[u8],
        label: i64,
        name: &str,
        color: &ImageColorSums,
    ) -> Result<(), PreprocessError> {
        self.writer.push(stored, label, name)?;
        if let Some(st) = &mut self.stats {
            st.add(image, color);
        }
        Ok(())
    }

    /// Records a warning about an image pushed to this shard.
    pub(crate) fn push_warning(&mut self, name: &str, warning: &str) {
        self.writer.push_warning(name, warning);
    }

    /// Records an input that could not be used.
    pub(crate) fn push_skipped(&mut self, name: &str, reason: &str) {
        self.writer.push_skipped(name, reason);
    }

    /// Writes the rest of the shard and renames it to its final name;
    /// returns what it records.
    pub(crate) fn finish(self) -> Result<ShardRecord, PreprocessError> {
        let sums = self.stats.as_ref().map(ShardStatAcc::sums);
        Ok(self.writer.finish(sums)?)
    }

    /// Deletes the incomplete shard.
    pub(crate) fn abandon(self) {
        self.writer.abandon();
    }
}
