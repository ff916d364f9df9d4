//! Test fixtures: shards, statistics and class tables written directly with
//! the `hdf5` crate, independently of the library's own writer, with pixel
//! values given by a formula the tests can evaluate.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::VarLenUnicode;
use ndarray::{s, Array1, Array2, Array3, Array4};

/// How `images` is stored in a fixture shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    ChunkPerImage,
    Contiguous,
    Shuffled,
    ChunksOf(usize),
}

pub const SIDE: usize = 32;
pub const CLASSES: usize = 5;
pub const EIGVALS: [f64; 3] = [0.2, 0.03, 0.007];
/// Columns are unit eigenvectors (a rotation).
pub const EIGVECS: [[f64; 3]; 3] = [[0.6, 0.8, 0.0], [-0.8, 0.6, 0.0], [0.0, 0.0, 1.0]];

/// Pixel `(y, x, c)` of image `index`.
pub fn pixel(index: u64, y: usize, x: usize, c: usize) -> u8 {
    ((index * 37 + y as u64 * 11 + x as u64 * 3 + c as u64 * 101) % 251) as u8
}

pub fn label(index: u64) -> i64 {
    (index % CLASSES as u64) as i64
}

/// Mean image value at `(y, x, c)` (fractional on purpose).
pub fn mean_value(y: usize, x: usize, c: usize) -> f32 {
    50.0 + (y * 2 + x + c * 40) as f32 * 0.5 + 0.125
}

pub fn rgb_mean(c: usize) -> f64 {
    let mut sum = 0.0;
    for y in 0..SIDE {
        for x in 0..SIDE {
            sum += mean_value(y, x, c) as f64;
        }
    }
    sum / (SIDE * SIDE) as f64
}

/// A temporary `OUT` with `train/` shards of the given sizes, `stats.h5` and `classes.tsv`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub shards: Vec<PathBuf>,
}

impl Fixture {
    pub fn new(sizes: &[usize], storage: Storage) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train");
        std::fs::create_dir_all(&train).unwrap();
        let mut first = 0;
        let mut shards = Vec::new();
        for (s, &n) in sizes.iter().enumerate() {
            let path = train.join(format!("shard-{s:05}.h5"));
            write_shard(&path, first, n, storage);
            first += n as u64;
            shards.push(path);
        }
        write_stats(dir.path());
        write_classes(dir.path());
        Fixture { dir, shards }
    }

    pub fn out(&self) -> &Path {
        self.dir.path()
    }

    pub fn train(&self) -> PathBuf {
        self.dir.path().join("train")
    }

    pub fn stats_path(&self) -> PathBuf {
        self.dir.path().join("stats.h5")
    }

    pub fn dataset(&self) -> loader::Dataset {
        loader::Dataset::open(&self.train()).unwrap()
    }

    pub fn stats(&self) -> loader::Stats {
        loader::Stats::open(&self.stats_path()).unwrap()
    }

    pub fn loader(&self, cfg: loader::LoaderConfig) -> loader::Loader {
        loader::Loader::new(self.dataset(), self.stats(), cfg).unwrap()
    }
}

pub fn write_shard(path: &Path, first: u64, n: usize, storage: Storage) {
    let file = hdf5::File::create(path).unwrap();
    let b = file.new_dataset::<u8>();
    let shape = [n, SIDE, SIDE, 3];
    let images = match storage {
        Storage::ChunkPerImage => b.chunk([1, SIDE, SIDE, 3]).shape(shape).create("images"),
        Storage::Contiguous => b.shape(shape).create("images"),
        Storage::Shuffled => b
            .chunk([1, SIDE, SIDE, 3])
            .shuffle()
            .shape(shape)
            .create("images"),
        Storage::ChunksOf(k) => b.chunk([k, SIDE, SIDE, 3]).shape(shape).create("images"),
    }
    .unwrap();
    if n > 0 {
        let data = Array4::from_shape_fn(shape, |(i, y, x, c)| pixel(first + i as u64, y, x, c));
        // One image at a time, as a preprocessor streaming its output would.
        for i in 0..n {
            images
                .write_slice(
                    &data.slice(s![i..i + 1, .., .., ..]),
                    s![i..i + 1, .., .., ..],
                )
                .unwrap();
        }
    }
    let labels: Array1<i64> = (0..n).map(|i| label(first + i as u64)).collect();
    file.new_dataset_builder()
        .with_data(&labels)
        .create("labels")
        .unwrap();
    let names: Array1<VarLenUnicode> = (0..n)
        .map(|i| {
            VarLenUnicode::from_str(&format!(
                "n{:08}_{}.JPEG",
                label(first + i as u64),
                first + i as u64
            ))
            .unwrap()
        })
        .collect();
    file.new_dataset_builder()
        .with_data(&names)
        .create("names")
        .unwrap();
    // The preprocessor may add datasets of its own: the loader must ignore them.
    file.new_dataset_builder()
        .with_data(&Array1::from(vec![1.0f64, 2.0, 3.0]))
        .create("pixel_sums")
        .unwrap();
}

pub fn write_stats(out: &Path) {
    let file = hdf5::File::create(out.join("stats.h5")).unwrap();
    let mean = Array3::from_shape_fn((SIDE, SIDE, 3), |(y, x, c)| mean_value(y, x, c));
    file.new_dataset_builder()
        .with_data(&mean)
        .create("mean_image")
        .unwrap();
    let rgb = Array1::from((0..3).map(rgb_mean).collect::<Vec<_>>());
    file.new_dataset_builder()
        .with_data(&rgb)
        .create("rgb_mean")
        .unwrap();
    let cov = Array2::from_shape_fn((3, 3), |(i, j)| {
        (0..3)
            .map(|k| EIGVECS[i][k] * EIGVALS[k] * EIGVECS[j][k])
            .sum::<f64>()
    });
    file.new_dataset_builder()
        .with_data(&cov)
        .create("rgb_cov")
        .unwrap();
    file.new_dataset_builder()
        .with_data(&Array1::from(EIGVALS.to_vec()))
        .create("eigvals")
        .unwrap();
    let vecs = Array2::from_shape_fn((3, 3), |(i, j)| EIGVECS[i][j]);
    file.new_dataset_builder()
        .with_data(&vecs)
        .create("eigvecs")
        .unwrap();
    file.new_dataset::<u64>()
        .create("count")
        .unwrap()
        .write_scalar(&1234u64)
        .unwrap();
}

pub fn write_classes(out: &Path) {
    let text: String = (0..CLASSES)
        .map(|i| format!("{i}\tn{:08}\tthing {i}, other name\n", 1440764 + i))
        .collect();
    std::fs::write(out.join("classes.tsv"), text).unwrap();
}

/// Collects an epoch, panicking on errors.
pub fn collect(epoch: loader::Epoch) -> Vec<loader::Batch> {
    epoch.map(|b| b.unwrap()).collect()
}

/// All image indices of an epoch, in delivery order.
pub fn indices(batches: &[loader::Batch]) -> Vec<u64> {
    batches.iter().flat_map(|b| b.indices().to_vec()).collect()
}
