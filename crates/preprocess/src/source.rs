//! Input enumeration: the train tar (outer tar of per-class inner tars), the
//! flat val tar, or the extracted trees, streamed in a deterministic order.
//! Tars are read front to back and never extracted; the bytes of members
//! that are not wanted (their shard is complete, or another part's) are
//! skipped with seeks rather than read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::devkit::{parse_val_number, Devkit};
use crate::error::PreprocessError;

/// Largest member accepted (bigger ones are skipped unread).
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Where a split's images come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitInput {
    /// A tar file (train: outer tar of inner class tars; val: flat tar).
    Tar(PathBuf),
    /// An extracted tree (train: `DIR/<wnid>/*`; val: `DIR/*`).
    Dir(PathBuf),
}

/// How members get their class index.
pub(crate) enum Labeler<'a> {
    /// Train: from the WNID of the inner tar or subdirectory.
    Train(&'a HashMap<String, usize>),
    /// Val: from the file name's number through the devkit ground truth.
    Val(&'a Devkit),
}

impl Labeler<'_> {
    fn train_label(&self, wnid: &str) -> Result<i64, String> {
        match self {
            Labeler::Train(map) => map
                .get(wnid)
                .map(|&i| i as i64)
                .ok_or_else(|| format!("class {wnid} is not in the class list")),
            Labeler::Val(_) => Err("train member in a val input".into()),
        }
    }

    fn val_label(&self, name: &str) -> Result<i64, String> {
        match self {
            Labeler::Val(dk) => {
                let n = parse_val_number(name)
                    .ok_or_else(|| "name is not ILSVRC2012_val_NNNNNNNN.*".to_string())?;
                dk.val_label(n)
                    .map(|l| l as i64)
                    .ok_or_else(|| format!("no ground truth for validation image {n}"))
            }
            Labeler::Train(_) => Err("val member in a train input".into()),
        }
    }
}

/// One input member as handed to the pipeline.
pub(crate) struct Member {
    /// Position in the deterministic input order (bad files count too).
    pub index: u64,
    /// The member's file name.
    pub name: String,
    /// Class index, or why there is none.
    pub label: Result<i64, String>,
    /// The file's bytes (`None` when the caller did not want them), or why
    /// they could not be read.
    pub data: Option<Result<Vec<u8>, String>>,
}

/// Receives one train member: name, label, bytes (or why not).
type PushTrain<'a> =
    dyn FnMut(String, Result<i64, String>, Option<Result<Vec<u8>, String>>) -> bool + 'a;

/// Bytes read ahead after a seek; doubled on each sequential refill up to
/// [`MAX_FILL`].
const PROBE_FILL: usize = 8 << 10;
/// Most bytes read ahead at a time.
const MAX_FILL: usize = 1 << 20;

