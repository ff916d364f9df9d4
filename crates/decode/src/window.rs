//! Decoding only the part of a JPEG that the centre crop's resize reads
//! (`src/jpeg_window.c`): the columns and rows outside the crop box and the
//! filter's reach skip the IDCT, upsampling and colour conversion. ImageNet's
//! typical 500x375 photo needs 375 of its 500 columns (plus the filter's
//! support), a portrait photo 375 of its 500 rows.
//!
//! The window's pixels are those of a full decode, written at their places
//! in an image-sized buffer, so the resize computes exactly what it computes
//! from a full decode: same source size, same crop box, same coefficients,
//! and it reads no pixel outside the window.

use crate::image::{center_crop_box, SIDE};

mod ffi {
    #[repr(C)]
    pub struct WindowDecoder {
        _opaque: [u8; 0],
    }

    pub const WINDOW_OK: i32 = 0;

    extern "C" {
        pub fn window_decoder_new() -> *mut WindowDecoder;
        pub fn window_decoder_free(d: *mut WindowDecoder);
        #[allow(clippy::too_many_arguments)]
        pub fn window_decode(
            d: *mut WindowDecoder,
            data: *const u8,
            len: usize,
            want_w: u32,
            want_h: u32,
            denom: u32,
            x: u32,
            y: u32,
            w: u32,
            h: u32,
            out: *mut u8,
            out_len: usize,
        ) -> i32;
    }
}

/// The source pixels that the resize of [`center_crop_box`] reads from a
/// `w x h` image, as `(x, y, width, height)`: the crop box widened on each
/// side by the filter's radius (`support`, scaled by the downscaling factor
/// as the resize scales it) and one more pixel, in whole pixels, within the
/// image.
pub(crate) fn resize_window(w: usize, h: usize, support: f64) -> (usize, usize, usize, usize) {
    let (left, top, crop_w, crop_h) = center_crop_box(w, h);
    let axis = |start: f64, len: f64, size: usize| {
        let radius = support * (len / SIDE as f64).max(1.0);
        let lo = ((start - radius).floor() - 1.0).max(0.0) as usize;
        let hi = (((start + len + radius).ceil() + 1.0) as usize).min(size);
        (lo, hi - lo)
    };
    let (x, cols) = axis(left, crop_w, w);
    let (y, rows) = axis(top, crop_h, h);
    (x, y, cols, rows)
}

/// One libjpeg decompressor for windows, owned by one [`crate::Decoder256`].
pub(crate) struct WindowDecoder(*mut ffi::WindowDecoder);

// SAFETY: the handle is used by one thread at a time (through `&mut self`)
// and holds no thread-bound state.
unsafe impl Send for WindowDecoder {}

impl WindowDecoder {
    /// A new decompressor; `None` when libjpeg cannot make one.
    pub(crate) fn new() -> Option<Self> {
        // SAFETY: no preconditions; null means out of memory.
        let d = unsafe { ffi::window_decoder_new() };
        (!d.is_null()).then_some(WindowDecoder(d))
    }

    /// Decodes the `w x h` JPEG `bytes` scaled by `1/d` in the DCT domain
    /// (`d` 1, 2, 4 or 8: an image of `w.div_ceil(d) x h.div_ceil(d)`), rows
    /// `y..y + rows` and at least columns `x..x + cols` of it, into `rgb`
    /// (RGB, the scaled image's size), each pixel at its place; other bytes
    /// keep what they held. `false` when libjpeg warned or failed anywhere
    /// in the stream, or the stream is not such an image: nothing it wrote
    /// is then of use.
    ///
    /// # Panics
    /// If the window does not fit the scaled image or `rgb` is too short.
    pub(crate) fn decode(
        &mut self,
        bytes: &[u8],
        (w, h, d): (usize, usize, usize),
        (x, y, cols, rows): (usize, usize, usize, usize),
        rgb: &mut [u8],
    ) -> bool {
        let (ow, oh) = (w.div_ceil(d), h.div_ceil(d));
        assert!(x + cols <= ow && y + rows <= oh && cols > 0 && rows > 0);
        assert!(rgb.len() >= ow * oh * 3);
        let dim = |v: usize| u32::try_from(v).expect("a side within libjpeg's limits");
        // SAFETY: the handle is live; `bytes` and `rgb` are valid for their
        // lengths, and the C side writes only within `rgb.len()` bytes
        // (it checks `out_len` against the scaled image's size).
        let status = unsafe {
            ffi::window_decode(
                self.0,
                bytes.as_ptr(),
                bytes.len(),
                dim(w),
                dim(h),
                dim(d),
                dim(x),
                dim(y),
                dim(cols),
                dim(rows),
                rgb.as_mut_ptr(),
                rgb.len(),
            )
        };
        status == ffi::WINDOW_OK
    }
}

impl Drop for WindowDecoder {
    fn drop(&mut self) {
        // SAFETY: made by `window_decoder_new`, freed once.
        unsafe { ffi::window_decoder_free(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_the_crop_box_and_the_filter_reach() {
        // 500x375 scales to 341x256, cropped at x 42: the crop box is
        // x 61.58..436.95 (500/341 source pixels per output pixel), the
        // whole height; Lanczos3 at a downscale of 1.466 reaches 4.40 px
        // beyond it: floor(57.18) - 1 = 56 to ceil(441.35) + 1 = 443.
        assert_eq!(resize_window(500, 375, 3.0), (56, 0, 387, 375));
        // Portrait: rows are cut instead.
        assert_eq!(resize_window(375, 500, 3.0), (0, 56, 375, 387));
        // A square needs everything.
        assert_eq!(resize_window(300, 300, 3.0), (0, 0, 300, 300));
        // Upscaling keeps the unscaled support.
        let (x, _, cols, _) = resize_window(400, 200, 3.0);
        let (left, _, crop_w, _) = center_crop_box(400, 200);
        assert!(x as f64 <= left - 4.0 && (x + cols) as f64 >= left + crop_w + 4.0);
    }
}
