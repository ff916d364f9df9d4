//! The names of the datasets inside shards and `stats.h5`.

/// Shard: raw images, `u8 [n, H, W, 3]`.
pub const IMAGES: &str = "images";
/// Shard: file byte offset of each raw image's chunk, `u64 [n]`.
pub const IMAGE_OFFSETS: &str = "image_offsets";
/// Shard: the JPEG streams back to back, `u8 [total]`, contiguous.
pub const JPEG: &str = "jpeg";
/// Shard: start of each JPEG stream in [`JPEG`], plus the end, `u64 [n + 1]`.
pub const JPEG_OFFSETS: &str = "jpeg_offsets";
/// Attribute of [`JPEG`]: the decoded image shape `[H, W, 3]`.
pub const JPEG_IMAGE_SHAPE: &str = "image_shape";
/// Shard: class index of each image, `i64 [n]`.
pub const LABELS: &str = "labels";
/// Shard: source member name of each image, UTF-8 `[n]`.
pub const NAMES: &str = "names";
/// Shard: inputs that could not be decoded, UTF-8 `[m]`.
pub const SKIPPED_NAMES: &str = "skipped_names";
/// Shard: why, one per [`SKIPPED_NAMES`] entry.
pub const SKIPPED_REASONS: &str = "skipped_reasons";
/// Shard, only when there are any: images kept although the decoder warned
/// about them, UTF-8 `[w]`.
pub const WARNING_NAMES: &str = "warning_names";
/// Shard: the warning, one per [`WARNING_NAMES`] entry.
pub const WARNING_TEXTS: &str = "warning_texts";
/// Train shard: per-pixel sum, `u32 [H, W, 3]` (`u64` past 16,843,009 images).
pub const STATS_PIXEL_SUM: &str = "stats_pixel_sum";
/// Train shard: sum of R, G, B, `u64 [3]`.
pub const STATS_RGB_SUM: &str = "stats_rgb_sum";
/// Train shard: sum of `x_a * x_b` over pixels, `u64 [3, 3]`.
pub const STATS_RGB_OUTER_SUM: &str = "stats_rgb_outer_sum";
/// Train shard: images the sums cover, `u64` scalar.
pub const STATS_IMAGE_COUNT: &str = "stats_image_count";

/// `stats.h5`: mean image, `f32 [H, W, 3]`, 0..255.
pub const MEAN_IMAGE: &str = "mean_image";
/// `stats.h5`: mean R, G, B, `f64 [3]`.
pub const RGB_MEAN: &str = "rgb_mean";
/// `stats.h5`: covariance of RGB in 0..1 units, `f64 [3, 3]`.
pub const RGB_COV: &str = "rgb_cov";
/// `stats.h5`: eigenvalues of [`RGB_COV`], descending, `f64 [3]`.
pub const EIGVALS: &str = "eigvals";
/// `stats.h5`: eigenvectors as columns, `f64 [3, 3]`.
pub const EIGVECS: &str = "eigvecs";
/// `stats.h5`: number of training images, `u64` scalar.
pub const COUNT: &str = "count";
