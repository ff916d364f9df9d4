//! Files written whole or not at all: every file of a dataset is written
//! under a temporary name beside its final one and renamed into place once
//! complete and flushed, so a reader never sees half a file and an
//! interrupted writer leaves only `*.tmp` files behind.
//!
//! Two temporary names, both ending in [`TMP_SUFFIX`]:
//! - [`tmp_path`] (`path.tmp`) for files one process writes (shards); a
//!   resumed run recognises and removes its leftovers;
//! - [`unique_tmp_path`] (`path.<pid>-<random>.tmp`) for files that several
//!   processes may write at the same time with the same content
//!   (`classes.tsv`, `stats.h5`, JSON records): each writes its own.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of a file still being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// The name a file has while one process writes it: `path` + `.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// A temporary name for `path` that no other process uses at the same time
/// (`path.<pid>-<random>.tmp`).
pub fn unique_tmp_path(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness: two
    // processes on different hosts with the same pid still differ.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}-{random:016x}{TMP_SUFFIX}", std::process::id()));
    PathBuf::from(s)
}

/// True when `name` is a temporary file of the file named `file`: its
/// [`tmp_path`] or a [`unique_tmp_path`].
pub fn is_tmp_of(name: &str, file: &str) -> bool {
    name.strip_prefix(file)
        .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(TMP_SUFFIX))
}

/// A step of an atomic write failed: `path` is the file whose step it was.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct AtomicWriteError {
    /// The temporary file (writing, flushing) or the final path (renaming).
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// A file (or directory) being written under a temporary name, renamed over
/// its final path by [`commit`](AtomicFile::commit). Dropped without a
/// commit, it removes what was written.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// For `path`, under a [`unique_tmp_path`] (nothing is created yet).
    pub fn new(path: &Path) -> Self {
        Self::at(unique_tmp_path(path), path)
    }

    /// For `path`, under its [`tmp_path`]: for files only one process writes.
    pub fn single_writer(path: &Path) -> Self {
        Self::at(tmp_path(path), path)
    }

    fn at(tmp: PathBuf, path: &Path) -> Self {
        AtomicFile {
            tmp,
            path: path.to_owned(),
            committed: false,
        }
    }

    /// Where to write.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the written file over the final path. Fast: nothing is
    /// flushed, so after a power cut the file may be empty or old (shards,
    /// which a resumed run checks, are committed so).
    pub fn commit(mut self) -> Result<(), AtomicWriteError> {
        std::fs::rename(&self.tmp, &self.path).map_err(|source| AtomicWriteError {
            path: self.path.clone(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }

    /// Flushes the written file to disk, renames it over the final path and
    /// flushes the directory entry (best effort where a platform cannot):
    /// for records that must survive a power cut (checkpoints, JSON records).
    pub fn commit_synced(self) -> Result<(), AtomicWriteError> {
        if self.tmp.is_file() {
            std::fs::File::open(&self.tmp)
                .and_then(|f| f.sync_all())
                .map_err(|source| AtomicWriteError {
                    path: self.tmp.clone(),
                    source,
                })?;
        }
        let parent = self.path.parent().map(Path::to_owned);
        self.commit()?;
        if let Some(dir) = parent.and_then(|p| std::fs::File::open(p).ok()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            if self.tmp.is_dir() {
                let _ = std::fs::remove_dir_all(&self.tmp);
            } else {
                let _ = std::fs::remove_file(&self.tmp);
            }
        }
    }
}

/// Writes `bytes` to `path` whole or not at all (through a
/// [`unique_tmp_path`]), flushed to disk ([`AtomicFile::commit_synced`]).
/// The error names the file whose step failed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let file = AtomicFile::new(path);
    std::fs::File::create(file.tmp())
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| AtomicWriteError {
            path: file.tmp().to_owned(),
            source,
        })?;
    file.commit_synced()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_file_not_committed_is_removed_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats.h5");
        std::fs::write(&p, b"old").unwrap();
        {
            let file = AtomicFile::new(&p);
            std::fs::write(file.tmp(), b"half").unwrap();
            assert!(is_tmp_of(
                &file.tmp().file_name().unwrap().to_string_lossy(),
                "stats.h5"
            ));
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn single_writer_name_appends_the_suffix() {
        let file = AtomicFile::single_writer(Path::new("/o/train/shard-00001.h5"));
        assert_eq!(file.tmp(), Path::new("/o/train/shard-00001.h5.tmp"));
        assert_eq!(tmp_path(Path::new("/o/a")), PathBuf::from("/o/a.tmp"));
    }
}
