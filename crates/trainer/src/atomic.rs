//! Atomic file replacement: the format crate's helper for files, and the
//! flushes a checkpoint directory needs before it is renamed into place.

use std::path::Path;

use crate::error::{io_err, Result};

/// Writes `bytes` to `path` so that readers see either the old or the new
/// content, never a partial file (the format's one atomic write,
/// [`shards::write_atomically`]: flushed, renamed, the directory flushed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    shards::write_atomically(path, bytes).map_err(|e| io_err(e.path)(e.source))
}

/// Flushes a directory entry change (best effort; not every platform can).
pub(crate) fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

/// Flushes a file's content to disk.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}
