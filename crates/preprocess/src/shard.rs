//! One HDF5 shard: written under a temporary name, image by image, and
//! renamed to its final name only when complete.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use ndarray::{s, Array1, ArrayView4};

use crate::error::PreprocessError;
use crate::image::{IMAGE_BYTES, SIDE};
use crate::stats::{ImageColorSums, ShardStatAcc, StatSums};

/// File name of shard `id`: `shard-00042.h5`.
pub fn shard_file_name(id: u64) -> String {
    format!("shard-{id:05}.h5")
}

/// Parses a shard file name back into its id (`shard-00042.h5` -> 42).
pub fn parse_shard_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("shard-")?.strip_suffix(".h5")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn vlu(s: &str) -> VarLenUnicode {
    // Member names come from tar headers / file names; strip NULs, which
    // HDF5 strings cannot hold.
    let clean: String = s.chars().filter(|&c| c != '\0').collect();
    clean.parse().expect("string without NUL converts")
}

/// A shard being written (`shard-XXXXX.h5.tmp`).
pub(crate) struct ShardWriter {
    tmp: PathBuf,
    final_path: PathBuf,
    file: hdf5::File,
    images: hdf5::Dataset,
    n: usize,
    capacity: usize,
    labels: Vec<i64>,
    names: Vec<VarLenUnicode>,
    skipped_names: Vec<VarLenUnicode>,
    skipped_reasons: Vec<VarLenUnicode>,
    stats: Option<ShardStatAcc>,
}

impl ShardWriter {
    /// Creates `dir/shard-XXXXX.h5.tmp` with room for `capacity` images
    /// (the dataset is resizable; the final size is set when closing).
    pub(crate) fn create(
        dir: &Path,
        id: u64,
        capacity: usize,
        with_stats: bool,
    ) -> Result<Self, PreprocessError> {
        let final_path = dir.join(shard_file_name(id));
        let tmp = dir.join(format!("{}.tmp", shard_file_name(id)));
        let herr = |e: hdf5::Error| PreprocessError::hdf5(&tmp, e);
        let file = hdf5::File::create(&tmp).map_err(herr)?;
        let images = file
            .new_dataset::<u8>()
            .chunk((1, SIDE, SIDE, 3))
            .shape(((capacity.max(1)).., SIDE, SIDE, 3))
            .create("images")
            .map_err(herr)?;
        Ok(ShardWriter {
            tmp,
            final_path,
            file,
            images,
            n: 0,
            capacity: capacity.max(1),
            labels: Vec::new(),
            names: Vec::new(),
            skipped_names: Vec::new(),
            skipped_reasons: Vec::new(),
            stats: with_stats.then(ShardStatAcc::new),
        })
    }

    /// Appends one decoded image.
    pub(crate) fn push_image(
        &mut self,
        image: &[u8],
        label: i64,
        name: &str,
        color: &ImageColorSums,
    ) -> Result<(), PreprocessError> {
        debug_assert_eq!(image.len(), IMAGE_BYTES);
        let herr = |e: hdf5::Error| PreprocessError::hdf5(&self.tmp, e);
        if self.n == self.capacity {
            self.capacity *= 2;
            self.images
                .resize((self.capacity, SIDE, SIDE, 3))
                .map_err(herr)?;
        }
        let view = ArrayView4::from_shape((1, SIDE, SIDE, 3), image).expect("image shape");
        self.images
            .write_slice(view, s![self.n..self.n + 1, .., .., ..])
            .map_err(herr)?;
        self.n += 1;
        self.labels.push(label);
        self.names.push(vlu(name));
        if let Some(st) = &mut self.stats {
            st.add(image, color);
        }
        Ok(())
    }

    /// Records an input that could not be used.
    pub(crate) fn push_skipped(&mut self, name: &str, reason: &str) {
        self.skipped_names.push(vlu(name));
        self.skipped_reasons.push(vlu(reason));
    }

