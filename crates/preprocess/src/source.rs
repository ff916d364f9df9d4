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
use shards::Split;

/// Largest member accepted (bigger ones are skipped unread).
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Where a split's images come from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitInput {
    /// A tar file (train: outer tar of inner class tars; val: flat tar).
    Tar(PathBuf),
    /// An extracted tree (train: `DIR/<wnid>/*`; val: `DIR/*`).
    Dir(PathBuf),
    /// Kaggle's zip: the images under `prefix` (train: `<wnid>/*` below it;
    /// val: flat).
    KaggleZip {
        /// The zip file.
        zip: PathBuf,
        /// `.../ILSVRC/Data/CLS-LOC/train/` or `.../val/`.
        prefix: String,
    },
    /// Hugging Face tar.gz archives, read in this order.
    HfTars(Vec<PathBuf>),
    /// Hugging Face parquet files.
    HfParquet(Vec<PathBuf>),
}

/// How members get their class index.
pub(crate) struct Labeler<'a> {
    /// The split being read.
    pub split: Split,
    /// Class index by WNID.
    pub wnids: &'a HashMap<String, usize>,
    /// Number of classes (labels given as integers must be below it).
    pub classes: usize,
    /// WNID by class index.
    pub class_wnids: &'a [String],
    /// The devkit: val labels from the file name's number.
    pub devkit: Option<&'a Devkit>,
    /// Kaggle: val WNIDs by image id.
    pub val_wnids: Option<&'a HashMap<String, String>>,
}

