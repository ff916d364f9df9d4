//! Opening shards: where each image lies, so that reading one is a single
//! positioned read; and reading back what a finished shard records.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hdf5::dataset::Layout;
use hdf5::types::{IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};

use super::index::{IndexedImages, ShardIndex};
use super::names::*;
use super::{
    decode_jpeg_into, decode_jpeg_region_into, DecodedRegion, JpegDecodeOptions, ShardSums,
};
use crate::ShardError;

/// Where the pixels of a shard's images come from.
pub enum ImageSource {
    /// Uncompressed images at known byte offsets: lock-free positioned reads.
    Raw {
        /// The shard, open for positioned reads.
        file: File,
        /// File offset of each image.
        offsets: Vec<u64>,
    },
    /// JPEG streams at `base + offsets[i] .. base + offsets[i + 1]`:
    /// lock-free positioned reads, decoded by the reading thread.
    Jpeg {
        /// The shard, open for positioned reads.
        file: File,
        /// File offset of the `jpeg` dataset.
        base: u64,
        /// Start of each stream in it, plus the end.
        offsets: Vec<u64>,
    },
    /// Anything else: reads go through the HDF5 library (one global lock).
    Hdf5 {
        /// The `images` dataset.
        images: hdf5::Dataset,
        /// Why positioned reads cannot serve this shard.
        reason: String,
    },
}

/// What one shard holds, as found at open time.
pub struct OpenedShard {
    /// Number of images.
    pub len: usize,
    /// Class index of each image.
    pub labels: Vec<i64>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Where the pixels come from.
    pub source: ImageSource,
}

thread_local! {
    /// Per-thread buffers for JPEG reads: the compressed stream, and the
    /// whole decoded image when only some rows are wanted.
    static JPEG_SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl ImageSource {
    /// Reads rows `first_row..first_row + rows` of image `local` (HWC,
    /// `width*3` bytes a row) into `buf` (exactly that long).
    pub fn read_rows(
        &self,
        path: &Path,
        (local, global): (usize, u64),
        (height, width): (usize, usize),
        first_row: usize,
        rows: usize,
        buf: &mut [u8],
    ) -> Result<(), ShardError> {
        let row_bytes = width * 3;
        debug_assert_eq!(buf.len(), rows * row_bytes);
        let what = || format!("reading image {local} (global index {global})");
        match self {
            ImageSource::Raw { file, offsets } => {
                let at = offsets[local] + (first_row * row_bytes) as u64;
                file.read_exact_at(buf, at)
                    .map_err(|e| ShardError::io(path, what(), e))
            }
            ImageSource::Jpeg { .. } => JPEG_SCRATCH.with(|scratch| {
                let (stream, whole) = &mut *scratch.borrow_mut();
                self.read_jpeg_stream(path, (local, global), stream)?;
                let bad = jpeg_error(path, local, global);
                if first_row == 0 && rows == height {
                    decode_jpeg_into(stream, width, height, buf).map_err(bad)
                } else {
                    whole.resize(height * row_bytes, 0);
                    decode_jpeg_into(stream, width, height, whole).map_err(bad)?;
                    buf.copy_from_slice(&whole[first_row * row_bytes..][..rows * row_bytes]);
                    Ok(())
                }
            }),
            ImageSource::Hdf5 { images, .. } => {
                let block: ndarray::Array3<u8> = images
                    .read_slice(ndarray::s![local, first_row..first_row + rows, .., ..])
                    .map_err(|e| ShardError::hdf5(path, what(), e))?;
                match block.as_slice() {
                    Some(slice) if slice.len() == buf.len() => buf.copy_from_slice(slice),
                    _ => {
                        return Err(ShardError::format(
                            path,
                            format!("image {local} came back with shape {:?}", block.shape()),
                        ))
                    }
                }
                Ok(())
            }
        }
    }

    /// Reads the part of image `local` that holds rows `rows` and columns
    /// `cols` into `buf` (at least `rows.len() * width * 3` bytes), as the
    /// returned [`DecodedRegion`] lays it out. Raw and HDF5 shards give the
    /// rows whole; JPEG shards decode only what the region needs
    /// ([`decode_jpeg_region_into`], with `options`), so that with default
    /// options the region's pixels are those of [`read_rows`](Self::read_rows).
    #[allow(clippy::too_many_arguments)]
    pub fn read_region(
        &self,
        path: &Path,
        (local, global): (usize, u64),
        (height, width): (usize, usize),
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        options: JpegDecodeOptions,
        buf: &mut [u8],
    ) -> Result<DecodedRegion, ShardError> {
        if !self.is_encoded() {
            let n = rows.len();
            let buf = &mut buf[..n * width * 3];
            self.read_rows(path, (local, global), (height, width), rows.start, n, buf)?;
            return Ok(DecodedRegion {
                first_row: rows.start,
                rows: n,
                first_col: 0,
                cols: width,
            });
        };
        JPEG_SCRATCH.with(|scratch| {
            let (stream, _) = &mut *scratch.borrow_mut();
            self.read_jpeg_stream(path, (local, global), stream)?;
            decode_jpeg_region_into(stream, (width, height), rows, cols, options, buf)
                .map_err(jpeg_error(path, local, global))
        })
    }

    /// The JPEG stream of image `local` into `stream` (resized to fit), or
    /// `false` when the shard does not hold JPEG streams.
    pub fn read_jpeg_stream(
        &self,
        path: &Path,
        (local, global): (usize, u64),
        stream: &mut Vec<u8>,
    ) -> Result<bool, ShardError> {
        let ImageSource::Jpeg {
            file,
            base,
            offsets,
        } = self
        else {
            return Ok(false);
        };
        let (start, end) = (offsets[local], offsets[local + 1]);
        stream.resize((end - start) as usize, 0);
        file.read_exact_at(stream, base + start).map_err(|e| {
            ShardError::io(
                path,
                format!("reading image {local} (global index {global})"),
                e,
            )
        })?;
        Ok(true)
    }

    /// Bytes the shard stores for its `len` images (pixels, or JPEG streams).
    pub fn stored_bytes(&self, len: usize, image_bytes: usize) -> u64 {
        match self {
            ImageSource::Jpeg { offsets, .. } => offsets[len] - offsets[0],
            _ => (len * image_bytes) as u64,
        }
    }

    /// True when every read of a whole image costs a decode.
    pub fn is_encoded(&self) -> bool {
        matches!(self, ImageSource::Jpeg { .. })
    }
}

/// The error of image `local` (global index `global`) of `path` whose JPEG
/// stream does not decode.
fn jpeg_error(
    path: &Path,
    local: usize,
    global: u64,
) -> impl FnOnce(crate::JpegError) -> ShardError + '_ {
    move |source| ShardError::Jpeg {
        path: path.to_owned(),
        what: format!("image {local} (global index {global})"),
        source,
    }
}