    /// Writes labels, names, skipped records and statistics, closes the
    /// file and renames it to its final name.
    pub(crate) fn finish(self) -> Result<(), PreprocessError> {
        let herr = |e: hdf5::Error| PreprocessError::hdf5(&self.tmp, e);
        self.images.resize((self.n, SIDE, SIDE, 3)).map_err(herr)?;
        let f = &self.file;
        f.new_dataset_builder()
            .with_data(&Array1::from(self.labels))
            .create("labels")
            .map_err(herr)?;
        f.new_dataset_builder()
            .with_data(&Array1::from(self.names))
            .create("names")
            .map_err(herr)?;
        f.new_dataset_builder()
            .with_data(&Array1::from(self.skipped_names))
            .create("skipped_names")
            .map_err(herr)?;
        f.new_dataset_builder()
            .with_data(&Array1::from(self.skipped_reasons))
            .create("skipped_reasons")
            .map_err(herr)?;
        if let Some(st) = &self.stats {
            let sums = st.sums();
            let px = ndarray::Array3::from_shape_vec((SIDE, SIDE, 3), sums.pixel_sum)
                .expect("pixel sum shape");
            f.new_dataset_builder()
                .with_data(&px)
                .create("stats_pixel_sum")
                .map_err(herr)?;
            f.new_dataset_builder()
                .with_data(&Array1::from(sums.rgb_sum.to_vec()))
                .create("stats_rgb_sum")
                .map_err(herr)?;
            let outer = ndarray::Array2::from_shape_vec((3, 3), sums.rgb_outer_sum.to_vec())
                .expect("outer shape");
            f.new_dataset_builder()
                .with_data(&outer)
                .create("stats_rgb_outer_sum")
                .map_err(herr)?;
            f.new_dataset::<u64>()
                .create("stats_image_count")
                .map_err(herr)?
                .write_scalar(&sums.count)
                .map_err(herr)?;
        }
        let ShardWriter {
            tmp,
            final_path,
            file,
            images,
            ..
        } = self;
        drop(images);
        file.close().map_err(|e| PreprocessError::hdf5(&tmp, e))?;
        std::fs::rename(&tmp, &final_path).map_err(|e| PreprocessError::io(&final_path, e))
    }
}

impl ShardWriter {
    /// Closes and deletes the temporary file (an incomplete shard).
    pub(crate) fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = std::fs::remove_file(tmp);
    }
}

/// What a completed shard holds, read back when a split finishes.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    /// Shard id (the number in its file name).
    pub id: u64,
    /// Number of images.
    pub images: u64,
    /// Inputs that could not be used: (member name, reason).
    pub skipped: Vec<(String, String)>,
    /// The shard's statistics sums (train shards only).
    pub stats: Option<StatSums>,
}

/// Reads a completed shard's counts, skipped records and statistics sums.
pub fn read_shard_info(path: &Path, id: u64) -> Result<ShardInfo, PreprocessError> {
    let herr = |e: hdf5::Error| PreprocessError::hdf5(path, e);
    let f = hdf5::File::open(path).map_err(herr)?;
    let images = f.dataset("images").map_err(herr)?.shape()[0] as u64;
    let strings = |name: &str| -> Result<Vec<String>, PreprocessError> {
        Ok(f.dataset(name)
            .map_err(herr)?
            .read_raw::<VarLenUnicode>()
            .map_err(herr)?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect())
    };
    let names = strings("skipped_names")?;
    let reasons = strings("skipped_reasons")?;
    let skipped = names.into_iter().zip(reasons).collect();
    let stats = if f.link_exists("stats_pixel_sum") {
        let pixel_sum = f
            .dataset("stats_pixel_sum")
            .map_err(herr)?
            .read_raw::<u64>()
            .map_err(herr)?;
        let rgb = f
            .dataset("stats_rgb_sum")
            .map_err(herr)?
            .read_raw::<u64>()
            .map_err(herr)?;
        let outer = f
            .dataset("stats_rgb_outer_sum")
            .map_err(herr)?
            .read_raw::<u64>()
            .map_err(herr)?;
        let count = f
            .dataset("stats_image_count")
            .map_err(herr)?
            .read_scalar::<u64>()
            .map_err(herr)?;
        if pixel_sum.len() != IMAGE_BYTES || rgb.len() != 3 || outer.len() != 9 {
            return Err(PreprocessError::hdf5(
                path,
                "statistics datasets have wrong shapes",
            ));
        }
        Some(StatSums {
            pixel_sum,
            rgb_sum: [rgb[0], rgb[1], rgb[2]],
            rgb_outer_sum: std::array::from_fn(|k| outer[k]),
            count,
        })
    } else {
        None
    };
    Ok(ShardInfo {
        id,
        images,
        skipped,
        stats,
    })
}
