//! Training-set statistics: mean image, RGB mean, RGB covariance and its
//! eigen-decomposition (for the paper's PCA lighting).
//!
//! Sums are kept as exact integers (order-independent), per shard, so that a
//! resumed run adds up to exactly what an uninterrupted run computes.

use multiversion::multiversion;
use shards::ShardSums;
use shards::Stats;

use decode::{IMAGE_BYTES, SIDE};

/// Pixels per image.
pub const PIXELS: u64 = (SIDE * SIDE) as u64;

/// Per-image colour sums, computed by the worker that decoded the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageColorSums {
    /// Sum of R, G, B values over the image's pixels.
    pub rgb: [u64; 3],
    /// Sum of products `x_a * x_b` over pixels, row-major 3x3.
    pub outer: [u64; 9],
}

impl ImageColorSums {
    /// Colour sums of one 256x256 RGB image.
    pub fn of(image: &[u8]) -> Self {
        assert_eq!(image.len(), IMAGE_BYTES);
        color_sums(image)
    }
}

/// Finishes the training-set statistics from the exact sums over the whole
/// split (see [`ShardSums`]); `None` when no image contributed.
pub fn finish_stats(sums: &ShardSums) -> Option<Stats> {
    if sums.count == 0 {
        return None;
    }
    let n = sums.count as f64;
    let mean_image = sums
        .pixel_sum
        .iter()
        .map(|&s| (s as f64 / n) as f32)
        .collect();
    let npix = n * PIXELS as f64;
    let mean: [f64; 3] = std::array::from_fn(|c| sums.rgb_sum[c] as f64 / npix);
    let mut cov = [[0.0f64; 3]; 3];
    for a in 0..3 {
        for b in 0..3 {
            let exy = sums.rgb_outer_sum[a * 3 + b] as f64 / npix;
            cov[a][b] = (exy - mean[a] * mean[b]) / (255.0 * 255.0);
        }
    }
    let (eigvals, eigvecs) = symmetric_eigen3(cov);
    Some(Stats {
        height: SIDE,
        width: SIDE,
        mean_image,
        rgb_mean: mean,
        rgb_cov: cov,
        eigvals,
        eigvecs,
        count: sums.count,
    })
}

