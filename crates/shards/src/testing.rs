//! Writes small datasets in the exact layout of `cargo xtask preprocess`
//! (shards, `stats.h5`, `classes.tsv`), with pixels given by a known formula,
//! for tests, examples and benchmarks that need shards without ImageNet.
//!
//! Image `i` (global index, counting across shards in order) has pixel
//! [`pattern_pixel`]`(i, y, x, c)` and label [`pattern_label`]`(i, classes)`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::VarLenUnicode;
use ndarray::{s, Array1, Array4};

use crate::{names, ClassEntry, DatasetDir, Encoding, ShardError, ShardWriter, Split, Stats};

/// How the `images` dataset of each shard is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageStorage {
    /// The contract, raw: chunked `[1, H, W, 3]`, no filters, with the
    /// `image_offsets` index ([`ShardWriter`]).
    ChunkPerImage,
    /// The contract, JPEG at this quality ([`ShardWriter`]).
    Jpeg(u8),
    /// Chunked `[1, H, W, 3]` without the `image_offsets` index (shards
    /// written before the index existed).
    ChunkPerImageUnindexed,
    /// One contiguous block (no chunking).
    Contiguous,
    /// Chunked `[1, H, W, 3]` with HDF5's shuffle filter (a filtered layout).
    ChunkPerImageShuffled,
    /// Chunked with this many images per chunk.
    ChunksOf(usize),
}

/// What [`write_split`] writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardSpec {
    /// Images in each shard, in shard order (a shard may be empty).
    pub images_per_shard: Vec<usize>,
    /// Image side (images are `side x side x 3`).
    pub side: usize,
    /// Labels run over `0..num_classes`.
    pub num_classes: usize,
    /// Storage layout of `images`.
    pub storage: ImageStorage,
}

impl ShardSpec {
    /// Three shards of 7, 5 and 9 images of 32x32 pixels, 4 classes: quick tests.
    pub fn small() -> Self {
        ShardSpec {
            images_per_shard: vec![7, 5, 9],
            side: 32,
            num_classes: 4,
            storage: ImageStorage::ChunkPerImage,
        }
    }

    /// `images` ImageNet-sized (256x256) images in shards of up to 1024, 1000 classes.
    pub fn imagenet_sized(images: usize) -> Self {
        let mut shards = vec![1024; images / 1024];
        if !images.is_multiple_of(1024) {
            shards.push(images % 1024);
        }
        ShardSpec {
            images_per_shard: shards,
            side: 256,
            num_classes: 1000,
            storage: ImageStorage::ChunkPerImage,
        }
    }

    /// Total number of images.
    pub fn total(&self) -> usize {
        self.images_per_shard.iter().sum()
    }

    /// Statistics to go with these images: a mean image that varies with
    /// position and channel (with fractional values), and the RGB PCA of the
    /// commonly used ImageNet statistics (0..1 units).
    pub fn stats(&self) -> Stats {
        let side = self.side;
        let mut mean_image = vec![0.0f32; side * side * 3];
        for y in 0..side {
            for x in 0..side {
                for c in 0..3 {
                    mean_image[(y * side + x) * 3 + c] =
                        90.0 + ((y * 3 + x * 5 + c * 7) % 61) as f32 + 0.25;
                }
            }
        }
        let mut rgb_mean = [0.0f64; 3];
        for (i, v) in mean_image.iter().enumerate() {
            rgb_mean[i % 3] += *v as f64 / (side * side) as f64;
        }
        let eigvals = [0.2175, 0.0188, 0.0045];
        let eigvecs = [
            [-0.5675, 0.7192, 0.4009],
            [-0.5808, -0.0045, -0.8140],
            [-0.5836, -0.6948, 0.4203],
        ];
        let mut rgb_cov = [[0.0; 3]; 3];
        for (i, row) in rgb_cov.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3)
                    .map(|k| eigvecs[i][k] * eigvals[k] * eigvecs[j][k])
                    .sum();
            }
        }
        Stats {
            height: side,
            width: side,
            mean_image,
            rgb_mean,
            rgb_cov,
            eigvals,
            eigvecs,
            count: self.total() as u64,
        }
    }
}

/// The value of pixel `(y, x)`, channel `c`, of image `index`: a hash, so
/// every image, row, column and channel differs.
#[inline]
pub fn pattern_pixel(index: u64, y: usize, x: usize, c: usize) -> u8 {
    let mut v = index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((y as u64) << 40 | (x as u64) << 16 | c as u64);
    v = (v ^ (v >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (v >> 56) as u8
}

/// The label of image `index`.
pub fn pattern_label(index: u64, num_classes: usize) -> i64 {
    ((index * 7 + 3) % num_classes as u64) as i64
}

/// The full HWC image `index` of a dataset with images of `side x side`.
pub fn pattern_image(index: u64, side: usize) -> Vec<u8> {
    let mut img = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            for c in 0..3 {
                img.push(pattern_pixel(index, y, x, c));
            }
        }
    }
    img
}

/// The name stored for image `index`.
pub fn pattern_name(index: u64) -> String {
    format!("image_{index:08}.JPEG")
}

/// Image `index` as the loader will see it from shards stored as
/// `storage`: the pattern itself, or its JPEG round trip.
pub fn stored_image(index: u64, side: usize, storage: ImageStorage) -> Vec<u8> {
    let image = pattern_image(index, side);
    match storage {
        ImageStorage::Jpeg(quality) => {
            let mut bytes = Vec::new();
            crate::encode_jpeg(&image, side, side, quality, &mut bytes).expect("encodes");
            let mut back = vec![0u8; image.len()];
            crate::decode_jpeg_into(&bytes, side, side, &mut back).expect("decodes");
            back
        }
        _ => image,
    }
}

