//! Writing shards and `stats.h5`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView4};

use super::index::{user_block_size, IndexedImages, ShardIndex};
use super::names::*;
use crate::layout::jpeg_spill_path;
use crate::{AtomicFile, Encoding, ShardError, ShardRecord, ShardSums, Stats};

/// Bytes copied at a time from the JPEG spill file into the shard.
const COPY_BLOCK: usize = 4 << 20;
/// Hash slots of the raw images' chunk cache, which holds no bytes: HDF5's
/// default count (the slots cost nothing when the cache is empty).
const CHUNK_CACHE_SLOTS: usize = 521;

/// A shard being written: created as `shard-XXXXX.h5.tmp`, filled image by
/// image, and renamed to its final name by [`finish`](Self::finish), which
/// also writes the open-time index into the file's user block (see
/// the format module; reserved at creation for `capacity` images).
///
/// Raw images go straight into the chunked `images` dataset. JPEG streams
/// go to a plain spill file next to it (`....h5.jpeg.tmp`) and are copied
/// into one contiguous `jpeg` dataset when the shard is finished, so that
/// memory stays flat however many shards are open.
pub struct ShardWriter {
    file: hdf5::File,
    /// The shard's final path and the temporary one it is written under.
    target: AtomicFile,
    side: usize,
    /// Bytes reserved at the start of the file for the index.
    user_block: u64,
    /// Always `Some` until `finish` or `abandon` takes it.
    store: Option<Store>,
    labels: Vec<i64>,
    names: Vec<VarLenUnicode>,
    skipped: Vec<(String, String)>,
    warnings: Vec<(String, String)>,
}

enum Store {
    Raw {
        images: hdf5::Dataset,
        capacity: usize,
    },
    Jpeg {
        quality: u8,
        spill_path: PathBuf,
        spill: BufWriter<File>,
        /// Start of each stream in the spill file, plus the end.
        offsets: Vec<u64>,
    },
}

fn vlu(s: &str) -> VarLenUnicode {
    // Member names come from tar headers and file names; HDF5 strings cannot
    // hold NUL.
    let clean: String = s.chars().filter(|&c| c != '\0').collect();
    clean.parse().expect("a string without NUL converts")
}

