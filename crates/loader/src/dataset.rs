//! A split directory (`OUT/train` or `OUT/val`) of HDF5 shards, read without
//! the HDF5 library's global lock.
//!
//! At open time every shard is opened once through HDF5 to read its labels and
//! to look up the file offset of each image (one chunk per image, or one
//! contiguous block). After that, pixels are read with positioned reads
//! (`pread`) on a plain file handle, from any number of threads at once.
//! Shards stored any other way (compressed, several images per chunk) are read
//! through the HDF5 library instead, and [`Dataset::open`] says so once on
//! standard error.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5::dataset::Layout;
use hdf5::types::{IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};

use crate::LoaderError;

/// All shards of one split, in file-name order, addressed by a global image
/// index `0..len()` (shard 0's images first).
///
/// Cloning is cheap (the shards are shared).
#[derive(Clone)]
pub struct Dataset {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// `starts[s]` is the global index of shard `s`'s first image; one extra
    /// entry holds the total.
    starts: Vec<u64>,
    labels: Vec<i64>,
    height: usize,
    width: usize,
}

struct Shard {
    path: PathBuf,
    len: usize,
    source: Source,
}

enum Source {
    /// Uncompressed images at known byte offsets: lock-free positioned reads.
    Raw { file: File, offsets: Vec<u64> },
    /// Anything else: reads go through the HDF5 library (one global lock).
    Hdf5 {
        images: hdf5::Dataset,
        reason: String,
    },
}

/// What one shard holds, as found at open time.
struct OpenedShard {
    shard: Shard,
    labels: Vec<i64>,
    height: usize,
    width: usize,
}

