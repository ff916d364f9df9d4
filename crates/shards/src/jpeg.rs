//! The JPEG encoding of shard images: encoding when a shard is written,
//! decoding in the loader's worker threads.

use std::cell::RefCell;

use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, Subsamp};

thread_local! {
    /// One libjpeg-turbo compressor and decompressor per thread, made on
    /// first use and kept (each holds libjpeg's state and buffers).
    static CODEC: RefCell<(Option<Compressor>, Option<Decompressor>)> =
        const { RefCell::new((None, None)) };
}

/// A JPEG stream that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JpegError {
    /// The encoder refused the image.
    #[error("JPEG encoding failed")]
    Encode(#[source] turbojpeg::Error),
    /// The stream is not a decodable JPEG.
    #[error("JPEG decoding failed")]
    Decode(#[source] turbojpeg::Error),
    /// libjpeg refused the stream (region decoding), with its message.
    #[error("JPEG decoding failed: {message}")]
    Libjpeg {
        /// libjpeg's message.
        message: String,
    },
    /// The stream decodes to another size than the shard declares.
    #[error("JPEG holds a {got_w}x{got_h} image, expected {want_w}x{want_h}")]
    Size {
        /// Decoded width.
        got_w: usize,
        /// Decoded height.
        got_h: usize,
        /// Declared width.
        want_w: usize,
        /// Declared height.
        want_h: usize,
    },
}

/// Encodes a `width x height` RGB HWC image as a baseline JPEG at `quality`
/// (1..=100, clamped) with 4:2:0 chroma subsampling, using libjpeg-turbo
/// (about 4x faster than the pure-Rust jpeg-encoder here, same sizes), into
/// `out` (cleared first).
pub fn encode_jpeg(
    image: &[u8],
    width: usize,
    height: usize,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), JpegError> {
    assert_eq!(
        image.len(),
        width * height * 3,
        "image is not width*height*3"
    );
    let image = Image {
        pixels: image,
        width,
        pitch: width * 3,
        height,
        format: PixelFormat::RGB,
    };
    CODEC.with(|codec| {
        let codec = &mut *codec.borrow_mut();
        let compressor = match &mut codec.0 {
            Some(c) => c,
            slot => slot.insert(Compressor::new().map_err(JpegError::Encode)?),
        };
        compressor.set_quality(quality.clamp(1, 100) as i32);
        compressor.set_subsamp(Subsamp::Sub2x2);
        let bytes = compressor
            .compress_to_owned(image)
            .map_err(JpegError::Encode)?;
        out.clear();
        out.extend_from_slice(&bytes);
        Ok(())
    })
}

/// Decodes a JPEG stream that must hold a `width x height` image into `out`
/// (`width*height*3` bytes, RGB HWC), with libjpeg-turbo (the fastest decoder
/// measured here: 1.1-1.3x zune-jpeg on these 256x256 streams). A warning
/// such as a premature end of the stream is an error too.
pub fn decode_jpeg_into(
    bytes: &[u8],
    width: usize,
    height: usize,
    out: &mut [u8],
) -> Result<(), JpegError> {
    assert_eq!(
        out.len(),
        width * height * 3,
        "output is not width*height*3"
    );
    CODEC.with(|codec| {
        let codec = &mut *codec.borrow_mut();
        let decompressor = match &mut codec.1 {
            Some(d) => d,
            slot => slot.insert(Decompressor::new().map_err(JpegError::Decode)?),
        };
        let header = decompressor.read_header(bytes).map_err(JpegError::Decode)?;
        if (header.width, header.height) != (width, height) {
            return Err(JpegError::Size {
                got_w: header.width,
                got_h: header.height,
                want_w: width,
                want_h: height,
            });
        }
        let image = Image {
            pixels: out,
            width,
            pitch: width * 3,
            height,
            format: PixelFormat::RGB,
        };
        decompressor
            .decompress(bytes, image)
            .map_err(JpegError::Decode)
    })
}

/// How a JPEG stream is decoded. The default is faithful: libjpeg's
/// accurate integer IDCT and its smooth ("fancy") chroma upsampling, the
/// same pixels as [`decode_jpeg_into`]. Each field trades some of that
/// exactness for speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JpegDecodeOptions {
    /// libjpeg's fast integer IDCT (`JDCT_IFAST`) instead of the accurate one
    /// (`JDCT_ISLOW`): less accurate, a level or so off on most pixels.
    pub fast_dct: bool,
    /// Chroma upsampled by replicating each sample (`do_fancy_upsampling =
    /// FALSE`; libjpeg-turbo then merges upsampling into colour conversion)
    /// instead of interpolating between samples.
    pub fast_upsampling: bool,
}

