//! A split directory (`OUT/train` or `OUT/val`) of HDF5 shards, read without
//! the HDF5 library's global lock.
//!
//! At open time every shard's index is read: its labels and the file offset
//! of each image, with one positioned read from the shard's user block (see
//! [`shards`]; shards without one are opened through HDF5), by a pool
//! of threads so that a cold disk serves many reads at once. After that,
//! pixels (raw) or JPEG streams are read with positioned reads (`pread`) on a
//! plain file handle, from any number of threads at once; JPEG streams are
//! decoded by the reading thread. Shards stored any other way (compressed,
//! several images per chunk) are read through the HDF5 library instead:
//! [`Dataset::fallback_shards`] lists them, and
//! [`Dataset::slow_read_warning`] says so in a sentence for a program to show.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shards::{DecodedRegion, ImageSource, JpegDecodeOptions, OpenedShard, ShardError};

use crate::loader::panic_message;
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
    /// Some shard holds JPEG streams.
    encoded: bool,
}

struct Shard {
    path: PathBuf,
    source: ImageSource,
}

/// Threads that open shards: reading indexes is bound by the latency of small
/// reads, not by the CPU, so more threads than cores keep a disk busy.
const OPEN_THREADS: usize = 16;

/// Opens every shard in `paths`; results in the same order. Indexes are
/// read in parallel; shards without one are then opened through HDF5 on this
/// thread (HDF5 calls hold one global lock, which many threads only fight
/// over). A panic in an opening thread is a [`LoaderError::WorkerPanic`].
fn open_all(paths: &[PathBuf]) -> Result<Vec<Result<OpenedShard, LoaderError>>, LoaderError> {
    let next = AtomicUsize::new(0);
    let mut indexed: Vec<(usize, Result<Option<OpenedShard>, ShardError>)> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..OPEN_THREADS.min(paths.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(path) = paths.get(i) else { break };
                            mine.push((i, shards::open_shard_indexed(path)));
                        }
                        mine
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(paths.len());
            for worker in workers {
                let mine = worker.join().map_err(|payload| LoaderError::WorkerPanic {
                    during: "opening shards".into(),
                    message: panic_message(payload.as_ref()),
                })?;
                all.extend(mine);
            }
            Ok::<_, LoaderError>(all)
        })?;
    indexed.sort_unstable_by_key(|(i, _)| *i);
    Ok(indexed
        .into_iter()
        .map(|(i, r)| {
            Ok(match r? {
                Some(opened) => opened,
                None => shards::open_shard_hdf5(&paths[i])?,
            })
        })
        .collect())
}

impl Dataset {
    /// Opens every shard of `split_dir` (named as
    /// [`shards::shard_file_name`] says, in id order), checks that each holds
    /// its images (raw or JPEG, see [`shards`]) and `labels` `[n]`,
    /// and reads where each image lies in its file.
    ///
    /// Errors name the file: missing datasets, wrong types or shapes, shards
    /// whose image chunks are not all written, and files shorter than the
    /// image data they describe (truncated copies).
    pub fn open(split_dir: &Path) -> Result<Dataset, LoaderError> {
        let paths: Vec<PathBuf> = shards::list_shards(split_dir)?
            .into_iter()
            .map(|(_, path)| path)
            .collect();
        if paths.is_empty() {
            return Err(LoaderError::NoShards(split_dir.to_path_buf()));
        }

        let mut shards = Vec::with_capacity(paths.len());
        let mut starts = vec![0u64];
        let mut labels = Vec::new();
        let mut dims: Option<(usize, usize, PathBuf)> = None;
        for (path, opened) in paths.iter().cloned().zip(open_all(&paths)?) {
            let opened = opened?;
            if opened.len > 0 {
                match &dims {
                    None => dims = Some((opened.height, opened.width, path.clone())),
                    Some((h, w, first)) if (*h, *w) != (opened.height, opened.width) => {
                        return Err(LoaderError::MixedImageSizes {
                            path,
                            height: opened.height,
                            width: opened.width,
                            first: first.clone(),
                            first_height: *h,
                            first_width: *w,
                        });
                    }
                    Some(_) => {}
                }
            }
            labels.extend_from_slice(&opened.labels);
            starts.push(starts.last().unwrap() + opened.len as u64);
            shards.push(Shard {
                path,
                source: opened.source,
            });
        }
        let (height, width) = match dims {
            Some((h, w, _)) => (h, w),
            None => {
                return Err(LoaderError::AllShardsEmpty(split_dir.to_path_buf()));
            }
        };

        let encoded = shards.iter().any(|s| s.source.is_encoded());
        let dataset = Dataset {
            inner: Arc::new(Inner {
                encoded,
                dir: split_dir.to_path_buf(),
                shards,
                starts,
                labels,
                height,
                width,
            }),
        };
        Ok(dataset)
    }