/// Opens one shard from the index in its user block (one positioned read);
/// `Ok(None)` when it has none, and [`open_shard_hdf5`] opens it instead.
/// Makes no HDF5 call, so any number of threads can run it at once.
///
/// Errors name the file: a damaged index, and files shorter than the image
/// data the index describes (truncated copies).
pub fn open_shard_indexed(path: &Path) -> Result<Option<OpenedShard>, ShardError> {
    let file = File::open(path).map_err(|e| ShardError::io(path, "opening shard", e))?;
    match ShardIndex::read(path, &file)? {
        Some(index) => open_indexed(path, file, index).map(Some),
        None => Ok(None),
    }
}

/// A shard as its index describes it, checked against the file's length.
fn open_indexed(path: &Path, file: File, index: ShardIndex) -> Result<OpenedShard, ShardError> {
    let file_len = file
        .metadata()
        .map_err(|e| ShardError::io(path, "reading file size", e))?
        .len();
    let (height, width) = (index.height as usize, index.width as usize);
    let len = index.labels.len();
    let labels = index.labels.into_iter().map(i64::from).collect();
    let source = match index.images {
        IndexedImages::Raw { offsets } => {
            // Shape and offsets are the file's claims: a sum past u64 is damage.
            let image_bytes = u64::from(index.height)
                .checked_mul(u64::from(index.width))
                .and_then(|p| p.checked_mul(3));
            let end = offsets
                .iter()
                .try_fold(0u64, |end, &o| Some(end.max(o.checked_add(image_bytes?)?)))
                .ok_or_else(|| beyond_u64(path))?;
            if end > file_len {
                return Err(truncated(path, end, file_len));
            }
            ImageSource::Raw { file, offsets }
        }
        IndexedImages::Jpeg { base, offsets } => {
            if offsets.first() != Some(&0) || offsets.windows(2).any(|w| w[0] > w[1]) {
                return Err(ShardError::format(
                    path,
                    "shard index: JPEG offsets are not an increasing list from 0",
                ));
            }
            let end = base
                .checked_add(offsets.last().copied().unwrap_or(0))
                .ok_or_else(|| beyond_u64(path))?;
            if end > file_len {
                return Err(truncated(path, end, file_len));
            }
            ImageSource::Jpeg {
                file,
                base,
                offsets,
            }
        }
    };
    Ok(OpenedShard {
        len,
        labels,
        height,
        width,
        source,
    })
}