/// [`ImageColorSums::of`], compiled for several SIMD levels.
#[multiversion(targets = "simd")]
fn color_sums(image: &[u8]) -> ImageColorSums {
    let mut s = ImageColorSums::default();
    // One row at a time in u32 (256 * 255 * 255 fits), then into u64.
    for row in image.chunks_exact(SIDE * 3) {
        let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
        let (mut rr, mut gg, mut bb, mut rg, mut rb, mut gb) = (0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
        for p in row.chunks_exact(3) {
            let (pr, pg, pb) = (p[0] as u32, p[1] as u32, p[2] as u32);
            r += pr;
            g += pg;
            b += pb;
            rr += pr * pr;
            gg += pg * pg;
            bb += pb * pb;
            rg += pr * pg;
            rb += pr * pb;
            gb += pg * pb;
        }
        s.rgb[0] += r as u64;
        s.rgb[1] += g as u64;
        s.rgb[2] += b as u64;
        let o = [rr, rg, rb, rg, gg, gb, rb, gb, bb];
        for (acc, v) in s.outer.iter_mut().zip(o) {
            *acc += v as u64;
        }
    }
    s
}

/// `acc[i] += image[i]`, compiled for several SIMD levels.
#[multiversion(targets = "simd")]
fn add_pixels(acc: &mut [u16], image: &[u8]) {
    for (a, &v) in acc.iter_mut().zip(image) {
        *a += v as u16;
    }
}

/// `acc[i] += staged[i]`, compiled for several SIMD levels.
#[multiversion(targets = "simd")]
fn add_staged(acc: &mut [u32], staged: &[u16]) {
    for (a, &v) in acc.iter_mut().zip(staged) {
        *a += v as u32;
    }
}

/// Images whose pixel sums `u16` holds: 257 * 255 = 65,535.
const STAGED_IMAGES: u32 = (u16::MAX / u8::MAX as u16) as u32;

/// Accumulates one shard's sums cheaply: pixel sums in `u32` (a shard holds
/// far fewer than 2^24 images), each image first added to a `u16` stage
/// that is carried into them every 257 images. The writer adds every image
/// of 32 open shards, so each addition streams a shard's sums through
/// memory; `u16` halves what it streams.
pub(crate) struct ShardStatAcc {
    pixel_sum: Vec<u32>,
    staged: Vec<u16>,
    staged_images: u32,
    rgb_sum: [u64; 3],
    outer: [u64; 9],
    count: u64,
}

impl ShardStatAcc {
    pub(crate) fn new() -> Self {
        ShardStatAcc {
            pixel_sum: vec![0; IMAGE_BYTES],
            staged: vec![0; IMAGE_BYTES],
            staged_images: 0,
            rgb_sum: [0; 3],
            outer: [0; 9],
            count: 0,
        }
    }

    pub(crate) fn add(&mut self, image: &[u8], color: &ImageColorSums) {
        add_pixels(&mut self.staged, image);
        self.staged_images += 1;
        if self.staged_images == STAGED_IMAGES {
            add_staged(&mut self.pixel_sum, &self.staged);
            self.staged.fill(0);
            self.staged_images = 0;
        }
        for c in 0..3 {
            self.rgb_sum[c] += color.rgb[c];
        }
        for k in 0..9 {
            self.outer[k] += color.outer[k];
        }
        self.count += 1;
    }

    pub(crate) fn sums(&self) -> ShardSums {
        ShardSums {
            pixel_sum: self
                .pixel_sum
                .iter()
                .zip(&self.staged)
                .map(|(&v, &s)| v as u64 + s as u64)
                .collect(),
            rgb_sum: self.rgb_sum,
            rgb_outer_sum: self.outer,
            count: self.count,
        }
    }
}

/// Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations.
/// Returns eigenvalues in descending order and the matching unit
/// eigenvectors as columns (`vecs[i][j]` = component `i` of vector `j`).
#[allow(clippy::needless_range_loop)] // index math mirrors the formulas
pub fn symmetric_eigen3(m: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        let scale = a[0][0].powi(2) + a[1][1].powi(2) + a[2][2].powi(2) + off;
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) || off == 0.0 {
            break;
        }
        for (p, q) in [(0usize, 1usize), (0, 2), (1, 2)] {
            if a[p][q].abs() < f64::MIN_POSITIVE {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A <- J^T A J with J the rotation in the (p, q) plane.
            for k in 0..3 {
                let akp = a[k][p];
                let akq = a[k][q];
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let apk = a[p][k];
                let aqk = a[q][k];
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for row in v.iter_mut() {
                let vkp = row[p];
                let vkq = row[q];
                row[p] = c * vkp - s * vkq;
                row[q] = s * vkp + c * vkq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let vals = order.map(|j| a[j][j]);
    let mut vecs = [[0.0; 3]; 3];
    for (col, &j) in order.iter().enumerate() {
        // Sign convention: the largest-magnitude component is positive.
        let comp: [f64; 3] = std::array::from_fn(|i| v[i][j]);
        let big = comp
            .iter()
            .copied()
            .max_by(|x, y| x.abs().total_cmp(&y.abs()))
            .unwrap_or(1.0);
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        for i in 0..3 {
            vecs[i][col] = sign * comp[i];
        }
    }
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_decomposition(m: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
        let (vals, vecs) = symmetric_eigen3(m);
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2], "{vals:?}");
        for j in 0..3 {
            let norm: f64 = (0..3).map(|i| vecs[i][j] * vecs[i][j]).sum();
            assert!((norm - 1.0).abs() < 1e-12);
            // Sign convention: the largest-magnitude component is positive.
            let big = (0..3)
                .map(|i| vecs[i][j])
                .max_by(|x, y| x.abs().total_cmp(&y.abs()))
                .unwrap();
            assert!(big > 0.0, "{m:?} col {j}: {vecs:?}");
            // M v = lambda v
            for i in 0..3 {
                let mv: f64 = (0..3).map(|k| m[i][k] * vecs[k][j]).sum();
                assert!((mv - vals[j] * vecs[i][j]).abs() < 1e-10, "{m:?} col {j}");
            }
        }
        (vals, vecs)
    }

    #[test]
    fn known_matrix_eigenpairs() {
        // Eigenvalues 4, 2, 1 with known vectors (1,1,0)/√2, (0,0,1), (1,-1,0)/√2... built as
        // M = 3*[[1,0],[0,1]] + [[0,1],[1,0]] on the first two axes, 2 on the third:
        // eigen (1,1,0)/√2 -> 4, (1,-1,0)/√2 -> 2, (0,0,1) -> 2.5
        let m = [[3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 2.5]];
        let (vals, vecs) = check_decomposition(m);
        assert!((vals[0] - 4.0).abs() < 1e-12);
        assert!((vals[1] - 2.5).abs() < 1e-12);
        assert!((vals[2] - 2.0).abs() < 1e-12);
        let r = 0.5f64.sqrt();
        assert!((vecs[0][0] - r).abs() < 1e-12 && (vecs[1][0] - r).abs() < 1e-12);
        assert!((vecs[2][1] - 1.0).abs() < 1e-12);
        assert!((vecs[0][2].abs() - r).abs() < 1e-12 && (vecs[0][2] + vecs[1][2]).abs() < 1e-12);
    }

    #[test]
    fn dense_and_degenerate_matrices() {
        check_decomposition([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.25], [0.5, 0.25, 1.0]]);
        check_decomposition([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        check_decomposition([[0.0; 3]; 3]);
        let (vals, _) = check_decomposition([[1.0; 3]; 3]);
        assert!((vals[0] - 3.0).abs() < 1e-12 && vals[1].abs() < 1e-12);
    }

    #[test]
    fn nearly_equal_diagonal_with_a_large_off_diagonal_entry() {
        // theta = 5e-10: a rotation of nearly 45 degrees zeroes the (0, 1) entry.
        let (vals, _) =
            check_decomposition([[1.0, 1.0, 0.0], [1.0, 1.0 + 1e-9, 0.0], [0.0, 0.0, 0.5]]);
        assert!(
            (vals[0] - 2.0).abs() < 1e-8 && (vals[1] - 0.5).abs() < 1e-12,
            "{vals:?}"
        );
    }

    #[test]
    fn scaling_the_matrix_scales_the_eigenvalues_only() {
        let m = [[2.0, -1.0, 0.5], [-1.0, 3.0, 0.25], [0.5, 0.25, 1.0]];
        let (vals, vecs) = symmetric_eigen3(m);
        for k in [1e-12, 1e12] {
            let (vk, wk) = symmetric_eigen3(m.map(|row| row.map(|x| x * k)));
            for j in 0..3 {
                assert!((vk[j] / k - vals[j]).abs() < 1e-9 * vals[0], "{k}: {vk:?}");
                for i in 0..3 {
                    assert!((wk[i][j] - vecs[i][j]).abs() < 1e-9, "{k}: {wk:?}");
                }
            }
        }
    }

    #[test]
    fn pseudo_random_symmetric_matrices() {
        // A fixed linear congruential sequence in [-1, 1).
        let mut state = 0x2012_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        };
        for _ in 0..20 {
            let (a, b, c, d, e, f) = (next(), next(), next(), next(), next(), next());
            check_decomposition([[a, b, c], [b, d, e], [c, e, f]]);
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn sums_give_known_mean_and_covariance() {
        // Two images: all (10, 20, 30), and all (30, 20, 10).
        let a: Vec<u8> = (0..IMAGE_BYTES).map(|i| [10, 20, 30][i % 3]).collect();
        let b: Vec<u8> = (0..IMAGE_BYTES).map(|i| [30, 20, 10][i % 3]).collect();
        let mut acc = ShardStatAcc::new();
        acc.add(&a, &ImageColorSums::of(&a));
        acc.add(&b, &ImageColorSums::of(&b));
        let st = finish_stats(&acc.sums()).unwrap();
        assert_eq!(st.count, 2);
        assert_eq!(st.rgb_mean, [20.0, 20.0, 20.0]);
        assert!(st.mean_image.iter().all(|&v| v == 20.0));
        // R = 20 ± 10, B = 20 ∓ 10, G constant: var R = var B = 100/255², cov RB = -100/255².
        let u = 100.0 / (255.0 * 255.0);
        let want = [[u, 0.0, -u], [0.0, 0.0, 0.0], [-u, 0.0, u]];
        for i in 0..3 {
            for j in 0..3 {
                assert!((st.rgb_cov[i][j] - want[i][j]).abs() < 1e-15);
            }
        }
        assert!((st.eigvals[0] - 2.0 * u).abs() < 1e-15);
        assert!(st.eigvals[1].abs() < 1e-15 && st.eigvals[2].abs() < 1e-15);
    }

    /// The colour sums as one pixel at a time computes them.
    fn color_sums_by_pixel(image: &[u8]) -> ImageColorSums {
        let mut s = ImageColorSums::default();
        for p in image.chunks_exact(3) {
            let x = [p[0] as u64, p[1] as u64, p[2] as u64];
            for a in 0..3 {
                s.rgb[a] += x[a];
                for b in 0..3 {
                    s.outer[a * 3 + b] += x[a] * x[b];
                }
            }
        }
        s
    }

    fn noise_image(seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..IMAGE_BYTES)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn color_sums_equal_the_sums_by_pixel() {
        let white = vec![255u8; IMAGE_BYTES];
        let ramp: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
        // The last pixel alone, where the lag products reach the end.
        let mut last = vec![0u8; IMAGE_BYTES];
        last[IMAGE_BYTES - 3..].copy_from_slice(&[7, 11, 13]);
        for image in [white, ramp, last, noise_image(1), noise_image(2)] {
            assert_eq!(ImageColorSums::of(&image), color_sums_by_pixel(&image));
        }
    }

    #[test]
    fn pixel_sums_carry_the_stage_exactly() {
        // White images overflow a u16 stage after 257 of them: 600 go
        // through two carries and a partly filled stage.
        let white = vec![255u8; IMAGE_BYTES];
        let noise = noise_image(3);
        let mut acc = ShardStatAcc::new();
        for k in 0..600 {
            let image = if k % 7 == 3 { &noise } else { &white };
            acc.add(image, &ImageColorSums::of(image));
        }
        let sums = acc.sums();
        let noisy = (0..600).filter(|k| k % 7 == 3).count() as u64;
        for (i, &s) in sums.pixel_sum.iter().enumerate() {
            assert_eq!(
                s,
                (600 - noisy) * 255 + noisy * noise[i] as u64,
                "pixel {i}"
            );
        }
        assert_eq!(sums.count, 600);
    }
}