    /// A warning for the user when some shards are read through the HDF5
    /// library (see [`fallback_shards`](Self::fallback_shards)), whose
    /// global lock lets one thread read at a time; `None` when every shard
    /// is read without it.
    pub fn slow_read_warning(&self) -> Option<String> {
        let fallback = self.fallback_shards();
        let (first, reason) = fallback.first()?;
        Some(format!(
            "{} of {} shard(s) in {} are not stored as one uncompressed chunk per image \
             (e.g. {}: {}); they are read through the HDF5 library, whose global lock lets only \
             one thread read at a time",
            fallback.len(),
            self.num_shards(),
            self.inner.dir.display(),
            first.display(),
            reason
        ))
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
                ImageSource::Hdf5 { reason, .. } => Some((s.path.clone(), reason.clone())),
                _ => None,
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
        shard.source.read_rows(
            &shard.path,
            (local, index),
            (self.inner.height, self.inner.width),
            first_row,
            rows,
            buf,
        )?;
        Ok(())
    }

    /// Reads the part of image `index` that holds rows `rows` and columns
    /// `cols` into `buf` (at least `rows.len() * W * 3` bytes), laid out as
    /// the returned region says (rows of `cols` pixels from column
    /// `first_col`). Raw shards give whole rows; JPEG shards decode only
    /// what the region needs, with `options` (the default gives the pixels
    /// of a full decode).
    pub fn read_region(
        &self,
        index: u64,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        options: JpegDecodeOptions,
        buf: &mut [u8],
    ) -> Result<DecodedRegion, LoaderError> {
        let (s, local) = self.locate(index);
        let shard = &self.inner.shards[s];
        Ok(shard.source.read_region(
            &shard.path,
            (local, index),
            (self.inner.height, self.inner.width),
            rows,
            cols,
            options,
            buf,
        )?)
    }

    /// The stored JPEG stream of image `index` into `stream` (resized to
    /// fit), or `false` when its shard holds raw pixels: for measuring the
    /// decoder alone.
    pub fn read_jpeg_stream(&self, index: u64, stream: &mut Vec<u8>) -> Result<bool, LoaderError> {
        let (s, local) = self.locate(index);
        let shard = &self.inner.shards[s];
        Ok(shard
            .source
            .read_jpeg_stream(&shard.path, (local, index), stream)?)
    }

    /// Bytes the shards store for all images: `len() * image_bytes()` for
    /// raw shards, the total length of the JPEG streams otherwise.
    pub fn stored_image_bytes(&self) -> u64 {
        let starts = &self.inner.starts;
        self.inner
            .shards
            .iter()
            .enumerate()
            .map(|(s, shard)| {
                let len = (starts[s + 1] - starts[s]) as usize;
                shard.source.stored_bytes(len, self.image_bytes())
            })
            .sum()
    }

    /// True when the shards hold encoded (JPEG) images: every read decodes,
    /// [`read_rows`](Self::read_rows) the whole image, and
    /// [`read_region`](Self::read_region) only what the region needs.
    pub fn is_encoded(&self) -> bool {
        self.inner.encoded
    }

    /// The source member name of image `index` (from the shard's `names`
    /// dataset). Opens the shard through HDF5: meant for diagnostics, not for
    /// the hot path.
    pub fn name(&self, index: u64) -> Result<String, LoaderError> {
        let (s, local) = self.locate(index);
        Ok(shards::read_name(&self.inner.shards[s].path, local)?)
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
