//! The network's input made on the device from raw `u8` crops: the
//! device-free half (what each view tells the kernel, and the checks), in
//! every build. The CUDA half, [`DeviceInput`] (feature `cuda`), copies a
//! batch from pinned host memory on a copy stream of its own, into one of
//! two buffers (so that the copy of the next batch overlaps the step on
//! the current one), and runs mean-image subtraction and PCA lighting in
//! one kernel (`normalize_u8_f32` of `ops/cuda/kernels.cu`), with the
//! loader's own arithmetic in the loader's order.

/// Values per view in the kernel's `meta` array.
pub const META_PER_VIEW: usize = 6;

/// Where one view was cut and the lighting it gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewMeta {
    /// Top row of the crop in the source image.
    pub y: u32,
    /// Left column of the crop in the source image.
    pub x: u32,
    /// Mirrored left-right (the `u8` crop already is; the mean image is
    /// read at the mirrored source pixels).
    pub flipped: bool,
    /// PCA lighting offset of R, G and B, in 0..255 units.
    pub light: [f32; 3],
}

/// A batch geometry the kernel cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The pixels are not `views x 3 x crop x crop`.
    #[error("{bytes} bytes of u8 crops for {views} views of 3x{crop}x{crop}")]
    Size {
        /// Bytes handed over.
        bytes: usize,
        /// Views described.
        views: usize,
        /// Crop side.
        crop: usize,
    },
    /// A crop reaches outside the mean image.
    #[error("view {view} at ({y}, {x}) of side {crop} leaves the {h}x{w} mean image")]
    Outside {
        /// Which view.
        view: usize,
        /// Its top row.
        y: u32,
        /// Its left column.
        x: u32,
        /// Crop side.
        crop: usize,
        /// Mean image height.
        h: usize,
        /// Mean image width.
        w: usize,
    },
    /// A coordinate the kernel's `f32` metadata would not hold exactly.
    #[error("coordinate {0} is beyond 2^24")]
    Coordinate(u32),
    /// The mean image is not `h x w x 3`.
    #[error("mean image of {len} values is not {h}x{w}x3")]
    Mean {
        /// Values handed over.
        len: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
}

/// Checks a batch of `views` against the crop side, the pixel count and a
/// `h x w` mean image, and packs the kernel's metadata: per view `y, x,
/// flipped (0 or 1), light R, G, B` as `f32` (exact: coordinates are
/// checked to be below 2^24).
pub fn pack_meta(
    views: &[ViewMeta],
    crop: usize,
    bytes: usize,
    mean_hw: (usize, usize),
) -> Result<Vec<f32>, InputError> {
    if bytes != views.len() * 3 * crop * crop {
        return Err(InputError::Size {
            bytes,
            views: views.len(),
            crop,
        });
    }
    let (h, w) = mean_hw;
    let mut meta = Vec::with_capacity(views.len() * META_PER_VIEW);
    for (i, v) in views.iter().enumerate() {
        for c in [v.y, v.x] {
            if c >= 1 << 24 {
                return Err(InputError::Coordinate(c));
            }
        }
        if v.y as usize + crop > h || v.x as usize + crop > w {
            return Err(InputError::Outside {
                view: i,
                y: v.y,
                x: v.x,
                crop,
                h,
                w,
            });
        }
        meta.extend_from_slice(&[
            v.y as f32,
            v.x as f32,
            if v.flipped { 1.0 } else { 0.0 },
            v.light[0],
            v.light[1],
            v.light[2],
        ]);
    }
    Ok(meta)
}

/// Checks that a mean image holds `h x w x 3` values.
pub fn check_mean(mean: &[f32], h: usize, w: usize) -> Result<(), InputError> {
    if mean.len() != h * w * 3 {
        return Err(InputError::Mean {
            len: mean.len(),
            h,
            w,
        });
    }
    Ok(())
}

#[cfg(feature = "cuda")]
pub use crate::ops::cuda::input::DeviceInput;

#[cfg(test)]
mod tests {
    use super::*;

    fn view(y: u32, x: u32, flipped: bool) -> ViewMeta {
        ViewMeta {
            y,
            x,
            flipped,
            light: [1.5, -2.0, 0.25],
        }
    }

    #[test]
    fn meta_holds_six_values_per_view() {
        let m = pack_meta(
            &[view(3, 4, true), view(0, 8, false)],
            8,
            2 * 3 * 64,
            (16, 16),
        )
        .unwrap();
        assert_eq!(
            m,
            vec![3.0, 4.0, 1.0, 1.5, -2.0, 0.25, 0.0, 8.0, 0.0, 1.5, -2.0, 0.25]
        );
    }

    #[test]
    fn batches_the_kernel_cannot_take_are_refused() {
        assert!(matches!(
            pack_meta(&[view(0, 0, false)], 8, 3 * 64 - 1, (16, 16)),
            Err(InputError::Size { .. })
        ));
        assert!(matches!(
            pack_meta(&[view(9, 0, false)], 8, 3 * 64, (16, 16)),
            Err(InputError::Outside { view: 0, .. })
        ));
        assert!(matches!(
            pack_meta(&[view(0, 0, false), view(0, 9, true)], 8, 6 * 64, (16, 16)),
            Err(InputError::Outside { view: 1, .. })
        ));
        assert!(pack_meta(&[view(8, 8, true)], 8, 3 * 64, (16, 16)).is_ok());
        assert!(matches!(
            pack_meta(&[view(1 << 24, 0, false)], 1, 3, (usize::MAX / 4, 4)),
            Err(InputError::Coordinate(_))
        ));
        assert!(check_mean(&[0.0; 48], 4, 4).is_ok());
        assert!(check_mean(&[0.0; 47], 4, 4).is_err());
    }
}