impl Labeler<'_> {
    pub(crate) fn is_train(&self) -> bool {
        self.split == Split::Train
    }

    /// The label of a member of class `wnid`.
    pub(crate) fn wnid_label(&self, wnid: &str) -> Result<i64, String> {
        self.wnids
            .get(wnid)
            .map(|&i| i as i64)
            .ok_or_else(|| format!("class {wnid} is not in the class list"))
    }

    /// The label given as a class index (Hugging Face's parquet).
    pub(crate) fn index_label(&self, label: Option<i64>) -> Result<i64, String> {
        match label {
            Some(l) if (0..self.classes as i64).contains(&l) => Ok(l),
            Some(l) => Err(format!(
                "label {l} is not a class index (0 to {})",
                self.classes - 1
            )),
            None => Err("the row has no label".into()),
        }
    }

    /// A val member's label from its name: Kaggle's solution, or the
    /// devkit's ground truth.
    fn val_label(&self, name: &str) -> Result<i64, String> {
        if let Some(table) = self.val_wnids {
            let id = crate::kaggle::image_id(name);
            return match table.get(id) {
                Some(w) => self.wnid_label(w),
                None => Err(format!("{id} has no row in the val solution")),
            };
        }
        let dk = self.devkit.ok_or("no devkit for the val labels")?;
        let n = parse_val_number(name)
            .ok_or_else(|| "name is not ILSVRC2012_val_NNNNNNNN.*".to_string())?;
        dk.val_label(n)
            .map(|l| l as i64)
            .ok_or_else(|| format!("no ground truth for validation image {n}"))
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

/// Streams the members of one split in the canonical order: train by
/// class (WNID) then file name, val by file name, whatever the layout, so
/// that the same photos give the same shards from every layout.
/// `want(index)` says whether the member's bytes are needed (members of
/// completed shards are passed over unread). `emit` returns `false` to stop
/// early.
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
    match input {
        SplitInput::Tar(path) if labeler.is_train() => {
            stream_train_tar(path, labeler, bytes_read, want, &mut push)
        }
        SplitInput::Tar(path) => stream_flat_tar(path, bytes_read, want, &mut |name, data| {
            let label = labeler.val_label(&name);
            push(name, label, data)
        }),
        SplitInput::Dir(dir) if labeler.is_train() => {
            let mut index = 0u64;
            for (wnid, class_dir) in list_subdirs(dir)? {
                for file in list_files(&class_dir)? {
                    let name = file_name_of(&file);
                    let label = labeler.wnid_label(&wnid);
                    let data = want(index).then(|| read_file(&file, &bytes_read));
                    index += 1;
                    if !push(name, label, data) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
        SplitInput::Dir(dir) => {
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
        SplitInput::KaggleZip { zip, prefix } => {
            stream_zip(zip, prefix, labeler, &bytes_read, want, &mut push)
        }
        SplitInput::HfTars(archives) => {
            crate::hf_tar::stream_hf_tars(archives, labeler, bytes_read, want, &mut push)
        }
        SplitInput::HfParquet(files) => {
            crate::hf_parquet::stream_parquet(files, labeler, &bytes_read, want, &mut push)
        }
    }
}

/// Kaggle's zip: its images under `prefix`, in the canonical order.
fn stream_zip(
    path: &PathBuf,
    prefix: &str,
    labeler: &Labeler<'_>,
    bytes_read: &AtomicU64,
    want: &dyn Fn(u64) -> bool,
    push: &mut PushTrain<'_>,
) -> Result<(), PreprocessError> {
    let mut archive = crate::kaggle::open_zip(path)?;
    let zip_len = std::fs::metadata(path)
        .map_err(|e| PreprocessError::io(path, e))?
        .len();
    let members = crate::kaggle::zip_members(&mut archive, prefix);
    for (index, m) in members.into_iter().enumerate() {
        let label = if labeler.is_train() {
            labeler.wnid_label(&m.wnid)
        } else {
            labeler.val_label(&m.name)
        };
        let data = want(index as u64).then(|| {
            if m.size > MAX_MEMBER_BYTES {
                return Err(format!("member too large ({} bytes)", m.size));
            }
            read_zip_member(&mut archive, m.index, zip_len, bytes_read)
        });
        if !push(m.name, label, data) {
            return Ok(());
        }
    }
    Ok(())
}

/// Bytes reserved for a member before its bytes arrive: a photo's worth.
/// Larger members grow their buffer as their bytes arrive, so that a
/// header claiming more than the file holds costs nothing.
const RESERVE: u64 = 1 << 20;

/// A zip member's bytes: stored ones as they are, deflated ones inflated
/// with few calls (faster than the zip crate's streaming reader) into a
/// buffer that grows with the bytes inflated, never past the size the
/// member claims; either checked against the member's CRC-32. Other methods
/// go through the zip crate. A member claiming more compressed bytes than
/// the zip holds is refused unread.
fn read_zip_member(
    archive: &mut zip::ZipArchive<File>,
    index: usize,
    zip_len: u64,
    bytes_read: &AtomicU64,
) -> Result<Vec<u8>, String> {
    let mut raw = archive.by_index_raw(index).map_err(|e| e.to_string())?;
    let (method, size, crc) = (raw.compression(), raw.size(), raw.crc32());
    let packed_len = raw.compressed_size();
    if packed_len > zip_len {
        return Err(format!(
            "the member claims {packed_len} compressed bytes, more than the zip's {zip_len}"
        ));
    }
    bytes_read.fetch_add(packed_len, Ordering::Relaxed);
    let data = match method {
        zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated => {
            let mut packed = Vec::with_capacity(packed_len as usize);
            raw.read_to_end(&mut packed).map_err(|e| e.to_string())?;
            if method == zip::CompressionMethod::Stored {
                packed
            } else {
                inflate_member(&packed, size)?
            }
        }
        _ => {
            drop(raw);
            let mut entry = archive.by_index(index).map_err(|e| e.to_string())?;
            let mut data = Vec::with_capacity(size.min(RESERVE) as usize);
            entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
            return Ok(data);
        }
    };
    if crc32fast::hash(&data) != crc {
        return Err("the bytes do not match the member's CRC-32".into());
    }
    Ok(data)
}

/// Inflates a deflated zip member that claims `size` bytes: in one call
/// into a buffer of its size up to [`RESERVE`], past that into a buffer
/// doubled as the inflated bytes fill it; an error unless the stream ends
/// at exactly `size` bytes.
fn inflate_member(packed: &[u8], size: u64) -> Result<Vec<u8>, String> {
    let corrupt = |got: usize| format!("corrupt deflate data: {got} of {size} bytes");
    // One byte more than claimed, to see a stream that runs longer.
    let want = size.saturating_add(1);
    let mut out = Vec::with_capacity(want.min(RESERVE) as usize);
    let mut inflate = flate2::Decompress::new(false);
    loop {
        let consumed = usize::try_from(inflate.total_in()).unwrap_or(usize::MAX);
        let status = inflate
            .decompress_vec(
                packed.get(consumed..).unwrap_or_default(),
                &mut out,
                flate2::FlushDecompress::Finish,
            )
            .map_err(|e| format!("corrupt deflate data: {e}"))?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        let len = out.len() as u64;
        if out.len() < out.capacity() || len >= want {
            // The input ran out before the stream ended, or the stream
            // runs past the size claimed.
            return Err(corrupt(out.len()));
        }
        let more = (out.len() as u64).max(RESERVE).min(want - len);
        out.reserve_exact(more as usize);
    }
    if out.len() as u64 != size {
        return Err(corrupt(out.len()));
    }
    Ok(out)
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

/// A member's bytes; `None` when not wanted, `Err` when they could not be read.
pub(crate) type MemberBytes = Option<Result<Vec<u8>, String>>;

/// The whole of the tar file `path`, for [`RangeReader`]s.
fn open_tar(path: &Path) -> Result<(Arc<File>, u64), PreprocessError> {
    let f = File::open(path).map_err(|e| PreprocessError::io(path, e))?;
    let len = f
        .metadata()
        .map_err(|e| PreprocessError::io(path, e))?
        .len();
    Ok((Arc::new(f), len))
}

/// A file member of a tar: its name and where its bytes are in the file.
struct TarMember {
    name: String,
    offset: u64,
    size: u64,
}

/// The file members of the tar in `start..start + len` of `f`, sorted by
/// name, found by walking the headers with seeks (the data is not read).
/// When the walk stops at a damaged header or a member cut by the end of
/// the data, the members before it are returned with the error.
fn index_tar(
    f: &Arc<File>,
    start: u64,
    len: u64,
    file: &str,
) -> (Vec<TarMember>, Option<PreprocessError>) {
    let range = RangeReader::new(f.clone(), start, len, Arc::new(AtomicU64::new(0)));
    let mut archive = tar::Archive::new(range);
    let mut members = Vec::new();
    let entries = match archive.entries_with_seek() {
        Ok(e) => e,
        Err(e) => return (members, Some(tar_err(file, "(start)", e))),
    };
    let mut last = String::from("(start of archive)");
    let mut error = None;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                error = Some(tar_err(file, &format!("after {last}"), e));
                break;
            }
        };
        let name = member_file_name(&entry.path_bytes());
        last = name.clone();
        if entry.header().entry_type().is_file() {
            members.push(TarMember {
                name,
                offset: start + entry.raw_file_position(),
                size: entry.size(),
            });
        }
    }
    // A member whose bytes run past the end was cut: it is not read.
    if let Some(m) = members.last() {
        if m.offset + m.size > start + len {
            let m = members.pop().expect("a last member");
            let short = format!(
                "truncated: the member ends {} bytes past the end of the data",
                m.offset + m.size - start - len
            );
            error = Some(tar_err(
                file,
                &m.name,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, short),
            ));
        }
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    (members, error)
}

/// The bytes of a member, when wanted: read with one positioned read.
fn read_tar_member(
    f: &File,
    m: &TarMember,
    wanted: bool,
    file: &str,
    bytes_read: &AtomicU64,
) -> Result<MemberBytes, PreprocessError> {
    // Progress counts the bytes passed over too (and the header).
    bytes_read.fetch_add(m.size + 512, Ordering::Relaxed);
    if !wanted {
        return Ok(None);
    }
    if m.size > MAX_MEMBER_BYTES {
        return Ok(Some(Err(format!("member too large ({} bytes)", m.size))));
    }
    let mut data = vec![0u8; m.size as usize];
    f.read_exact_at(&mut data, m.offset)
        .map_err(|e| tar_err(file, &m.name, e))?;
    Ok(Some(Ok(data)))
}

/// The flat tar, its members in name order; a cut or damaged tar is an
/// error after the members before the damage.
fn stream_flat_tar(
    path: &Path,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    push: &mut dyn FnMut(String, MemberBytes) -> bool,
) -> Result<(), PreprocessError> {
    let file = path.display().to_string();
    let (f, len) = open_tar(path)?;
    let (members, error) = index_tar(&f, 0, len, &file);
    for (index, m) in members.iter().enumerate() {
        let data = read_tar_member(&f, m, want(index as u64), &file, &bytes_read)?;
        if !push(m.name.clone(), data) {
            return Ok(());
        }
    }
    error.map_or(Ok(()), Err)
}

/// The train tar: its class tars in WNID order, each one's members in name
/// order; a cut or damaged tar is an error after the classes before the
/// damage.
fn stream_train_tar(
    path: &Path,
    labeler: &Labeler<'_>,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    push: &mut PushTrain<'_>,
) -> Result<(), PreprocessError> {
    let file = path.display().to_string();
    let (f, len) = open_tar(path)?;
    let (outer, outer_error) = index_tar(&f, 0, len, &file);
    let mut index = 0u64;
    for class in &outer {
        let Some(wnid) = class.name.strip_suffix(".tar") else {
            // Not a class tar: report it, do not guess.
            index += 1;
            bytes_read.fetch_add(class.size + 512, Ordering::Relaxed);
            let reason = "not a per-class .tar in the train tar".to_string();
            if !push(class.name.clone(), Err(reason), None) {
                return Ok(());
            }
            continue;
        };
        let inner_file = format!("{file}/{}", class.name);
        let label = labeler.wnid_label(wnid);
        let (members, error) = index_tar(&f, class.offset, class.size, &inner_file);
        for m in &members {
            let data = read_tar_member(&f, m, want(index), &inner_file, &bytes_read)?;
            index += 1;
            if !push(m.name.clone(), label.clone(), data) {
                return Ok(());
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
    }
    outer_error.map_or(Ok(()), Err)
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
/// the data), subdirectory names, or the class directories of Kaggle's
/// zip. Hugging Face's layouts list no classes here: their class list is
/// the one they ship (or the carried ILSVRC-2012 list).
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
        SplitInput::KaggleZip { zip, prefix } => {
            let mut archive = crate::kaggle::open_zip(zip)?;
            crate::kaggle::zip_members(&mut archive, prefix)
                .into_iter()
                .map(|m| m.wnid)
                .collect()
        }
        SplitInput::HfTars(_) | SplitInput::HfParquet(_) => Vec::new(),
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
        // The header walk reads little of the file.
        let progress = Arc::new(AtomicU64::new(0));
        let mut archive = tar::Archive::new(RangeReader::new(f.clone(), 0, len, progress.clone()));
        let n = archive.entries_with_seek().unwrap().count();
        assert_eq!(n, 20);
        let fetched = archive.into_inner().fetched;
        assert!(
            fetched < len / 4,
            "{fetched} of {len} bytes read to list 20 members"
        );
        let mut got = Vec::new();
        let bytes_read = Arc::new(AtomicU64::new(0));
        stream_flat_tar(&path, bytes_read.clone(), &|i| i == 7, &mut |name, data| {
            got.push((name, data.map(Result::unwrap)));
            true
        })
        .unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got[7].0, "m07.JPEG");
        assert_eq!(got[7].1.as_deref(), Some(&vec![7u8; size][..]));
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, g)| (i == 7) == g.1.is_some()));
        // Progress counts the bytes passed over too.
        assert!(bytes_read.load(Ordering::Relaxed) >= len - 1024);
    }

    #[test]
    fn members_come_in_name_order_whatever_the_tar_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unsorted.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for name in ["b_10.JPEG", "b_9.JPEG", "a_2.JPEG"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(name.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, name.as_bytes()).unwrap();
        }
        b.finish().unwrap();
        let mut names = Vec::new();
        stream_flat_tar(
            &path,
            Arc::new(AtomicU64::new(0)),
            &|_| true,
            &mut |name, data| {
                assert_eq!(data.unwrap().unwrap(), name.as_bytes());
                names.push(name);
                true
            },
        )
        .unwrap();
        assert_eq!(names, ["a_2.JPEG", "b_10.JPEG", "b_9.JPEG"]);
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
            // The members before the cut one are passed on, then the error.
            assert_eq!(seen, 3, "members before the cut");
        }
    }
}
