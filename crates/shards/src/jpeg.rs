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