/// A byte range of a tar file (the whole file, or an inner tar of the train
/// tar) read with positioned reads, and seekable, so that the tar reader
/// skips members it does not want without reading them. Reads ahead
/// [`PROBE_FILL`] bytes after a seek (a member header and a little more) and
/// twice as much on each refill that follows while reading continues in
/// sequence, up to [`MAX_FILL`]; requests as large as that go straight to
/// the file. `progress` holds the furthest offset in the file reached.
struct RangeReader {
    file: Arc<File>,
    /// The range: `start..end` of the file.
    start: u64,
    end: u64,
    /// Absolute position of the next read.
    pos: u64,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`; `buf` holds valid bytes up to `buf.len()`.
    buf_at: u64,
    fill: usize,
    progress: Arc<AtomicU64>,
    /// Bytes read from the file so far.
    #[cfg_attr(not(test), allow(dead_code))]
    fetched: u64,
}

impl RangeReader {
    fn new(file: Arc<File>, start: u64, len: u64, progress: Arc<AtomicU64>) -> Self {
        RangeReader {
            file,
            start,
            end: start + len,
            pos: start,
            buf: Vec::new(),
            buf_at: start,
            fill: PROBE_FILL,
            progress,
            fetched: 0,
        }
    }

    fn advance(&mut self, n: usize) {
        self.pos += n as u64;
        self.progress.fetch_max(self.pos, Ordering::Relaxed);
    }
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() || self.pos >= self.end {
            return Ok(0);
        }
        let buffered = self.buf_at + self.buf.len() as u64;
        if self.pos < self.buf_at || self.pos >= buffered {
            let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
            if out.len() >= self.fill {
                let want = out.len().min(left);
                let n = self.file.read_at(&mut out[..want], self.pos)?;
                self.fetched += n as u64;
                self.advance(n);
                return Ok(n);
            }
            let want = self.fill.min(left);
            self.buf.resize(want, 0);
            let n = self.file.read_at(&mut self.buf, self.pos)?;
            self.fetched += n as u64;
            self.buf.truncate(n);
            self.buf_at = self.pos;
            self.fill = (self.fill * 2).min(MAX_FILL);
            if n == 0 {
                return Ok(0);
            }
        }
        let at = (self.pos - self.buf_at) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.advance(n);
        Ok(n)
    }
}

impl Seek for RangeReader {
    /// Positions are relative to the range's start, as the tar reader counts.
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = (self.end - self.start) as i128;
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::Current(d) => (self.pos - self.start) as i128 + d as i128,
            SeekFrom::End(d) => len + d as i128,
        };
        let target = u64::try_from(target).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        if target as i128 > len {
            // The tar reader seeks past a member's bytes to the next header:
            // a member that runs past the end means the file is cut short.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "truncated: a member ends {} bytes past the end of the data",
                    target as i128 - len
                ),
            ));
        }
        self.pos = self.start.saturating_add(target);
        if self.pos < self.buf_at || self.pos > self.buf_at + self.buf.len() as u64 {
            // A jump: read little until reading is sequential again.
            self.fill = PROBE_FILL;
        }
        self.progress
            .fetch_max(self.pos.min(self.end), Ordering::Relaxed);
        Ok(target)
    }
}

/// Streams the members of one split in order. `want(index)` says whether
/// the member's bytes are needed (members of completed shards are passed
/// over unread). `emit` returns `false` to stop early.
pub(crate) fn stream_members(
    input: &SplitInput,
    labeler: &Labeler<'_>,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    emit: &mut dyn FnMut(Member) -> bool,
) -> Result<(), PreprocessError> {
    let mut next = 0u64;
    let mut push = |name: String, label, data| {
        let m = Member {
            index: next,
            name,
            label,
            data,
        };
        next += 1;
        emit(m)
    };
    match (input, labeler) {
        (SplitInput::Tar(path), Labeler::Train(_)) => {
            stream_train_tar(path, labeler, bytes_read, want, &mut push)
        }
        (SplitInput::Tar(path), Labeler::Val(_)) => {
            stream_flat_tar(path, bytes_read, want, &mut |name, data| {
                let label = labeler.val_label(&name);
                push(name, label, data)
            })
        }
        (SplitInput::Dir(dir), Labeler::Train(_)) => {
            let mut index = 0u64;
            for (wnid, class_dir) in list_subdirs(dir)? {
                for file in list_files(&class_dir)? {
                    let name = file_name_of(&file);
                    let label = labeler.train_label(&wnid);
                    let data = want(index).then(|| read_file(&file, &bytes_read));
                    index += 1;
                    if !push(name, label, data) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
        (SplitInput::Dir(dir), Labeler::Val(_)) => {
            for (index, file) in list_files(dir)?.into_iter().enumerate() {
                let name = file_name_of(&file);
                let label = labeler.val_label(&name);
                let data = want(index as u64).then(|| read_file(&file, &bytes_read));
                if !push(name, label, data) {
                    return Ok(());
                }
            }
            Ok(())
        }
    }
}

fn read_file(path: &Path, bytes_read: &AtomicU64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_MEMBER_BYTES {
        return Err(format!("file too large ({} bytes)", meta.len()));
    }
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    bytes_read.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(data)
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Last path component of a tar member name.
fn member_file_name(path_bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(path_bytes);
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn tar_err(file: &str, member: &str, source: std::io::Error) -> PreprocessError {
    PreprocessError::Tar {
        file: file.to_string(),
        member: member.to_string(),
        source,
    }
}

/// Reads an entry's bytes; a short read means the tar is truncated.
fn read_entry(
    entry: &mut impl Read,
    size: u64,
    file: &str,
    member: &str,
) -> Result<Vec<u8>, PreprocessError> {
    // `size` is the header's claim (up to MAX_MEMBER_BYTES): reserve no
    // more than a photo's worth before the bytes are there.
    let mut data = Vec::with_capacity(size.min(PREALLOCATE) as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| tar_err(file, member, e))?;
    if data.len() as u64 != size {
        let short = format!("member truncated: read {} of {size} bytes", data.len());
        return Err(tar_err(
            file,
            member,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, short),
        ));
    }
    Ok(data)
}

/// The most bytes reserved for a member before reading it (larger photos
/// grow the buffer as their bytes arrive).
const PREALLOCATE: u64 = 1 << 20;

/// A member's bytes; `None` when not wanted, `Err` when they could not be read.
type MemberBytes = Option<Result<Vec<u8>, String>>;

/// A tar member's file name and, when `wanted`, its bytes (or why they were
/// not read: an oversized member is reported, not loaded).
fn read_member<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    wanted: bool,
    file: &str,
) -> Result<(String, MemberBytes), PreprocessError> {
    let name = member_file_name(&entry.path_bytes());
    let size = entry.size();
    let data = if !wanted {
        None
    } else if size > MAX_MEMBER_BYTES {
        Some(Err(format!("member too large ({size} bytes)")))
    } else {
        Some(Ok(read_entry(entry, size, file, &name)?))
    };
    Ok((name, data))
}

/// The whole of the tar file `path`, for [`RangeReader`]s.
fn open_tar(path: &Path) -> Result<(Arc<File>, u64), PreprocessError> {
    let f = File::open(path).map_err(|e| PreprocessError::io(path, e))?;
    let len = f
        .metadata()
        .map_err(|e| PreprocessError::io(path, e))?
        .len();
    Ok((Arc::new(f), len))
}

fn stream_flat_tar(
    path: &Path,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    push: &mut dyn FnMut(String, MemberBytes) -> bool,
) -> Result<(), PreprocessError> {
    let file = path.display().to_string();
    let (f, len) = open_tar(path)?;
    let mut archive = tar::Archive::new(RangeReader::new(f, 0, len, bytes_read));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| tar_err(&file, "(start)", e))?;
    let mut index = 0u64;
    let mut last = String::from("(start of archive)");
    for entry in entries {
        let mut entry = entry.map_err(|e| tar_err(&file, &format!("after {last}"), e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let (name, data) = read_member(&mut entry, want(index), &file)?;
        last = name.clone();
        index += 1;
        if !push(name, data) {
            return Ok(());
        }
    }
    Ok(())
}

fn stream_train_tar(
    path: &Path,
    labeler: &Labeler<'_>,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    push: &mut PushTrain<'_>,
) -> Result<(), PreprocessError> {
    let file = path.display().to_string();
    let (f, len) = open_tar(path)?;
    let mut archive = tar::Archive::new(RangeReader::new(f.clone(), 0, len, bytes_read.clone()));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| tar_err(&file, "(start)", e))?;
    let mut index = 0u64;
    let mut last = String::from("(start of archive)");
    for outer in entries {
        let outer = outer.map_err(|e| tar_err(&file, &format!("after {last}"), e))?;
        if !outer.header().entry_type().is_file() {
            continue;
        }
        let outer_name = member_file_name(&outer.path_bytes());
        last = outer_name.clone();
        let Some(wnid) = outer_name.strip_suffix(".tar").map(str::to_string) else {
            // Not a class tar: report it, do not guess.
            index += 1;
            let reason = "not a per-class .tar in the train tar".to_string();
            if !push(outer_name, Err(reason), None) {
                return Ok(());
            }
            continue;
        };
        let inner_file = format!("{file}/{outer_name}");
        let label = labeler.train_label(&wnid);
        // The inner tar is read as its own seekable range of the file (cut
        // at the file's end: a truncated file shows as a truncated member, or
        // when the outer reader seeks past the inner tar).
        let inner_start = outer.raw_file_position();
        let inner_len = outer.size().min(len.saturating_sub(inner_start));
        let inner_range = RangeReader::new(f.clone(), inner_start, inner_len, bytes_read.clone());
        drop(outer);
        let mut inner = tar::Archive::new(inner_range);
        let inner_entries = inner
            .entries_with_seek()
            .map_err(|e| tar_err(&inner_file, "(start)", e))?;
        let mut inner_last = String::from("(start of archive)");
        for entry in inner_entries {
            let mut entry =
                entry.map_err(|e| tar_err(&inner_file, &format!("after {inner_last}"), e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let (name, data) = read_member(&mut entry, want(index), &inner_file)?;
            inner_last = name.clone();
            index += 1;
            if !push(name, label.clone(), data) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Sorted `(name, path)` of the subdirectories of `dir`.
pub(crate) fn list_subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, PreprocessError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| PreprocessError::io(dir, e))? {
        let e = e.map_err(|e| PreprocessError::io(dir, e))?;
        let path = e.path();
        if path.is_dir() {
            out.push((e.file_name().to_string_lossy().into_owned(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Sorted regular files of `dir`.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<PathBuf>, PreprocessError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| PreprocessError::io(dir, e))? {
        let e = e.map_err(|e| PreprocessError::io(dir, e))?;
        let path = e.path();
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Number of image files a directory input holds (for progress totals).
pub(crate) fn count_dir_members(input: &Path, train: bool) -> Result<u64, PreprocessError> {
    if train {
        let mut n = 0;
        for (_, d) in list_subdirs(input)? {
            n += list_files(&d)?.len() as u64;
        }
        Ok(n)
    } else {
        Ok(list_files(input)?.len() as u64)
    }
}

/// The sorted WNIDs of a train input, without a devkit: inner tar names of
/// the outer tar (found by walking its headers with seeks, without reading
/// the data) or subdirectory names.
pub fn list_train_classes(input: &SplitInput) -> Result<Vec<String>, PreprocessError> {
    let mut wnids = match input {
        SplitInput::Dir(dir) => list_subdirs(dir)?.into_iter().map(|(n, _)| n).collect(),
        SplitInput::Tar(path) => {
            let file = path.display().to_string();
            let f = File::open(path).map_err(|e| PreprocessError::io(path, e))?;
            let mut archive = tar::Archive::new(f);
            let mut wnids = Vec::new();
            let mut last = String::from("(start of archive)");
            for e in archive
                .entries_with_seek()
                .map_err(|e| tar_err(&file, "(start)", e))?
            {
                let e = e.map_err(|e| tar_err(&file, &format!("after {last}"), e))?;
                let name = member_file_name(&e.path_bytes());
                if e.header().entry_type().is_file() {
                    if let Some(w) = name.strip_suffix(".tar") {
                        wnids.push(w.to_string());
                    }
                }
                last = name;
            }
            wnids
        }
    };
    wnids.sort();
    wnids.dedup();
    Ok(wnids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat tar of `n` members of `size` bytes each (member `i` filled
    /// with byte `i`), and its path.
    fn flat_tar(dir: &Path, n: usize, size: usize) -> PathBuf {
        let path = dir.join("flat.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for i in 0..n {
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("m{i:02}.JPEG"), &vec![i as u8; size][..])
                .unwrap();
        }
        b.finish().unwrap();
        path
    }

    #[test]
    fn unwanted_members_are_skipped_unread() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 << 10;
        let path = flat_tar(dir.path(), 20, size);
        let (f, len) = open_tar(&path).unwrap();
        let progress = Arc::new(AtomicU64::new(0));
        let mut archive = tar::Archive::new(RangeReader::new(f, 0, len, progress.clone()));
        let mut got = Vec::new();
        for (i, e) in archive.entries_with_seek().unwrap().enumerate() {
            let mut e = e.unwrap();
            let (name, data) = read_member(&mut e, i == 7, "flat.tar").unwrap();
            got.push((name, data.map(Result::unwrap)));
        }
        assert_eq!(got.len(), 20);
        assert_eq!(got[7].0, "m07.JPEG");
        assert_eq!(got[7].1.as_deref(), Some(&vec![7u8; size][..]));
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, g)| (i == 7) == g.1.is_some()));
        let fetched = archive.into_inner().fetched;
        assert!(
            fetched < len / 4,
            "{fetched} of {len} bytes read for one member of 20"
        );
        // Progress counts the bytes passed over too.
        assert!(progress.load(Ordering::Relaxed) >= len - 1024);
    }

    #[test]
    fn wanted_members_are_read_in_sequence() {
        let dir = tempfile::tempdir().unwrap();
        // Members smaller and larger than the read-ahead.
        for size in [100, 5000, 3 << 20] {
            let path = flat_tar(dir.path(), 5, size);
            let mut names = Vec::new();
            stream_flat_tar(
                &path,
                Arc::new(AtomicU64::new(0)),
                &|_| true,
                &mut |name, data| {
                    let data = data.unwrap().unwrap();
                    let i = names.len();
                    assert_eq!(data, vec![i as u8; size], "{name}");
                    names.push(name);
                    true
                },
            )
            .unwrap();
            assert_eq!(names.len(), 5, "{size}");
        }
    }

    #[test]
    fn a_truncated_tar_is_an_error_even_when_nothing_is_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let path = flat_tar(dir.path(), 6, 10_000);
        let bytes = std::fs::read(&path).unwrap();
        // Cut inside the data of the fourth member.
        let cut = dir.path().join("cut.tar");
        std::fs::write(&cut, &bytes[..3 * 10_752 + 512 + 4000]).unwrap();
        for want in [false, true] {
            let mut seen = 0;
            let err = stream_flat_tar(&cut, Arc::new(AtomicU64::new(0)), &|_| want, &mut |_, _| {
                seen += 1;
                true
            })
            .unwrap_err();
            assert!(matches!(err, PreprocessError::Tar { .. }), "{err}");
            assert!(err.to_string().contains("cut.tar"), "{err}");
            // Unwanted, the cut member's header is passed on; its bytes are
            // found missing when they are skipped.
            assert_eq!(seen, if want { 3 } else { 4 }, "members before the cut");
        }
    }
}
