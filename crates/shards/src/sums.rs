//! Exact per-shard statistics sums (`stats_*` datasets of train shards).

/// Exact integer sums over a set of `H x W` RGB images (one shard, or a
/// whole split): order-independent, so a resumed run adds up to exactly what
/// an uninterrupted one does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSums {
    /// Per-pixel, per-channel sum of values, HWC (`H*W*3`).
    pub pixel_sum: Vec<u64>,
    /// Sum of R, G, B values over all pixels of all images.
    pub rgb_sum: [u64; 3],
    /// Sum of `x_a * x_b` over all pixels of all images, row-major 3x3.
    pub rgb_outer_sum: [u64; 9],
    /// Number of images.
    pub count: u64,
}

impl ShardSums {
    /// Zero sums for images of `image_bytes` (`H*W*3`) bytes.
    pub fn zero(image_bytes: usize) -> Self {
        ShardSums {
            pixel_sum: vec![0; image_bytes],
            rgb_sum: [0; 3],
            rgb_outer_sum: [0; 9],
            count: 0,
        }
    }

    /// Adds another set of sums over images of the same size.
    ///
    /// # Panics
    /// If the image sizes differ.
    pub fn add(&mut self, other: &ShardSums) {
        assert_eq!(
            self.pixel_sum.len(),
            other.pixel_sum.len(),
            "sums over images of different sizes"
        );
        for (a, b) in self.pixel_sum.iter_mut().zip(&other.pixel_sum) {
            *a += b;
        }
        for (a, b) in self.rgb_sum.iter_mut().zip(other.rgb_sum) {
            *a += b;
        }
        for (a, b) in self.rgb_outer_sum.iter_mut().zip(other.rgb_outer_sum) {
            *a += b;
        }
        self.count += other.count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_field() {
        let mut a = ShardSums::zero(3);
        let b = ShardSums {
            pixel_sum: vec![1, 2, 3],
            rgb_sum: [4, 5, 6],
            rgb_outer_sum: [1, 2, 3, 4, 5, 6, 7, 8, 9],
            count: 2,
        };
        a.add(&b);
        a.add(&b);
        assert_eq!(a.pixel_sum, [2, 4, 6]);
        assert_eq!(a.rgb_sum, [8, 10, 12]);
        assert_eq!(a.rgb_outer_sum, [2, 4, 6, 8, 10, 12, 14, 16, 18]);
        assert_eq!(a.count, 4);
    }
}
