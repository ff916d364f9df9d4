//! How a shard stores its images: raw pixels or JPEG streams.

use crate::jpeg::{encode_jpeg, JpegError};

/// The JPEG quality `Encoding::Jpeg` uses unless told otherwise.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// How a shard stores its images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Uncompressed `u8` HWC, one HDF5 chunk per image (the default; 196,608
    /// bytes per 256x256 image; no decoding cost when read).
    #[default]
    Raw,
    /// Each image re-encoded as a baseline JPEG (4:2:0 chroma) at `quality`
    /// 1..=100 with libjpeg-turbo; decoded by the loader's worker threads.
    Jpeg {
        /// libjpeg-style quality, 1..=100.
        quality: u8,
    },
}

impl Encoding {
    /// JPEG at [`DEFAULT_JPEG_QUALITY`].
    pub fn jpeg() -> Self {
        Encoding::Jpeg {
            quality: DEFAULT_JPEG_QUALITY,
        }
    }

    /// The name used on the command line and in the manifest: `raw` or `jpeg`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg { .. } => "jpeg",
        }
    }

    /// The bytes a shard stores for one `side x side` RGB image (HWC), in
    /// `out` (cleared first). Raw copies the pixels; JPEG encodes them.
    pub fn encode(self, image: &[u8], side: usize, out: &mut Vec<u8>) -> Result<(), JpegError> {
        match self {
            Encoding::Raw => {
                out.clear();
                out.extend_from_slice(image);
                Ok(())
            }
            Encoding::Jpeg { quality } => encode_jpeg(image, side, side, quality, out),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoding::Raw => f.write_str("raw"),
            Encoding::Jpeg { quality } => write!(f, "jpeg (quality {quality})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_encoding_stores_the_pixels_themselves() {
        let image: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let mut out = vec![9; 5];
        Encoding::Raw.encode(&image, 4, &mut out).unwrap();
        assert_eq!(out, image);
        assert_eq!(Encoding::default(), Encoding::Raw);
        assert_eq!(Encoding::jpeg(), Encoding::Jpeg { quality: 90 });
    }
}