/// What a region decode wrote: rows `first_row..first_row + rows` of the
/// image, each `cols * 3` bytes (RGB), holding columns from `first_col` on.
/// The columns asked for lie inside; the others are whatever the decoder
/// had to decode around them (the iMCU grid, one pixel of margin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRegion {
    /// First image row written.
    pub first_row: usize,
    /// Rows written.
    pub rows: usize,
    /// Image column of each written row's first pixel.
    pub first_col: usize,
    /// Pixels in each written row.
    pub cols: usize,
}

mod ffi {
    use std::ffi::c_char;

    #[repr(C)]
    pub struct RegionDecoder {
        _opaque: [u8; 0],
    }

    pub const REGION_FAST_DCT: i32 = 1;
    pub const REGION_FAST_UPSAMPLING: i32 = 2;
    pub const REGION_OK: i32 = 0;
    pub const REGION_SIZE: i32 = 2;

    extern "C" {
        pub fn region_decoder_new() -> *mut RegionDecoder;
        pub fn region_decoder_free(d: *mut RegionDecoder);
        pub fn region_decoder_message(d: *const RegionDecoder) -> *const c_char;
        #[allow(clippy::too_many_arguments)]
        pub fn region_decode(
            d: *mut RegionDecoder,
            data: *const u8,
            len: usize,
            want_w: u32,
            want_h: u32,
            x: u32,
            y: u32,
            w: u32,
            h: u32,
            flags: i32,
            out: *mut u8,
            out_len: usize,
            out_x: *mut u32,
            out_cols: *mut u32,
            got_w: *mut u32,
            got_h: *mut u32,
        ) -> i32;
    }
}

/// One libjpeg decompressor (`src/jpeg_region.c`), owned by one thread.
struct RegionDecoder(*mut ffi::RegionDecoder);

impl RegionDecoder {
    fn new() -> Result<Self, JpegError> {
        // SAFETY: no preconditions; null means out of memory.
        let d = unsafe { ffi::region_decoder_new() };
        if d.is_null() {
            return Err(JpegError::Libjpeg {
                message: "could not create a decompressor".into(),
            });
        }
        Ok(RegionDecoder(d))
    }
}

impl Drop for RegionDecoder {
    fn drop(&mut self) {
        // SAFETY: made by `region_decoder_new`, freed once.
        unsafe { ffi::region_decoder_free(self.0) }
    }
}

thread_local! {
    /// This thread's region decoder, made on first use; dropped after an
    /// error, so that no state of a failed stream reaches the next one.
    static REGION: RefCell<Option<RegionDecoder>> = const { RefCell::new(None) };
}