/// Opens one shard through HDF5: checks its datasets and finds each image's
/// bytes (shards without an index, see [`super::index`]).
pub fn open_shard_hdf5(path: &Path) -> Result<OpenedShard, ShardError> {
    let file = hdf5::File::open(path).map_err(|e| ShardError::hdf5(path, "opening shard", e))?;
    let file_len = std::fs::metadata(path)
        .map_err(|e| ShardError::io(path, "reading file size", e))?
        .len();
    let labels: Vec<i64> = file
        .dataset(LABELS)
        .and_then(|d| d.read_raw::<i64>())
        .map_err(|e| ShardError::hdf5(path, "reading dataset `labels`", e))?;
    if let Some(pos) = labels.iter().position(|&l| l < 0) {
        return Err(ShardError::format(
            path,
            format!("label {} of image {pos} is negative", labels[pos]),
        ));
    }
    let opened = if file.link_exists(JPEG) {
        open_jpeg(path, &file, labels, file_len)?
    } else {
        open_raw(path, &file, labels, file_len)?
    };
    if opened.labels.len() != opened.len {
        return Err(ShardError::format(
            path,
            format!("{} labels for {} images", opened.labels.len(), opened.len),
        ));
    }
    Ok(opened)
}

fn open_jpeg(
    path: &Path,
    file: &hdf5::File,
    labels: Vec<i64>,
    file_len: u64,
) -> Result<OpenedShard, ShardError> {
    let jpeg = file
        .dataset(JPEG)
        .map_err(|e| ShardError::hdf5(path, "opening dataset `jpeg`", e))?;
    let shape: Vec<u64> = jpeg
        .attr(JPEG_IMAGE_SHAPE)
        .and_then(|a| a.read_raw::<u64>())
        .map_err(|e| ShardError::hdf5(path, "reading `jpeg` attribute `image_shape`", e))?;
    if shape.len() != 3 || shape[2] != 3 {
        return Err(ShardError::format(
            path,
            format!("`jpeg` image_shape is {shape:?}, expected [H, W, 3]"),
        ));
    }
    let offsets: Vec<u64> = file
        .dataset(JPEG_OFFSETS)
        .and_then(|d| d.read_raw::<u64>())
        .map_err(|e| ShardError::hdf5(path, "reading dataset `jpeg_offsets`", e))?;
    let total = jpeg.size() as u64;
    if offsets.first() != Some(&0)
        || offsets.last() != Some(&total)
        || offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(ShardError::format(
            path,
            format!(
                "`jpeg_offsets` is not an increasing list from 0 to the {total} bytes of `jpeg`"
            ),
        ));
    }
    let base = match (jpeg.layout(), jpeg.offset()) {
        _ if total == 0 => 0,
        (Layout::Contiguous, Some(base)) => base,
        (layout, _) => {
            return Err(ShardError::format(
                path,
                format!("`jpeg` must be one contiguous block, found a {layout:?} layout without a file offset"),
            ))
        }
    };
    if base + total > file_len {
        return Err(truncated(path, base + total, file_len));
    }
    let plain =
        File::open(path).map_err(|e| ShardError::io(path, "opening for positioned reads", e))?;
    Ok(OpenedShard {
        len: offsets.len() - 1,
        labels,
        height: shape[0] as usize,
        width: shape[1] as usize,
        source: ImageSource::Jpeg {
            file: plain,
            base,
            offsets,
        },
    })
}