impl Dataset {
    /// Opens every `shard-*.h5` file of `split_dir` (sorted by name), checks
    /// that each holds `images` `u8 [n,H,W,3]` and `labels` `[n]`, and looks up
    /// where each image lies in its file.
    ///
    /// Errors name the file: missing datasets, wrong types or shapes, shards
    /// whose image chunks are not all written, and files shorter than the
    /// image data they describe (truncated copies).
    pub fn open(split_dir: &Path) -> Result<Dataset, LoaderError> {
        let entries = std::fs::read_dir(split_dir)
            .map_err(|e| LoaderError::io(split_dir, "listing the split directory", e))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| LoaderError::io(split_dir, "listing the split directory", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("shard-") && name.ends_with(".h5") {
                paths.push(entry.path());
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(LoaderError::NoShards(split_dir.to_path_buf()));
        }

        let mut shards = Vec::with_capacity(paths.len());
        let mut starts = vec![0u64];
        let mut labels = Vec::new();
        let mut dims: Option<(usize, usize, PathBuf)> = None;
        for path in paths {
            let opened = open_shard(&path)?;
            if opened.shard.len > 0 {
                match &dims {
                    None => dims = Some((opened.height, opened.width, path.clone())),
                    Some((h, w, first)) if (*h, *w) != (opened.height, opened.width) => {
                        return Err(LoaderError::format(
                            &path,
                            format!(
                                "images are {}x{} but {} has {}x{}",
                                opened.height,
                                opened.width,
                                first.display(),
                                h,
                                w
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            labels.extend_from_slice(&opened.labels);
            starts.push(starts.last().unwrap() + opened.shard.len as u64);
            shards.push(opened.shard);
        }
        let (height, width) = match dims {
            Some((h, w, _)) => (h, w),
            None => {
                return Err(LoaderError::format(
                    split_dir,
                    "every shard in this directory is empty",
                ));
            }
        };

        let dataset = Dataset {
            inner: Arc::new(Inner {
                dir: split_dir.to_path_buf(),
                shards,
                starts,
                labels,
                height,
                width,
            }),
        };
        let fallback = dataset.fallback_shards();
        if let Some((first, reason)) = fallback.first() {
            eprintln!(
                "loader: {} of {} shard(s) in {} are not stored as one uncompressed chunk per image \
                 (e.g. {}: {}); they are read through the HDF5 library, whose global lock lets only \
                 one thread read at a time",
                fallback.len(),
                dataset.num_shards(),
                split_dir.display(),
                first.display(),
                reason
            );
        }
        Ok(dataset)
    }

    /// Number of images in all shards together.
    pub fn len(&self) -> usize {
        self.inner.labels.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.inner.labels.is_empty()
    }

    /// The split directory this dataset was opened from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Image height and width in pixels (256x256 for `cargo xtask preprocess` output).
    pub fn image_size(&self) -> (usize, usize) {
        (self.inner.height, self.inner.width)
    }

    /// Bytes of one stored image (`H * W * 3`).
    pub fn image_bytes(&self) -> usize {
        self.inner.height * self.inner.width * 3
    }

    /// The class label of image `index`.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn label(&self, index: u64) -> i64 {
        self.inner.labels[index as usize]
    }

    /// All labels, in global image order.
    pub fn labels(&self) -> &[i64] {
        &self.inner.labels
    }

    /// One more than the largest label: the number of classes as far as this
    /// split can tell (`classes.tsv` is the authority, see [`crate::read_classes`]).
    pub fn num_classes_hint(&self) -> usize {
        self.inner
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1)
    }

    /// Number of shard files.
    pub fn num_shards(&self) -> usize {
        self.inner.shards.len()
    }

    /// The shard files, in the order their images are numbered.
    pub fn shard_paths(&self) -> Vec<PathBuf> {
        self.inner.shards.iter().map(|s| s.path.clone()).collect()
    }

    /// The shards read through the HDF5 library rather than by positioned
    /// reads, each with the reason.
    pub fn fallback_shards(&self) -> Vec<(PathBuf, String)> {
        self.inner
            .shards
            .iter()
            .filter_map(|s| match &s.source {
                Source::Hdf5 { reason, .. } => Some((s.path.clone(), reason.clone())),
                Source::Raw { .. } => None,
            })
            .collect()
    }

    /// The shard holding global image `index` and the image's row within it.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn locate(&self, index: u64) -> (usize, usize) {
        assert!(
            (index as usize) < self.len(),
            "image index {index} out of range (dataset has {})",
            self.len()
        );
        let s = self.inner.starts.partition_point(|&start| start <= index) - 1;
        (s, (index - self.inner.starts[s]) as usize)
    }

    /// Reads the whole image `index` (`H*W*3` bytes, HWC RGB) into `buf`.
    pub fn read_image(&self, index: u64, buf: &mut [u8]) -> Result<(), LoaderError> {
        self.read_rows(index, 0, self.inner.height, buf)
    }

    /// Reads rows `first_row..first_row + rows` of image `index` (each row
    /// `W*3` bytes, HWC) into `buf[..rows*W*3]`.
    ///
    /// # Panics
    /// If the rows are out of range or `buf` is too short.
    pub fn read_rows(
        &self,
        index: u64,
        first_row: usize,
        rows: usize,
        buf: &mut [u8],
    ) -> Result<(), LoaderError> {
        assert!(first_row + rows <= self.inner.height, "rows out of range");
        let row_bytes = self.inner.width * 3;
        let buf = &mut buf[..rows * row_bytes];
        let (s, local) = self.locate(index);
        let shard = &self.inner.shards[s];
        match &shard.source {
            Source::Raw { file, offsets } => {
                let at = offsets[local] + (first_row * row_bytes) as u64;
                file.read_exact_at(buf, at).map_err(|e| {
                    LoaderError::io(
                        &shard.path,
                        format!("reading image {local} (global index {index})"),
                        e,
                    )
                })
            }
            Source::Hdf5 { images, .. } => {
                let block: ndarray::Array3<u8> = images
                    .read_slice(ndarray::s![local, first_row..first_row + rows, .., ..])
                    .map_err(|e| {
                        LoaderError::hdf5(
                            &shard.path,
                            format!("reading image {local} (global index {index})"),
                            e,
                        )
                    })?;
                match block.as_slice() {
                    Some(slice) if slice.len() == buf.len() => buf.copy_from_slice(slice),
                    _ => {
                        return Err(LoaderError::format(
                            &shard.path,
                            format!("image {local} came back with shape {:?}", block.shape()),
                        ))
                    }
                }
                Ok(())
            }
        }
    }

    /// The source member name of image `index` (from the shard's `names`
    /// dataset). Opens the shard through HDF5: meant for diagnostics, not for
    /// the hot path.
    pub fn name(&self, index: u64) -> Result<String, LoaderError> {
        let (s, local) = self.locate(index);
        let path = &self.inner.shards[s].path;
        let file = hdf5::File::open(path).map_err(|e| LoaderError::hdf5(path, "opening", e))?;
        let names = file
            .dataset("names")
            .map_err(|e| LoaderError::hdf5(path, "opening dataset `names`", e))?;
        if let Ok(v) = names.read_slice_1d::<VarLenUnicode, _>(local..local + 1) {
            return Ok(v[0].as_str().to_owned());
        }
        let v = names
            .read_slice_1d::<VarLenAscii, _>(local..local + 1)
            .map_err(|e| LoaderError::hdf5(path, format!("reading name {local}"), e))?;
        Ok(v[0].as_str().to_owned())
    }
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("dir", &self.inner.dir)
            .field("shards", &self.inner.shards.len())
            .field("images", &self.len())
            .field("image_size", &(self.inner.height, self.inner.width))
            .finish()
    }
}

fn open_shard(path: &Path) -> Result<OpenedShard, LoaderError> {
    let file = hdf5::File::open(path).map_err(|e| LoaderError::hdf5(path, "opening shard", e))?;
    let images = file
        .dataset("images")
        .map_err(|e| LoaderError::hdf5(path, "opening dataset `images`", e))?;
    let shape = images.shape();
    if shape.len() != 4 || shape[3] != 3 {
        return Err(LoaderError::format(
            path,
            format!("`images` has shape {shape:?}, expected [n, H, W, 3]"),
        ));
    }
    let (n, height, width) = (shape[0], shape[1], shape[2]);
    let dtype = images
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| LoaderError::hdf5(path, "reading the type of `images`", e))?;
    if dtype != TypeDescriptor::Unsigned(IntSize::U1) {
        return Err(LoaderError::format(
            path,
            format!("`images` has element type {dtype}, expected u8"),
        ));
    }

    let labels: Vec<i64> = file
        .dataset("labels")
        .and_then(|d| d.read_raw::<i64>())
        .map_err(|e| LoaderError::hdf5(path, "reading dataset `labels`", e))?;
    if labels.len() != n {
        return Err(LoaderError::format(
            path,
            format!("{} labels for {n} images", labels.len()),
        ));
    }
    if let Some(pos) = labels.iter().position(|&l| l < 0) {
        return Err(LoaderError::format(
            path,
            format!("label {} of image {pos} is negative", labels[pos]),
        ));
    }

    let file_len = std::fs::metadata(path)
        .map_err(|e| LoaderError::io(path, "reading file size", e))?
        .len();
    let image_bytes = (height * width * 3) as u64;
    let source = match images.layout() {
        Layout::Chunked => {
            let chunk = images.chunk().unwrap_or_default();
            let filters = images.filters();
            if chunk != [1, height, width, 3] {
                Source::Hdf5 {
                    images,
                    reason: format!("chunk shape {chunk:?}"),
                }
            } else if !filters.is_empty() {
                Source::Hdf5 {
                    images,
                    reason: format!("filters {filters:?}"),
                }
            } else {
                let offsets = chunk_offsets(path, &images, n, image_bytes, file_len)?;
                raw_source(path, offsets)?
            }
        }
        Layout::Contiguous => match images.offset() {
            Some(base) => {
                let end = base + n as u64 * image_bytes;
                if end > file_len {
                    return Err(truncated(path, end, file_len));
                }
                raw_source(
                    path,
                    (0..n as u64).map(|i| base + i * image_bytes).collect(),
                )?
            }
            None if n == 0 => raw_source(path, Vec::new())?,
            None => {
                return Err(LoaderError::format(
                    path,
                    "`images` was never written (no storage allocated)",
                ))
            }
        },
        other => Source::Hdf5 {
            images,
            reason: format!("{other:?} layout"),
        },
    };
    Ok(OpenedShard {
        shard: Shard {
            path: path.to_path_buf(),
            len: n,
            source,
        },
        labels,
        height,
        width,
    })
}

fn raw_source(path: &Path, offsets: Vec<u64>) -> Result<Source, LoaderError> {
    let file =
        File::open(path).map_err(|e| LoaderError::io(path, "opening for positioned reads", e))?;
    Ok(Source::Raw { file, offsets })
}

fn truncated(path: &Path, needed: u64, file_len: u64) -> LoaderError {
    LoaderError::format(
        path,
        format!(
            "truncated: image data reaches byte {needed} but the file is only {file_len} bytes"
        ),
    )
}

/// The byte offset of each image's chunk, checked: every image has exactly
/// one unfiltered chunk of the full image size that lies inside the file.
fn chunk_offsets(
    path: &Path,
    images: &hdf5::Dataset,
    n: usize,
    image_bytes: u64,
    file_len: u64,
) -> Result<Vec<u64>, LoaderError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let written = images.num_chunks().unwrap_or(0);
    if written != n {
        return Err(LoaderError::format(
            path,
            format!("only {written} of {n} image chunks are written (incomplete or damaged shard)"),
        ));
    }
    let mut offsets = vec![u64::MAX; n];
    for k in 0..n {
        let info = images.chunk_info(k).ok_or_else(|| {
            LoaderError::format(path, format!("cannot read the location of image chunk {k}"))
        })?;
        let row = info.offset[0] as usize;
        if row >= n || offsets[row] != u64::MAX || info.offset[1..].iter().any(|&o| o != 0) {
            return Err(LoaderError::format(
                path,
                format!("image chunk {k} has a bad position {:?}", info.offset),
            ));
        }
        if info.size != image_bytes || info.filter_mask != 0 {
            return Err(LoaderError::format(
                path,
                format!("image chunk {k} holds {} bytes (filter mask {}), expected {image_bytes} raw bytes", info.size, info.filter_mask),
            ));
        }
        if info.addr + info.size > file_len {
            return Err(truncated(path, info.addr + info.size, file_len));
        }
        offsets[row] = info.addr;
    }
    Ok(offsets)
}
