//! Why one image could not be decoded.

/// Why one image could not be turned into a 256x256 RGB image. Such images
/// are skipped and reported; they never stop a run. The text of each
/// variant is the reason the dataset records for a skipped image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The member holds no bytes.
    #[error("empty file")]
    Empty,
    /// Neither JPEG nor PNG magic bytes.
    #[error("not a JPEG or PNG image (first bytes {0})")]
    UnknownFormat(String),
    /// The JPEG decoder rejected the stream.
    #[error("JPEG: {source}{}", if *.truncated { " (no end-of-image marker: truncated?)" } else { "" })]
    Jpeg {
        /// The decoder's error.
        source: zune_jpeg::errors::DecodeErrors,
        /// The file ends without an end-of-image marker.
        truncated: bool,
    },
    /// The PNG decoder rejected the data.
    #[error("PNG: {0}")]
    Png(#[source] png::DecodingError),
    /// The decoder produced something other than the pixels asked for.
    #[error("{format}: {problem}")]
    Pixels {
        /// `JPEG` or `PNG`.
        format: &'static str,
        /// What was wrong.
        problem: PixelProblem,
    },
    /// The header declares more pixels than the decoder's limit (refused
    /// before any pixel buffer is allocated: a decompression bomb, or a
    /// photo too large to be worth it).
    #[error("{width}x{height} image: {} pixels, over the limit of {limit}", *.width as u64 * *.height as u64)]
    TooManyPixels {
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
        /// The limit in pixels.
        limit: u64,
    },
    /// The JPEG stream ends before its image does (libjpeg would fill the
    /// rest with grey).
    #[error("JPEG: the stream ends before the image does: {source}")]
    Truncated {
        /// libjpeg's warning, as TurboJPEG reports it.
        source: turbojpeg::Error,
    },
    /// Width or height is zero or absurdly large.
    #[error("unsupported image size {width}x{height}")]
    BadSize {
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
    },
    /// The resizer refused the image (should not happen for valid sizes).
    #[error("resize: {0}")]
    ResizeImage(#[source] fast_image_resize::ImageBufferError),
    /// The resizer failed (should not happen for valid sizes).
    #[error("resize: {0}")]
    Resize(#[source] fast_image_resize::ResizeError),
}

/// A decoder's output that is not the RGB pixels asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PixelProblem {
    /// The header gives no dimensions.
    #[error("no dimensions")]
    NoDimensions,
    /// The output buffer size overflows.
    #[error("image too large")]
    TooLarge,
    /// A palette image was not expanded to colours.
    #[error("palette not expanded")]
    PaletteNotExpanded,
    /// Fewer bytes than the image's pixels.
    #[error("decoded {got} bytes, expected {expected}")]
    Short {
        /// Bytes decoded.
        got: usize,
        /// Bytes the image needs.
        expected: usize,
    },
    /// A channel count other than 1-4.
    #[error("unsupported number of channels {0}")]
    Channels(usize),
}