fn open_raw(
    path: &Path,
    file: &hdf5::File,
    labels: Vec<i64>,
    file_len: u64,
) -> Result<OpenedShard, ShardError> {
    let images = file
        .dataset(IMAGES)
        .map_err(|e| ShardError::hdf5(path, "opening dataset `images` (or `jpeg`)", e))?;
    let shape = images.shape();
    if shape.len() != 4 || shape[3] != 3 {
        return Err(ShardError::format(
            path,
            format!("`images` has shape {shape:?}, expected [n, H, W, 3]"),
        ));
    }
    let (n, height, width) = (shape[0], shape[1], shape[2]);
    let dtype = images
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| ShardError::hdf5(path, "reading the type of `images`", e))?;
    if dtype != TypeDescriptor::Unsigned(IntSize::U1) {
        return Err(ShardError::format(
            path,
            format!("`images` has element type {dtype}, expected u8"),
        ));
    }
    let image_bytes = (height * width * 3) as u64;
    let source = match images.layout() {
        Layout::Chunked => {
            let chunk = images.chunk().unwrap_or_default();
            let filters = images.filters();
            if chunk != [1, height, width, 3] {
                ImageSource::Hdf5 {
                    images,
                    reason: format!("chunk shape {chunk:?}"),
                }
            } else if !filters.is_empty() {
                ImageSource::Hdf5 {
                    images,
                    reason: format!("filters {filters:?}"),
                }
            } else {
                let offsets = match indexed_offsets(path, file, &images, n, image_bytes)? {
                    Some(offsets) => offsets,
                    None => walk_chunk_offsets(path, &images, n, image_bytes, file.userblock())?,
                };
                if let Some(end) = offsets.iter().map(|&o| o + image_bytes).max() {
                    if end > file_len {
                        return Err(truncated(path, end, file_len));
                    }
                }
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
                return Err(ShardError::format(
                    path,
                    "`images` was never written (no storage allocated)",
                ))
            }
        },
        other => ImageSource::Hdf5 {
            images,
            reason: format!("{other:?} layout"),
        },
    };
    Ok(OpenedShard {
        len: n,
        labels,
        height,
        width,
        source,
    })
}

fn raw_source(path: &Path, offsets: Vec<u64>) -> Result<ImageSource, ShardError> {
    let file =
        File::open(path).map_err(|e| ShardError::io(path, "opening for positioned reads", e))?;
    Ok(ImageSource::Raw { file, offsets })
}

fn beyond_u64(path: &Path) -> ShardError {
    ShardError::format(
        path,
        "shard index: image data would end past byte 2^64 (damaged index)",
    )
}

fn truncated(path: &Path, needed: u64, file_len: u64) -> ShardError {
    ShardError::format(
        path,
        format!(
            "truncated: image data reaches byte {needed} but the file is only {file_len} bytes"
        ),
    )
}

/// The offsets a finished shard recorded in `image_offsets`, spot-checked
/// against the chunk index (the first chunk the index lists, and the chunk
/// count when cheap); `None` when the shard has no such index.
fn indexed_offsets(
    path: &Path,
    file: &hdf5::File,
    images: &hdf5::Dataset,
    n: usize,
    image_bytes: u64,
) -> Result<Option<Vec<u64>>, ShardError> {
    if !file.link_exists(IMAGE_OFFSETS) {
        return Ok(None);
    }
    let offsets: Vec<u64> = file
        .dataset(IMAGE_OFFSETS)
        .and_then(|d| d.read_raw::<u64>())
        .map_err(|e| ShardError::hdf5(path, "reading dataset `image_offsets`", e))?;
    if offsets.len() != n {
        return Err(ShardError::format(
            path,
            format!(
                "`image_offsets` lists {} images, `images` holds {n}",
                offsets.len()
            ),
        ));
    }
    if n > 0 {
        let info = images.chunk_info(0).ok_or_else(|| {
            ShardError::format(
                path,
                "only 0 image chunks are written (incomplete or damaged shard)",
            )
        })?;
        let row = info.offset[0] as usize;
        let addr = file.userblock() + info.addr;
        if row >= n || offsets[row] != addr || info.size != image_bytes || info.filter_mask != 0 {
            return Err(ShardError::format(
                path,
                format!(
                    "`image_offsets` disagrees with the chunk index (chunk of row {row} at byte {}, index says {:?})",
                    addr,
                    offsets.get(row)
                ),
            ));
        }
    }
    Ok(Some(offsets))
}