impl ShardWriter {
    /// Starts `final_path` + `.tmp` ([`AtomicFile::single_writer`]) for `side x side` RGB images stored as
    /// `encoding`, with room for `capacity` images before the raw dataset
    /// has to grow.
    pub fn create(
        final_path: &Path,
        side: usize,
        encoding: Encoding,
        capacity: usize,
    ) -> Result<Self, ShardError> {
        let target = AtomicFile::single_writer(final_path);
        let tmp = target.tmp();
        let herr = |e: hdf5::Error| ShardError::hdf5(tmp, "creating shard", e);
        let user_block = user_block_size(capacity);
        let file = hdf5::File::with_options()
            .with_fcpl(|p| p.userblock(user_block))
            .create(tmp)
            .map_err(herr)?;
        let store = match encoding {
            Encoding::Raw => {
                let capacity = capacity.max(1);
                let images = file
                    .new_dataset::<u8>()
                    .chunk((1, side, side, 3))
                    // No chunk cache: every write is one whole chunk, written
                    // once, so HDF5 writes it from the caller's buffer
                    // instead of copying it into a cached chunk that it
                    // allocates, fills and frees again.
                    .chunk_cache(CHUNK_CACHE_SLOTS, 0, 1.0)
                    .shape((capacity.., side, side, 3))
                    .create(IMAGES)
                    .map_err(herr)?;
                Store::Raw { images, capacity }
            }
            Encoding::Jpeg { quality } => {
                let spill_path = jpeg_spill_path(final_path);
                let spill = File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&spill_path)
                    .map_err(|e| ShardError::io(&spill_path, "creating the JPEG spill file", e))?;
                Store::Jpeg {
                    quality,
                    spill_path,
                    spill: BufWriter::with_capacity(1 << 20, spill),
                    offsets: vec![0],
                }
            }
        };
        Ok(ShardWriter {
            file,
            target,
            side,
            user_block,
            store: Some(store),
            labels: Vec::new(),
            names: Vec::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// The encoding this shard stores.
    pub fn encoding(&self) -> Encoding {
        match self.store {
            Some(Store::Jpeg { quality, .. }) => Encoding::Jpeg { quality },
            _ => Encoding::Raw,
        }
    }

    /// Images pushed so far.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True before the first image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends one image as [`Encoding::encode`] gave it for this shard's
    /// encoding: `side*side*3` pixels (raw) or a JPEG stream.
    pub fn push(&mut self, stored: &[u8], label: i64, name: &str) -> Result<(), ShardError> {
        let n = self.labels.len();
        let side = self.side;
        match self.store.as_mut().expect("store present until finish") {
            Store::Raw { images, capacity } => {
                assert_eq!(stored.len(), side * side * 3, "raw image of the wrong size");
                let herr = |e| ShardError::hdf5(self.target.tmp(), format!("writing image {n}"), e);
                if n == *capacity {
                    *capacity *= 2;
                    images.resize((*capacity, side, side, 3)).map_err(herr)?;
                }
                let view = ArrayView4::from_shape((1, side, side, 3), stored).expect("image shape");
                images
                    .write_slice(view, s![n..n + 1, .., .., ..])
                    .map_err(herr)?;
            }
            Store::Jpeg {
                spill,
                spill_path,
                offsets,
                ..
            } => {
                spill.write_all(stored).map_err(|e| {
                    ShardError::io(&*spill_path, format!("spilling JPEG stream {n}"), e)
                })?;
                offsets.push(offsets[n] + stored.len() as u64);
            }
        }
        self.labels.push(label);
        self.names.push(vlu(name));
        Ok(())
    }

    /// Records an input of this shard that could not be used.
    pub fn push_skipped(&mut self, name: &str, reason: &str) {
        self.skipped.push((name.to_owned(), reason.to_owned()));
    }

    /// Records a warning about an image written to this shard (kept
    /// although its decoder warned about it).
    pub fn push_warning(&mut self, name: &str, warning: &str) {
        self.warnings.push((name.to_owned(), warning.to_owned()));
    }

    /// Writes the index, labels, names, skipped records and (train shards)
    /// the statistics sums, closes the file and renames it to its final name.
    /// Returns what the finished shard records, as
    /// [`read_shard_record`](super::read_shard_record) would read it back.
    pub fn finish(mut self, sums: Option<ShardSums>) -> Result<ShardRecord, ShardError> {
        let tmp = self.target.tmp().to_owned();
        let herr = |what: &str| {
            let tmp = tmp.clone();
            let what = what.to_string();
            move |e: hdf5::Error| ShardError::hdf5(&tmp, what, e)
        };
        let n = self.labels.len();
        let side = self.side;
        let store = self.store.take().expect("store present until finish");
        let f = &self.file;
        let images = self.close_images(store, n)?;
        // The index, when every label fits it and it fits the user block.
        let index = self
            .labels
            .iter()
            .map(|&l| u32::try_from(l).ok())
            .collect::<Option<Vec<u32>>>()
            .map(|labels| ShardIndex {
                height: side as u32,
                width: side as u32,
                labels,
                images,
            })
            .filter(|index| index.encoded_len() as u64 <= self.user_block);
        f.new_dataset_builder()
            .with_data(&Array1::from(std::mem::take(&mut self.labels)))
            .create(LABELS)
            .map_err(herr("writing labels"))?;
        let skipped = std::mem::take(&mut self.skipped);
        for (name, values) in [
            (NAMES, std::mem::take(&mut self.names)),
            (SKIPPED_NAMES, skipped.iter().map(|(m, _)| vlu(m)).collect()),
            (
                SKIPPED_REASONS,
                skipped.iter().map(|(_, r)| vlu(r)).collect(),
            ),
        ] {
            f.new_dataset_builder()
                .with_data(&Array1::from(values))
                .create(name)
                .map_err(herr(name))?;
        }
        // Only when there are any: a shard without warnings is as before.
        let warnings = std::mem::take(&mut self.warnings);
        if !warnings.is_empty() {
            for (name, values) in [
                (
                    WARNING_NAMES,
                    warnings.iter().map(|(m, _)| vlu(m)).collect(),
                ),
                (
                    WARNING_TEXTS,
                    warnings.iter().map(|(_, w)| vlu(w)).collect(),
                ),
            ] {
                let values: Vec<VarLenUnicode> = values;
                f.new_dataset_builder()
                    .with_data(&Array1::from(values))
                    .create(name)
                    .map_err(herr(name))?;
            }
        }
        if let Some(sums) = &sums {
            if sums.pixel_sum.len() != side * side * 3 {
                return Err(ShardError::format(
                    &tmp,
                    format!(
                        "statistics sums of {} values for {side}x{side} images",
                        sums.pixel_sum.len()
                    ),
                ));
            }
            write_sums(f, side, sums).map_err(herr("writing statistics sums"))?;
        }
        let ShardWriter { file, target, .. } = self;
        file.close().map_err(herr("closing"))?;
        if let Some(index) = index {
            let plain = File::options()
                .write(true)
                .open(&tmp)
                .map_err(|e| ShardError::io(&tmp, "opening to write the shard index", e))?;
            plain
                .write_all_at(&index.encode(), 0)
                .map_err(|e| ShardError::io(&tmp, "writing the shard index", e))?;
        }
        let final_path = target.path().to_owned();
        target
            .commit()
            .map_err(|e| ShardError::io(e.path, "renaming the finished shard", e.source))?;
        Ok(ShardRecord {
            path: final_path,
            images: n as u64,
            skipped,
            warnings,
            sums,
        })
    }

    /// Writes what the image store holds into the file (raw: sizes the
    /// `images` dataset and records each chunk's offset; JPEG: copies the
    /// spilled streams into one contiguous `jpeg` dataset) and returns where
    /// each image lies, for the index.
    fn close_images(&self, store: Store, n: usize) -> Result<IndexedImages, ShardError> {
        let tmp = self.target.tmp().to_owned();
        let herr = |what: &str| {
            let tmp = tmp.clone();
            let what = what.to_string();
            move |e: hdf5::Error| ShardError::hdf5(&tmp, what, e)
        };
        let side = self.side;
        let f = &self.file;
        let images = match store {
            Store::Raw { images, .. } => {
                images
                    .resize((n, side, side, 3))
                    .map_err(herr("resizing images"))?;
                f.flush().map_err(herr("flushing images"))?;
                let offsets = chunk_offsets(&tmp, &images, n, side, self.user_block)?;
                f.new_dataset_builder()
                    .with_data(&Array1::from(offsets.clone()))
                    .create(IMAGE_OFFSETS)
                    .map_err(herr("writing image_offsets"))?;
                IndexedImages::Raw { offsets }
            }
            Store::Jpeg {
                spill,
                spill_path,
                offsets,
                ..
            } => {
                let spill = spill
                    .into_inner()
                    .map_err(|e| ShardError::io(&spill_path, "flushing", e.into_error()))?;
                let total = *offsets.last().expect("offsets start with 0") as usize;
                let jpeg = f
                    .new_dataset::<u8>()
                    .shape(total)
                    .create(JPEG)
                    .map_err(herr("creating jpeg"))?;
                let mut block = vec![0u8; COPY_BLOCK.min(total)];
                let mut at = 0usize;
                while at < total {
                    let len = COPY_BLOCK.min(total - at);
                    spill
                        .read_exact_at(&mut block[..len], at as u64)
                        .map_err(|e| ShardError::io(&spill_path, "reading back", e))?;
                    jpeg.write_slice(ArrayView1::from(&block[..len]), s![at..at + len])
                        .map_err(herr("writing jpeg"))?;
                    at += len;
                }
                jpeg.new_attr_builder()
                    .with_data(&Array1::from(vec![side as u64, side as u64, 3]))
                    .create(JPEG_IMAGE_SHAPE)
                    .map_err(herr("writing the image_shape attribute"))?;
                f.new_dataset_builder()
                    .with_data(&Array1::from(offsets.clone()))
                    .create(JPEG_OFFSETS)
                    .map_err(herr("writing jpeg_offsets"))?;
                drop(spill);
                let _ = std::fs::remove_file(&spill_path);
                let base = match (total, jpeg.offset()) {
                    (0, _) => 0,
                    (_, Some(base)) => base,
                    (_, None) => {
                        return Err(ShardError::format(
                            &tmp,
                            "the `jpeg` dataset has no file offset after writing",
                        ))
                    }
                };
                IndexedImages::Jpeg { base, offsets }
            }
        };
        Ok(images)
    }

    /// Deletes the unfinished shard (and its spill file).
    pub fn abandon(self) {
        let ShardWriter {
            target,
            file,
            store,
            ..
        } = self;
        if let Some(Store::Jpeg { spill_path, .. }) = &store {
            let _ = std::fs::remove_file(spill_path);
        }
        drop(store);
        drop(file);
        // Not committed: dropping it removes the temporary file.
        drop(target);
    }
}

fn write_sums(f: &hdf5::File, side: usize, sums: &ShardSums) -> hdf5::Result<()> {
    // Per-pixel sums of a shard fit in u32 up to 16,843,009 images (255 each),
    // half the bytes of u64 (0.75 MB per 256x256 shard) at no CPU cost;
    // readers take any integer type (HDF5 converts).
    let shape = (side, side, 3);
    let whole = "the sums hold side x side x 3 values (checked by finish)";
    if sums.count <= (u32::MAX / 255) as u64 {
        let px: Vec<u32> = sums.pixel_sum.iter().map(|&v| v as u32).collect();
        f.new_dataset_builder()
            .with_data(&Array3::from_shape_vec(shape, px).expect(whole))
            .create(STATS_PIXEL_SUM)?;
    } else {
        f.new_dataset_builder()
            .with_data(&Array3::from_shape_vec(shape, sums.pixel_sum.clone()).expect(whole))
            .create(STATS_PIXEL_SUM)?;
    }
    f.new_dataset_builder()
        .with_data(&Array1::from(sums.rgb_sum.to_vec()))
        .create(STATS_RGB_SUM)?;
    let outer = Array2::from_shape_vec((3, 3), sums.rgb_outer_sum.to_vec()).expect("3x3");
    f.new_dataset_builder()
        .with_data(&outer)
        .create(STATS_RGB_OUTER_SUM)?;
    f.new_dataset::<u64>()
        .create(STATS_IMAGE_COUNT)?
        .write_scalar(&sums.count)?;
    Ok(())
}

/// The file offset of each raw image's chunk, in row order, looked up once
/// when the shard is finished (the reader then needs no chunk walk). Each
/// chunk is found by its coordinates in the chunk index (logarithmic),
/// not by its position in the index (linear, so quadratic for the shard).
/// HDF5 gives chunk addresses relative to the end of the user block; the
/// offsets returned are from the start of the file.
fn chunk_offsets(
    path: &Path,
    images: &hdf5::Dataset,
    n: usize,
    side: usize,
    user_block: u64,
) -> Result<Vec<u64>, ShardError> {
    use hdf5_sys::h5d::H5Dget_chunk_info_by_coord;
    let image_bytes = (side * side * 3) as u64;
    let id = images.id();
    hdf5::sync::sync(|| {
        (0..n)
            .map(|row| {
                let coord: [u64; 4] = [row as u64, 0, 0, 0];
                let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
                // SAFETY: `id` is a live dataset of rank 4, `coord` has 4
                // elements, and the out-pointers are valid for one write each;
                // the call is made under the hdf5 crate's global lock.
                let status = unsafe {
                    H5Dget_chunk_info_by_coord(id, coord.as_ptr(), &mut mask, &mut addr, &mut size)
                };
                if status < 0 || size != image_bytes || mask != 0 {
                    return Err(ShardError::format(
                        path,
                        format!(
                            "image chunk {row} is missing or malformed ({size} bytes, filter mask {mask})"
                        ),
                    ));
                }
                Ok(user_block + addr)
            })
            .collect()
    })
}

/// Writes `stats.h5` (datasets named in [`crate::names`]) whole or not at
/// all, under its own temporary name ([`AtomicFile::new`]), so that
/// processes writing the same statistics at the same time do not disturb
/// each other.
pub fn write_stats(path: &Path, stats: &Stats) -> Result<(), ShardError> {
    let shape = (stats.height, stats.width, 3);
    let Ok(mean) = Array3::from_shape_vec(shape, stats.mean_image.clone()) else {
        return Err(ShardError::format(
            path,
            format!(
                "a mean image of {} values for {}x{} images",
                stats.mean_image.len(),
                stats.height,
                stats.width
            ),
        ));
    };
    let target = AtomicFile::new(path);
    let tmp = target.tmp();
    let write = || -> hdf5::Result<()> {
        let file = hdf5::File::create(tmp)?;
        file.new_dataset_builder()
            .with_data(&mean)
            .create(MEAN_IMAGE)?;
        file.new_dataset_builder()
            .with_data(&Array1::from(stats.rgb_mean.to_vec()))
            .create(RGB_MEAN)?;
        let m3 = |m: &[[f64; 3]; 3]| Array2::from_shape_fn((3, 3), |(i, j)| m[i][j]);
        file.new_dataset_builder()
            .with_data(&m3(&stats.rgb_cov))
            .create(RGB_COV)?;
        file.new_dataset_builder()
            .with_data(&Array1::from(stats.eigvals.to_vec()))
            .create(EIGVALS)?;
        file.new_dataset_builder()
            .with_data(&m3(&stats.eigvecs))
            .create(EIGVECS)?;
        file.new_dataset::<u64>()
            .create(COUNT)?
            .write_scalar(&stats.count)?;
        file.close()
    };
    write().map_err(|e| ShardError::hdf5(tmp, "writing statistics", e))?;
    Ok(target.commit()?)
}
