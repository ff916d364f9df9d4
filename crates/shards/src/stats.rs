//! The training-set statistics in `OUT/stats.h5`: mean image and RGB PCA.

use std::path::Path;

use crate::names::{COUNT, EIGVALS, EIGVECS, MEAN_IMAGE, RGB_COV, RGB_MEAN};
use crate::ShardError;

/// Training-set statistics, as `cargo xtask preprocess` writes them to `stats.h5`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Image height of `mean_image`.
    pub height: usize,
    /// Image width of `mean_image`.
    pub width: usize,
    /// Mean image, HWC `[height, width, 3]`, pixel values 0..255.
    pub mean_image: Vec<f32>,
    /// Mean of each RGB channel, 0..255.
    pub rgb_mean: [f64; 3],
    /// Covariance of RGB values scaled to 0..1.
    pub rgb_cov: [[f64; 3]; 3],
    /// Eigenvalues of `rgb_cov`, descending.
    pub eigvals: [f64; 3],
    /// Eigenvectors of `rgb_cov`: `eigvecs[i][j]` is component `i` of the
    /// eigenvector of `eigvals[j]` (column `j` is an eigenvector).
    pub eigvecs: [[f64; 3]; 3],
    /// Number of training images that contributed.
    pub count: u64,
}

impl Stats {
    /// Reads `stats.h5` (datasets named in [`crate::names`]; written by
    /// [`crate::write_stats`]). Any
    /// numeric storage type is accepted and converted.
    pub fn open(stats_h5: &Path) -> Result<Stats, ShardError> {
        let file = hdf5::File::open(stats_h5)
            .map_err(|e| ShardError::hdf5(stats_h5, "opening statistics", e))?;
        let read = |name: &str, expect: &[usize]| -> Result<Vec<f64>, ShardError> {
            let ds = file
                .dataset(name)
                .map_err(|e| ShardError::hdf5(stats_h5, format!("opening dataset `{name}`"), e))?;
            let shape = ds.shape();
            if shape != expect {
                return Err(ShardError::format(
                    stats_h5,
                    format!("`{name}` has shape {shape:?}, expected {expect:?}"),
                ));
            }
            ds.read_raw::<f64>()
                .map_err(|e| ShardError::hdf5(stats_h5, format!("reading `{name}`"), e))
        };

        let mean_ds = file
            .dataset(MEAN_IMAGE)
            .map_err(|e| ShardError::hdf5(stats_h5, "opening dataset `mean_image`", e))?;
        let shape = mean_ds.shape();
        if shape.len() != 3 || shape[2] != 3 {
            return Err(ShardError::format(
                stats_h5,
                format!("`mean_image` has shape {shape:?}, expected [H, W, 3]"),
            ));
        }
        let (height, width) = (shape[0], shape[1]);
        let mean_image = mean_ds
            .read_raw::<f32>()
            .map_err(|e| ShardError::hdf5(stats_h5, "reading `mean_image`", e))?;

        let rgb_mean = read(RGB_MEAN, &[3])?;
        let rgb_cov = read(RGB_COV, &[3, 3])?;
        let eigvals = read(EIGVALS, &[3])?;
        let eigvecs = read(EIGVECS, &[3, 3])?;
        let count = file
            .dataset(COUNT)
            .and_then(|d| d.read_scalar::<u64>())
            .map_err(|e| ShardError::hdf5(stats_h5, "reading `count`", e))?;

        let stats = Stats {
            height,
            width,
            mean_image,
            rgb_mean: [rgb_mean[0], rgb_mean[1], rgb_mean[2]],
            rgb_cov: to3x3(&rgb_cov),
            eigvals: [eigvals[0], eigvals[1], eigvals[2]],
            eigvecs: to3x3(&eigvecs),
            count,
        };
        if let Some(bad) = stats.mean_image.iter().find(|v| !v.is_finite()) {
            return Err(ShardError::format(
                stats_h5,
                format!("`mean_image` holds a non-finite value {bad}"),
            ));
        }
        if stats
            .eigvals
            .iter()
            .chain(stats.eigvecs.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(ShardError::format(
                stats_h5,
                "`eigvals` or `eigvecs` holds a non-finite value",
            ));
        }
        Ok(stats)
    }

    /// Statistics that change nothing: zero mean image and zero eigenvalues
    /// (so PCA lighting adds nothing). For loaders that want raw pixels.
    pub fn neutral(height: usize, width: usize) -> Stats {
        Stats {
            height,
            width,
            mean_image: vec![0.0; height * width * 3],
            rgb_mean: [0.0; 3],
            rgb_cov: [[0.0; 3]; 3],
            eigvals: [0.0; 3],
            eigvecs: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            count: 0,
        }
    }

    /// The PCA lighting offset for the draws `a` (one per eigenvector), in
    /// 0..255 pixel units: `255 * eigvecs · (a ∘ eigvals)`.
    pub fn lighting_offset(&self, a: [f64; 3]) -> [f32; 3] {
        let mut out = [0.0f32; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let v: f64 = (0..3)
                .map(|j| self.eigvecs[c][j] * a[j] * self.eigvals[j])
                .sum();
            *o = (255.0 * v) as f32;
        }
        out
    }
}

fn to3x3(v: &[f64]) -> [[f64; 3]; 3] {
    [[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]]
}