/// The byte offset of each image's chunk, found by walking the chunk index
/// (quadratic in images per shard with HDF5 1.10: for shards written
/// without `image_offsets`), checked: every image has exactly one unfiltered
/// chunk of the full image size. Chunk addresses count from the end of the
/// file's `user_block`; the offsets returned count from its start.
fn walk_chunk_offsets(
    path: &Path,
    images: &hdf5::Dataset,
    n: usize,
    image_bytes: u64,
    user_block: u64,
) -> Result<Vec<u64>, ShardError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let written = images.num_chunks().unwrap_or(0);
    if written != n {
        return Err(ShardError::format(
            path,
            format!("only {written} of {n} image chunks are written (incomplete or damaged shard)"),
        ));
    }
    let mut offsets = vec![u64::MAX; n];
    for k in 0..n {
        let info = images.chunk_info(k).ok_or_else(|| {
            ShardError::format(path, format!("cannot read the location of image chunk {k}"))
        })?;
        let row = info.offset[0] as usize;
        if row >= n || offsets[row] != u64::MAX || info.offset[1..].iter().any(|&o| o != 0) {
            return Err(ShardError::format(
                path,
                format!("image chunk {k} has a bad position {:?}", info.offset),
            ));
        }
        if info.size != image_bytes || info.filter_mask != 0 {
            return Err(ShardError::format(
                path,
                format!(
                    "image chunk {k} holds {} bytes (filter mask {}), expected {image_bytes} raw bytes",
                    info.size, info.filter_mask
                ),
            ));
        }
        offsets[row] = user_block + info.addr;
    }
    Ok(offsets)
}

/// What a finished shard records besides its pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRecord {
    /// The shard file.
    pub path: PathBuf,
    /// Number of images.
    pub images: u64,
    /// Inputs that could not be used: (member name, reason).
    pub skipped: Vec<(String, String)>,
    /// Images kept although their decoder warned: (member name, warning).
    pub warnings: Vec<(String, String)>,
    /// The statistics sums (train shards only).
    pub sums: Option<ShardSums>,
}

/// Reads a finished shard's image count, skipped inputs, warnings and
/// statistics sums.
pub fn read_shard_record(path: &Path) -> Result<ShardRecord, ShardError> {
    let herr = |what: &str| {
        let what = what.to_string();
        move |e: hdf5::Error| ShardError::hdf5(path, what, e)
    };
    let f = hdf5::File::open(path).map_err(herr("opening shard"))?;
    let images = f
        .dataset(LABELS)
        .map_err(herr("opening dataset `labels`"))?
        .size() as u64;
    let strings = |name: &str| -> Result<Vec<String>, ShardError> {
        let ds = f.dataset(name).map_err(herr(name))?;
        if let Ok(v) = ds.read_raw::<VarLenUnicode>() {
            return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
        }
        let v = ds.read_raw::<VarLenAscii>().map_err(herr(name))?;
        Ok(v.iter().map(|s| s.as_str().to_string()).collect())
    };
    let skipped = strings(SKIPPED_NAMES)?
        .into_iter()
        .zip(strings(SKIPPED_REASONS)?)
        .collect();
    let warnings = if f.link_exists(WARNING_NAMES) {
        strings(WARNING_NAMES)?
            .into_iter()
            .zip(strings(WARNING_TEXTS)?)
            .collect()
    } else {
        Vec::new()
    };
    let sums = if f.link_exists(STATS_PIXEL_SUM) {
        let u64s = |name: &str| -> Result<Vec<u64>, ShardError> {
            f.dataset(name)
                .and_then(|d| d.read_raw::<u64>())
                .map_err(herr(name))
        };
        let pixel_sum = u64s(STATS_PIXEL_SUM)?;
        let rgb = u64s(STATS_RGB_SUM)?;
        let outer = u64s(STATS_RGB_OUTER_SUM)?;
        let count = f
            .dataset(STATS_IMAGE_COUNT)
            .and_then(|d| d.read_scalar::<u64>())
            .map_err(herr(STATS_IMAGE_COUNT))?;
        if pixel_sum.len() % 3 != 0 || rgb.len() != 3 || outer.len() != 9 {
            return Err(ShardError::format(
                path,
                "statistics datasets have wrong shapes",
            ));
        }
        Some(ShardSums {
            pixel_sum,
            rgb_sum: [rgb[0], rgb[1], rgb[2]],
            rgb_outer_sum: std::array::from_fn(|k| outer[k]),
            count,
        })
    } else {
        None
    };
    Ok(ShardRecord {
        path: path.to_path_buf(),
        images,
        skipped,
        warnings,
        sums,
    })
}