/// Writes `out_dir/<split>/shard-00000.h5`, ... as `spec` says and returns their paths.
pub fn write_split(
    out_dir: &Path,
    split: Split,
    spec: &ShardSpec,
) -> Result<Vec<PathBuf>, ShardError> {
    let dir = DatasetDir::new(out_dir).split(split);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ShardError::io(&dir, "creating the split directory", e))?;
    let mut first = 0u64;
    let mut paths = Vec::new();
    for (s, &n) in spec.images_per_shard.iter().enumerate() {
        let path = dir.join(crate::shard_file_name(s as u64));
        match spec.storage {
            ImageStorage::ChunkPerImage => {
                write_shard_through_format(&path, first, n, spec, Encoding::Raw)?
            }
            ImageStorage::Jpeg(quality) => {
                write_shard_through_format(&path, first, n, spec, Encoding::Jpeg { quality })?
            }
            _ => write_shard_by_hand(&path, first, n, spec)
                .map_err(|e| ShardError::hdf5(&path, "writing a test shard", e))?,
        }
        first += n as u64;
        paths.push(path);
    }
    Ok(paths)
}

fn write_shard_through_format(
    path: &Path,
    first: u64,
    n: usize,
    spec: &ShardSpec,
    encoding: Encoding,
) -> Result<(), ShardError> {
    let mut writer = ShardWriter::create(path, spec.side, encoding, n)?;
    let mut stored = Vec::new();
    for i in first..first + n as u64 {
        encoding
            .encode(&pattern_image(i, spec.side), spec.side, &mut stored)
            .map_err(|source| ShardError::Jpeg {
                path: path.to_owned(),
                what: format!("encoding test image {i}"),
                source,
            })?;
        writer.push(
            &stored,
            pattern_label(i, spec.num_classes),
            &pattern_name(i),
        )?;
    }
    writer.finish(None)?;
    Ok(())
}

/// The layouts the format does not write (fallback and legacy reads).
fn write_shard_by_hand(path: &Path, first: u64, n: usize, spec: &ShardSpec) -> hdf5::Result<()> {
    let side = spec.side;
    let file = hdf5::File::create(path)?;
    let builder = file.new_dataset::<u8>();
    let images = match spec.storage {
        ImageStorage::ChunkPerImageUnindexed => builder
            .chunk([1, side, side, 3])
            .shape([n, side, side, 3])
            .create(names::IMAGES)?,
        ImageStorage::Contiguous => builder.shape([n, side, side, 3]).create(names::IMAGES)?,
        ImageStorage::ChunkPerImageShuffled => builder
            .chunk([1, side, side, 3])
            .shuffle()
            .shape([n, side, side, 3])
            .create(names::IMAGES)?,
        ImageStorage::ChunksOf(k) => builder
            .chunk([k, side, side, 3])
            .shape([n, side, side, 3])
            .create(names::IMAGES)?,
        ImageStorage::ChunkPerImage | ImageStorage::Jpeg(_) => {
            unreachable!("written through the format module")
        }
    };
    const BLOCK: usize = 32;
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let mut pixels = Vec::with_capacity((end - start) * side * side * 3);
        for i in start..end {
            pixels.extend(pattern_image(first + i as u64, side));
        }
        let block =
            Array4::from_shape_vec((end - start, side, side, 3), pixels).expect("block shape");
        images.write_slice(&block, s![start..end, .., .., ..])?;
        start = end;
    }
    let labels: Array1<i64> = (0..n)
        .map(|i| pattern_label(first + i as u64, spec.num_classes))
        .collect();
    file.new_dataset_builder()
        .with_data(&labels)
        .create(names::LABELS)?;
    let names: Array1<VarLenUnicode> = (0..n)
        .map(|i| VarLenUnicode::from_str(&pattern_name(first + i as u64)).expect("ASCII name"))
        .collect();
    file.new_dataset_builder()
        .with_data(&names)
        .create(names::NAMES)?;
    Ok(())
}

/// Writes `out_dir/stats.h5` with the datasets of the format contract.
pub fn write_stats(out_dir: &Path, stats: &Stats) -> Result<PathBuf, ShardError> {
    let path = DatasetDir::new(out_dir).stats();
    crate::write_stats(&path, stats)?;
    Ok(path)
}

/// Writes `out_dir/classes.tsv` with `num_classes` made-up classes.
pub fn write_classes(out_dir: &Path, num_classes: usize) -> Result<PathBuf, ShardError> {
    let classes: Vec<ClassEntry> = (0..num_classes)
        .map(|i| ClassEntry {
            index: i,
            wnid: format!("n{:08}", 1_000_000 + i),
            words: format!("class {i}, test"),
        })
        .collect();
    let path = DatasetDir::new(out_dir).classes();
    crate::write_classes(&path, &classes)?;
    Ok(path)
}

/// Writes a whole `OUT` directory: `train/` as `spec`, `val/` with one shard
/// of up to 16 images, `stats.h5` and `classes.tsv`.
pub fn write_dataset(out_dir: &Path, spec: &ShardSpec) -> Result<(), ShardError> {
    write_split(out_dir, Split::Train, spec)?;
    let val = ShardSpec {
        images_per_shard: vec![spec.total().clamp(1, 16)],
        ..spec.clone()
    };
    write_split(out_dir, Split::Val, &val)?;
    write_stats(out_dir, &spec.stats())?;
    write_classes(out_dir, spec.num_classes)?;
    Ok(())
}