/// Decodes the part of a `width x height` JPEG stream that holds rows
/// `rows` and columns `cols`, with libjpeg's partial decompression: columns
/// outside the region's iMCUs skip the IDCT, upsampling and colour
/// conversion, rows above it are only entropy-decoded, rows below it are
/// not read at all. The pixels of the region are those of a full decode
/// (with default `options`; see [`JpegDecodeOptions`]), written into `out`
/// (at least `rows.len() * width * 3` bytes) as [`DecodedRegion`] says.
///
/// Because decoding stops after the region's last row, damage to the
/// stream below it goes unnoticed; damage above it or inside it is an
/// error, as is any libjpeg warning.
///
/// # Panics
/// If the region is empty or does not fit the image, or `out` is too short.
pub fn decode_jpeg_region_into(
    bytes: &[u8],
    (width, height): (usize, usize),
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    options: JpegDecodeOptions,
    out: &mut [u8],
) -> Result<DecodedRegion, JpegError> {
    assert!(
        !rows.is_empty() && !cols.is_empty() && rows.end <= height && cols.end <= width,
        "region {rows:?} x {cols:?} does not fit a {width}x{height} image"
    );
    assert!(out.len() >= rows.len() * width * 3, "output too short");
    let flags = if options.fast_dct {
        ffi::REGION_FAST_DCT
    } else {
        0
    } | if options.fast_upsampling {
        ffi::REGION_FAST_UPSAMPLING
    } else {
        0
    };
    REGION.with(|slot| {
        let slot = &mut *slot.borrow_mut();
        let decoder = match slot {
            Some(d) => d,
            None => slot.insert(RegionDecoder::new()?),
        };
        let (mut out_x, mut out_cols, mut got_w, mut got_h) = (0u32, 0u32, 0u32, 0u32);
        // SAFETY: the decoder is this thread's; `bytes` and `out` are valid
        // for their lengths, which are passed along; the region was checked.
        let status = unsafe {
            ffi::region_decode(
                decoder.0,
                bytes.as_ptr(),
                bytes.len(),
                width as u32,
                height as u32,
                cols.start as u32,
                rows.start as u32,
                cols.len() as u32,
                rows.len() as u32,
                flags,
                out.as_mut_ptr(),
                out.len(),
                &mut out_x,
                &mut out_cols,
                &mut got_w,
                &mut got_h,
            )
        };
        match status {
            ffi::REGION_OK => Ok(DecodedRegion {
                first_row: rows.start,
                rows: rows.len(),
                first_col: out_x as usize,
                cols: out_cols as usize,
            }),
            ffi::REGION_SIZE => Err(JpegError::Size {
                got_w: got_w as usize,
                got_h: got_h as usize,
                want_w: width,
                want_h: height,
            }),
            _ => {
                // SAFETY: a NUL-terminated buffer inside the decoder.
                let message =
                    unsafe { std::ffi::CStr::from_ptr(ffi::region_decoder_message(decoder.0)) }
                        .to_string_lossy()
                        .into_owned();
                *slot = None;
                Err(JpegError::Libjpeg { message })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
        let sum: u64 = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
        sum as f64 / a.len() as f64
    }

    fn smooth_image(w: usize, h: usize) -> Vec<u8> {
        let mut img = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                img.extend([
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y) * 2) as u8,
                ]);
            }
        }
        img
    }

    #[test]
    fn round_trip_is_close_and_quality_trades_size() {
        let (w, h) = (64, 48);
        let img = smooth_image(w, h);
        let mut q90 = Vec::new();
        let mut q50 = Vec::new();
        encode_jpeg(&img, w, h, 90, &mut q90).unwrap();
        encode_jpeg(&img, w, h, 50, &mut q50).unwrap();
        assert!(q50.len() < q90.len(), "{} vs {}", q50.len(), q90.len());
        let mut back = vec![0u8; w * h * 3];
        decode_jpeg_into(&q90, w, h, &mut back).unwrap();
        let mean_abs = mean_abs_difference(&img, &back);
        assert!(mean_abs < 3.0, "mean abs difference {mean_abs}");
    }

    #[test]
    fn subsampled_colour_edges_survive() {
        // A hard-edged colour pattern at a size that is not a multiple of the
        // 16x16 MCU: the case where a chroma or Huffman mistake shows.
        let (w, h) = (72, 40);
        let img: Vec<u8> = (0..w * h)
            .flat_map(|p| {
                let (x, y) = (p % w, p / w);
                if (x / 8 + y / 8) % 2 == 0 {
                    [200, 30, 40]
                } else {
                    [20, 90, 220]
                }
            })
            .collect();
        let mut bytes = Vec::new();
        encode_jpeg(&img, w, h, 90, &mut bytes).unwrap();
        let mut back = vec![0u8; w * h * 3];
        decode_jpeg_into(&bytes, w, h, &mut back).unwrap();
        let mean_abs = mean_abs_difference(&img, &back);
        // 4:2:0 blurs the colour edges: libjpeg (Pillow) decoded the
        // pure-Rust encoder's stream of this image to a mean difference of
        // 14.77; a decoding mistake gives ~100.
        assert!(mean_abs < 16.0, "mean abs difference {mean_abs}");
    }

    /// A photo-like 256x256 image: smooth gradients, hard colour edges and
    /// noise (every DCT coefficient and the chroma upsampling matter).
    fn textured_image(w: usize, h: usize) -> Vec<u8> {
        let mut seed = 0x2545_f491_u32;
        let mut noise = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 61) as i32 - 30
        };
        let mut img = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let edge = if (x / 11 + y / 7) % 3 == 0 { 90 } else { 0 };
                for c in 0..3 {
                    let v = (x * (c + 1) + y * (3 - c)) as i32 / 3 + edge + noise();
                    img.push(v.clamp(0, 255) as u8);
                }
            }
        }
        img
    }

    /// Streams as shards and other writers may hold them: 4:2:0 (what
    /// [`encode_jpeg`] writes), 4:2:2, 4:4:4 and grayscale.
    fn streams(img: &[u8], w: usize, h: usize) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![("4:2:0", Vec::new())];
        encode_jpeg(img, w, h, 90, &mut out[0].1).unwrap();
        let mut c = Compressor::new().unwrap();
        c.set_quality(90);
        let image = Image {
            pixels: img,
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        for (name, sub) in [
            ("4:2:2", Subsamp::Sub2x1),
            ("4:4:4", Subsamp::None),
            ("gray", Subsamp::Gray),
        ] {
            c.set_subsamp(sub);
            out.push((name, c.compress_to_owned(image).unwrap().to_vec()));
        }
        out
    }

    /// Every 224x224 crop a 256x256 image offers (all 33x33 offsets), cut
    /// from a region decode, equals the same crop of a full decode, for each
    /// kind of stream.
    #[test]
    fn region_decoding_equals_full_decoding_at_every_crop() {
        let (w, h, crop) = (256, 256, 224);
        let img = textured_image(w, h);
        let mut region = vec![0u8; h * w * 3];
        for (name, stream) in streams(&img, w, h) {
            let mut full = vec![0u8; w * h * 3];
            decode_jpeg_into(&stream, w, h, &mut full).unwrap();
            for y in 0..=h - crop {
                for x in 0..=w - crop {
                    let got = decode_jpeg_region_into(
                        &stream,
                        (w, h),
                        y..y + crop,
                        x..x + crop,
                        JpegDecodeOptions::default(),
                        &mut region,
                    )
                    .unwrap();
                    assert_eq!((got.first_row, got.rows), (y, crop));
                    assert!(got.first_col <= x && x + crop <= got.first_col + got.cols);
                    for r in 0..crop {
                        let want = &full[((y + r) * w + x) * 3..][..crop * 3];
                        let have = &region[(r * got.cols + x - got.first_col) * 3..][..crop * 3];
                        assert!(
                            want == have,
                            "{name}: crop at ({x}, {y}) differs in row {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn region_decoding_of_bad_streams_is_an_error_and_the_decoder_recovers() {
        let (w, h) = (64, 48);
        let img = textured_image(w, h);
        let mut bytes = Vec::new();
        encode_jpeg(&img, w, h, 90, &mut bytes).unwrap();
        let mut out = vec![0u8; w * h * 3];
        let opts = JpegDecodeOptions::default();
        let region =
            |b: &[u8], out: &mut [u8]| decode_jpeg_region_into(b, (w, h), 0..h, 8..40, opts, out);
        assert!(matches!(
            decode_jpeg_region_into(&bytes, (32, 48), 0..8, 0..8, opts, &mut out),
            Err(JpegError::Size {
                got_w: 64,
                got_h: 48,
                ..
            })
        ));
        assert!(matches!(
            region(&bytes[..bytes.len() / 2], &mut out),
            Err(JpegError::Libjpeg { .. })
        ));
        assert!(matches!(
            region(b"not a jpeg", &mut out),
            Err(JpegError::Libjpeg { .. })
        ));
        let mut full = vec![0u8; w * h * 3];
        decode_jpeg_into(&bytes, w, h, &mut full).unwrap();
        let got = region(&bytes, &mut out).unwrap();
        assert_eq!(
            (got.first_col, got.cols),
            (0, 41),
            "one pixel of margin, snapped left"
        );
        for r in 0..h {
            assert_eq!(&out[r * 41 * 3..][..41 * 3], &full[r * w * 3..][..41 * 3]);
        }
    }

    #[test]
    fn wrong_size_and_garbage_are_errors() {
        let img = smooth_image(32, 32);
        let mut bytes = Vec::new();
        encode_jpeg(&img, 32, 32, 90, &mut bytes).unwrap();
        let mut out = vec![0u8; 16 * 16 * 3];
        assert!(matches!(
            decode_jpeg_into(&bytes, 16, 16, &mut out),
            Err(JpegError::Size { .. }) | Err(JpegError::Decode(_))
        ));
        let mut out = vec![0u8; 32 * 32 * 3];
        assert!(decode_jpeg_into(&bytes[..bytes.len() / 2], 32, 32, &mut out).is_err());
        assert!(decode_jpeg_into(b"not a jpeg", 32, 32, &mut out).is_err());
    }
}