/// The source member name of image `local` of a shard (through HDF5).
pub fn read_name(path: &Path, local: usize) -> Result<String, ShardError> {
    let file = hdf5::File::open(path).map_err(|e| ShardError::hdf5(path, "opening", e))?;
    let names = file
        .dataset(NAMES)
        .map_err(|e| ShardError::hdf5(path, "opening dataset `names`", e))?;
    if let Ok(v) = names.read_slice_1d::<VarLenUnicode, _>(local..local + 1) {
        return Ok(v[0].as_str().to_owned());
    }
    let v = names
        .read_slice_1d::<VarLenAscii, _>(local..local + 1)
        .map_err(|e| ShardError::hdf5(path, format!("reading name {local}"), e))?;
    Ok(v[0].as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pattern_image;
    use crate::{Encoding, ShardWriter};

    const SIDE: usize = 16;

    fn shard(dir: &Path, encoding: Encoding) -> PathBuf {
        let path = dir.join("shard-00000.h5");
        let mut w = ShardWriter::create(&path, SIDE, encoding, 8).unwrap();
        let mut stored = Vec::new();
        for i in 0..5 {
            encoding
                .encode(&pattern_image(i, SIDE), SIDE, &mut stored)
                .unwrap();
            w.push(&stored, i as i64, "x").unwrap();
        }
        w.finish(None).unwrap();
        path
    }

    /// Replaces the shard's index with `change(index)`, with a valid CRC.
    fn rewrite_index(path: &Path, change: impl FnOnce(&mut ShardIndex)) {
        let file = File::options().read(true).write(true).open(path).unwrap();
        let mut index = ShardIndex::read(path, &file).unwrap().unwrap();
        change(&mut index);
        file.write_all_at(&index.encode(), 0).unwrap();
    }

    fn open_err(path: &Path) -> String {
        match open_shard_indexed(path) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} opened", path.display()),
        }
    }

    #[test]
    fn a_raw_shard_cut_inside_its_images_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = shard(dir.path(), Encoding::Raw);
        let file = File::open(&path).unwrap();
        let Some(IndexedImages::Raw { offsets }) =
            ShardIndex::read(&path, &file).unwrap().map(|i| i.images)
        else {
            panic!("a raw index")
        };
        let end = offsets.iter().max().unwrap() + (SIDE * SIDE * 3) as u64;
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(end - 10)
            .unwrap();
        let err = open_err(&path);
        assert!(
            err.contains("truncated") && err.contains(&end.to_string()),
            "{err}"
        );
    }

    #[test]
    fn jpeg_offsets_that_go_back_or_past_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = shard(dir.path(), Encoding::jpeg());
        let opened = open_shard_indexed(&path).unwrap().unwrap();
        assert_eq!((opened.len, opened.height, opened.width), (5, SIDE, SIDE));
        assert_eq!(opened.labels, [0, 1, 2, 3, 4]);

        rewrite_index(&path, |index| {
            if let IndexedImages::Jpeg { offsets, .. } = &mut index.images {
                offsets.swap(1, 2);
            }
        });
        let err = open_err(&path);
        assert!(err.contains("not an increasing list"), "{err}");

        let path = shard(dir.path(), Encoding::jpeg());
        rewrite_index(&path, |index| {
            if let IndexedImages::Jpeg { offsets, .. } = &mut index.images {
                offsets[0] = 1;
            }
        });
        let err = open_err(&path);
        assert!(err.contains("not an increasing list"), "{err}");

        let path = shard(dir.path(), Encoding::jpeg());
        let len = std::fs::metadata(&path).unwrap().len();
        rewrite_index(&path, |index| {
            if let IndexedImages::Jpeg { offsets, .. } = &mut index.images {
                *offsets.last_mut().unwrap() = len;
            }
        });
        let err = open_err(&path);
        assert!(err.contains("truncated"), "{err}");
    }

    /// Found by fuzzing: offsets, a shape or a JPEG base near 2^64 under a
    /// valid CRC overflowed the check against the file's length (a panic
    /// with overflow checks; with wrapping arithmetic, a bound that passed).
    #[test]
    fn offsets_and_shapes_near_2_64_are_refused_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        type Change = fn(&mut ShardIndex);
        let cases: [(Encoding, Change); 3] = [
            (Encoding::Raw, |index| {
                if let IndexedImages::Raw { offsets } = &mut index.images {
                    offsets[2] = u64::MAX - 10;
                }
            }),
            (Encoding::Raw, |index| {
                index.height = u32::MAX;
                index.width = u32::MAX;
            }),
            (Encoding::jpeg(), |index| {
                if let IndexedImages::Jpeg { base, .. } = &mut index.images {
                    *base = u64::MAX - 10;
                }
            }),
        ];
        for (encoding, change) in cases {
            let path = shard(dir.path(), encoding);
            rewrite_index(&path, change);
            let err = open_err(&path);
            assert!(
                err.contains("shard-00000.h5") && err.contains("past byte 2^64"),
                "{err}"
            );
        }
    }
}
